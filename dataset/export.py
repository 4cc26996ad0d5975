"""``export_study``: a study's tables as CSV, Parquet or JSON Lines, plus a datasheet.

Raw and complete: every vote is exported, practice and gold included and marked, so
nothing is hidden from the researcher. Images are named by their stable name in the
study (``scene/file.png``) in every table. Each file is written beside its final name
and moved into place, so a failed export never leaves a half-written table.

Over 400 lines: the tables and the datasheet that describes them, kept together.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.db import connection, transaction
from django.db.models import F
from django.db.models.fields.json import KeyTextTransform

from analysis.report import HUMAN_SCORE, MODEL_NAMES, study_report
from analysis.scaling import TIE_MODELS, TIE_PARAMETER
from analysis.selectors import study_data
from analysis.tally import tally_streamed
from annotation import designs
from annotation.models import AnnotatorSession, Image, Pair, Study, Trial, Vote
from annotation.services.sessions import counted_trials_required
from annotation.study_settings import Policy
from core.errors import DomainError
from core.spreadsheet import defuse_frame
from dataset import formats as field_formats
from scoring.selectors import scores_frame

FORMATS = ("csv", "parquet", "jsonl")
# The tables ``study_export`` writes, in order; then the ``README.md`` datasheet.
TABLES = (
    "votes", "pairs", "sessions", "annotators", "image_scores", "metric_scores", "agreement",
    "comparisons",
)  # fmt: skip
# Progress steps of an export: the report, each table, the datasheet.
EXPORT_STEPS = 1 + len(TABLES) + 1

VOTE_COLUMNS = [
    "vote_id", "trial_id", "scene", "pair_id", "image_a", "image_b", "reference",
    "left_image", "right_image", "choice", "preferred", "annotator", "is_gold",
    "is_practice", "is_late", "excluded", "response_ms", "server_ms", "too_fast",
    "past_target", "device_pixel_ratio", "viewport_width", "viewport_height", "created_at",
    "imported", "is_pilot", "policy",
]  # fmt: skip
PAIR_COLUMNS = [
    "pair_id", "scene", "image_a", "image_b", "reference", "condition_a", "condition_b",
    "shown_reference", "is_gold", "gold_answer", "target_votes", "n_votes", "n_a",
    "n_similar", "n_b", "p_a", "majority",
]  # fmt: skip
SESSION_COLUMNS = [
    "annotator", "source", "created_at", "completed_at", "outcome", "code_earned", "n_done",
    "n_practice_done", "device_pixel_ratio", "viewport_width", "viewport_height", "user_agent",
    "pilot",
]  # fmt: skip


class ExportError(DomainError):
    code = "export_refused"


@dataclass(frozen=True)
class WrittenTable:
    name: str
    path: Path
    rows: int


def _references(study: Study) -> dict[int, str]:
    """Scene id -> its reference's name, for designs whose metrics score against it."""
    if not designs.is_full_reference(study.design):
        return {}
    return dict(
        Image.objects.filter(scene__study=study, role=Image.Role.REFERENCE).values_list(
            "scene_id", "name"
        )
    )


def _client_columns(frame: pd.DataFrame, keys: tuple[str, ...]) -> None:
    """Spread the ``client_info`` JSON into one column per key (None where absent)."""
    for key in keys:
        frame[key] = frame["client_info"].map(lambda info, key=key: (info or {}).get(key))


def pairs_frame(study: Study, labels: pd.DataFrame) -> pd.DataFrame:
    """The study's pairs with their labels (``labels``: pair_id, n_votes, n_a, n_similar,
    n_b, p_a, majority, from the report, after exclusions)."""
    rows = list(
        Pair.objects.filter(study=study)
        .order_by("scene__name", "id")
        .values(
            "scene_id",
            "target_votes",
            "gold_answer",
            pair_id=F("id"),
            scene_name=F("scene__name"),
            image_a_name=F("image_a__name"),
            image_b_name=F("image_b__name"),
            condition_a=F("image_a__condition"),
            condition_b=F("image_b__condition"),
            shown_reference_name=F("shown_reference__name"),
        )
    )
    pairs = pd.DataFrame(
        rows,
        columns=[
            "scene_id", "target_votes", "gold_answer", "pair_id", "scene_name", "image_a_name",
            "image_b_name", "condition_a", "condition_b", "shown_reference_name",
        ],
    ).rename(columns=lambda c: c.removesuffix("_name"))  # fmt: skip
    references = _references(study)
    pairs["reference"] = pairs["scene_id"].map(references).astype(object).fillna("")
    pairs["shown_reference"] = pairs["shown_reference"].fillna("")
    pairs["is_gold"] = pairs["gold_answer"] != ""
    label_columns = ["n_votes", "n_a", "n_similar", "n_b", "p_a", "majority"]
    pairs = pairs.merge(labels[["pair_id", *label_columns]], on="pair_id", how="left")
    return pairs[PAIR_COLUMNS]


