"""The quality-control table as the dashboard and the researcher API read it.

The same table as the report's (``report.annotator_table``: the rules' measures on
``selectors.study_votes``, then the researcher's decisions in force), plus each
annotator's session source. Computing it reads every vote of the study (a million rows in
the largest), so it is cached, keyed by a cheap high-water mark read on every request:

- the study's sessions: their number and the answers they counted (``n_done`` and
  ``n_practice_done``, which every vote increments under the session's lock), and the
  study's quality-control rules: the rules' table is recomputed when any of these moves;
- the decisions: their number and the latest id: the decisions are applied again (a pure
  function, milliseconds) when one is made.

So a read after a vote or a decision sees it; ``as_of`` says when the votes were read.
Votes written behind the services' back (a bulk load) are seen when the entry expires
(``CACHE_SECONDS``).
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db.models import Count, Max, Sum
from django.utils import timezone

from analysis.quality import annotator_quality, apply_decisions
from analysis.selectors import exclusion_decisions, study_rules, study_votes
from annotation.models import AnnotatorSession, ExclusionDecision, Study

CACHE_SECONDS = 600
KEY_PREFIX = "iqa:annotators:v2"

# The row of one annotator, in the table's column order.
COLUMNS = [
    "annotator", "source", "completed", "n_votes", "n_gold", "gold_accuracy", "n_majority",
    "majority_agreement", "median_response_ms", "fast_share", "n_left", "left_share",
    "side_bias_p", "similar_share", "excluded", "reasons", "qc_status", "unjudged",
    "excluded_by_rules",
    "manual_decision", "manual_reason", "decided_by", "decided_at",
]  # fmt: skip


@dataclass(frozen=True)
class AnnotatorTable:
    key: str  # annotator_table_key when it was computed
    slug: str
    as_of: datetime  # when the votes behind the measures were read
    rows: list[dict]

    def row(self, annotator: str) -> dict | None:
        return next((row for row in self.rows if row["annotator"] == annotator), None)


def _votes_mark(study: Study) -> str:
    sessions = AnnotatorSession.objects.filter(study=study, pilot=False).aggregate(
        n=Count("id"), done=Sum("n_done"), practice=Sum("n_practice_done")
    )
    rules = study_rules(study).as_dict()
    return _digest(study.pk, sessions, sorted(rules.items()))


def _decisions_mark(study: Study) -> str:
    decisions = ExclusionDecision.objects.filter(session__study=study).aggregate(
        n=Count("id"), last=Max("id")
    )
    return _digest(decisions)


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _clean(value):
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _rules_table(study: Study, votes_mark: str) -> tuple[datetime, pd.DataFrame, pd.DataFrame]:
    """(as of, the rules' table, the sessions' sources), cached by the votes' mark."""
    key = f"{KEY_PREFIX}:rules:{study.pk}:{votes_mark}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    as_of = timezone.now()
    # The votes only (the report's other frames, scores above all, are not needed here).
    table = annotator_quality(study_votes(study), study_rules(study))
    sessions = pd.DataFrame(
        list(
            AnnotatorSession.objects.filter(study=study, pilot=False).values_list(
                "pseudonym", "source", "completed_at"
            )
        ),
        columns=["annotator", "source", "completed_at"],
    )
    entry = (as_of, table, sessions)
    cache.set(key, entry, CACHE_SECONDS)
    return entry


def annotator_table_key(*, study: Study) -> str:
    """The cache key of the study's table as it stands (two small aggregate queries): it
    changes with every vote, decision and rule change. Callers may cache what they render
    from the table under it."""
    return f"{KEY_PREFIX}:table:{study.pk}:{_votes_mark(study)}:{_decisions_mark(study)}"


def annotator_table_get(*, study: Study, key: str | None = None) -> AnnotatorTable:
    """The study's quality-control table with the decisions in force, one row per
    annotator with a checked answer or a decision (sorted by pseudonym). ``key``: the
    ``annotator_table_key`` just read, if the caller has it."""
    key = key or annotator_table_key(study=study)
    votes_mark = key.split(":")[-2]
    cached = cache.get(key)
    if cached is not None:
        return cached
    as_of, rules_table, sessions = _rules_table(study, votes_mark)
    table = apply_decisions(rules_table, exclusion_decisions(study))
    table = table.merge(sessions, on="annotator", how="left")
    table["source"] = table["source"].fillna("")
    table["completed"] = table["completed_at"].notna()
    rows = [
        {column: _clean(value) for column, value in zip(COLUMNS, values, strict=True)}
        for values in table[COLUMNS].itertuples(index=False, name=None)
    ]
    result = AnnotatorTable(key=key, slug=study.slug, as_of=as_of, rows=rows)
    cache.set(key, result, CACHE_SECONDS)
    return result
