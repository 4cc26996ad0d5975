"""Scoring reads: which studies, what a metric must score, how far scoring got, the scores.

Nothing here imports the metric libraries or the registry (it reads pyiqa's own
configuration): the web process and the layers above read scores through this module
without loading PyTorch. Specs come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from django.db.models import Q

from annotation.models import Image, Study
from scoring import weights
from scoring.models import Score, ScoreBatch

if TYPE_CHECKING:
    from scoring.registry import MetricSpec


def studies_select(pattern: str, *, exact: bool = False) -> list[Study]:
    """A study by slug, with its family: ``demo`` selects ``demo`` and ``demo-*``."""
    query = Q(slug=pattern) if exact else Q(slug=pattern) | Q(slug__startswith=f"{pattern}-")
    return list(Study.objects.filter(query).order_by("slug"))


def metric_version(spec: MetricSpec) -> str:
    """What produced a value: pyiqa's (or the plug-in's) version and the weights' hash."""
    if spec.plugin is not None:
        files = list(getattr(spec.plugin, "files", ()))
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
    images = list(
        Image.objects.filter(scene__study=study, gold="").values_list("pk", "scene_id", "role")
    )
    if not spec.is_fr:
        return [(pk, None) for pk, _, _ in images]
    references = {scene: pk for pk, scene, role in images if role == Image.Role.REFERENCE}
    return [(pk, references[scene]) for pk, scene, _ in images if scene in references]


@dataclass(frozen=True)
class MetricProgress:
    metric: str
    version: str
    total: int
    done: int
    failed: int
    pending_batches: int


def study_scoring_progress(*, study: Study, specs: list[MetricSpec]) -> list[MetricProgress]:
    progress = []
    for spec in specs:
        version = metric_version(spec)
        items = set(study_items(study, spec))
        scores = Score.objects.filter(
            metric=spec.name, version=version, image__scene__study=study
        ).values_list("image_id", "reference_id", "error")
        done = [(i, r, e) for i, r, e in scores if (i, r) in items]
        pending = ScoreBatch.objects.filter(
            study=study, metric=spec.name, version=version, state=ScoreBatch.State.PENDING
        ).count()
        progress.append(
            MetricProgress(
                spec.name,
                version,
                total=len(items),
                done=len(done),
                failed=sum(1 for _, _, e in done if e),
                pending_batches=pending,
            )
        )
    return progress


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
