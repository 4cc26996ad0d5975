"""The live agreement report: a stored snapshot per study, refreshed on a worker.

``agreement_snapshot_refresh`` stores the report with the data's high-water mark. While
votes arrive it is the live report (``live_report``: counts kept up to date by
``analysis/live.py``, only the moved scenes refitted, warm-started; point estimates every
refresh, bootstrap intervals redrawn every ``IQA_AGREEMENT_INTERVALS_SECONDS`` or
``IQA_AGREEMENT_INTERVALS_GROWTH`` more votes, and carried over in between, the snapshot
saying when they were drawn); once the mark stops moving, the next refresh computes it
exactly as ``agreement_report --json`` does (``selectors.study_data`` ->
``report.study_report`` -> ``render.report_dict``, the same samples and seed). At most one
computation per study and variant runs at a time (a PostgreSQL session-level advisory
lock, no transaction held while computing), and one whose mark has not moved since an
exact snapshot does nothing. ``agreement_snapshot_request`` is what readers
call: it queues a refresh when the mark moved, at most once per
``IQA_AGREEMENT_DEBOUNCE_SECONDS``, and never computes in the caller.

What a worker process keeps between live refreshes, one study at a time (so bounded by
the largest study: at 1,000,000 votes, tens of MB): the static frames (images, pairs,
scores; ``_STATIC``, keyed by ``static_key``: pairs, scoring batches and the newest
score, so new pairs or scores force a re-read), the per-image JSON of the scores
(``_SCORES_JSON``, keyed by that frame) and the kept counts (``_KEPT``, keyed by the
``AgreementState`` row's ``updated_at``; the row is their checkpoint). All are caches:
a fresh process, or another one, reads them again and computes the same numbers.
The page's per-image block is stored pre-rendered, per scene (``AgreementSceneImages``:
a live refresh rewrites only the scenes whose block changed, ``scene_images_save``); a
request reads the one scene it asks for (a few KB, decoded and joined there), never the
whole study's images. Readers compute the data's
mark at most once per debounce interval (``agreement_snapshot_check``).
"""

import contextlib
import dataclasses
import json
import logging
import math
import time
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from analysis import fusion, live
from analysis.models import AgreementSceneImages, AgreementSnapshot, AgreementState
from analysis.quality import no_decisions
from analysis.render import report_dict
from analysis.report import (
    Report,
    agreement_tables,
    labelled_study_pairs,
    metric_table,
    report_counts,
    study_fusion,
    study_fusion_data,
    study_report,
    tie_band_curves,
)
from analysis.sampling import pair_gains
from analysis.scaling import tie_count_matrices
from analysis.selectors import (
    StudyData,
    exclusion_decisions,
    scene_pair_counts,
    study_data,
    study_rules,
)
from analysis.snapshot_selectors import (
    HEAD_FIELDS,
    Mark,
    agreement_mark,
    metric_kinds,
    session_counters,
    session_votes,
    static_key,
)
from analysis.tally import state_streamed, tally_state
from annotation.models import Scene, Study
from annotation.services import sampling
from annotation.study_settings import Sampling
from core.errors import DomainError

logger = logging.getLogger(__name__)

# As agreement_report: its defaults, and no per-image intervals.
SAMPLES = 1000
SEED = 0
# A namespace for the advisory locks (pg_try_advisory_xact_lock(namespace, key)).
LOCK_NAMESPACE = 15_001
VARIANTS = [v.value for v in AgreementSnapshot.Variant]


def _variant_data(data: StudyData, variant: str) -> StudyData:
    if variant == AgreementSnapshot.Variant.ALL:
        # No rule excludes anyone and no decision by hand applies.
        off = {name: None for name in ("min_gold_accuracy", "min_median_response_ms",
               "side_bias_alpha", "min_majority_agreement", "max_similar_share")}  # fmt: skip
        return dataclasses.replace(
            data, rules=dataclasses.replace(data.rules, **off), decisions=no_decisions()
        )
    return data


def _numbers(values) -> list[str]:
    """Numbers as JSON text (NaN and infinities as null, as ``render._clean``)."""
    return [repr(v) if math.isfinite(v) else "null" for v in np.asarray(values, float).tolist()]


