"""Annotator quality control: measures per annotator and the study's exclusion rules.

Pure functions on a votes frame (one row per answer; practice answers are ignored).
Excluded annotators are left out of labels, scaling and agreement; their votes stay in
the database and in the export, marked ``excluded``.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from annotation import aggregation


@dataclass(frozen=True)
class Rules:
    """Thresholds that exclude an annotator; ``None`` turns a rule off.

    The defaults are the study settings' defaults (``Study.qc_*``).
    """

    min_gold_accuracy: float | None = 0.7
    min_median_response_ms: float | None = 500.0
    # Two-sided binomial test of the share of "left" among left/right answers against 0.5.
    side_bias_alpha: float | None = 0.001
    min_majority_agreement: float | None = None
    max_similar_share: float | None = 0.9
    # Not a rule: what counts as a too-fast answer in the ``fast_share`` measure.
    fast_response_ms: float = 300.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict:
        return asdict(self)


def side_bias_p(n_left: np.ndarray, n_sided: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial p-value of ``n_left`` out of ``n_sided`` against 0.5.

    The null is symmetric, so the two-sided p is twice the smaller tail, as
    ``scipy.stats.binomtest`` gives; computed for all annotators at once. NaN when n is 0.
    """
    n_left = np.asarray(n_left, dtype=np.int64)
    n_sided = np.asarray(n_sided, dtype=np.int64)
    smaller = np.minimum(n_left, n_sided - n_left)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2.0 * stats.binom.cdf(smaller, n_sided, 0.5))
    return np.where(n_sided > 0, p, np.nan)


def leave_one_out_majority(pair_index: np.ndarray, preferred: np.ndarray) -> np.ndarray:
    """For each vote, the DiffIQA majority of the other votes on its pair ("none" when
    they tie or there are none)."""
    answer = pd.Categorical(preferred, categories=aggregation.ANSWERS).codes
    n_pairs = int(pair_index.max()) + 1 if len(pair_index) else 0
    counts = np.zeros((n_pairs, 3), dtype=np.int64)
    np.add.at(counts, (pair_index, answer), 1)
    others = counts[pair_index]
    others[np.arange(len(answer)), answer] -= 1
    return aggregation.majority(others[:, 0], others[:, 1], others[:, 2])


def annotator_quality(votes: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """One row per annotator: the quality measures, ``excluded`` and its ``reasons``.

    ``votes`` columns: annotator, pair_id, kind (label / gold / practice), choice (left /
    similar / right), preferred (a / similar / b), response_ms (may be missing) and
    gold_answer (the gold pair's answer, "" otherwise).
    """
    votes = votes[votes["kind"] != "practice"]
    codes, names = pd.factorize(votes["annotator"], sort=True)
    n = len(names)

    def per_annotator(mask: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
        keep = mask if among is None else mask & among
        return np.bincount(codes[keep], minlength=n)

    def share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(whole > 0, part / np.maximum(whole, 1), np.nan)

    kind = votes["kind"].to_numpy()
    choice = votes["choice"].to_numpy()
    preferred = votes["preferred"].to_numpy()
    everyone = np.ones(len(votes), dtype=bool)
    gold = kind == "gold"
    label = kind == "label"
    out = pd.DataFrame(index=pd.Index(names, name="annotator"))
    out["n_votes"] = per_annotator(everyone)
    out["n_gold"] = per_annotator(gold)
    out["gold_accuracy"] = share(
        per_annotator(gold, preferred == votes["gold_answer"].to_numpy()), out["n_gold"].to_numpy()
    )

    pair_codes, _ = pd.factorize(votes["pair_id"].to_numpy()[label])
    loo = leave_one_out_majority(pair_codes, preferred[label])
    has_majority = np.zeros(len(votes), dtype=bool)
    agrees = np.zeros(len(votes), dtype=bool)
    has_majority[label] = loo != aggregation.NONE
    agrees[label] = (loo == preferred[label]) & has_majority[label]
    out["n_majority"] = per_annotator(has_majority)
    out["majority_agreement"] = share(per_annotator(agrees), out["n_majority"].to_numpy())

    times = votes["response_ms"].astype("float64").to_numpy()
    timed = ~np.isnan(times)
    out["median_response_ms"] = (
        pd.Series(times[timed]).groupby(codes[timed]).median().reindex(range(n)).to_numpy()
    )
    out["fast_share"] = share(per_annotator(timed, times < rules.fast_response_ms),
                              per_annotator(timed))  # fmt: skip

    n_left = per_annotator(choice == "left")
    n_sided = per_annotator(choice != "similar")
    out["n_left"] = n_left
    out["left_share"] = share(n_left, n_sided)
    out["side_bias_p"] = side_bias_p(n_left, n_sided)
    out["similar_share"] = share(per_annotator(choice == "similar"), out["n_votes"].to_numpy())

    reasons = _reasons(out, rules)
    out["excluded"] = [bool(r) for r in reasons]
    out["reasons"] = ["; ".join(r) for r in reasons]
    return out.reset_index()


def _reasons(measures: pd.DataFrame, rules: Rules) -> list[list[str]]:
    found: list[list[str]] = [[] for _ in range(len(measures))]

    def check(failed: pd.Series, message) -> None:
        for position in np.flatnonzero(failed.fillna(False).to_numpy(dtype=bool)):
            found[position].append(message(measures.iloc[position]))

    if rules.min_gold_accuracy is not None:
        check(
            measures["gold_accuracy"] < rules.min_gold_accuracy,
            lambda m: (
                f"gold accuracy {m.gold_accuracy:.2f} < {rules.min_gold_accuracy:g} "
                f"({m.gold_accuracy * m.n_gold:.0f}/{m.n_gold:.0f} gold trials right)"
            ),
        )
    if rules.min_median_response_ms is not None:
        check(
            measures["median_response_ms"] < rules.min_median_response_ms,
            lambda m: (
                f"median response {m.median_response_ms:.0f} ms < "
                f"{rules.min_median_response_ms:g} ms"
            ),
        )
    if rules.side_bias_alpha is not None:
        check(
            measures["side_bias_p"] < rules.side_bias_alpha,
            lambda m: (
                f"side bias: {m.left_share:.0%} left (binomial p={m.side_bias_p:.1e} "
                f"< {rules.side_bias_alpha:g})"
            ),
        )
    if rules.min_majority_agreement is not None:
        check(
            measures["majority_agreement"] < rules.min_majority_agreement,
            lambda m: (
                f"agreement with the others' majority {m.majority_agreement:.2f} < "
                f"{rules.min_majority_agreement:g} ({m.n_majority:.0f} votes)"
            ),
        )
    if rules.max_similar_share is not None:
        check(
            measures["similar_share"] > rules.max_similar_share,
            lambda m: f"'similar' {m.similar_share:.0%} of answers > {rules.max_similar_share:.0%}",
        )
    return found