# Rows of the votes table read and written at a time: the table is streamed from a
# server-side cursor in chunks, so memory does not grow with the votes.
VOTES_CHUNK = 50_000
_VOTE_SOURCE_COLUMNS = [
    "pair_id", "choice", "preferred", "response_ms", "created_at", "kind", "client_info",
    "trial_id", "vote_id", "scene_id", "scene_name", "image_a_name", "image_b_name",
    "a_on_left", "annotator", "is_late", "import_source", "server_ms", "too_fast", "is_pilot",
    "policy",
]  # fmt: skip


@dataclass(frozen=True)
class VoteCounts:
    """What the datasheet says of the votes table, summed as its chunks are written: the
    annotators' votes, and apart from them the pilot votes (when the table has them)."""

    votes: int = 0
    counted: int = 0
    gold: int = 0
    practice: int = 0
    late: int = 0
    imported: int = 0
    too_fast: int = 0
    past_target: int = 0
    pilot: int = 0

    def plus(self, votes: pd.DataFrame) -> "VoteCounts":
        pilot = votes["is_pilot"]
        people = votes[~pilot]
        gold, practice, fast = people["is_gold"], people["is_practice"], people["too_fast"]
        return VoteCounts(
            votes=self.votes + len(people),
            counted=self.counted + int((~gold & ~practice & ~fast).sum()),
            gold=self.gold + int(gold.sum()),
            practice=self.practice + int(practice.sum()),
            late=self.late + int(people["is_late"].sum()),
            imported=self.imported + int(people["imported"].sum()),
            too_fast=self.too_fast + int(fast.sum()),
            past_target=self.past_target + int(people["past_target"].sum()),
            pilot=self.pilot + int(pilot.sum()),
        )


class _PastTarget:
    """Marks the counted votes past their pair's target, in the order they came (the
    votes table is read oldest first): the answers of set-aside or released leases that
    came after all (assignment rules 7 and 12), and of trials out when their pair was
    decided (rule 15)."""

    def __init__(self, study: Study) -> None:
        self.targets = dict(
            Pair.objects.filter(study=study, gold_answer="").values_list("pk", "target_votes")
        )
        self.seen: dict[int, int] = {}

    def mark(self, votes: pd.DataFrame) -> pd.Series:
        counted = (votes["kind"] == Trial.Kind.LABEL) & ~votes["too_fast"] & ~votes["is_pilot"]
        past = np.zeros(len(votes), dtype=bool)
        for row, pair_id in zip(
            np.flatnonzero(counted), votes.loc[counted, "pair_id"], strict=True
        ):
            n = self.seen.get(pair_id, 0) + 1
            self.seen[pair_id] = n
            past[row] = n > self.targets.get(pair_id, n)
        return pd.Series(past, index=votes.index)


