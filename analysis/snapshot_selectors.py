"""Reads of the live agreement report: the data's high-water mark and the snapshot."""

import hashlib
from dataclasses import dataclass

import pandas as pd
from django.db import connection
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce

from analysis.live import COUNTER_COLUMNS, VOTE_COLUMNS
from analysis.models import AgreementSceneImages, AgreementSnapshot
from analysis.selectors import study_rules
from annotation.models import AnnotatorSession, ExclusionDecision, Pair, Study, Vote
from scoring.models import Score, ScoreBatch


@dataclass(frozen=True)
class Mark:
    digest: str  # changes with every vote, decision, score and analysis setting
    answered: int  # answers the sessions counted (practice included)


def agreement_mark(*, study: Study) -> Mark:
    """Small aggregate queries read on every poll, none over the study's votes or scores:
    the sessions' answer counters (every vote increments them under the session's lock),
    the decisions, the study's scoring batches and the newest score id of all (a score
    written anywhere marks every snapshot stale once: rare, and never missed), the study's
    pairs (scenes added), plus the study's rules and per-metric deltas."""
    sessions = AnnotatorSession.objects.filter(study=study, pilot=False).aggregate(
        n=Count("id"), done=Sum("n_done"), practice=Sum("n_practice_done")
    )
    decisions = ExclusionDecision.objects.filter(session__study=study).aggregate(
        n=Count("id"), last=Max("id")
    )
    batches = ScoreBatch.objects.filter(study=study).aggregate(
        n=Count("id"), finished=Max("finished_at"), done=Count("id", filter=Q(state="done"))
    )
    newest_score = Score.objects.aggregate(last=Max("id"))["last"]
    # Scenes added to the study (new pairs) change the report and the browser's table.
    pairs = Pair.objects.filter(study=study).aggregate(n=Count("id"), last=Max("id"))
    digest = hashlib.sha256(
        repr(
            (
                study.pk,
                sorted(pairs.items()),
                sorted(sessions.items()),
                sorted(decisions.items()),
                sorted(batches.items()),
                newest_score,
                sorted(study_rules(study).as_dict().items()),
                sorted((study.metric_deltas or {}).items()),
            )
        ).encode()
    ).hexdigest()[:32]
    return Mark(digest=digest, answered=(sessions["done"] or 0) + (sessions["practice"] or 0))


def metric_kinds(*, study: Study) -> dict[str, str]:
    """Each scored metric's kind from its scores: "NR" (no reference) or "FR"."""
    rows = (
        Score.objects.filter(image__scene__study=study)
        .values("metric")
        .annotate(n=Count("id"), nr=Count("id", filter=Q(reference__isnull=True)))
        .values_list("metric", "n", "nr")
    )
    return {metric: "NR" if nr == n else "FR" for metric, n, nr in rows}


# The snapshot's small columns: what a poll reads (not the report, not the fits).
HEAD_FIELDS = ["id", "study_id", "variant", "mark", "votes", "as_of", "computed_at",
               "requested_at", "exact", "duration_s"]  # fmt: skip


def agreement_snapshot_get(*, study: Study, variant: str) -> AgreementSnapshot | None:
    """The snapshot with its report, without its fits (only the refresh reads those)."""
    return AgreementSnapshot.objects.filter(study=study, variant=variant).defer("fits").first()


def agreement_snapshot_head(*, study: Study, variant: str) -> AgreementSnapshot | None:
    """The snapshot's small columns only (``HEAD_FIELDS``: one row by its unique index),
    enough for the freshness flags and the ``ETag``; ``agreement_snapshot_report`` reads
    the report when a full answer is due."""
    return AgreementSnapshot.objects.filter(study=study, variant=variant).only(*HEAD_FIELDS).first()


def agreement_snapshot_report(*, snapshot: AgreementSnapshot) -> AgreementSnapshot:
    """The snapshot with its report (not its fits), as stored now: when a refresh stored
    a newer one since ``snapshot`` was read, the newer one (the caller's ``ETag`` must
    then be made from the returned row)."""
    return AgreementSnapshot.objects.defer("fits").get(pk=snapshot.pk)


def agreement_scene_images(*, snapshot: AgreementSnapshot, scene: str):
    """The snapshot's block of one scene (``AgreementSceneImages``), or None (also for a
    name with a NUL character, which no stored name has and PostgreSQL refuses)."""
    if "\x00" in scene:
        return None
    return AgreementSceneImages.objects.filter(snapshot=snapshot, scene=scene).first()


def session_counters(*, study: Study) -> pd.DataFrame:
    """Every session of the study with an answer: id, pseudonym and answers counted
    (``n_done + n_practice_done``, incremented with each vote's insert). One query."""
    rows = (
        AnnotatorSession.objects.filter(study=study, pilot=False)
        .annotate(answered=F("n_done") + F("n_practice_done"))
        .filter(answered__gt=0)
        .values_list("id", "pseudonym", "answered")
    )
    # Thousands of rows every refresh: fetched by the cursor, without the ORM's per-row
    # conversions (ints and strings need none).
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return pd.DataFrame(cursor.fetchall(), columns=COUNTER_COLUMNS)


def session_votes(*, study: Study, session_ids) -> pd.DataFrame:
    """Every vote of these sessions of the study that counts (``live.VOTE_COLUMNS``; as
    ``selectors.study_votes``: no answer too fast to count, no pilot answer, the server's
    response time).
    One query."""
    rows = Vote.objects.filter(
        session__study=study, session_id__in=list(session_ids), too_fast=False, pilot=False
    ).values_list(
        "session_id", "pair_id", "kind", "choice", "preferred", Coalesce("server_ms", "response_ms")
    )
    return pd.DataFrame(list(rows), columns=VOTE_COLUMNS)


def static_key(*, study: Study) -> str:
    """Changes when the study's pairs, scores or scoring batches do (what the live report
    caches between refreshes): small aggregates."""
    pairs = Pair.objects.filter(study=study).aggregate(n=Count("id"), last=Max("id"))
    batches = ScoreBatch.objects.filter(study=study).aggregate(
        n=Count("id"), finished=Max("finished_at"), done=Count("id", filter=Q(state="done"))
    )
    newest_score = Score.objects.aggregate(last=Max("id"))["last"]
    return repr((study.pk, sorted(pairs.items()), sorted(batches.items()), newest_score))
