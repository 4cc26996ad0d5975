"""Annotator quality control: the measures, the default rules and their reasons."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.quality import Rules, annotator_quality, leave_one_out_majority, side_bias_p

# The rules as they were before issue 18: each measure against its threshold, on any
# evidence, uncorrected (what ``qc_test=threshold``, ``qc_correction=none`` and both minima
# 0 give a study).
THRESHOLD_RULES = Rules(test="threshold", correction="none", min_answers=0, min_gold=0)


def vote(annotator, pair, preferred, *, choice=None, kind="label", ms=1500, gold=""):
    sides = {"a": "left", "b": "right", "similar": "similar"}
    return {
        "annotator": annotator,
        "pair_id": pair,
        "kind": kind,
        "choice": choice or sides[preferred],
        "preferred": preferred,
        "response_ms": ms,
        "gold_answer": gold,
    }


def test_side_bias_p_is_the_exact_two_sided_binomial_test():
    for left, n in [(0, 10), (3, 10), (5, 10), (9, 10), (50, 100), (100, 100), (31, 47)]:
        expected = stats.binomtest(left, n, 0.5).pvalue
        assert side_bias_p(np.array([left]), np.array([n]))[0] == pytest.approx(expected)
    assert np.isnan(side_bias_p(np.array([0]), np.array([0]))[0])


def test_leave_one_out_majority_by_hand():
    """Pair 0 has votes a, a, b: an a voter's others are a and b, a tie, so none; the b
    voter's others are a and a, so a. Pair 1 has one vote and no others: none."""
    pairs = np.array([0, 0, 0, 1])
    preferred = np.array(["a", "a", "b", "similar"], dtype=object)
    assert list(leave_one_out_majority(pairs, preferred)) == ["none", "none", "a", "none"]
    pairs = np.array([0, 0, 0, 0])
    preferred = np.array(["a", "a", "a", "similar"], dtype=object)
    assert list(leave_one_out_majority(pairs, preferred)) == ["a", "a", "a", "a"]


def test_measures_by_hand():
    votes = pd.DataFrame(
        [
            vote("u1", 1, "a", ms=1000),
            vote("u1", 2, "similar", ms=2000),
            vote("u1", 9, "b", kind="gold", gold="b", ms=3000),
            vote("u1", 8, "a", kind="gold", gold="b", ms=4000),
            vote("u1", 7, "a", kind="practice", ms=10),  # practice is ignored
            vote("u2", 1, "a", ms=200),
            vote("u2", 2, "b", ms=250),
            vote("u3", 1, "a", choice="right", ms=900),
            vote("u3", 2, "b", choice="left", ms=100),
        ]
    )
    out = annotator_quality(votes, THRESHOLD_RULES).set_index("annotator")
    assert out.loc["u1", "n_votes"] == 4
    assert out.loc["u1", "n_gold"] == 2
    assert out.loc["u1", "gold_accuracy"] == 0.5
    assert np.isnan(out.loc["u2", "gold_accuracy"])
    # Pair 1: a, a, a -> everyone agrees with the others' majority. Pair 2: similar, b, b:
    # u1's others say b, b (b); u2's others say similar, b (none); u3's the same.
    assert out.loc["u1", "majority_agreement"] == 0.5
    assert out.loc["u2", "majority_agreement"] == 1.0
    assert out.loc["u2", "n_majority"] == 1
    assert out.loc["u1", "median_response_ms"] == 2500
    assert out.loc["u3", "fast_share"] == 0.5
    assert out.loc["u2", "fast_share"] == 1.0
    assert out.loc["u1", "left_share"] == 2 / 3  # left, right (gold b), left; similar not
    assert out.loc["u1", "similar_share"] == 0.25
    assert out.loc["u3", "left_share"] == 0.5
    assert out.loc["u1", "excluded"]
    assert out.loc["u1", "reasons"] == "gold accuracy 0.50 < 0.7 (1/2 gold trials right)"
    assert out.loc["u2", "reasons"] == "median response 225 ms < 500 ms"
    assert not out.loc["u3", "excluded"]
    assert out.loc["u3", "reasons"] == ""


def test_side_bias_similar_overuse_and_majority_rules():
    always_left = [vote("left", p, "a") for p in range(20)]
    always_similar = [vote("sim", p, "similar") for p in range(20)]
    honest = [vote(f"h{n}", p, "a" if p % 2 else "b") for n in range(3) for p in range(20)]
    votes = pd.DataFrame(always_left + always_similar + honest)
    out = annotator_quality(votes, THRESHOLD_RULES).set_index("annotator")
    assert out.loc["left", "reasons"].startswith("side bias: 100% left (binomial p=1.9e-06")
    assert out.loc["sim", "reasons"] == "'similar' 100% of answers > 90%"
    assert not out.loc[["h0", "h1", "h2"], "excluded"].any()
    # Off by default, the majority rule excludes the two once set (they disagree with the
    # honest majority on half the pairs or all of them).
    strict = annotator_quality(
        votes, replace(THRESHOLD_RULES, min_majority_agreement=0.6)
    ).set_index("annotator")
    assert (
        "agreement with the others' majority 0.50 < 0.6 (20 votes)" in strict.loc["left", "reasons"]
    )
    assert "agreement with the others' majority 0.00 < 0.6" in strict.loc["sim", "reasons"]
    everything_off = replace(
        THRESHOLD_RULES,
        min_gold_accuracy=None,
        min_median_response_ms=None,
        side_bias_alpha=None,
        min_majority_agreement=None,
        max_similar_share=None,
    )
    assert not annotator_quality(votes, everything_off)["excluded"].any()