def _votes_chunk(
    rows: list[tuple], references: dict[int, str], excluded: set[str], past: _PastTarget
) -> pd.DataFrame:
    votes = pd.DataFrame.from_records(rows, columns=_VOTE_SOURCE_COLUMNS).rename(
        columns=lambda c: c.removesuffix("_name")
    )
    votes["vote_id"] = votes["vote_id"].astype(str)
    votes["trial_id"] = votes["trial_id"].astype(str)
    votes["reference"] = votes["scene_id"].map(references).astype(object).fillna("")
    a_on_left = votes["a_on_left"].astype(bool).to_numpy()
    votes["left_image"] = np.where(a_on_left, votes["image_a"], votes["image_b"])
    votes["right_image"] = np.where(a_on_left, votes["image_b"], votes["image_a"])
    votes["is_gold"] = votes["kind"] == Trial.Kind.GOLD
    votes["is_practice"] = votes["kind"] == Trial.Kind.PRACTICE
    votes["too_fast"] = votes["too_fast"].astype(bool)
    votes["is_pilot"] = votes["is_pilot"].astype(bool)
    votes["past_target"] = past.mark(votes)
    votes["excluded"] = votes["annotator"].isin(excluded)
    # Brought in by ``import_votes`` (the session's source names where from).
    votes["imported"] = votes["import_source"].notna()
    _client_columns(votes, ("device_pixel_ratio", "viewport_width", "viewport_height"))
    # Fixed types, so every chunk writes its numbers alike (the API validates them: a
    # float ratio, whole pixels); a missing value is empty.
    votes["device_pixel_ratio"] = votes["device_pixel_ratio"].astype("float64")
    for column in ("viewport_width", "viewport_height"):
        votes[column] = votes[column].astype("Int64")
    votes["response_ms"] = votes["response_ms"].astype("Int64")
    votes["server_ms"] = votes["server_ms"].astype("Int64")
    votes["created_at"] = pd.to_datetime(votes["created_at"], utc=True)
    return votes[VOTE_COLUMNS]


def votes_frames(
    study: Study, excluded: set[str], *, chunk: int | None = None, include_pilot: bool = False
) -> Iterator[pd.DataFrame]:
    """The votes table in frames of at most ``chunk`` rows (``VOTES_CHUNK``), oldest first
    (then by id), read from a server-side cursor; at least one frame (empty for a study
    without votes). Pilot answers (a researcher's preview) only with ``include_pilot``."""
    chunk = chunk or VOTES_CHUNK
    votes = Vote.objects.filter(pair__study=study)
    if not include_pilot:
        votes = votes.filter(pilot=False)
    rows = (
        votes.order_by("created_at", "id")
        .values_list(
            "pair_id", "choice", "preferred", "response_ms", "created_at", "kind", "client_info",
            "trial_id", "id", "pair__scene_id", "pair__scene__name", "pair__image_a__name",
            "pair__image_b__name", "trial__a_on_left", "session__pseudonym", "late",
            KeyTextTransform("import_source", "session__external_ids"), "server_ms", "too_fast",
            "pilot", "trial__policy",
        )
        .iterator(chunk_size=min(chunk, 20_000))
    )  # fmt: skip
    references = _references(study)
    past = _PastTarget(study)
    first = True
    while (batch := list(islice(rows, chunk))) or first:
        first = False
        yield _votes_chunk(batch, references, excluded, past)


def votes_frame(study: Study, excluded: set[str], *, include_pilot: bool = False) -> pd.DataFrame:
    """The whole votes table as one frame (small studies, tests); the export streams it."""
    frames = votes_frames(study, excluded, include_pilot=include_pilot)
    return pd.concat(list(frames), ignore_index=True)


def _write_votes(
    study: Study, excluded: set[str], path: Path, fmt: str, *, include_pilot: bool = False
) -> VoteCounts:
    """Write the votes table to ``path`` chunk by chunk; returns its counts. CSV and JSON
    Lines append each chunk (the bytes of the whole frame written at once); Parquet
    writes one row group per chunk, every chunk in the first one's schema."""
    counts = VoteCounts()
    frames = votes_frames(study, excluded, include_pilot=include_pilot)
    if fmt == "parquet":
        writer = None
        try:
            for votes in frames:
                counts = counts.plus(votes)
                schema = None if writer is None else writer.schema
                table = pa.Table.from_pandas(votes, preserve_index=False, schema=schema)
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        return counts
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for n, votes in enumerate(frames):
            counts = counts.plus(votes)
            if fmt == "csv":
                defuse_frame(votes).to_csv(
                    handle, index=False, header=n == 0, date_format=CSV_DATES
                )
            else:
                votes.to_json(
                    handle, orient="records", lines=True, date_format="iso", date_unit="us"
                )
    return counts


