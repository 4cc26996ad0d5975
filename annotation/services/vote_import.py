"""``votes_import``: published or earlier human labels brought into a study, all or nothing.

Over 400 lines: three readers and the one all-or-nothing writer they feed, which share
their checks and error messages.

Three formats (``FORMATS``):

- ``long-csv``: columns ``scene,image_a,image_b,annotator,preferred`` (``a``, ``b`` or
  ``similar``), optional ``response_ms``; images by stable name (``scene/file.png``) or by
  file name within the scene.
- ``sriqa-json``: ``<annotator>/<scene>/<anything>.json``, each
  ``{"Picture_01": {"Name": "x.png", "Label": L1}, "Picture_02": {"Name": "y.png",
  "Label": L2}}``; the image whose label ranks higher (Positive > Similar > Negative) is
  preferred, equal labels are a similar vote.
- ``diffiqa-json``: ``<annotator>/<idx>/<scene>_<idx>.json``, each ``{"Picture_AI":
  {"Label": L}}`` for that test image against its scene's reference (Positive: the test
  image is better). ``<scene>_<idx>`` names an image through a CSV (``label_name,image``),
  else by index: ``idx`` counts the scene's test images by file name from 0.

How imported votes live in the study:

- One session per imported annotator, pseudonymised like the platform's own (a random
  ``pseudonym``; the original id is kept in ``external_ids["import_annotator"]``, never
  exported), ``source`` set to the import's name and ``external_ids["import_source"]``
  marking it imported. It is completed at once and has no token anyone knows, so it is
  never given a trial.
- Each vote has a counted trial (kind ``label``), answered when imported, so it is never a
  lease: the sweep and the newcomers' rule only look at unanswered trials. ``n_assigned``
  (the assignment counter: the platform's own counted votes and live leases) is left
  alone: the platform still collects each pair's ``target_votes`` of its own. Progress
  (``pairs_complete``, counted votes) counts imported votes, as the labels do: a pair can
  be complete there while assignment still offers it.
- Sides are not known, so trials alternate ``a_on_left`` per annotator: the vote's choice
  follows, and the side-bias rule sees no bias.
- Votes count like the platform's own in labels, image scores, quality control and
  agreement (they are ordinary label votes); the export marks them (``imported``).

Refused, naming the file and line, with nothing written: unknown images, a pair not in the
study's design, a label not one of the three, malformed JSON or CSV, duplicate
(annotator, pair) votes, a study whose design the format does not fit, a source name
already imported into the study.
"""

import csv
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path

import numpy as np
from django.db import connection, transaction

from annotation import clock
from annotation.errors import VoteImportError
from annotation.models import AnnotatorSession, Design, Image, Pair, Study, Trial, Vote
from annotation.services import statements
from core.spreadsheet import restore

FORMATS = ("long-csv", "sriqa-json", "diffiqa-json")
LABELS = ("Positive", "Similar", "Negative")
_RANK = {"Positive": 2, "Similar": 1, "Negative": 0}
PREFERRED = ("a", "b", "similar")
LONG_CSV_COLUMNS = ("scene", "image_a", "image_b", "annotator", "preferred")
BATCH = 5000
# Votes read, checked and written at a time.
CHUNK = 20_000
# The namespace of the advisory lock that serialises imports into one study.
LOCK_NAMESPACE = 17_001
SOURCE_MAX = 32


@dataclass(frozen=True)
class ParsedVote:
    origin: str  # file[:line], for errors
    annotator: str
    scene: str
    image_a: str  # as written: a stable name or a file name within the scene
    image_b: str
    preferred: str  # a, b or similar, in (image_a, image_b)'s terms
    response_ms: int | None = None


@dataclass(frozen=True)
class VoteImportResult:
    votes: int
    annotators: int
    source: str
    mapping: str  # how images were named: what the command says


def _designs(fmt: str) -> tuple[str, ...]:
    if fmt == "diffiqa-json":
        return (Design.REF_VS_TEST,)
    if fmt == "sriqa-json":
        return (Design.PAIRWISE, Design.NR_PAIRWISE)
    return tuple(Design.values)