def _strings(values) -> list[str]:
    return [encode_basestring_ascii(v) if isinstance(v, str) else "null" for v in values]


# The last scores frame's per-image JSON, with the frame (held, so that the identity check
# cannot match a new frame at a reused address): the live refresh passes the same cached
# frame (``_static_data``) until the scores change.
_SCORES_JSON: list = [None, {}]


def _scores_json(scores: pd.DataFrame) -> dict[int, str]:
    """Per image id, its metric scores as a JSON object ``{metric: value}`` (metrics
    sorted, missing ones left out, infinities as null), computed once per scores frame."""
    if _SCORES_JSON[0] is scores:
        return _SCORES_JSON[1]
    wide, _ = metric_table(scores)  # (the agreement tables' pivot of the same frame)
    metrics = list(wide.columns)
    out = {}
    for image, row in zip(wide.index.tolist(), wide.to_numpy(dtype=float).tolist(), strict=True):
        pairs = zip(metrics, row, strict=True)
        values = {m: (v if math.isfinite(v) else None) for m, v in pairs if v == v}
        out[image] = json.dumps(values, separators=(",", ":"), allow_nan=False)
    _SCORES_JSON[:] = [scores, out]
    return out


def scene_images_json(
    report: Report, data: StudyData, scenes=None, *, with_scores: bool = True
) -> dict[str, tuple[str, str | None]]:
    """Per scene (of ``scenes``; all by default), the page's scatter block as JSON texts
    (``AgreementSceneImages``): the compared images (name, condition, votes, Thurstone
    and Bradley-Terry scores) and, ``with_scores``, their metric scores by image name
    (``{image: {metric: value}}``, else None). Rendered here, by the refresh, column by
    column (the metric scores once per scores frame), so that a request only reads its
    scene's rows."""
    images = report.image_scores
    if scenes is not None:
        images = images[images["scene"].isin(list(scenes))]
    scores = _scores_json(data.scores) if with_scores else {}
    columns = zip(
        images["scene"].tolist(), images["image_id"].tolist(), _strings(images["image"]),
        _strings(images["condition"]), [str(int(n)) for n in images["n_votes"].tolist()],
        _numbers(images["thurstone"]), _numbers(images["bradley_terry"]), strict=True,
    )  # fmt: skip
    blocks: dict[str, tuple[list[str], list[str]]] = {}
    for scene, image, name, condition, n, th, bt in columns:
        rows, named = blocks.setdefault(scene, ([], []))
        rows.append(f'{{"image":{name},"condition":{condition},"n_votes":{n},'
                    f'"thurstone":{th},"bradley_terry":{bt}}}')  # fmt: skip
        if with_scores and name != "null":
            named.append(f"{name}:{scores.get(image, '{}')}")
    return {
        scene: ("[" + ",".join(rows) + "]", "{" + ",".join(named) + "}" if with_scores else None)
        for scene, (rows, named) in blocks.items()
    }


# What this process last wrote of each snapshot's scene rows: the snapshot's
# ``computed_at`` then, the static frames the rows were rendered from (scores, images:
# held, so that the identity check cannot match new frames at reused addresses), and the
# per-image numbers that vary (image ids; votes, Thurstone, Bradley-Terry). While the
# snapshot row still has that ``computed_at`` (one computation per snapshot at a time,
# and every one sets it), its scene rows are those, so the next refresh renders and
# writes only the images of the scenes with an image whose numbers moved (the scenes its
# new votes fell in); otherwise (new frames, another process, a fresh one) all of it.
_SCENES: dict[int, tuple] = {}
_VARYING = ["n_votes", "thurstone", "bradley_terry"]


def scene_images_changes(
    snapshot: AgreementSnapshot, previous: datetime | None, report: Report, data: StudyData
) -> tuple[dict[str, tuple[str, str | None]], bool, tuple]:
    """(the scene blocks to write, ``scene_images_json``; whether they are all of them,
    with their metric scores, so the other rows go; what to remember once written, for
    ``scene_images_save``). ``previous``: the ``computed_at`` the snapshot had when this
    refresh read it."""
    images = report.image_scores
    ids = images["image_id"].to_numpy(dtype=np.int64)
    values = images[_VARYING].to_numpy(dtype=np.float64)
    kept = _SCENES.get(snapshot.pk)
    memo = (data.scores, data.images, ids, values)
    if (
        kept is not None
        and previous is not None
        and kept[0] == previous
        and kept[1] is data.scores
        and kept[2] is data.images
        and np.array_equal(kept[3], ids)
    ):
        old = kept[4]
        same = ((old == values) | (np.isnan(old) & np.isnan(values))).all(axis=1)
        moved = set(images["scene"].to_numpy()[~same].tolist())
        return scene_images_json(report, data, scenes=moved, with_scores=False), False, memo
    return scene_images_json(report, data), True, memo


