"""The researcher's data browser: a study's pairs with their votes, label and what each
metric says of them, so that a researcher can find where people disagree and where a
metric fails them.

Counts follow the report's rules: counted votes (label trials, neither too fast nor
pilot) of annotators quality control keeps (``annotator_table_get``), grouped in the
database. The metrics' scores are the report's (``study_data``: each metric's latest
version, FR scores against the scene's reference); a metric's verdict on a pair is its
oriented difference against the metric's tie band (``Study.metric_deltas``, 0 when
unset), as the agreement report judges it.

- ``disagreement``: how far the annotators split, 1 - (the top answer's votes / all votes):
  0 when they all agree, 2/3 at most; NaN without votes.
- ``miss`` (``metric_columns``, one metric's): how far the metric's verdict (1 prefers
  a, 0 prefers b, 0.5 within its tie band) is from the people's mean outcome ``p_a``
  (similar counting 0.5): 0 when they agree, 1 when every annotator preferred the side
  the metric did not; NaN without votes or without both scores.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db.models import Count

from analysis.agreement import oriented_difference
from analysis.annotators import annotator_table_get
from analysis.report import metric_table
from analysis.selectors import study_data
from analysis.snapshot_selectors import agreement_mark
from annotation import aggregation
from annotation.models import Study, Trial, Vote

CACHE_SECONDS = 600
SORTS = ("scene", "disagreement", "miss")


@dataclass(frozen=True)
class PairTable:
    """One row per study pair (gold pairs apart), in scene then pair order, with the
    metrics' scores per image beside it (``metric_columns`` adds one metric's columns)."""

    pairs: pd.DataFrame
    images: pd.DataFrame  # image_id, name, scene, condition, role, gold
    scores: pd.DataFrame  # image_id x metric: the report's values
    lower_better: pd.Series  # per metric
    deltas: dict[str, float]

    @property
    def metrics(self) -> list[str]:
        return sorted(self.scores.columns)


def _counted_votes(study: Study, excluded: list[str]) -> pd.DataFrame:
    rows = (
        Vote.objects.filter(pair__study=study, kind=Trial.Kind.LABEL, too_fast=False, pilot=False)
        .exclude(session__pseudonym__in=excluded)
        .values("pair_id", "preferred")
        .annotate(n=Count("pk"))
        .order_by()
    )
    frame = pd.DataFrame(list(rows), columns=["pair_id", "preferred", "n"])
    return frame.loc[frame.index.repeat(frame["n"])][["pair_id", "preferred"]]


def pair_table(*, study: Study) -> PairTable:
    """The study's pairs with counts, label and disagreement, and the metrics' scores;
    cached until a vote, a decision, a score or a rule changes."""
    key = f"iqa:browse:{study.pk}:{agreement_mark(study=study).digest}"
    table = cache.get(key)
    if table is None:
        table = _pair_table(study)
        cache.set(key, table, CACHE_SECONDS)
    return table


def _pair_table(study: Study) -> PairTable:
    data = study_data(study, votes=False)
    annotators = annotator_table_get(study=study)
    excluded = [row["annotator"] for row in annotators.rows if row["excluded"]]
    pairs = data.pairs[data.pairs["gold_answer"] == ""].copy()
    pairs = pairs.sort_values(["scene", "pair_id"]).reset_index(drop=True)
    counts = aggregation.pair_counts(_counted_votes(study, excluded), pairs["pair_id"])
    for column in ("n_a", "n_similar", "n_b", "n_votes"):
        pairs[column] = counts[column].to_numpy()
    n_a, n_similar, n_b = (pairs[c].to_numpy() for c in ("n_a", "n_similar", "n_b"))
    n_votes = pairs["n_votes"].to_numpy()
    pairs["p_a"] = aggregation.p_a(n_a, n_similar, n_votes)
    pairs["majority"] = aggregation.majority(n_a, n_similar, n_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.max(np.stack([n_a, n_similar, n_b]), axis=0) if len(pairs) else n_votes
        pairs["disagreement"] = np.where(n_votes > 0, 1.0 - top / n_votes, np.nan)
    images = data.images.set_index("image_id")
    for side in ("a", "b"):
        ids = pairs[f"image_{side}"]
        pairs[f"name_{side}"] = ids.map(images["name"]).to_numpy()
        pairs[f"condition_{side}"] = ids.map(images["condition"]).to_numpy()
    wide, lower = metric_table(data.scores)
    return PairTable(
        pairs=pairs,
        images=data.images,
        scores=wide.copy(),
        lower_better=lower.copy(),
        deltas=dict(data.deltas),
    )


def metric_columns(table: PairTable, pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``pairs`` (rows of ``table.pairs``) with ``metric``'s columns: ``score_a``,
    ``score_b``, ``verdict`` (1 prefers a, 0 b, 0.5 within the tie band) and ``miss``."""
    out = pairs.copy()
    if metric not in table.scores.columns:
        for column in ("score_a", "score_b", "verdict", "miss"):
            out[column] = np.nan
        return out
    value = table.scores[metric]
    score_a = out["image_a"].map(value).to_numpy(dtype=np.float64)
    score_b = out["image_b"].map(value).to_numpy(dtype=np.float64)
    difference = oriented_difference(score_a, score_b, bool(table.lower_better[metric]))
    delta = table.deltas.get(metric, 0.0)
    verdict = np.where(difference > delta, 1.0, np.where(difference < -delta, 0.0, 0.5))
    verdict[~np.isfinite(difference)] = np.nan
    out["score_a"], out["score_b"], out["verdict"] = score_a, score_b, verdict
    out["miss"] = np.abs(out["p_a"].to_numpy(dtype=np.float64) - verdict)
    return out


def pairs_sorted(
    table: PairTable, *, sort: str = "scene", metric: str | None = None, scene: str | None = None
) -> pd.DataFrame:
    """The table's pairs (of the scene named ``scene``, if given) with ``metric``'s
    columns, ordered: ``scene`` (scene, then pair), ``disagreement`` (most split first) or
    ``miss`` (the pairs ``metric`` gets most wrong first); pairs without the value last."""
    pairs = table.pairs
    if scene is not None:
        pairs = pairs[pairs["scene"] == scene]
    pairs = metric_columns(table, pairs, metric) if metric else pairs
    if sort == "disagreement":
        return pairs.sort_values(["disagreement", "pair_id"], ascending=[False, True])
    if sort == "miss" and metric in table.scores.columns:
        return pairs.sort_values(["miss", "pair_id"], ascending=[False, True])
    return pairs
