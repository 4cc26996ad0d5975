"""Scoring reads: which studies, what a metric must score, how far scoring got, the scores.

Nothing here imports the metric libraries or the registry (it reads pyiqa's own
configuration): the web process and the layers above read scores through this module
without loading PyTorch. Specs come in as arguments.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from django.conf import settings
from django.db.models import Max

from annotation.models import Image, Study
from scoring import weights
from scoring.errors import UnknownStudy
from scoring.models import Score, ScoreBatch, WorkerReport

if TYPE_CHECKING:
    from scoring.registry import MetricSpec


def studies_select(patterns: Sequence[str]) -> list[Study]:
    """Studies named by exact slugs or shell-style globs (``demo``, ``'demo*'``): a bare
    slug is that study only. Raises UnknownStudy naming the patterns that match none."""
    slugs = list(Study.objects.order_by("slug").values_list("slug", flat=True))
    chosen: set[str] = set()
    unmatched = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = {slug for slug in slugs if fnmatch.fnmatchcase(slug, pattern)}
        else:
            found = {pattern} if pattern in slugs else set()
        if not found:
            unmatched.append(pattern)
        chosen |= found
    if unmatched:
        raise UnknownStudy(f"no study {', '.join(map(repr, unmatched))}")
    return list(Study.objects.filter(slug__in=chosen).order_by("slug"))


def metric_version(spec: MetricSpec) -> str:
    """What produced a value: pyiqa's (or the plug-in's) version and the weights' hash."""
    if spec.plugin is not None:
        files = spec.plugin_files
        base = f"plugin-{spec.plugin.version}"
    else:
        files = weights.needed_files(spec.name) or []
        base = f"pyiqa-{weights.pyiqa_version()}"
    present = [f for f in files if not weights.missing_files([f])]
    return base + (f"+w{weights.files_digest(present)[:12]}" if present else "")


def study_items(study: Study, spec: MetricSpec) -> list[tuple[int, int | None]]:
    """What the metric must score for the study: every image (NR), or every image
    against its scene's reference (FR), the reference against itself included. Gold
    decoys are quality control, not study images: they are not scored."""
    return _items(study, is_fr=spec.is_fr)


def _items(study: Study, *, is_fr: bool) -> list[tuple[int, int | None]]:
    images = list(
        Image.objects.filter(scene__study=study, gold="").values_list("pk", "scene_id", "role")
    )
    if not is_fr:
        return [(pk, None) for pk, _, _ in images]
    references = {scene: pk for pk, scene, role in images if role == Image.Role.REFERENCE}
    return [(pk, references[scene]) for pk, scene, _ in images if scene in references]


def scoring_queue() -> str:
    """The queue scoring batches go to: IQA_SCORING_QUEUE, else Celery's default queue."""
    from celery import current_app

    return settings.IQA_SCORING_QUEUE or current_app.conf.task_default_queue


def worker_reports(*, queue: str) -> list[WorkerReport]:
    """The reports of the workers consuming ``queue`` (see WorkerReport)."""
    return [r for r in WorkerReport.objects.order_by("hostname") if queue in r.queues]


@dataclass(frozen=True)
class MetricProgress:
    metric: str
    version: str
    total: int
    done: int  # items with a stored score, failed ones included
    failed: int  # items whose stored score is a failure (the item's own fault)
    pending_batches: int
    # Batches the workers could not run after every retry (missing weights, CUDA out of
    # memory, a driver error), their items (no score is stored) and the reasons; sent
    # again by ``score_study --retry-failed``.
    failed_batches: int = 0
    failed_to_run: int = 0
    reasons: tuple[str, ...] = ()
    # Why pending batches are being retried, if they are.
    retrying: tuple[str, ...] = ()


def study_scoring_progress(*, study: Study, specs: list[MetricSpec]) -> list[MetricProgress]:
    return [
        _metric_progress(study, spec.name, metric_version(spec), is_fr=spec.is_fr) for spec in specs
    ]


