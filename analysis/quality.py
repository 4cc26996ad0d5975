"""Annotator quality control: measures per annotator and the study's exclusion rules.

Pure functions on a votes frame (one row per answer; practice answers are ignored).
Excluded annotators are left out of labels, scaling and agreement; their votes stay in
the database and in the export, marked ``excluded``.

Each rule needs evidence: a rule is judged on an annotator only with at least
``min_answers`` answers behind its measure (``min_gold`` gold trials for gold accuracy);
an annotator that no rule could judge is "not judged", never excluded. With
``test="binomial"`` (the default) a rule is a one-sided exact binomial test that the
annotator's rate is on the wrong side of the threshold, and the p-values of every
(annotator, rule) are corrected together (Holm, or Benjamini-Hochberg) at the study's
error rate ``alpha``; the median response time is tested as a sign test of the share of
answers faster than the threshold against one half. ``test="threshold"`` with
``correction="none"`` and both minima 0 is the older rule: the measure against the
threshold, whatever the evidence.
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
    # "binomial": one-sided exact tests, corrected across annotators; "threshold": the
    # measure against the threshold (each annotator on its own).
    test: str = "binomial"
    # Multiple-testing correction of the binomial tests: "holm" (family-wise error rate),
    # "bh" (Benjamini-Hochberg, false discovery rate) or "none".
    correction: str = "holm"
    # The study-level error rate of the tests (and the side-bias test's level there).
    alpha: float = 0.05
    # Evidence a rule needs: answers behind a rate (and timed answers for response time),
    # gold trials for gold accuracy.
    min_answers: int = 20
    min_gold: int = 5

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

    kind = votes["kind"].to_numpy()
    choice = votes["choice"].to_numpy()
    preferred = votes["preferred"].to_numpy()
    everyone = np.ones(len(votes), dtype=bool)
    gold = kind == "gold"
    label = kind == "label"

    pair_codes, _ = pd.factorize(votes["pair_id"].to_numpy()[label])
    loo = leave_one_out_majority(pair_codes, preferred[label])
    has_majority = np.zeros(len(votes), dtype=bool)
    agrees = np.zeros(len(votes), dtype=bool)
    has_majority[label] = loo != aggregation.NONE
    agrees[label] = (loo == preferred[label]) & has_majority[label]

    times = votes["response_ms"].astype("float64").to_numpy()
    timed = ~np.isnan(times)
    evidence = {
        "n_votes": per_annotator(everyone),
        "n_gold": per_annotator(gold),
        "n_gold_right": per_annotator(gold, preferred == votes["gold_answer"].to_numpy()),
        "n_majority": per_annotator(has_majority),
        "n_agree": per_annotator(agrees),
        "n_timed": per_annotator(timed),
        "n_fast": per_annotator(timed, times < rules.fast_response_ms),
        "n_below": per_annotator(timed, times < rules.min_median_response_ms)
        if rules.min_median_response_ms is not None
        else np.zeros(n, dtype=np.int64),
        "n_left": per_annotator(choice == "left"),
        "n_sided": per_annotator(choice != "similar"),
        "n_similar": per_annotator(choice == "similar"),
    }
    medians = pd.Series(times[timed]).groupby(codes[timed]).median().reindex(range(n)).to_numpy()
    return quality_table(names, evidence, medians, rules)


# The per-annotator counts ``quality_table`` judges (``annotator_quality`` counts them from
# the votes; the live report keeps them up to date as votes arrive).
EVIDENCE = ("n_votes", "n_gold", "n_gold_right", "n_majority", "n_agree", "n_timed", "n_fast",
            "n_below", "n_left", "n_sided", "n_similar")  # fmt: skip


def quality_table(
    names, evidence: dict[str, np.ndarray], medians: np.ndarray, rules: Rules
) -> pd.DataFrame:
    """``annotator_quality``'s table from each annotator's counts (``EVIDENCE``, counted
    with ``rules``' thresholds for ``n_fast`` and ``n_below``) and median response time
    (NaN when none is timed); ``names`` sorted."""

    def share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(whole > 0, part / np.maximum(whole, 1), np.nan)

    e = evidence
    out = pd.DataFrame(index=pd.Index(names, name="annotator"))
    out["n_votes"] = e["n_votes"]
    out["n_gold"] = e["n_gold"]
    out["gold_accuracy"] = share(e["n_gold_right"], e["n_gold"])
    out["n_majority"] = e["n_majority"]
    out["majority_agreement"] = share(e["n_agree"], e["n_majority"])
    out["median_response_ms"] = medians
    out["fast_share"] = share(e["n_fast"], e["n_timed"])
    out["n_left"] = e["n_left"]
    out["left_share"] = share(e["n_left"], e["n_sided"])
    out["side_bias_p"] = side_bias_p(e["n_left"], e["n_sided"])
    out["similar_share"] = share(e["n_similar"], e["n_votes"])
    evidence = {
        "gold": (np.asarray(e["n_gold"]), np.asarray(e["n_gold_right"])),
        "median": (np.asarray(e["n_timed"]), np.asarray(e["n_below"])),
        "side": (np.asarray(e["n_sided"]), np.asarray(e["n_left"])),
        "majority": (np.asarray(e["n_majority"]), np.asarray(e["n_agree"])),
        "similar": (np.asarray(e["n_votes"]), np.asarray(e["n_similar"])),
    }
    reasons, unjudged, judged = rule_verdicts(out, evidence, rules)
    out["excluded"] = [bool(r) for r in reasons]
    out["reasons"] = ["; ".join(r) for r in reasons]
    out["unjudged"] = ["; ".join(u) for u in unjudged]
    out["qc_status"] = np.where(out["excluded"], "excluded", np.where(judged, "kept", NOT_JUDGED))
    return out.reset_index()


NOT_JUDGED = "not judged"
CORRECTIONS = ("holm", "bh", "none")
TESTS = ("binomial", "threshold")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (reject where adjusted <= alpha): the family-wise
    error rate is at most alpha under any dependence."""
    p_values = np.asarray(p_values, dtype=np.float64)
    m = len(p_values)
    if m == 0:
        return p_values
    order = np.argsort(p_values, kind="stable")
    steps = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, steps)
    return adjusted