def sessions_frame(study: Study, *, include_pilot: bool = False) -> pd.DataFrame:
    sessions = AnnotatorSession.objects.filter(study=study)
    if not include_pilot:
        sessions = sessions.filter(pilot=False)
    rows = list(
        sessions.order_by("created_at").values(
            "source",
            "pilot",
            "created_at",
            "completed_at",
            "outcome",
            "n_done",
            "n_practice_done",
            "client_info",
            annotator=F("pseudonym"),
        )
    )
    sessions = pd.DataFrame(
        rows,
        columns=[
            "source", "pilot", "created_at", "completed_at", "outcome", "n_done",
            "n_practice_done", "client_info", "annotator",
        ],
    )  # fmt: skip
    required = counted_trials_required(study)
    sessions["code_earned"] = (
        sessions["completed_at"].notna()
        & (sessions["n_done"] >= required)
        & ~sessions["pilot"].astype(bool)  # a preview never earns a code
    )
    _client_columns(
        sessions, ("device_pixel_ratio", "viewport_width", "viewport_height", "user_agent")
    )
    for column in ("created_at", "completed_at"):
        sessions[column] = pd.to_datetime(sessions[column], utc=True)
    return sessions[SESSION_COLUMNS]


CSV_DATES = "%Y-%m-%dT%H:%M:%S.%fZ"


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        # Safe in a spreadsheet: a text cell that would be a formula starts with ' (OWASP).
        defuse_frame(frame).to_csv(path, index=False, date_format=CSV_DATES)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")