def _metric_progress(study: Study, metric: str, version: str, *, is_fr: bool) -> MetricProgress:
    items = set(_items(study, is_fr=is_fr))
    scores = Score.objects.filter(
        metric=metric, version=version, image__scene__study=study
    ).values_list("image_id", "reference_id", "error")
    done = [(i, r, e) for i, r, e in scores if (i, r) in items]
    stored = {(i, r) for i, r, _ in done}
    batches = ScoreBatch.objects.filter(study=study, metric=metric, version=version)
    pending = list(batches.filter(state=ScoreBatch.State.PENDING).values_list("reason", flat=True))
    failed = list(batches.filter(state=ScoreBatch.State.FAILED).values_list("items", "reason"))
    unrun = {tuple(item) for batch_items, _ in failed for item in batch_items} - stored
    return MetricProgress(
        metric,
        version,
        total=len(items),
        done=len(done),
        failed=sum(1 for _, _, e in done if e),
        pending_batches=len(pending),
        failed_batches=len(failed),
        failed_to_run=len(unrun & items),
        reasons=tuple(sorted({reason for _, reason in failed})),
        retrying=tuple(sorted({reason for reason in pending if reason})),
    )


@dataclass(frozen=True)
class MetricStatus:
    """A metric sent for a study, as the dashboard shows it (no registry needed)."""

    progress: MetricProgress
    first_error: str  # the first failed item's message, "" when none failed

    @property
    def scored(self) -> int:
        return self.progress.done - self.progress.failed

    @property
    def pending(self) -> int:
        """Items not scored yet that are not in a batch that failed to run."""
        return self.progress.total - self.progress.done - self.progress.failed_to_run

    @property
    def failed_to_run(self) -> int:
        return self.progress.failed_to_run

    @property
    def reason(self) -> str:
        """Why batches failed to run ("" when none did): ``score_study --retry-failed``."""
        return "; ".join(self.progress.reasons)


def study_scoring_requested(*, study: Study) -> list[MetricStatus]:
    """Per metric ever sent for the study (``score_study``, the dashboard's Score now),
    by name: the same counts as ``study_scoring_progress`` for its latest version, read
    from the study's batches alone, so the web process needs neither the registry nor
    pyiqa. A metric is FR when its batches carry references."""
    latest: dict[str, tuple[str, bool]] = {}
    batches = ScoreBatch.objects.filter(study=study).order_by("pk")
    for metric, version, items in batches.values_list("metric", "version", "items"):
        is_fr = any(reference is not None for _, reference in items)
        if metric in latest and latest[metric][0] == version:
            is_fr = is_fr or latest[metric][1]
        latest[metric] = (version, is_fr)
    statuses = []
    for metric in sorted(latest):
        version, is_fr = latest[metric]
        progress = _metric_progress(study, metric, version, is_fr=is_fr)
        first_error = ""
        if progress.failed:
            first_error = (
                Score.objects.filter(metric=metric, version=version, image__scene__study=study)
                .exclude(error="")
                .order_by("pk")
                .values_list("error", flat=True)
                .first()
            ) or ""
        statuses.append(MetricStatus(progress, first_error))
    return statuses


def scores_latest_versions(study: Study) -> dict[str, str]:
    """Per metric, the most recent version (by its last stored row) that has successful
    scores of the study's images: a later run that only failed hides no earlier good one.
    The report and the export read scores of these versions."""
    rows = (
        Score.objects.filter(image__scene__study=study, error="")
        .values("metric", "version")
        .annotate(last=Max("id"))
        .order_by("metric", "last")
    )
    return {row["metric"]: row["version"] for row in rows}


def scores_frame(study: Study) -> pd.DataFrame:
    """``metric_scores`` of the export: every stored score of the study's images, failed
    ones with their error (value empty)."""
    names = dict(Image.objects.filter(scene__study=study).values_list("pk", "name"))
    rows = list(
        Score.objects.filter(image__scene__study=study)
        .order_by("metric", "version", "image_id", "reference_id")
        .values_list(
            "metric", "version", "image_id", "reference_id", "value", "lower_better", "error"
        )
    )
    frame = pd.DataFrame(
        rows,
        columns=["metric", "version", "image", "reference", "value", "lower_better", "error"],
    )
    frame["image"] = frame["image"].map(names)
    frame["reference"] = frame["reference"].map(names)
    return frame[["metric", "image", "reference", "value", "lower_better", "version", "error"]]