def scene_images_save(snapshot: AgreementSnapshot, blocks: dict, whole: bool, memo: tuple) -> None:
    """Store ``blocks`` (``scene_images_changes``) as the snapshot's scene rows, stamped
    with its ``computed_at`` (in the caller's transaction, after the snapshot's save):
    when ``whole``, every row with its metric scores, the rows of other scenes deleted;
    else the moved scenes' images only. One statement per row, sent together (no ORM
    objects, no array escaping of megabytes of text)."""
    table = connection.ops.quote_name(AgreementSceneImages._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(snapshot.computed_at)
    with connection.cursor() as cursor:
        if whole:
            AgreementSceneImages.objects.filter(snapshot=snapshot).exclude(
                scene__in=list(blocks)
            ).delete()
            cursor.executemany(
                f"INSERT INTO {table} (snapshot_id, scene, images_json, scores_json, "
                "updated_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (snapshot_id, scene) "
                "DO UPDATE SET images_json = EXCLUDED.images_json, scores_json = "
                "EXCLUDED.scores_json, updated_at = EXCLUDED.updated_at",
                [(snapshot.pk, scene, rows, scores, at)
                 for scene, (rows, scores) in blocks.items()],
            )  # fmt: skip
        elif blocks:
            cursor.executemany(
                f"UPDATE {table} SET images_json = %s, updated_at = %s "
                "WHERE snapshot_id = %s AND scene = %s",
                [(rows, at, snapshot.pk, scene) for scene, (rows, _) in blocks.items()],
            )
    if snapshot.pk not in _SCENES and len(_SCENES) >= len(VARIANTS):
        _SCENES.clear()  # one study's variants at a time
    _SCENES[snapshot.pk] = (snapshot.computed_at, *memo)


def snapshot_extras(report: Report, data: StudyData) -> dict:
    """What the page draws beyond the report (but the per-image blocks, per scene:
    ``scene_images_json``): the scenes with compared images (the scatter's choices), the
    histogram of votes per pair, and each metric's accuracy-versus-delta curve
    (``report.tie_band_curves``)."""
    pairs = report.pairs
    counted = pairs.loc[~pairs["is_gold"], "n_votes"].to_numpy(dtype=np.int64)
    histogram = np.bincount(counted) if len(counted) else np.zeros(0, dtype=np.int64)
    return {
        "scenes": sorted(set(report.image_scores["scene"].tolist())),
        "votes_per_pair": [
            {"votes": int(n), "pairs": int(c)} for n, c in enumerate(histogram) if c
        ],
        "tie_band_curves": tie_band_curves(report, data),
    }


def _lock_key(study: Study, variant: str) -> list[int]:
    return [LOCK_NAMESPACE, study.pk * len(VARIANTS) + VARIANTS.index(variant)]


@contextlib.contextmanager
def _computation_lock(study: Study, variant: str):
    """One computation per study and variant: a PostgreSQL session-level advisory lock,
    taken without waiting and released when the computation ends, so no transaction stays
    open while it runs. Other databases (SQLite, the laptop default, served by one solo
    worker and serialising writers) need none. Yields whether it is held."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_key(study, variant))
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_key(study, variant))


# The live refresh's static frames (images, pairs, scores: a million scores take seconds
# to read) per study, kept in the worker process while ``static_key`` does not move.
_STATIC: dict[int, tuple[str, StudyData, dict]] = {}


def _static_data(study: Study) -> tuple[StudyData, dict[str, str]]:
    """The study's frames (votes left out) and its metrics' kinds (``metric_kinds``, an
    aggregate over every score), read again only when ``static_key`` moved."""
    key = static_key(study=study)
    cached = _STATIC.get(study.pk)
    if cached is not None and cached[0] == key:
        return dataclasses.replace(  # what a refresh reads again: small
            cached[1],
            rules=study_rules(study),
            deltas={name: float(v) for name, v in (study.metric_deltas or {}).items()},
            decisions=exclusion_decisions(study),
        ), cached[2]
    data = study_data(study, votes=False)
    kinds = metric_kinds(study=study)
    _STATIC.clear()  # one study's frames at a time
    _STATIC[study.pk] = (key, data, kinds)
    return data, kinds


# The kept counts of the last study refreshed in this worker process, with the
# ``AgreementState.updated_at`` of the row they stand on: while the row has not moved,
# the next refresh starts from them instead of reading and parsing the row (13 bytes a
# vote), and the row is written at most every ``STATE_CHECKPOINT_SECONDS``. Any kept
# state is a valid start (a refresh re-reads every session whose counter differs from
# it), so a checkpoint that lags, or another process's, costs re-reading a few sessions,
# never a wrong count. Taken out while a refresh applies votes to it (a failed one drops
# it).
_KEPT: dict[int, tuple[datetime, live.LiveState]] = {}
STATE_CHECKPOINT_SECONDS = 30


def agreement_state_update(*, study: Study, pairs: pd.DataFrame, rules) -> live.LiveState:
    """Bring the study's kept counts up to date (``live``): the answer counters, then the
    full vote lists of the sessions whose counter moved. The state's row is locked for
    this short transaction only (the two variants' refreshes share it); it is written
    when built anew and then at most every ``STATE_CHECKPOINT_SECONDS`` (``_KEPT``)."""
    with transaction.atomic():
        row, created = (
            AgreementState.objects.select_for_update()
            .defer("data")
            .get_or_create(study=study, defaults={"data": b""})
        )
        kept = _KEPT.pop(study.pk, None)
        if kept is not None and kept[0] == row.updated_at:
            state = kept[1]
        else:
            state = live.state_load(row.data) if row.data else None
        fresh = state is None or not live.state_fits(state, pairs, rules)
        if fresh:  # every vote, read a group of sessions at a time (not one list of all)
            state = state_streamed(study, pairs, rules)
        counters = session_counters(study=study)
        changed = live.changed_sessions(state, counters)
        if len(changed):
            votes = session_votes(study=study, session_ids=changed)
            state = live.state_apply(state, counters, votes, changed)
        age = (timezone.now() - row.updated_at).total_seconds()
        if created or fresh or (len(changed) and age >= STATE_CHECKPOINT_SECONDS):
            row.data = live.state_dump(state)
            row.votes = state.votes
            row.save()
        _KEPT.clear()  # one study's at a time
        _KEPT[study.pk] = (row.updated_at, state)
    return state


INTERVAL_COLUMNS = ["ci_low", "ci_high", "ci_2afc_low", "ci_2afc_high", "srcc_ci_low",
                    "srcc_ci_high"]  # fmt: skip
COMPARISON_INTERVALS = ["ci_low", "ci_high", "p_value"]


def _carry(frame: pd.DataFrame, rows: list[dict], keys: list[str], columns: list[str]):
    """``frame`` with ``columns`` taken from the earlier snapshot's ``rows`` (matched on
    ``keys``; missing where that snapshot had no such row)."""
    if frame.empty:
        return frame
    old = pd.DataFrame(rows, columns=keys + columns).set_index(keys)
    at = pd.MultiIndex.from_frame(frame[keys])
    frame = frame.copy()
    for column in columns:
        frame[column] = old[column].reindex(at).astype(float).to_numpy()
    return frame


def live_report(
    *, study: Study, variant: str, snapshot: AgreementSnapshot, intervals: bool
) -> tuple[Report, StudyData, dict]:
    """The report from the kept counts: quality control from the per-annotator counts,
    labels from the per-pair counts less the excluded annotators' votes, only the scenes
    whose counts moved refitted (warm-started), agreement point estimates; bootstrap
    intervals drawn when ``intervals``, else the previous snapshot's. Same samples and
    seed as ``agreement_report``."""
    data, kinds = _static_data(study)
    state = agreement_state_update(study=study, pairs=data.pairs, rules=data.rules)
    data = _variant_data(data, variant)
    tally = tally_state(state, data)
    annotators, labels = tally.annotators, tally.labels
    study_pairs = labelled_study_pairs(data.pairs, labels)
    scaled, refitted, fits = live.image_scores(
        state.pair_ids, study_pairs, data.images, live.fits_load(snapshot.fits)
    )
    table, comparisons = agreement_tables(
        study_pairs, data.images, data.scores, scaled, design=data.design, deltas=data.deltas,
        samples=SAMPLES if intervals else 1, rng=np.random.default_rng([SEED, 1]),
    )  # fmt: skip
    if not intervals:
        previous = snapshot.report or {}
        table = _carry(table, previous.get("agreement", []), ["metric", "subset", "delta"],
                       INTERVAL_COLUMNS)  # fmt: skip
        comparisons = _carry(comparisons, previous.get("comparisons", []),
                             ["metric_a", "metric_b"], COMPARISON_INTERVALS)  # fmt: skip
    # The fusion metric's nested cross-validation is redrawn with the intervals, but at
    # most once per FUSION_COST_FACTOR times its last duration (at 100,000 pairs it takes
    # seconds), and carried between draws like them.
    previous = snapshot.report or {}
    drawn = (previous.get("live") or {}).get("fusion") or {}
    if intervals and _fusion_due(drawn):
        started = time.perf_counter()
        fused = study_fusion(
            study_pairs, data.images, data.scores, scaled, design=data.design,
            versions=data.versions, samples=SAMPLES, seed=SEED,
        )  # fmt: skip
        drawn = {"as_of": timezone.now().isoformat(), "seconds": time.perf_counter() - started}
    else:
        fused = previous.get("fusion", {})
    report = Report(
        slug=data.slug, design=data.design, rules=data.rules, deltas=data.deltas,
        samples=SAMPLES, seed=SEED, annotators=annotators, pairs=labels, image_scores=scaled,
        agreement=table, comparisons=comparisons, versions=data.versions,
        counts=report_counts(tally, study_pairs, scaled), fusion=fused,
    )  # fmt: skip
    return report, data, {"refitted_scenes": refitted, "fits": live.fits_dump(fits),
                          "metric_kinds": kinds, "fusion": drawn}  # fmt: skip


FUSION_COST_FACTOR = 10


def _fusion_due(drawn: dict) -> bool:
    """Whether the live refresh recomputes the fusion row: none computed live yet, or its
    last computation is older than ``FUSION_COST_FACTOR`` times what it took."""
    if not drawn.get("as_of"):
        return True
    age = (timezone.now() - datetime.fromisoformat(drawn["as_of"])).total_seconds()
    return age >= FUSION_COST_FACTOR * float(drawn.get("seconds", 0.0))


def _intervals_due(snapshot: AgreementSnapshot, answered: int) -> bool:
    """Whether the live refresh redraws the bootstrap intervals: none drawn yet, drawn
    ``IQA_AGREEMENT_INTERVALS_SECONDS`` ago, or the answers (``answered``: the sessions'
    answer counters, practice included, as the mark counts them) grew by
    ``IQA_AGREEMENT_INTERVALS_GROWTH`` since the answers counted the same way when they
    were drawn. (Comparing answers with practice to counted votes without it made the
    growth always true once practice was 5% of the votes.)"""
    drawn = ((snapshot.report or {}).get("live") or {}).get("intervals") or {}
    if not drawn.get("as_of") or "answered" not in drawn:
        return True
    age = (timezone.now() - datetime.fromisoformat(drawn["as_of"])).total_seconds()
    before = int(drawn["answered"])
    return (
        age >= settings.IQA_AGREEMENT_INTERVALS_SECONDS
        or answered - before >= settings.IQA_AGREEMENT_INTERVALS_GROWTH * max(before, 1)
    )


SAVED_FIELDS = ["report", "mark", "votes", "scores", "as_of", "computed_at", "duration_s",
                "exact", "fits"]  # fmt: skip


def agreement_snapshot_refresh(
    *,
    study: Study,
    variant: str = AgreementSnapshot.Variant.COUNTED,
    force: bool = False,
    mode: str | None = None,
) -> AgreementSnapshot | None:
    """Compute and store the study's report if its data moved since the snapshot, or if
    the snapshot is the live one and the data stopped (or ``force``); ``None`` when
    another computation of it holds the lock.

    Two ways (``mode`` forces one): "exact", the report exactly as ``agreement_report
    --json`` computes it from a full read (the first snapshot, and the refresh after the
    data stopped moving: the mark equals the live snapshot's); "live", from the counts
    kept up to date (``live_report``) while votes arrive. Holds no transaction while it
    computes: the lock is a session-level one and the save a short transaction."""
    with _computation_lock(study, variant) as held:
        if not held:
            return None
        snapshot, _ = AgreementSnapshot.objects.get_or_create(study=study, variant=variant)
        previous = snapshot.computed_at
        mark = agreement_mark(study=study)  # before the data: never newer than they are
        settled = snapshot.report is not None and snapshot.mark == mark.digest
        if not force and mode is None and settled and snapshot.exact:
            return snapshot
        if mode is None:
            mode = "exact" if force or settled or snapshot.report is None else "live"
        as_of, started = timezone.now(), time.perf_counter()
        if mode == "exact":
            data = _variant_data(study_data(study, compact_votes=True), variant)
            report = study_report(
                data, samples=SAMPLES, seed=SEED, image_intervals=False, fusion=True
            )
            info = {"exact": True, "intervals": {"as_of": as_of.isoformat(),
                                                  "votes": report.counts["votes"]}}  # fmt: skip
            fits = None
            kinds = metric_kinds(study=study)
        else:
            # (the kept votes are read in live_report; its vote count decides the cadence)
            due = _intervals_due(snapshot, mark.answered)
            report, data, extra = live_report(
                study=study, variant=variant, snapshot=snapshot, intervals=due
            )
            drawn = ((snapshot.report or {}).get("live") or {}).get("intervals")
            info = {
                "exact": False,
                "refitted_scenes": extra["refitted_scenes"],
                "intervals": {
                    "as_of": as_of.isoformat(),
                    "votes": report.counts["votes"],
                    "answered": mark.answered,
                }
                if due
                else drawn,
                "fusion": extra["fusion"],
            }
            fits, kinds = extra["fits"], extra["metric_kinds"]
        body = report_dict(report)
        extras = snapshot_extras(report, data)
        extras["metric_kinds"] = kinds
        extras["live"] = info
        body.update(extras)
        blocks, whole, memo = scene_images_changes(snapshot, previous, report, data)
        with transaction.atomic():
            snapshot.report = body
            snapshot.mark = mark.digest
            snapshot.votes = report.counts["votes"]
            snapshot.scores = len(data.scores)
            snapshot.as_of = as_of
            snapshot.computed_at = timezone.now()
            snapshot.duration_s = time.perf_counter() - started
            snapshot.exact = mode == "exact"
            snapshot.fits = fits if fits is not None else snapshot.fits
            # (not requested_at: a reader may have queued the next refresh meanwhile)
            snapshot.save(update_fields=SAVED_FIELDS)
            scene_images_save(snapshot, blocks, whole, memo)
        return snapshot


def agreement_snapshot_request(
    *, study: Study, variant: str = AgreementSnapshot.Variant.COUNTED, mark: Mark | None = None
) -> bool:
    """Queue a refresh of the study's snapshot if its data moved (or it is the live one
    and they stopped: the exact one follows), at most once per debounce interval; True
    if one was queued (``mark``: the one the caller just read).
    A broker that does not answer is logged (the beat sweep or the next read queues it
    again), never raised: readers still get the snapshot there is."""
    from analysis.tasks import agreement_snapshot_refresh as task

    # Neither the report nor the fits: a computed snapshot is one with ``computed_at``.
    snapshot, _ = AgreementSnapshot.objects.only(*HEAD_FIELDS).get_or_create(
        study=study, variant=variant
    )
    mark = mark or agreement_mark(study=study)
    if snapshot.computed_at is not None and snapshot.mark == mark.digest and snapshot.exact:
        return False
    now = timezone.now()
    debounce = timedelta(seconds=settings.IQA_AGREEMENT_DEBOUNCE_SECONDS)
    claimed = (
        AgreementSnapshot.objects.filter(pk=snapshot.pk)
        .exclude(requested_at__gt=now - debounce)
        .update(requested_at=now)
    )
    if not claimed:
        return False
    try:
        task.delay(study.pk, variant)
    except (OperationalError, OSError) as exc:
        logger.warning("agreement snapshot of %s not queued: %s", study.slug, exc)
        return False
    return True


def agreement_snapshot_check(*, study: Study, variant: str) -> str:
    """The study's data mark as a reader sees it: computed (``agreement_mark``, and a
    refresh queued when the snapshot is stale: ``agreement_snapshot_request``) by at most
    one reader per study and variant every ``IQA_AGREEMENT_DEBOUNCE_SECONDS`` (a cache
    key taken with ``add``: Redis when ``IQA_CACHE_URL`` is set, else per process), and
    otherwise the digest that reader left in the cache. So a poll costs the snapshot's
    head row and a cache read; the mark it compares with is at most one debounce old
    (the beat sweep queues refreshes every ``IQA_AGREEMENT_SWEEP_EVERY`` s anyway)."""
    debounce = settings.IQA_AGREEMENT_DEBOUNCE_SECONDS
    key = f"iqa:agreement-mark:{study.pk}"
    if not cache.add(f"iqa:agreement-check:{study.pk}:{variant}", 1, timeout=debounce):
        digest = cache.get(key)
        if digest is not None:
            return digest
    mark = agreement_mark(study=study)
    cache.set(key, mark.digest, timeout=max(60.0, 10 * debounce))
    agreement_snapshot_request(study=study, variant=variant, mark=mark)
    return mark.digest


def agreement_snapshots_sweep() -> int:
    """Queue a refresh of every snapshot whose study's data moved (the beat runs this
    every few seconds, so a study nobody reads does not wait for a reader); returns how
    many were queued."""
    queued = 0
    computed = AgreementSnapshot.objects.exclude(computed_at=None)  # (those with a report)
    for snapshot in computed.select_related("study").only(*HEAD_FIELDS, "study"):
        queued += agreement_snapshot_request(study=snapshot.study, variant=snapshot.variant)
    return queued


def sampling_plan(*, scene_id: int) -> list[int] | None:
    """Active sampling's plan of one scene (``annotation.services.sampling``): the
    posterior of its scores from its counted votes, the expected information gain of one
    more vote on each pair (``analysis.sampling``), and the targets of the best pairs
    raised (at most ``2 x sampling_every`` votes waiting, within the budget; nothing is
    fitted while that many wait). Records the plan's time and the scene's mean posterior
    standard deviation (also once the budget is allocated: the uncertainty goes on
    shrinking as the last votes come). Returns the pairs raised, one entry per vote, best
    first; None when the scene is gone or its study is not actively sampled."""
    scene = Scene.objects.filter(pk=scene_id).select_related("study").first()
    if scene is None or scene.study.sampling != Sampling.ACTIVE or scene.study.archived_at:
        return None
    horizon = 2 * scene.study.sampling_every
    state = sampling.scene_allocation(scene_id=scene_id)
    if state["waiting"] >= horizon and state["allocated"] < state["budget"]:
        return []  # enough votes wait: nothing to choose yet
    pairs = scene_pair_counts(scene_id)
    if pairs.empty:
        return []
    images = np.unique(np.concatenate([pairs["image_a"], pairs["image_b"]]))
    i, j = np.searchsorted(images, pairs["image_a"]), np.searchsorted(images, pairs["image_b"])
    wins, ties = tie_count_matrices(
        np.zeros(len(pairs), dtype=np.intp), i, j, pairs["n_a"].to_numpy(),
        pairs["n_similar"].to_numpy(), pairs["n_b"].to_numpy(), 1, len(images),
    )  # fmt: skip
    gains, width = pair_gains(wins[0], ties[0], i, j)
    chosen = sampling.scene_allocate(
        scene_id=scene_id,
        gains=dict(zip(pairs["pair_id"].tolist(), gains.tolist(), strict=True)),
        horizon=horizon,
    )
    Scene.objects.filter(pk=scene_id).update(planned_at=timezone.now(), posterior_sd=width)
    return chosen


def sampling_plans_sweep() -> int:
    """Queue a plan of every scene of the live, actively sampled studies whose budget is
    not spent (the beat's entry, every ``IQA_SAMPLING_PLAN_EVERY`` s: votes are counted
    per process, a plan's message may be lost, and a study turned active needs its first
    plan); how many were queued. Plans of one scene run one at a time."""
    scenes = Scene.objects.filter(
        study__sampling=Sampling.ACTIVE, study__status=Study.Status.LIVE, study__archived_at=None
    ).values_list("pk", flat=True)
    queued = 0
    for scene_id in scenes:
        state = sampling.scene_allocation(scene_id=scene_id)
        if state["allocated"] < state["budget"]:
            queued += sampling.plan_request(scene_id=scene_id)
    return queued


# --- the fusion metric's model file (``manage.py fusion_train``) ---------------------


def fusion_model_train(
    studies: list[Study], *, name: str, samples: int = SAMPLES, seed: int = SEED
) -> dict:
    """The fusion model trained on the studies' labelled pairs together (their scenes
    kept apart as groups), as the plug-in file's content (``fusion.model_file``), with
    its nested cross-validation and, for two or more studies, the cross-study table:
    each study's own model (trained on it alone) judged on every other study.

    Raises DomainError when the model cannot be trained (too few labelled pairs, fewer
    than two metrics) or when a metric that enters has different versions in two
    studies."""
    parts, kinds, versions = [], {}, {}
    for study in studies:
        data = study_data(study)
        parts.append(study_fusion_data(data))
        kinds.update(metric_kinds(study=study))
        for metric, version in data.versions.items():
            versions.setdefault(metric, {})[study.slug] = version
    combined = parts[0] if len(parts) == 1 else fusion.data_concat(parts)
    entering, _, _ = fusion.usable(combined)
    names = [combined.metrics[j] for j in entering]
    mixed = {m: v for m in names if len(set((v := versions[m]).values())) > 1}
    if mixed:
        detail = "; ".join(
            f"{m}: " + ", ".join(f"{version} in {slug}" for slug, version in v.items())
            for m, v in mixed.items()
        )
        raise DomainError(
            f"metrics scored with different versions in these studies ({detail}): score "
            "them with the same version, or train on one study"
        )
    rng = np.random.default_rng([seed, 3])
    evaluation = fusion.evaluate(combined, samples=samples, rng=rng)
    if evaluation["status"] != "ok":
        raise DomainError(f"no fusion model: {evaluation['message']}")
    slugs = [study.slug for study in studies]
    model = fusion.model_file(
        combined, evaluation, name=name, kinds=kinds, studies=slugs,
        versions={m: next(iter(v.values())) for m, v in versions.items()},
    )  # fmt: skip
    model["training"]["cross_study"] = _cross_study(studies, parts, samples=samples, rng=rng)
    return model


def _cross_study(studies: list[Study], parts: list, *, samples: int, rng) -> list[dict]:
    """Trained on X (alone), judged on Y, for every two of the studies; the diagonal is
    X's own nested cross-validation."""
    if len(studies) < 2:
        return []
    rows = []
    for x, (study_x, part_x) in enumerate(zip(studies, parts, strict=True)):
        own = fusion.evaluate(part_x, samples=samples, rng=rng)
        if own["status"] != "ok":
            rows += [{"trained_on": study_x.slug, "evaluated_on": s.slug,
                      "status": own["message"]} for s in studies]  # fmt: skip
            continue
        names = [row["metric"] for row in own["coefficients"]]
        # (only its weights and scales are applied: ``fusion.transfer``)
        model = fusion.model_file(
            part_x,
            own,
            name="cross",
            kinds=dict.fromkeys(names, "FR"),
            versions=dict.fromkeys(names, "-"),
            studies=[study_x.slug],
        )
        for y, (study_y, part_y) in enumerate(zip(studies, parts, strict=True)):
            if x == y:
                figures = {"status": "ok", **own["rows"][0], "best_single": own["best_single"],
                           "cross_validated": True}  # fmt: skip
            else:
                figures = {**fusion.transfer(model, part_y, samples=samples, rng=rng),
                           "cross_validated": False}  # fmt: skip
            rows.append({"trained_on": study_x.slug, "evaluated_on": study_y.slug, **figures})
    return rows