def _read_json(path: Path, root: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise VoteImportError(f"{path.relative_to(root)}{line}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise VoteImportError(f"{path.relative_to(root)}: expected a JSON object")
    return data


def _label(value: object, where: str) -> str:
    if value not in LABELS:
        raise VoteImportError(f"{where}: label {value!r} is not one of {', '.join(LABELS)}")
    return str(value)


def _json_files(root: Path, depth: int, layout: str) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """Every ``*.json`` under ``root`` (sorted), with its folder parts; a file at another
    depth is refused, naming the layout."""
    if not root.is_dir():
        raise VoteImportError(f"{root}: not a folder ({layout})")
    for path in sorted(root.rglob("*.json")):
        parts = path.relative_to(root).parts
        if len(parts) != depth:
            raise VoteImportError(f"{path.relative_to(root)}: not in the layout {layout}")
        yield path, parts


def _readable(path: Path) -> Path:
    if not path.is_file():
        raise VoteImportError(f"{path}: no such file")
    return path


def parse_long_csv(path: Path) -> Iterator[ParsedVote]:
    with open(_readable(path), newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in LONG_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise VoteImportError(f"{path.name}:1: missing column(s) {', '.join(missing)}")
        timed = "response_ms" in reader.fieldnames
        try:
            for row in reader:
                where = f"{path.name}:{reader.line_num}"
                if None in row or any(row[c] is None for c in LONG_CSV_COLUMNS):
                    raise VoteImportError(f"{where}: wrong number of fields")
                # The export's votes.csv reads back as it was (its spreadsheet-safe quotes).
                row = {key: restore(value) for key, value in row.items()}
                preferred = row["preferred"].strip()
                if preferred not in PREFERRED:
                    raise VoteImportError(
                        f"{where}: preferred {preferred!r} is not one of a, b, similar"
                    )
                response_ms = None
                if timed and (text := (row["response_ms"] or "").strip()):
                    try:
                        response_ms = int(float(text))
                    except ValueError:
                        raise VoteImportError(
                            f"{where}: response_ms {text!r} is not a number"
                        ) from None
                    if response_ms < 0:
                        raise VoteImportError(f"{where}: response_ms {text!r} is negative")
                yield ParsedVote(
                    origin=where, annotator=row["annotator"].strip(), scene=row["scene"].strip(),
                    image_a=row["image_a"].strip(), image_b=row["image_b"].strip(),
                    preferred=preferred, response_ms=response_ms,
                )  # fmt: skip
        except csv.Error as exc:
            raise VoteImportError(f"{path.name}:{reader.line_num}: malformed CSV ({exc})") from exc


def parse_sriqa_json(root: Path) -> Iterator[ParsedVote]:
    for path, (annotator, scene, _) in _json_files(root, 3, "<annotator>/<scene>/<anything>.json"):
        where = str(path.relative_to(root))
        data = _read_json(path, root)
        pictures = []
        for key in ("Picture_01", "Picture_02"):
            picture = data.get(key)
            if not isinstance(picture, dict) or not isinstance(picture.get("Name"), str):
                raise VoteImportError(f"{where}: {key} with a Name is missing")
            pictures.append((picture["Name"], _label(picture.get("Label"), f"{where}: {key}")))
        (name_1, label_1), (name_2, label_2) = pictures
        if _RANK[label_1] == _RANK[label_2]:
            preferred = "similar"
        else:
            preferred = "a" if _RANK[label_1] > _RANK[label_2] else "b"
        yield ParsedVote(where, annotator, scene, name_1, name_2, preferred)


_DIFFIQA_NAME = re.compile(r"^(?P<scene>.+)_(?P<idx>\d+)$")
_DIFFIQA_PREFERRED = {"Positive": "a", "Similar": "similar", "Negative": "b"}


def read_name_map(path: Path) -> dict[str, str]:
    """``label_name,image`` rows: the DiffIQA ``<scene>_<idx>`` -> the image's stable name."""
    names: dict[str, str] = {}
    with open(_readable(path), newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"label_name", "image"} <= set(reader.fieldnames or []):
            raise VoteImportError(f"{path.name}:1: expected columns label_name,image")
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            if row["label_name"] in names:
                raise VoteImportError(f"{where}: {row['label_name']!r} is named twice")
            names[row["label_name"]] = row["image"]
    return names


def parse_diffiqa_json(
    root: Path, study: Study, names: dict[str, str] | None
) -> Iterator[ParsedVote]:
    references = dict(
        Image.objects.filter(scene__study=study, role=Image.Role.REFERENCE).values_list(
            "scene__name", "name"
        )
    )
    tests: dict[str, list[str]] = {}
    if names is None:
        for scene, name in (
            Image.objects.filter(scene__study=study, role=Image.Role.TEST, gold="")
            .order_by("scene__name", "name")
            .values_list("scene__name", "name")
        ):
            tests.setdefault(scene, []).append(name)
    layout = "<annotator>/<idx>/<scene>_<idx>.json"
    for path, (annotator, _, file) in _json_files(root, 3, layout):
        where = str(path.relative_to(root))
        stem = Path(file).stem
        data = _read_json(path, root)
        picture = data.get("Picture_AI")
        if not isinstance(picture, dict):
            raise VoteImportError(f"{where}: Picture_AI is missing")
        label = _label(picture.get("Label"), f"{where}: Picture_AI")
        if names is not None:
            if stem not in names:
                raise VoteImportError(f"{where}: {stem!r} is not in the name map")
            image = names[stem]
            scene = image.rsplit("/", 1)[0] if "/" in image else ""
        else:
            match = _DIFFIQA_NAME.match(stem)
            if match is None:
                raise VoteImportError(f"{where}: file name is not <scene>_<idx>.json")
            scene, idx = match["scene"], int(match["idx"])
            if scene not in tests:
                raise VoteImportError(f"{where}: unknown scene {scene!r}")
            if idx >= len(tests[scene]):
                raise VoteImportError(
                    f"{where}: scene {scene!r} has {len(tests[scene])} test images; "
                    f"no index {idx} (counted from 0 by file name)"
                )
            image = tests[scene][idx]
        if scene not in references:
            raise VoteImportError(f"{where}: unknown image {image!r} (no scene with a reference)")
        yield ParsedVote(
            where, annotator, scene, image, references[scene], _DIFFIQA_PREFERRED[label]
        )


@dataclass(frozen=True)
class _Resolved:
    annotator: int  # index into the annotators, in order of first appearance
    pair_id: int
    preferred: str
    response_ms: int | None


class _Resolver:
    """Votes in the study's pairs' terms, a chunk at a time; refuses unknown images, pairs
    outside the design and duplicate (annotator, pair) votes, each at its vote, in the
    source's order. Holds the study's images and pairs (they grow with its pairs, not with
    the votes) and, for the duplicates, 16 bytes a vote read: its (annotator, pair) key
    and its position, sorted by key."""

    def __init__(self, study: Study, reparse: Callable[[], Iterator[ParsedVote]]) -> None:
        self.study = study
        self.reparse = reparse
        self.images = dict(Image.objects.filter(scene__study=study).values_list("name", "id"))
        self.scene_of = dict(
            Image.objects.filter(scene__study=study).values_list("id", "scene__name")
        )
        self.pairs: dict[tuple[int, int], tuple[int, bool]] = {}
        for pair_id, a, b in Pair.objects.filter(study=study, gold_answer="").values_list(
            "id", "image_a_id", "image_b_id"
        ):
            self.pairs[(a, b)] = (pair_id, False)
            self.pairs[(b, a)] = (pair_id, True)
        # A dense index per pair for the duplicate keys (ids are 64-bit; the study's pairs
        # fewer than 2**32).
        ids = dict.fromkeys(pair_id for pair_id, _ in self.pairs.values())
        self.pair_index = {pair_id: i for i, pair_id in enumerate(ids)}
        self.annotators: dict[str, int] = {}
        self.keys = np.empty(0, dtype=np.int64)
        self.positions = np.empty(0, dtype=np.int64)
        self.count = 0

    def _image_id(self, vote: ParsedVote, written: str) -> int:
        for name in (written, f"{vote.scene}/{written}"):
            image = self.images.get(name)
            if image is not None and (not vote.scene or self.scene_of[image] == vote.scene):
                return image
        raise VoteImportError(
            f"{vote.origin}: unknown image {written!r} in scene {vote.scene!r} of study "
            f"{self.study.slug!r}"
        )

    def _one(self, vote: ParsedVote) -> _Resolved:
        if not vote.annotator:
            raise VoteImportError(f"{vote.origin}: empty annotator")
        a, b = self._image_id(vote, vote.image_a), self._image_id(vote, vote.image_b)
        if (a, b) not in self.pairs:
            raise VoteImportError(
                f"{vote.origin}: {vote.image_a} vs {vote.image_b} is not a pair of the "
                f"study's {self.study.design} design"
            )
        pair_id, swapped = self.pairs[(a, b)]
        who = self.annotators.setdefault(vote.annotator, len(self.annotators))
        preferred = _SWAP[vote.preferred] if swapped else vote.preferred
        return _Resolved(who, pair_id, preferred, vote.response_ms)

    def chunk(self, batch: list[ParsedVote]) -> list[_Resolved]:
        """The chunk's votes resolved; the first fault in the source's order refused."""
        resolved: list[_Resolved] = []
        try:
            for vote in batch:
                resolved.append(self._one(vote))
        except VoteImportError:
            self._refuse_duplicate(batch, resolved)  # an earlier duplicate comes first
            raise
        self._refuse_duplicate(batch, resolved)
        keys = self._keys(resolved)
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(self.keys, keys[order])
        self.keys = np.insert(self.keys, at, keys[order])
        self.positions = np.insert(self.positions, at, self.count + order)
        self.count += len(resolved)
        return resolved

    def _keys(self, resolved: list[_Resolved]) -> np.ndarray:
        """One int64 per vote for its (annotator, pair): their dense indexes, 32 bits each."""
        who = np.fromiter((vote.annotator for vote in resolved), np.int64, len(resolved))
        index = self.pair_index
        pair = np.fromiter((index[vote.pair_id] for vote in resolved), np.int64, len(resolved))
        return (who << 32) | pair

    def _refuse_duplicate(self, batch: list[ParsedVote], resolved: list[_Resolved]) -> None:
        if not resolved:
            return
        keys = self._keys(resolved)
        at = np.searchsorted(self.keys, keys)
        earlier = np.full(len(keys), -1, dtype=np.int64)  # position of the earlier vote
        found = at < len(self.keys)
        found[found] = self.keys[at[found]] == keys[found]
        earlier[found] = self.positions[at[found]]
        _, first = np.unique(keys, return_inverse=False, return_index=True)
        first_of = dict(zip(keys[first].tolist(), first.tolist(), strict=True))
        repeated = np.array([first_of[key] != i for i, key in enumerate(keys.tolist())])
        faults = np.flatnonzero(found | repeated)
        if not len(faults):
            return
        i = int(faults[0])
        if found[i]:
            origin = next(islice(self.reparse(), int(earlier[i]), None)).origin
        else:
            origin = batch[first_of[int(keys[i])]].origin
        vote = batch[i]
        raise VoteImportError(
            f"{vote.origin}: annotator {vote.annotator!r} already voted on this pair ({origin})"
        )


_SWAP = {"a": "b", "b": "a", "similar": "similar"}


def votes_import(
    *,
    study: Study,
    source: Path,
    fmt: str,
    source_name: str = "",
    names: Path | None = None,
    now: datetime | None = None,
) -> VoteImportResult:
    """Import the votes in ``source`` into ``study``, all or nothing (see the module).

    The source is read, checked and written a chunk at a time inside one transaction, so
    memory does not grow with the votes (but for 16 bytes a vote to find duplicates). The
    study's row is locked first, so two imports into one study run one after the other
    and a source name is imported once even when both start together."""
    if fmt not in FORMATS:
        raise VoteImportError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if study.design not in _designs(fmt):
        raise VoteImportError(
            f"study {study.slug!r} is {study.design}; {fmt} labels need a "
            f"{' or '.join(_designs(fmt))} study"
        )
    if names is not None and fmt != "diffiqa-json":
        raise VoteImportError("a name map goes with diffiqa-json")
    source = Path(source)
    source_name = source_name or fmt
    if len(source_name) > SOURCE_MAX:
        raise VoteImportError(f"source name {source_name!r} is longer than {SOURCE_MAX}")
    mapping = "images by name"
    if fmt == "long-csv":
        _readable(source)

        def parse() -> Iterator[ParsedVote]:
            return parse_long_csv(source)

    elif fmt == "sriqa-json":

        def parse() -> Iterator[ParsedVote]:
            return parse_sriqa_json(source)

    else:
        name_map = read_name_map(names) if names is not None else None

        def parse() -> Iterator[ParsedVote]:
            return parse_diffiqa_json(source, study, name_map)

        mapping = (
            f"images by the name map {names.name}"
            if names is not None
            else "images by index: <idx> counts the scene's test images by file name from 0"
        )
    now = now or clock.now()
    with transaction.atomic():
        # Imports into one study one after the other: an advisory lock for the transaction
        # (not the study's row, which a settings change or closing the study must be able
        # to update during a long import). SQLite has one writer: no lock needed.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, study.pk])
        if AnnotatorSession.objects.filter(
            study=study, external_ids__import_source=source_name
        ).exists():
            raise VoteImportError(
                f"votes from source {source_name!r} were already imported into "
                f"{study.slug!r}; name this import with another --source"
            )
        resolver = _Resolver(study, parse)
        writer = _Writer(study, source_name, now)
        parsed = parse()
        while batch := list(islice(parsed, CHUNK)):
            votes = resolver.chunk(batch)
            _write_chunk(writer, list(resolver.annotators), votes)
        if not resolver.count:
            raise VoteImportError("no votes found in the source")
        writer.finish()
    return VoteImportResult(
        votes=resolver.count, annotators=len(resolver.annotators), source=source_name,
        mapping=mapping,
    )  # fmt: skip


class _Writer:
    """Sessions, trials and votes written as the chunks come: a session when its
    annotator first appears (its counts set at the end), each vote with a counted trial
    at ``now`` plus its position in microseconds (the export orders votes by time), sides
    alternating per annotator."""

    def __init__(self, study: Study, source: str, now: datetime) -> None:
        self.study, self.source, self.now = study, source, now
        self.sessions: list[AnnotatorSession] = []
        self.done: list[int] = []  # votes written per annotator
        self.count = 0

    def open_sessions(self, annotators: list[str]) -> None:
        new = annotators[len(self.sessions) :]
        self.sessions += AnnotatorSession.objects.bulk_create(
            [
                AnnotatorSession(
                    study=self.study,
                    source=self.source,
                    external_ids={"import_source": self.source, "import_annotator": name},
                    created_at=self.now,
                    completed_at=self.now,
                )
                for name in new
            ],
            batch_size=BATCH,
        )
        self.done += [0] * len(new)

    def rows(self, votes: list[_Resolved]) -> list[tuple]:
        """(trial id, session id, pair id, ordinal, a_on_left, time, vote) per vote."""
        rows = []
        for vote in votes:
            position = self.done[vote.annotator]
            self.done[vote.annotator] += 1
            when = self.now + timedelta(microseconds=self.count)
            self.count += 1
            rows.append((uuid.uuid4(), self.sessions[vote.annotator].pk, vote.pair_id, position,
                         position % 2 == 0, when, vote))  # fmt: skip
        return rows

    def finish(self) -> None:
        for session, done in zip(self.sessions, self.done, strict=True):
            session.n_done = session.n_issued = done
        AnnotatorSession.objects.bulk_update(self.sessions, ["n_done", "n_issued"], batch_size=1000)


def _write_chunk(writer: _Writer, annotators: list[str], votes: list[_Resolved]) -> None:
    writer.open_sessions(annotators)
    rows = writer.rows(votes)
    if statements.use_fast_path():
        _copy_rows(rows)
        return
    for start in range(0, len(rows), BATCH):
        trials, answers = [], []
        for trial_id, session_id, pair_id, ordinal, a_on_left, when, vote in rows[
            start : start + BATCH
        ]:
            trial = Trial(
                id=trial_id, session_id=session_id, pair_id=pair_id, kind=Trial.Kind.LABEL,
                ordinal=ordinal, a_on_left=a_on_left, issued_at=when, lease_expires_at=when,
                answered_at=when,
            )  # fmt: skip
            answer = Vote(
                id=uuid.uuid4(), trial_id=trial_id, session_id=session_id, pair_id=pair_id,
                kind=Trial.Kind.LABEL, choice=_choice(vote.preferred, a_on_left),
                preferred=vote.preferred, response_ms=vote.response_ms, created_at=when,
            )  # fmt: skip
            trials.append(trial)
            answers.append(answer)
        Trial.objects.bulk_create(trials)
        Vote.objects.bulk_create(answers)


def _choice(preferred: str, a_on_left: bool) -> str:
    if preferred == "similar":
        return "similar"
    return "left" if (preferred == "a") == a_on_left else "right"


TRIAL_COPY = (
    "COPY annotation_trial (id, session_id, pair_id, kind, ordinal, a_on_left, issued_at, "
    "lease_expires_at, answered_at, released) FROM STDIN"
)
VOTE_COPY = (
    "COPY annotation_vote (id, trial_id, session_id, pair_id, kind, choice, preferred, late, "
    "response_ms, client_info, created_at) FROM STDIN"
)


def _copy_rows(rows: list[tuple]) -> None:
    """PostgreSQL: a chunk's trials, then its votes, streamed with COPY."""
    with connection.cursor() as cursor:
        with cursor.cursor.copy(TRIAL_COPY) as copy:
            for trial_id, session_id, pair_id, ordinal, a_on_left, when, _ in rows:
                copy.write_row(
                    (trial_id, session_id, pair_id, "label", ordinal, a_on_left, when, when,
                     when, False)
                )  # fmt: skip
        with cursor.cursor.copy(VOTE_COPY) as copy:
            for trial_id, session_id, pair_id, _, a_on_left, when, vote in rows:
                copy.write_row(
                    (uuid.uuid4(), trial_id, session_id, pair_id, "label",
                     _choice(vote.preferred, a_on_left), vote.preferred, False,
                     vote.response_ms, "{}", when)
                )  # fmt: skip
