"""Metric-vs-human agreement: the A-FINE accuracy rule, 2AFC, correlations, intervals."""

import numpy as np
import pytest
from scipy import stats

from analysis import agreement

LABELS = np.array(["a", "b", "similar", "a", "none", "b"], dtype=object)


def test_orientation_higher_and_lower_better():
    """Positive means "a is better": psnr-like (higher better) keeps the sign, a distance
    (lower better) flips it."""
    assert agreement.oriented_difference(30.0, 25.0, False) == 5.0
    assert agreement.oriented_difference(0.1, 0.3, True) == pytest.approx(0.2)
    both = agreement.oriented_difference(
        np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]), np.array([[False, True]])
    )
    assert both.tolist() == [[-1.0, 1.0]]


def test_accuracy_rule_with_delta_zero():
    """Correct: the metric prefers the human's side; with delta 0 a similar label is right
    only on an exact metric tie. Pairs without a label do not count."""
    difference = np.array([0.5, -2.0, 0.0, -0.1, 3.0, 0.0])
    right = agreement.correct(difference, LABELS, 0.0)
    assert right[:4].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert np.isnan(right[4])
    assert right[5] == 0.0  # a tie is not "b"
    assert agreement.correct(np.array([0.1]), np.array(["similar"], dtype=object))[0] == 0.0


def test_accuracy_rule_with_a_tie_band():
    """Within delta (inclusive) counts as similar; beyond it, as the side."""
    difference = np.array([0.5, -2.0, 0.3, -0.1, 3.0, -0.3])
    right = agreement.correct(difference, LABELS, 0.3)
    # a by 0.5 > 0.3: right; b by 2: right; |0.3| <= 0.3 and similar: right;
    # a but -0.1 (within the band): wrong; none: not counted; b but only -0.3: wrong.
    assert right[[0, 1, 2, 3, 5]].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert np.isnan(right[4])
    per_metric = agreement.correct(
        np.array([[0.2, 0.2]]), np.array([["a"]], dtype=object), np.array([[0.0, 0.5]])
    )
    assert per_metric.tolist() == [[1.0, 0.0]]


def test_missing_scores_do_not_count():
    right = agreement.correct(np.array([np.nan, 1.0]), np.array(["a", "a"], dtype=object))
    assert np.isnan(right[0])
    assert right[1] == 1.0


def test_2afc_counts_clear_preferences_only_and_ties_are_wrong():
    difference = np.array([0.5, -2.0, 0.0, 0.0, 3.0, 1.0])
    right = agreement.correct_2afc(difference, LABELS)
    assert right[[0, 1, 3, 5]].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.isnan(right[[2, 4]]).all()


def test_scene_correlations_equal_scipy():
    """Per scene and metric, SRCC/KRCC/PLCC equal scipy.stats (ties included); scenes
    under 3 images, a missing score or a constant input give NaN."""
    rng = np.random.default_rng(5)
    sizes = [5, 7, 5, 2, 9, 7]
    scene = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(scene)
    human = rng.normal(size=len(scene))
    values = np.column_stack([human + rng.normal(size=len(scene)),
                              np.round(rng.normal(size=len(scene)))])  # fmt: skip
    values[scene == 5, 1] = 1.0  # constant
    values[np.flatnonzero(scene == 4)[0], 0] = np.nan  # missing
    out = agreement.scene_correlations(scene, values, human)
    for s in range(len(sizes)):
        rows = scene == s
        for m in range(2):
            x, y = values[rows, m], human[rows]
            if sizes[s] < 3 or np.isnan(x).any() or np.ptp(x) == 0:
                assert np.isnan([out[k][s, m] for k in ("srcc", "krcc", "plcc")]).all()
                continue
            assert out["srcc"][s, m] == pytest.approx(stats.spearmanr(x, y).statistic)
            assert out["krcc"][s, m] == pytest.approx(stats.kendalltau(x, y).statistic)
            assert out["plcc"][s, m] == pytest.approx(stats.pearsonr(x, y).statistic)


def test_accuracy_intervals_match_resampling_pairs():
    """The binomial draw is the resampling of pairs: its interval matches one computed by
    resampling a 0/1 vector, and it brackets the accuracy."""
    rng = np.random.default_rng(0)
    right = np.r_[np.ones(70), np.zeros(30)]
    low, high = agreement.bootstrap_accuracy_ci(
        np.array([70, 0]), np.array([100, 0]), samples=20000, rng=rng
    )
    picks = rng.integers(0, 100, size=(20000, 100))
    direct = np.percentile(right[picks].mean(axis=1), [2.5, 97.5])
    assert low[0] == pytest.approx(direct[0], abs=0.011)
    assert high[0] == pytest.approx(direct[1], abs=0.011)
    assert low[0] < 0.7 < high[0]
    assert np.isnan(low[1])
    assert np.isnan(high[1])


def test_paired_bootstrap_between_two_metrics():
    """x is right on 30 pairs where y is wrong, y on 5 where x is wrong, of 100: the
    difference is 0.25 and clearly significant; a metric against itself is not."""
    rng = np.random.default_rng(1)
    x = np.r_[np.ones(30), np.zeros(5), np.ones(40), np.zeros(25), [np.nan]]
    y = np.r_[np.zeros(30), np.ones(5), np.ones(40), np.zeros(25), [1.0]]
    test = agreement.paired_bootstrap(x, y, samples=5000, rng=rng)
    assert test["n_pairs"] == 100
    assert test["difference"] == pytest.approx(0.25)
    assert test["ci_low"] > 0.1
    assert test["ci_high"] < 0.4
    assert test["p_value"] < 0.001
    same = agreement.paired_bootstrap(x, x, samples=500, rng=rng)
    assert same["difference"] == 0
    assert same["p_value"] == 1.0


def test_mean_intervals_per_column_resampling_rows():
    """Each column's interval brackets its mean (NaN rows dropped), matches resampling the
    column alone, and an all-NaN column has none."""
    rng = np.random.default_rng(2)
    values = np.column_stack([rng.normal(0.5, 0.2, 60), np.full(60, np.nan)])
    values[:10, 0] = np.nan
    low, high = agreement.bootstrap_mean_ci(values, samples=20000, rng=rng)
    column = values[10:, 0]
    picks = rng.integers(0, 50, size=(20000, 50))
    direct = np.percentile(column[picks].mean(axis=1), [2.5, 97.5])
    assert low[0] < column.mean() < high[0]
    assert [low[0], high[0]] == pytest.approx(direct, abs=0.01)
    assert np.isnan(low[1])
    assert np.isnan(high[1])