def adjust(p_values: np.ndarray, correction: str) -> np.ndarray:
    """The p-values adjusted for the family: Holm, Benjamini-Hochberg or as they are."""
    p_values = np.asarray(p_values, dtype=np.float64)
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        if len(p_values) == 0:
            return p_values
        return stats.false_discovery_control(p_values, method="bh")
    if correction == "none":
        return p_values
    raise ValueError(f"unknown correction {correction!r} (expected one of {CORRECTIONS})")


def rule_p_values(n: np.ndarray, k: np.ndarray, threshold: float, worse: str) -> np.ndarray:
    """One-sided exact binomial p-values of k successes in n against the threshold rate:
    ``worse="below"`` tests rate < threshold (P(X <= k)), ``"above"`` rate > threshold
    (P(X >= k)), as ``scipy.stats.binomtest(k, n, threshold, alternative=...)``."""
    n = np.asarray(n, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    if worse == "below":
        return stats.binom.cdf(k, n, threshold)
    return stats.binom.sf(k - 1, n, threshold)


def rule_verdicts(
    measures: pd.DataFrame, evidence: dict, rules: Rules
) -> tuple[list[list[str]], list[list[str]], np.ndarray]:
    """(reasons per annotator, the rules not judged for lack of evidence, judged by any rule).

    ``measures``: ``annotator_quality``'s measures; ``evidence``: per rule (gold, median,
    side, majority, similar) the arrays (n, k) the rule's test counts: gold trials and
    those right, timed answers and those faster than the median threshold, left/right
    answers and the left ones, answers with a majority and those agreeing, answers and the
    similar ones.
    """
    if rules.test not in TESTS:
        raise ValueError(f"unknown test {rules.test!r} (expected one of {TESTS})")
    size = len(measures)
    found: list[list[str]] = [[] for _ in range(size)]
    unjudged: list[list[str]] = [[] for _ in range(size)]
    judged = np.zeros(size, dtype=bool)
    binomial = rules.test == "binomial"
    # Each rule that is on: (n, k, evidence needed, its unit, its name, failed by the
    # threshold rule, the test's p-value, the reason's text for annotator i).
    checks = []
    if rules.min_gold_accuracy is not None:
        t_g = rules.min_gold_accuracy
        n_g, k_g = evidence["gold"]
        checks.append((
            n_g, k_g, rules.min_gold, "gold trials", "gold accuracy",
            measures["gold_accuracy"].to_numpy() < t_g, rule_p_values(n_g, k_g, t_g, "below"),
            lambda i: f"gold accuracy {k_g[i] / n_g[i]:.2f} < {t_g:g} ({k_g[i]}/{n_g[i]} gold "
                      "trials right)",
        ))  # fmt: skip
    if rules.min_median_response_ms is not None:
        t_m = rules.min_median_response_ms
        n_m, k_m = evidence["median"]
        checks.append((
            n_m, k_m, rules.min_answers, "timed answers", "median response",
            measures["median_response_ms"].to_numpy() < t_m, rule_p_values(n_m, k_m, 0.5, "above"),
            lambda i: (
                f"median response {measures['median_response_ms'].iat[i]:.0f} ms < {t_m:g} ms"
                + (f" ({k_m[i]}/{n_m[i]} answers faster)" if binomial else "")
            ),
        ))  # fmt: skip
    if rules.side_bias_alpha is not None:
        level = rules.side_bias_alpha
        n_s, k_s = evidence["side"]
        p_side = measures["side_bias_p"].to_numpy()
        checks.append((
            n_s, k_s, rules.min_answers, "left/right answers", "side bias",
            p_side < level, p_side,
            lambda i: f"side bias: {k_s[i] / n_s[i]:.0%} left ("
                      + (f"{k_s[i]}/{n_s[i]})" if binomial
                         else f"binomial p={p_side[i]:.1e} < {level:g})"),
        ))  # fmt: skip
    if rules.min_majority_agreement is not None:
        t_a = rules.min_majority_agreement
        n_a, k_a = evidence["majority"]
        checks.append((
            n_a, k_a, rules.min_answers, "answers with a majority", "majority agreement",
            measures["majority_agreement"].to_numpy() < t_a, rule_p_values(n_a, k_a, t_a, "below"),
            lambda i: f"agreement with the others' majority {k_a[i] / n_a[i]:.2f} < {t_a:g} "
                      f"({n_a[i]} votes)",
        ))  # fmt: skip
    if rules.max_similar_share is not None:
        t_s = rules.max_similar_share
        n_v, k_v = evidence["similar"]
        checks.append((
            n_v, k_v, rules.min_answers, "answers", "'similar' share",
            measures["similar_share"].to_numpy() > t_s, rule_p_values(n_v, k_v, t_s, "above"),
            lambda i: f"'similar' {k_v[i] / n_v[i]:.0%} of answers > {t_s:.0%}"
                      + (f" ({k_v[i]}/{n_v[i]})" if binomial else ""),
        ))  # fmt: skip
    enough = []
    for count, _, needed, unit, name, _, _, _ in checks:
        ok = count >= max(int(needed), 1)
        enough.append(ok)
        judged |= ok
        for i in np.flatnonzero(~ok):
            unjudged[i].append(f"{name}: {count[i]} of {int(needed)} {unit}")
    if binomial:
        family = np.concatenate([c[6][ok] for c, ok in zip(checks, enough, strict=True)] or [[]])
        adjusted = adjust(family, rules.correction)
        start = 0
        for check, ok in zip(checks, enough, strict=True):
            rows = np.flatnonzero(ok)
            p_adj = adjusted[start : start + len(rows)]
            start += len(rows)
            for i, p in zip(rows[p_adj <= rules.alpha], p_adj[p_adj <= rules.alpha], strict=True):
                found[i].append(
                    f"{check[7](i)}: p={check[6][i]:.1e}, {_corrected(rules)} p={p:.1e} "
                    f"<= {rules.alpha:g}"
                )
    else:
        for check, ok in zip(checks, enough, strict=True):
            for i in np.flatnonzero(ok & np.nan_to_num(check[5], nan=0).astype(bool)):
                found[i].append(check[7](i))
    return found, unjudged, judged


def _corrected(rules: Rules) -> str:
    return {"holm": "Holm", "bh": "BH", "none": "uncorrected"}[rules.correction]


# Columns of a decisions frame: the researcher's decision in force per annotator.
DECISION_COLUMNS = ["annotator", "excluded", "reason", "decided_by", "decided_at"]
COUNT_COLUMNS = ("n_votes", "n_gold", "n_majority", "n_left")


def no_decisions() -> pd.DataFrame:
    return pd.DataFrame(columns=DECISION_COLUMNS)


def apply_decisions(annotators: pd.DataFrame, decisions: pd.DataFrame | None) -> pd.DataFrame:
    """The quality table with the researcher's decisions in force applied.

    ``annotators``: ``annotator_quality``'s table; ``decisions``: one row per annotator
    (``DECISION_COLUMNS``: the latest decision for each session). A decision overrides the
    rules for that annotator only: excluded by hand is excluded ("excluded by hand: why",
    then any rule's reasons); re-included by hand counts even where a rule would exclude it
    (the rule's reasons still shown, marked overridden). ``excluded_by_rules`` keeps the
    rules' own verdict. An annotator decided on without a counted answer gets a row of
    zero counts. Adds ``manual_decision`` (excluded / included / ""), ``manual_reason``,
    ``decided_by`` and ``decided_at``; ``qc_status`` (excluded / kept / not judged) follows
    the decision.
    """
    out = annotators.copy()
    out["excluded_by_rules"] = out["excluded"].astype(bool)
    out["manual_decision"] = ""
    out["manual_reason"] = ""
    out["decided_by"] = ""
    out["decided_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    if decisions is None or decisions.empty:
        return out
    decisions = decisions.drop_duplicates("annotator", keep="last").set_index("annotator")
    missing = decisions.index.difference(pd.Index(out["annotator"]))
    if len(missing):
        added = pd.DataFrame({"annotator": list(missing)})
        for column in COUNT_COLUMNS:
            added[column] = 0
        added["excluded"] = added["excluded_by_rules"] = False
        added["reasons"] = added["manual_decision"] = added["manual_reason"] = ""
        added["unjudged"] = ""
        added["qc_status"] = NOT_JUDGED
        added["decided_by"] = ""
        out = pd.concat([out, added], ignore_index=True)
        out = out.sort_values("annotator", kind="stable").reset_index(drop=True)
    for column in COUNT_COLUMNS:
        if column in out:
            out[column] = out[column].fillna(0).astype("int64")
    # (An empty table has float columns: set the types the assignments below need.)
    for column in ("excluded", "excluded_by_rules"):
        out[column] = out[column].astype("boolean").fillna(False).astype(bool)
    for column in ("reasons", "manual_decision", "manual_reason", "decided_by", "unjudged"):
        out[column] = out[column].fillna("").astype(object)
    who = out["annotator"]
    decided = who.isin(decisions.index).to_numpy()
    rows = decisions.reindex(who[decided])
    hand_excluded = rows["excluded"].astype(bool).to_numpy()
    reason = rows["reason"].astype(str).to_numpy()
    rules = out.loc[decided, "reasons"].fillna("").astype(str).to_numpy()
    out.loc[decided, "excluded"] = hand_excluded
    out.loc[decided, "reasons"] = [
        _decided_reasons(excluded, why, automatic)
        for excluded, why, automatic in zip(hand_excluded, reason, rules, strict=True)
    ]
    out.loc[decided, "manual_decision"] = np.where(hand_excluded, "excluded", "included")
    out.loc[decided, "qc_status"] = np.where(hand_excluded, "excluded", "kept")
    out.loc[decided, "manual_reason"] = reason
    out.loc[decided, "decided_by"] = rows["decided_by"].fillna("").astype(str).to_numpy()
    out["decided_at"] = pd.to_datetime(who.map(decisions["decided_at"]), utc=True)
    out["excluded"] = out["excluded"].astype(bool)
    return out


def _decided_reasons(excluded: bool, why: str, automatic: str) -> str:
    if excluded:
        return f"excluded by hand: {why}" + (f"; {automatic}" if automatic else "")
    if automatic:
        return f"re-included by hand: {why} (overrides: {automatic})"
    return f"re-included by hand: {why}"
