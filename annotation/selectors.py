"""Reads of the annotation app."""

from django.db import connection
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote
from core.errors import NotFound


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


def database_ping() -> None:
    """One round trip to the database and nothing else."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def study_get(*, slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    return study


def studies_visible(*, user) -> QuerySet[Study]:
    """The studies ``user`` may see and run: those they own or are a member of; every
    study for staff; none for anyone not logged in (an annotator's session token is not a
    user, so it reaches none). The one access rule of the researcher side."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Study.objects.none()
    if user.is_staff:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(members=user)).distinct()


def study_get_visible(*, user, slug: str) -> Study:
    """The study ``slug`` if ``user`` may see it; ``NotFound`` otherwise, the same answer
    as for a study that does not exist (another researcher's study is not revealed)."""
    study = studies_visible(user=user).filter(slug=slug).first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    return study


def study_list_with_counts(*, user=None) -> QuerySet[Study]:
    """Studies with their scene, image and pair counts (gold pairs apart), in one query;
    with ``user``, only the studies that user may see."""
    studies = Study.objects.all() if user is None else studies_visible(user=user)
    return studies.annotate(
        n_scenes=_count_per_study(Scene.objects.all(), "study"),
        n_images=_count_per_study(Image.objects.all(), "scene__study"),
        n_pairs=_count_per_study(Pair.objects.filter(gold_answer=""), "study"),
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


def study_progress(*, user=None) -> QuerySet[Study]:
    """Studies with what researchers watch while a study runs, in one query; with
    ``user``, only those that user may see."""
    counted = (
        Vote.objects.filter(pair=OuterRef("pk"), kind=Trial.Kind.LABEL)
        .order_by()
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )
    complete = (
        Pair.objects.filter(gold_answer="")
        .annotate(n_counted=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)))
        .filter(n_counted__gte=F("target_votes"))
    )
    return study_list_with_counts(user=user).annotate(
        n_gold_pairs=_count_per_study(Pair.objects.exclude(gold_answer=""), "study"),
        n_pairs_complete=_count_per_study(complete, "study"),
        n_votes=_count_per_study(Vote.objects.all(), "pair__study"),
        n_counted_votes=_count_per_study(Vote.objects.filter(kind=Trial.Kind.LABEL), "pair__study"),
        n_sessions=_count_per_study(AnnotatorSession.objects.all(), "study"),
        n_sessions_completed=_count_per_study(
            AnnotatorSession.objects.filter(completed_at__isnull=False), "study"
        ),
    )


def study_progress_get(*, slug: str) -> Study:
    """One study from ``study_progress()``, its counts annotated; ``NotFound`` if none."""
    study = study_progress().filter(slug=slug).first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    return study


def study_example_pair(*, study: Study) -> Pair | None:
    """The pair the annotator page shows as its worked example: the study's first gold
    pair (its answer is plain to see), or none when the study has no gold pairs."""
    return (
        Pair.objects.filter(study=study)
        .exclude(gold_answer="")
        .select_related("image_a", "image_b", "shown_reference")
        .order_by("pk")
        .first()
    )
