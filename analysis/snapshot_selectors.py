"""Reads of the live agreement report: the data's high-water mark and the snapshot."""

import hashlib
from dataclasses import dataclass

from django.db.models import Count, Max, Q, Sum

from analysis.models import AgreementSnapshot
from analysis.selectors import study_rules
from annotation.models import AnnotatorSession, ExclusionDecision, Study
from scoring.models import Score, ScoreBatch


@dataclass(frozen=True)
class Mark:
    digest: str  # changes with every vote, decision, score and analysis setting
    answered: int  # answers the sessions counted (practice included)


def agreement_mark(*, study: Study) -> Mark:
    """Small aggregate queries read on every poll, none over the study's votes or scores:
    the sessions' answer counters (every vote increments them under the session's lock),
    the decisions, the study's scoring batches and the newest score id of all (a score
    written anywhere marks every snapshot stale once: rare, and never missed), plus the
    study's rules and per-metric deltas."""
    sessions = AnnotatorSession.objects.filter(study=study).aggregate(
        n=Count("id"), done=Sum("n_done"), practice=Sum("n_practice_done")
    )
    decisions = ExclusionDecision.objects.filter(session__study=study).aggregate(
        n=Count("id"), last=Max("id")
    )
    batches = ScoreBatch.objects.filter(study=study).aggregate(
        n=Count("id"), finished=Max("finished_at"), done=Count("id", filter=Q(state="done"))
    )
    newest_score = Score.objects.aggregate(last=Max("id"))["last"]
    digest = hashlib.sha256(
        repr(
            (
                study.pk,
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


def agreement_snapshot_get(*, study: Study, variant: str) -> AgreementSnapshot | None:
    return AgreementSnapshot.objects.filter(study=study, variant=variant).first()
