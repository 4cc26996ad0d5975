"""Reads of the annotation app."""

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from annotation.errors import NotFound
from annotation.models import Image, Pair, Scene, Study


def _count_per_study(queryset: QuerySet, study_field: str) -> Coalesce:
    # A correlated COUNT per study, so the counts do not multiply through joins.
    counted = (
        queryset.filter(**{study_field: OuterRef("pk")})
        .order_by()
        .values(study_field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def study_get(*, slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    return study


def study_list_with_counts() -> QuerySet[Study]:
    """Studies with their scene, image and pair counts, in one query."""
    return Study.objects.annotate(
        n_scenes=_count_per_study(Scene.objects.all(), "study"),
        n_images=_count_per_study(Image.objects.all(), "scene__study"),
        n_pairs=_count_per_study(Pair.objects.all(), "study"),
    ).order_by("slug")


def study_integrity_counts(*, study: Study) -> dict[str, int]:
    rows = (
        Image.objects.filter(scene__study=study)
        .values("integrity")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = dict.fromkeys(Image.Integrity.values, 0)
    counts.update({row["integrity"]: row["n"] for row in rows})
    return counts