def _setting(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _exclusions(report) -> list[str]:
    rules = ", ".join(
        f"{name} off" if value is None else f"{name} {_setting(value)}"
        for name, value in report.rules.as_dict().items()
    )
    excluded = report.excluded
    lines = [f"Rules: {rules}.", ""]
    if len(excluded) == 0:
        lines.append(f"No annotator is excluded ({len(report.annotators)} checked).")
    else:
        lines.append(
            f"{len(excluded)} of {len(report.annotators)} annotators are excluded from "
            "labels, image scores and agreement (their votes are kept, `excluded` marks them):"
        )
        lines.append("")
        lines += [f"- `{row.annotator}`: {row.reasons}" for row in excluded.itertuples()]
    if "qc_status" in report.annotators:
        unjudged = int((report.annotators["qc_status"] == "not judged").sum())
        lines.append("")
        lines.append(
            f"{unjudged} of {len(report.annotators)} annotators are not judged: no rule had "
            "the evidence it needs (qc_min_answers answers, qc_min_gold gold trials), so "
            "their votes count (`qc_status`, and `unjudged` names the rules, in `annotators`)."
        )
    decided = report.decided
    lines.append("")
    if len(decided) == 0:
        lines.append("No annotator was excluded or re-included by hand.")
    else:
        lines.append(
            f"Decisions by hand ({len(decided)}; each overrides the rules for its annotator, "
            "the latest in force; `manual_decision` in `annotators`):"
        )
        lines.append("")
        for row in decided.itertuples():
            verb = "excluded" if row.manual_decision == "excluded" else "re-included"
            when = "" if pd.isna(row.decided_at) else f" on {row.decided_at:%Y-%m-%d %H:%M} UTC"
            who = f" by {row.decided_by}" if row.decided_by else ""
            overrides = " (the rules would exclude it)" if row.excluded_by_rules else ""
            lines.append(f"- `{row.annotator}`: {verb}{who}{when}{overrides}: {row.manual_reason}")
    return lines


def _exported_line(study: Study) -> str:
    """When it was exported; none for a closed study, whose export never changes."""
    if study.status == Study.Status.CLOSED:
        return f"Exported from study `{study.slug}`, closed."
    return f"Exported {datetime.now(UTC).isoformat(timespec='seconds')} from study `{study.slug}`."


def _format_lines(study: Study) -> list[str]:
    if field_formats.has_triplets(study.design):
        return [
            f"- `{field_formats.TRIPLET_FILE}`: A-FINE training triplets from each test "
            "image's majority against the reference (Positive, Similar, Negative; no "
            "majority: left out): `img1,img2,reference,gt12,gt1ref,gt2ref` for couples whose "
            "labels differ or are both Similar, then `img,reference,reference,gt,gt,0.5`.",
        ]
    if field_formats.has_mos(study.design):
        return [
            f"- `{field_formats.MOS_FOLDER}/<scene>.txt`: SRIQA-Bench MOS files, "
            "`file.png,score` with the Thurstone 0..100 score, best first.",
        ]
    return []


def write_formats(study: Study, tables: dict[str, pd.DataFrame], folder: Path) -> list[tuple]:
    """Write the field's formats the study's design has into ``folder``; returns
    (name, path, rows) for each: ``Triplet.txt`` (ref-vs-test), ``mos/`` (pairwise)."""
    staged = []
    if field_formats.has_triplets(study.design):
        path = folder / field_formats.TRIPLET_FILE
        rows = 0
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            for line in field_formats.triplet_lines(tables["pairs"]):
                handle.write(line + "\n")
                rows += 1
        staged.append(("Triplet", path, rows))
    if field_formats.has_mos(study.design):
        mos = folder / field_formats.MOS_FOLDER
        mos.mkdir()
        files = field_formats.mos_files(tables["image_scores"])
        for scene, lines in files.items():
            text = "".join(line + "\n" for line in lines)
            (mos / field_formats.scene_file_name(scene)).write_text(text, encoding="utf-8")
        staged.append(("mos", mos, len(files)))
    return staged


def _model_lines(report) -> list[str]:
    """The datasheet's words on --model (nothing at the default)."""
    if report.model not in TIE_MODELS:
        return []
    name, column = MODEL_NAMES[report.model], HUMAN_SCORE[report.model]
    return [
        f"  `{column}`, `{column}_ci_low`, `{column}_ci_high`: the {name} model's MAP scores "
        "per scene (a similar vote a tie, not a win each way; same N(0,1) prior), with "
        f"{TIE_PARAMETER[report.model]} = {report.tie_parameter:.4g} fitted for the study "
        "and 95% intervals from the Laplace approximation at the MAP (S +- 1.96 sd); the "
        "agreement's correlations use these scores."
    ]


def _pilot_line(
    study: Study, votes: VoteCounts, sessions: pd.DataFrame, include_pilot: bool
) -> str:
    """What the datasheet says of pilot data (researchers' preview answers)."""
    if include_pilot:
        return (
            f"- pilot data (researchers' preview, counted nowhere): {votes.pilot} votes "
            f"(`is_pilot`) of {int(sessions['pilot'].sum())} sessions (`pilot`) in these tables"
        )
    pilots = AnnotatorSession.objects.filter(study=study, pilot=True)
    left = Vote.objects.filter(session__in=pilots.values("pk")).count()
    sessions_left = pilots.count()
    return (
        f"- pilot data (researchers' preview) left out: {left} votes of {sessions_left} "
        "sessions (an export with pilot data included adds them, marked)"
    )


def _policy_note(study: Study) -> str:
    """What the policy means for the counts, after its name in the datasheet."""
    if study.policy == Policy.ACTIVE:
        return (
            f" (each scene's pairs x {study.votes_per_pair} votes went where the expected "
            f"information gain was highest, re-planned every {study.sampling_every} votes; "
            "`target_votes` is what each pair was given; the design depends on the votes, "
            "so cite the tie model's Laplace intervals, `--model thurstone-ties`, not the "
            "default scale's bootstrap)"
        )
    if study.policy == Policy.EARLY_STOP:
        return (
            " (a pair got no more trials once its majority label could not change: "
            "`target_votes` below votes per pair marks a pair decided early)"
        )
    return ""


def _datasheet(
    study: Study,
    tables: dict[str, pd.DataFrame],
    votes: VoteCounts,
    report,
    *,
    formats: bool = False,
    include_pilot: bool = False,
) -> str:
    pairs = tables["pairs"]
    study_pairs = pairs[~pairs["is_gold"]]
    annotators = tables["sessions"][~tables["sessions"]["pilot"].astype(bool)]
    at_target = int((study_pairs["n_votes"] >= study_pairs["target_votes"]).sum())
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("django", "pandas", "numpy", "pyarrow")
    )
    lines = [
        f"# {study.title or study.slug}",
        "",
        _exported_line(study),
        "",
        "## Settings",
        "",
        f"- design: {study.design}",
        f"- votes per pair: {study.votes_per_pair}",
        f"- gold rate: {study.gold_rate}",
        f"- show reference: {study.show_reference}",
        f"- reference is a candidate: {study.reference_is_candidate}",
        f"- trials per session: {study.trials_per_session}",
        f"- practice trials: {study.practice_trials}",
        f"- lease: {study.lease_seconds} s (held while its annotator answers: "
        f"{study.hold_seconds} s)",
        f"- answers counted from: {study.min_response_ms} ms after the trial's issue "
        "(server clock)",
        f"- sampling policy: {study.policy}{_policy_note(study)}",
        f"- status: {study.status}",
        "",
        "## Counts",
        "",
        f"- scenes: {pairs['scene'].nunique()}",
        f"- pairs: {len(study_pairs)} (+ {int(pairs['is_gold'].sum())} gold pairs)",
        f"- pairs at their target: {at_target}",
        f"- votes: {votes.votes} ({votes.counted} counted, {votes.gold} gold, "
        f"{votes.practice} practice; {votes.late} late; {votes.imported} imported; "
        f"{votes.too_fast} too fast to count, `too_fast`)",
        f"- counted votes past their pair's target: {votes.past_target} (`past_target`: a "
        "lease set aside or released, answered after all, or a trial out when its pair was "
        "decided)",
        f"- annotators: {len(annotators)} ({int(annotators['completed_at'].notna().sum())} "
        "completed)",
        _pilot_line(study, votes, tables["sessions"], include_pilot),
        "",
        "## Exclusions",
        "",
        *_exclusions(report),
        "",
        "## Tables",
        "",
        "- `votes`: every answer, raw (`is_gold`, `is_practice`, `is_late` mark the kinds; "
        "`preferred` is the choice in the pair's terms, sides undone; `imported` marks "
        "votes brought in by `import_votes`, whose sides are not known and alternate; "
        "`response_ms` is what the page measured, `server_ms` the server's time from the "
        "trial's issue to the answer, which quality control uses; `too_fast` answers came "
        "sooner than the study's minimum and count nowhere; `past_target` marks the counted "
        "votes beyond their pair's target).",
        "- `pairs`: counted votes per pair (late answers count; practice and excluded "
        "annotators never), p_a with similar as 0.5, and the DiffIQA majority (none on a tie).",
        "- `sessions`: one row per annotator, pseudonymous, with its `outcome` (`quota`, "
        "`full`: no work was left for it, `closed`) and whether it earned the completion "
        "code (`code_earned`).",
        "- `annotators`: quality control per annotator (gold accuracy, agreement with the "
        "others' majority, response times, share of left and its binomial p, share of "
        "similar), `excluded` and the `reasons`, `qc_status` (excluded, kept, or not judged: "
        "too few answers for any rule) and `unjudged` (the rules lacking evidence); "
        "`excluded_by_rules` is the rules' own "
        "verdict and `manual_decision` (excluded, included or empty), `manual_reason`, "
        "`decided_by`, `decided_at` the researcher's decision in force, which overrides it.",
        "- `image_scores`: per scene, Thurstone Case V MAP scores (sum zero), scaled to "
        "0..100 per scene, and Bradley-Terry, with 95% bootstrap intervals over votes "
        f"({report.samples} resamples, seed {report.seed}).",
        *_model_lines(report),
        "- `metric_scores`: every metric score of the study's images (FR: against the "
        "scene's reference, the reference against itself included; NR: reference empty), "
        "with `lower_better`, the `version` (pyiqa and weights) and, for a failed score, "
        "the `error` (value empty).",
        "- `agreement`: per metric and subset, accuracy with the A-FINE rule at `delta` "
        "(0, and the metric's own delta when set) with its 95% bootstrap interval over "
        "pairs; strict 2AFC accuracy on pairs with a clear preference; SRCC, KRCC, PLCC "
        "against the Thurstone scores within scenes, averaged over `n_scenes` scenes.",
        "- `comparisons`: paired bootstrap tests of accuracy between every two metrics.",
        *(_format_lines(study) if formats else []),
        "",
        f"Software: {versions}.",
        "",
    ]
    return "\n".join(lines)


