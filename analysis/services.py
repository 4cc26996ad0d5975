"""The live agreement report: a stored snapshot per study, refreshed on a worker.

``agreement_snapshot_refresh`` computes the report exactly as ``agreement_report --json``
does (``selectors.study_data`` -> ``report.study_report`` -> ``render.report_dict``, the
same samples and seed) and stores it with the data's high-water mark; at most one
computation per study and variant runs at a time (a PostgreSQL advisory lock), and one
whose mark has not moved does nothing. ``agreement_snapshot_request`` is what readers
call: it queues a refresh when the mark moved, at most once per
``IQA_AGREEMENT_DEBOUNCE_SECONDS``, and never computes in the caller.
"""

import dataclasses
import logging
import time
from datetime import timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from analysis.models import AgreementSnapshot
from analysis.quality import no_decisions
from analysis.render import _clean, report_dict
from analysis.report import Report, study_report
from analysis.selectors import StudyData, study_data
from analysis.snapshot_selectors import Mark, agreement_mark, metric_kinds
from annotation.models import Study

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


def snapshot_extras(report: Report, data: StudyData) -> dict:
    """What the page draws beyond the report: each compared image's human scores and
    metric scores, each metric's kind (FR or NR), and the histogram of votes per pair."""
    images = report.image_scores[
        ["scene", "image", "condition", "image_id", "n_votes", "thurstone", "bradley_terry"]
    ].copy()
    wide = data.scores.pivot_table(index="image_id", columns="metric", values="value")
    rows = []
    for row in images.to_dict("records"):
        values = wide.loc[row["image_id"]] if row["image_id"] in wide.index else pd.Series()
        rows.append(
            {
                **{k: _clean(v) for k, v in row.items() if k != "image_id"},
                "scores": {m: _clean(v) for m, v in values.items() if pd.notna(v)},
            }
        )
    pairs = report.pairs
    counted = pairs.loc[~pairs["is_gold"], "n_votes"].to_numpy(dtype=np.int64)
    histogram = np.bincount(counted) if len(counted) else np.zeros(0, dtype=np.int64)
    return {
        "images": rows,
        "votes_per_pair": [
            {"votes": int(n), "pairs": int(c)} for n, c in enumerate(histogram) if c
        ],
    }


def _try_lock(study: Study, variant: str) -> bool:
    """One computation per study and variant: a PostgreSQL advisory lock for the
    transaction. Other databases (SQLite, the laptop default, served by one solo worker
    and serialising writers) need none."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)",
            [LOCK_NAMESPACE, study.pk * len(VARIANTS) + VARIANTS.index(variant)],
        )
        return bool(cursor.fetchone()[0])


def agreement_snapshot_refresh(
    *, study: Study, variant: str = AgreementSnapshot.Variant.COUNTED, force: bool = False
) -> AgreementSnapshot | None:
    """Compute and store the study's report if its data moved since the snapshot (or
    ``force``); ``None`` when another computation of it holds the lock."""
    with transaction.atomic():
        if not _try_lock(study, variant):
            return None
        snapshot, _ = AgreementSnapshot.objects.get_or_create(study=study, variant=variant)
        mark = agreement_mark(study=study)  # before the data: never newer than they are
        if not force and snapshot.report is not None and snapshot.mark == mark.digest:
            return snapshot
        as_of, started = timezone.now(), time.perf_counter()
        data = _variant_data(study_data(study), variant)
        report = study_report(data, samples=SAMPLES, seed=SEED, image_intervals=False)
        body = report_dict(report)
        extras = snapshot_extras(report, data)
        extras["metric_kinds"] = metric_kinds(study=study)
        body.update(extras)
        snapshot.report = body
        snapshot.mark = mark.digest
        snapshot.votes = report.counts["votes"]
        snapshot.scores = len(data.scores)
        snapshot.as_of = as_of
        snapshot.computed_at = timezone.now()
        snapshot.duration_s = time.perf_counter() - started
        snapshot.save()
        return snapshot


def agreement_snapshot_request(
    *, study: Study, variant: str = AgreementSnapshot.Variant.COUNTED, mark: Mark | None = None
) -> bool:
    """Queue a refresh of the study's snapshot if its data moved, at most once per
    debounce interval; True if one was queued (``mark``: the one the caller just read).
    A broker that does not answer is logged (the beat sweep or the next read queues it
    again), never raised: readers still get the snapshot there is."""
    from analysis.tasks import agreement_snapshot_refresh as task

    snapshot, _ = AgreementSnapshot.objects.get_or_create(study=study, variant=variant)
    mark = mark or agreement_mark(study=study)
    if snapshot.report is not None and snapshot.mark == mark.digest:
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


def agreement_snapshots_sweep() -> int:
    """Queue a refresh of every snapshot whose study's data moved (the beat runs this
    every few seconds, so a study nobody reads does not wait for a reader); returns how
    many were queued."""
    queued = 0
    for snapshot in AgreementSnapshot.objects.select_related("study").exclude(report=None):
        queued += agreement_snapshot_request(study=snapshot.study, variant=snapshot.variant)
    return queued
