"""Reads of the annotation app."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Trunc

from annotation import designs
from annotation.errors import RoleRequired
from annotation.models import (
    ROLE_RANK,
    AnnotatorSession,
    Image,
    Pair,
    Role,
    Scene,
    Study,
    StudyMember,
    Trial,
    Vote,
    role_at_least,
)
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


def studies_visible(*, user, archived: bool | None = None) -> QuerySet[Study]:
    """The studies ``user`` may see: those they own or are a member of (any role); every
    study for staff; none for anyone not logged in (an annotator's session token is not a
    user, so it reaches none). The one access rule of the researcher side; what each role
    may do with a study is ``study_role``'s. ``archived`` True or False keeps only the
    archived or the other studies."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Study.objects.none()
    studies = Study.objects.all()
    if archived is not None:
        studies = studies.filter(archived_at__isnull=not archived)
    if user.is_staff:
        return studies
    return studies.filter(Q(owner=user) | Q(memberships__user=user)).distinct()


def study_role(*, user, study: Study) -> str | None:
    """What ``user`` is on ``study``: ``Role.OWNER`` for its owner, an owner member and
    staff; the member's role; ``None`` for anyone else."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff or study.owner_id == user.pk:
        return Role.OWNER
    return StudyMember.objects.filter(study=study, user=user).values_list("role", flat=True).first()


# What each role is for, in the message a refused request gets.
ROLE_NEEDED_FOR = {
    Role.VIEWER: "seeing the study",
    Role.EDITOR: "changing the study (settings, status, scoring, exports, exclusions, "
    "scenes, pilot data)",
    Role.OWNER: "managing members, archiving and deleting",
}


def study_get_visible(*, user, slug: str, role: str = Role.VIEWER) -> Study:
    """The study ``slug`` if ``user`` may see it; ``NotFound`` otherwise, the same answer
    as for a study that does not exist (another researcher's study is not revealed).
    ``RoleRequired`` (403) when they see it but their role is below ``role``; the study
    carries the caller's role as ``study.role``."""
    study = studies_visible(user=user).filter(slug=slug).select_related("owner").first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    study.role = study_role(user=user, study=study)
    if not role_at_least(study.role, role):
        allowed = " or ".join(r for r in ROLE_RANK if role_at_least(r, role))
        raise RoleRequired(
            f"your role on study {slug!r} is {study.role}: {ROLE_NEEDED_FOR[role]} needs "
            f"the role {allowed}"
        )
    return study


def study_for_annotators(*, slug: str, user=None) -> Study | None:
    """The study behind an annotator link, or ``None`` exactly as for an unknown slug: a
    draft exists only for those who may see it (``studies_visible``: its owner, members
    and staff); live and closed studies for anyone."""
    study = Study.objects.filter(slug=slug).first()
    if study is None or study.status != Study.Status.DRAFT:
        return study
    if studies_visible(user=user).filter(pk=study.pk).exists():
        return study
    return None


# Studies whose images anyone may fetch: annotators need them while a study is live, and
# a closed study's images stay reachable for its published data.
MEDIA_PUBLIC_STATUSES = (Study.Status.LIVE, Study.Status.CLOSED)


def media_file_access(*, user, path: str) -> str | None:
    """Who may fetch the stored image file at ``path`` (relative to MEDIA_ROOT), as
    ``user`` asks: ``"public"`` (anyone), ``"private"`` (this user, not anyone) or none.

    Files are content-addressed, so several studies can share one: anyone may fetch a file
    that a live or closed study uses (as an image or as its display copy); a file that only
    draft studies use goes to a user who may see one of them (``studies_visible``); a file
    no study uses goes to nobody.

    One indexed query for an original of a live study (the annotators' case); display
    copies and drafts take another, and a draft a third for the visibility rule. ``user``
    is read only in that last case (a lazy ``request.user`` loads no session otherwise).
    """
    # The store names a file by its sha256: images/ab/cd/<sha256>.<ext>.
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    columns = ("scene__study_id", "scene__study__status")
    studies = set(Image.objects.filter(sha256=stem, file=path).values_list(*columns))
    if not any(status in MEDIA_PUBLIC_STATUSES for _, status in studies):
        studies |= set(Image.objects.filter(display_file=path).values_list(*columns))
    if any(status in MEDIA_PUBLIC_STATUSES for _, status in studies):
        return "public"
    if not studies or user is None or not user.is_authenticated:
        return None
    if studies_visible(user=user).filter(pk__in={pk for pk, _ in studies}).exists():
        return "private"
    return None


def study_list_with_counts(*, user=None, archived: bool | None = None) -> QuerySet[Study]:
    """Studies with their scene, image and pair counts (gold pairs apart), in one query;
    with ``user``, only the studies that user may see; ``archived`` True or False only
    the archived or the other ones."""
    if user is None:
        studies = Study.objects.all()
        if archived is not None:
            studies = studies.filter(archived_at__isnull=not archived)
    else:
        studies = studies_visible(user=user, archived=archived)
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


def study_members(*, study: Study) -> list[StudyMember]:
    """The study's members (not its creator) with their users, by username."""
    return list(study.memberships.select_related("user").order_by("user__username"))


def study_contents_counts(*, study: Study) -> dict[str, int]:
    """What deleting the study removes: its sessions and votes (pilot data included),
    images and pairs."""
    return {
        "sessions": AnnotatorSession.objects.filter(study=study).count(),
        "votes": Vote.objects.filter(pair__study=study).count(),
        "images": Image.objects.filter(scene__study=study).count(),
        "pairs": Pair.objects.filter(study=study).count(),
    }


# The votes that count toward a pair's target: counted trials' answers, except those too
# fast to count (assignment rule 14) and a researcher's preview answers.
COUNTED_VOTE = Q(kind=Trial.Kind.LABEL, too_fast=False, pilot=False)
# The sessions and votes of annotators (a researcher's preview is pilot data: apart).
ANNOTATORS = Q(pilot=False)


def study_progress(*, user=None, archived: bool | None = None) -> QuerySet[Study]:
    """Studies with what researchers watch while a study runs, in one query; with
    ``user``, only those that user may see (``archived``: as ``study_list_with_counts``)."""
    counted = (
        Vote.objects.filter(COUNTED_VOTE, pair=OuterRef("pk"))
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
    return study_list_with_counts(user=user, archived=archived).annotate(
        n_gold_pairs=_count_per_study(Pair.objects.exclude(gold_answer=""), "study"),
        n_pairs_complete=_count_per_study(complete, "study"),
        n_votes=_count_per_study(Vote.objects.filter(ANNOTATORS), "pair__study"),
        n_counted_votes=_count_per_study(Vote.objects.filter(COUNTED_VOTE), "pair__study"),
        n_sessions=_count_per_study(AnnotatorSession.objects.filter(ANNOTATORS), "study"),
        n_sessions_completed=_count_per_study(
            AnnotatorSession.objects.filter(ANNOTATORS, completed_at__isnull=False), "study"
        ),
    )


def study_progress_get(*, slug: str) -> Study:
    """One study from ``study_progress()``, its counts annotated; ``NotFound`` if none."""
    study = study_progress().filter(slug=slug).first()
    if study is None:
        raise NotFound(f"no study with slug {slug!r}")
    return study


@dataclass(frozen=True)
class ExamplePair:
    """The instructions page's worked example: ``worse`` (the study's example decoy) beside
    ``better`` (its scene's gold anchor), with what the design shows between them."""

    worse: Image
    better: Image
    reference: Image | None


def study_example_pair(*, study: Study) -> ExamplePair | None:
    """The worked example of the annotator page: the example decoy made at import (in no
    pair, so never a trial: gold trials stay unspoiled) beside its scene's anchor; none
    for a study without one (no gold trials, or imported before there were examples)."""
    decoy = Image.objects.filter(scene__study=study, gold=Image.Gold.EXAMPLE).order_by("pk").first()
    if decoy is None:
        return None
    anchor = designs.gold_anchor(list(Image.objects.filter(scene_id=decoy.scene_id)))
    if anchor is None:
        return None
    shown = designs.gold_shown_reference(study.design, anchor, show_reference=study.show_reference)
    return ExamplePair(worse=decoy, better=anchor, reference=shown)


# --- a running study's progress, as the dashboard, its API and the export count it -----


def study_session_counts(*, study: Study) -> dict[str, int]:
    """Sessions started and completed, those that found the study full (completed without
    the work a code needs: told so, no code), and trials answered (practice included),
    in one query on the sessions table (small: one row per annotator). The answered total
    moves with every stored vote, so it also tells whether vote counts read earlier still
    hold."""
    row = AnnotatorSession.objects.filter(ANNOTATORS, study=study).aggregate(
        started=Count("pk"),
        completed=Count("pk", filter=Q(completed_at__isnull=False)),
        full=Count("pk", filter=Q(outcome=AnnotatorSession.Outcome.FULL)),
        answered=Coalesce(Sum(F("n_done") + F("n_practice_done")), Value(0)),
    )
    return {key: int(value) for key, value in row.items()}


def study_scene_progress(*, study: Study) -> list[dict]:
    """Per scene, in name order: its pairs (gold pairs apart), pairs with all their
    counted votes, target votes, counted votes, and counted votes up to each pair's
    target (``credited``: what the target still lacks is ``target_votes - credited``).
    Summed over scenes these are ``study_progress``'s ``n_pairs``, ``n_pairs_complete``
    and ``n_counted_votes``."""
    # One pass over the study's counted votes grouped by pair, joined to its pairs (a
    # correlated count per pair is ten times slower on a million votes). Portable SQL.
    sql = """
        SELECT p.scene_id, COUNT(*),
               SUM(CASE WHEN COALESCE(v.n, 0) >= p.target_votes THEN 1 ELSE 0 END),
               SUM(p.target_votes), SUM(COALESCE(v.n, 0)),
               SUM(CASE WHEN COALESCE(v.n, 0) < p.target_votes THEN COALESCE(v.n, 0)
                        ELSE p.target_votes END)
        FROM annotation_pair p
        LEFT JOIN (
            SELECT vote.pair_id, COUNT(*) AS n
            FROM annotation_vote vote JOIN annotation_pair vp ON vp.id = vote.pair_id
            WHERE vp.study_id = %s AND vote.kind = %s AND NOT vote.too_fast AND NOT vote.pilot
            GROUP BY vote.pair_id
        ) v ON v.pair_id = p.id
        WHERE p.study_id = %s AND p.gold_answer = ''
        GROUP BY p.scene_id
    """
    keys = ("pairs", "pairs_complete", "target_votes", "counted_votes", "credited")
    with connection.cursor() as cursor:
        cursor.execute(sql, [study.pk, Trial.Kind.LABEL, study.pk])
        rows = [{"scene_id": row[0], **dict(zip(keys, row[1:], strict=True))} for row in cursor]
    by_scene = {row.pop("scene_id"): row for row in rows}
    names = Scene.objects.filter(study=study).order_by("name").values_list("pk", "name")
    empty = {"pairs": 0, "pairs_complete": 0, "target_votes": 0, "counted_votes": 0, "credited": 0}
    return [
        {"scene": name, **{k: int(v or 0) for k, v in by_scene.get(pk, empty).items()}}
        for pk, name in names
    ]


def study_votes_per_hour(*, study: Study) -> list[dict]:
    """Votes per clock hour (UTC), oldest first: every vote (practice and gold included)
    and the counted ones. Hours without votes are left out."""
    rows = (
        Vote.objects.filter(ANNOTATORS, pair__study=study)
        .annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .order_by()
        .values("hour")
        .annotate(votes=Count("pk"), counted_votes=Count("pk", filter=COUNTED_VOTE))
        .order_by("hour")
    )
    return [
        {"hour": row["hour"], "votes": row["votes"], "counted_votes": row["counted_votes"]}
        for row in rows
    ]


def study_counted_votes_since(*, study: Study, since: datetime) -> int:
    """Counted votes stored at or after ``since``: the recent rate of a running study."""
    return Vote.objects.filter(COUNTED_VOTE, pair__study=study, created_at__gte=since).count()


def study_median_response_ms(*, study: Study) -> float | None:
    """The median response time of the study's answered trials, practice apart (the
    export's ``votes`` with ``is_practice`` false); None before the first answer."""
    votes = Vote.objects.filter(ANNOTATORS, pair__study=study, response_ms__isnull=False).exclude(
        kind=Trial.Kind.PRACTICE
    )
    if connection.vendor == "postgresql":
        sql, params = votes.values("response_ms").query.sql_with_params()
        with connection.cursor() as cursor:
            # Linear interpolation between the two middle values: numpy's and pandas' median.
            cursor.execute(
                f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.response_ms) "
                f"FROM ({sql}) AS t",
                params,
            )
            (median,) = cursor.fetchone()
        return None if median is None else float(median)
    values = sorted(votes.values_list("response_ms", flat=True))
    if not values:
        return None
    middle = len(values) // 2
    return float(values[middle]) if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def pilot_summary(*, study: Study) -> dict:
    """The study's pilot data (researchers' previews), apart from the annotators': its
    sessions (newest first, at most 20: who, when, trials answered, whether finished)
    and totals."""
    pilots = AnnotatorSession.objects.filter(study=study, pilot=True)
    totals = pilots.aggregate(
        sessions=Count("pk"), answered=Coalesce(Sum(F("n_done") + F("n_practice_done")), Value(0))
    )
    rows = list(
        pilots.order_by("-created_at").values(
            "created_at",
            "completed_at",
            "n_done",
            "n_practice_done",
            by=F("piloted_by__username"),
        )[:20]
    )
    return {
        "sessions": int(totals["sessions"]),
        # Through the pilot sessions (a few), not a scan of the study's votes.
        "votes": Vote.objects.filter(session__in=pilots.values("pk")).count(),
        "rows": rows,
    }


def study_sampling_summary(*, study: Study) -> dict:
    """How the study's policy spent its votes: ``uniform_votes`` (what every pair's
    ``votes_per_pair`` would cost, gold pairs apart), ``pairs_decided_early`` and
    ``votes_saved`` (stop when decided: the votes the decided pairs no longer need, their
    leases out at the decision counted as spent), and
    each scene's mean posterior standard deviation at its last plan (active sampling;
    None before the first), by scene name."""
    pairs = Pair.objects.filter(study=study, gold_answer="")
    # A decided pair's leases out at the decision still count: what it saved is what its
    # target and those leases leave of votes_per_pair.
    decided = pairs.filter(decided_at__isnull=False).aggregate(
        n=Count("pk"),
        targets=Coalesce(
            Sum(Greatest("target_votes", "n_assigned", output_field=IntegerField())), Value(0)
        ),
    )
    return {
        "uniform_votes": pairs.count() * study.votes_per_pair,
        "pairs_decided_early": decided["n"],
        "votes_saved": decided["n"] * study.votes_per_pair - decided["targets"],
        "posterior_sd": dict(Scene.objects.filter(study=study).values_list("name", "posterior_sd")),
    }
