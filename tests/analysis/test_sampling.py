"""Active sampling's expected information gain (analysis.sampling)."""

import numpy as np
import pytest

from analysis.sampling import information_gain, outcome_probabilities, pair_gains
from analysis.scaling import tie_count_matrices


def test_the_three_outcomes_are_a_distribution_with_ties_symmetric():
    p = outcome_probabilities(np.linspace(-4, 4, 9), tau=0.3)
    assert np.allclose(p.sum(axis=-1), 1.0)
    assert np.allclose(p[::-1, 0], p[:, 2])  # i better at d is j better at -d
    assert p[4, 1] == pytest.approx(1 - 2 * 0.3820885778, abs=1e-6)  # Phi(0.3) - Phi(-0.3)


def test_the_gain_is_the_mutual_information_of_outcome_and_scores():
    """Against a Monte Carlo estimate of I(y; d) = H(E p) - E H(p)."""
    rng = np.random.default_rng(0)
    scores = np.array([0.4, -0.1, -0.3])
    covariance = np.array([[0.30, 0.05, -0.1], [0.05, 0.2, 0.0], [-0.1, 0.0, 0.25]])
    tau = 0.25
    gains = information_gain(scores, covariance, np.array([0, 0, 1]), np.array([1, 2, 2]), tau)
    draws = rng.multivariate_normal(scores, covariance, size=400_000)
    for k, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
        p = outcome_probabilities(draws[:, i] - draws[:, j], tau)
        marginal = p.mean(axis=0)
        entropy = lambda q: -(q * np.log(np.clip(q, 1e-300, None))).sum(axis=-1)  # noqa: E731
        assert gains[k] == pytest.approx(entropy(marginal) - entropy(p).mean(), abs=2e-3)


def test_certain_scores_and_obvious_pairs_gain_little_and_open_close_pairs_most():
    scores = np.array([3.0, 0.0, 0.1])
    i, j = np.array([0, 1]), np.array([1, 2])
    wide = information_gain(scores, np.eye(3), i, j, 0.2)
    assert wide[1] > 2 * wide[0]  # close and uncertain beats obvious
    narrow = information_gain(scores, 1e-8 * np.eye(3), i, j, 0.2)
    assert np.all(narrow < 1e-6)  # nothing left to learn


def test_more_votes_of_the_same_split_leave_less_to_learn():
    """Four images, all six pairs: the same answers given twice over lower every pair's
    gain and the scene's posterior width."""
    i, j = np.array([0, 0, 0, 1, 1, 2]), np.array([1, 2, 3, 2, 3, 3])
    n_i = np.array([2, 3, 3, 3, 2, 2])
    n_j = np.array([1, 0, 0, 0, 1, 1])
    n_s = np.array([1, 0, 1, 0, 0, 1])
    gains, widths = [], []
    for times in (1, 2):
        wins, ties = tie_count_matrices(
            np.zeros(6, dtype=int), i, j, times * n_i, times * n_s, times * n_j, 1, 4
        )
        g, w = pair_gains(wins[0], ties[0], i, j)
        gains.append(g)
        widths.append(w)
    assert np.all(gains[1] < gains[0])
    assert 0 < widths[1] < widths[0]