def study_export(
    *,
    study: Study,
    out: Path,
    fmt: str = "csv",
    on_table: Callable | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    samples: int = 1000,
    seed: int = 0,
    formats: bool = False,
    model: str = "thurstone",
    include_pilot: bool = False,
) -> list[WrittenTable]:
    """Write the study's tables into ``out`` (created if needed); returns what was written.

    Pilot data (researchers' preview answers) counts nowhere; ``include_pilot`` adds its
    votes and sessions to those tables, marked (``is_pilot``, ``pilot``).

    ``samples`` and ``seed`` drive the bootstrap intervals of ``image_scores`` and
    ``agreement``, so the same data export the same numbers. ``on_progress(done, total)``
    is called as the work goes: the report, then each table and the datasheet written
    (``EXPORT_STEPS`` steps in all). ``formats`` adds the field's formats the design has
    (``Triplet.txt`` for ref-vs-test, ``mos/<scene>.txt`` for pairwise), written with the
    datasheet."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if model not in HUMAN_SCORE:  # --model: the tie model's columns in image_scores
        raise ExportError(f"unknown model {model!r} (expected one of {', '.join(HUMAN_SCORE)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with read_snapshot():
        return _export(study, out, fmt, on_table, _stepper(on_progress), samples, seed, formats,
                       model, include_pilot)  # fmt: skip


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """Every table of an export read at one instant: on PostgreSQL, outside any
    transaction, one REPEATABLE READ, read-only transaction, so votes that arrive while a
    live study exports are in none of its tables rather than in some (votes.csv, pairs.csv
    and annotators.csv agree). Inside a caller's transaction, or on SQLite (one writer: a
    long read transaction there would hold every vote off), reads as they come."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _export(
    study, out, fmt, on_table, step, samples, seed, formats, model, include_pilot
) -> list[WrittenTable]:
    step(0)
    # Neither the report nor the votes table holds the votes as a frame: the report's
    # tally is read session by session into the live state's compact arrays
    # (``tally_streamed``: 13 bytes a vote), the votes table streamed chunk by chunk.
    data = study_data(study, votes=False)
    try:
        tally = tally_streamed(study, data)
    except ValueError as exc:  # a vote on a pair read after the pairs were
        raise ExportError(f"{study.slug}: its pairs changed while exporting; export again") from exc
    report = study_report(data, samples=samples, seed=seed, model=model, tally=tally)
    step(1)
    excluded = set(report.excluded["annotator"])
    tables = {
        "pairs": pairs_frame(study, report.pairs),
        "sessions": sessions_frame(study, include_pilot=include_pilot),
        "annotators": report.annotators,
        "image_scores": report.image_scores.drop(columns="image_id"),
        "metric_scores": scores_frame(study),
        "agreement": report.agreement,
        "comparisons": report.comparisons,
    }
    written = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        path = Path(tmp) / f"votes.{fmt}"
        votes = _write_votes(study, excluded, path, fmt, include_pilot=include_pilot)
        staged = [("votes", path, votes.votes)]
        step(1 + len(staged))
        for name, frame in tables.items():
            path = Path(tmp) / f"{name}.{fmt}"
            _write(frame, path, fmt)
            staged.append((name, path, len(frame)))
            step(1 + len(staged))
        if formats:
            staged += write_formats(study, tables, Path(tmp))
        sheet = Path(tmp) / "README.md"
        sheet.write_text(
            _datasheet(study, tables, votes, report, formats=formats, include_pilot=include_pilot)
        )
        staged.append(("README", sheet, 0))
        for name, path, rows in staged:
            final = out / path.name
            if path.is_dir() and final.is_dir():
                shutil.rmtree(final)
            os.replace(path, final)
            written.append(WrittenTable(name=name, path=final, rows=rows))
            if on_table:
                on_table(written[-1])
    step(EXPORT_STEPS)
    return written


def _stepper(on_progress: Callable[[int, int], None] | None) -> Callable[[int], None]:
    def step(done: int) -> None:
        if on_progress is not None:
            on_progress(done, EXPORT_STEPS)

    return step
