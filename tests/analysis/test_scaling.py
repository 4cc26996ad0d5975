"""Thurstone Case V and Bradley-Terry MAP scaling (DESIGN.md section 4)."""

import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit
from scipy.stats import norm

from analysis import scaling


def random_counts(rng: np.random.Generator, k: int, density: float = 1.0) -> np.ndarray:
    counts = rng.integers(0, 6, size=(k, k)).astype(float)
    counts *= rng.random((k, k)) < density
    np.fill_diagonal(counts, 0.0)
    return counts


def scipy_fit(counts: np.ndarray, cdf) -> np.ndarray:
    """An independent fit: scipy's optimiser on the objective, with sum S = 0 imposed."""
    k = len(counts)

    def negative(free: np.ndarray) -> float:
        s = np.append(free, -free.sum())
        d = s[:, None] - s[None, :]
        return -(np.sum(counts * np.log(cdf(d))) - 0.5 * np.sum(s**2))

    found = optimize.minimize(negative, np.zeros(k - 1), method="BFGS", options={"gtol": 1e-9})
    return np.append(found.x, -found.x.sum())


def test_two_images_with_equal_wins_or_only_similar_votes_score_zero():
    """A similar vote adds 1 to both directions, so it weighs like one win each way."""
    assert scaling.fit(np.array([[0.0, 3.0], [3.0, 0.0]])) == pytest.approx([0.0, 0.0])
    similar_only = scaling.count_matrices(
        np.array([0]), np.array([0]), np.array([1]), np.array([0]), np.array([4]),
        np.array([0]), 1, 2,
    )  # fmt: skip
    assert similar_only[0].tolist() == [[0.0, 4.0], [4.0, 0.0]]
    assert scaling.fit(similar_only[0]) == pytest.approx([0.0, 0.0])


def test_two_images_hand_computed():
    """Image 0 preferred 3 times, image 1 once: S = (s, -s) where the derivative of
    3 log Phi(2s) + log Phi(-2s) - s^2 vanishes."""
    s0, s1 = scaling.fit(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert s0 == pytest.approx(-s1)
    d = 2 * s0
    derivative = 2 * 3 * norm.pdf(d) / norm.cdf(d) - 2 * 1 * norm.pdf(d) / norm.cdf(-d) - 2 * s0
    assert derivative == pytest.approx(0.0, abs=1e-9)
    assert 0 < s0 < 1


@pytest.mark.parametrize("model", ["thurstone", "bradley-terry"])
def test_the_fit_is_the_unique_optimum(model):
    """The gradient vanishes at the solution, the scores sum to zero, and a direct scipy
    optimisation of the same objective finds the same point (random, incomplete cases)."""
    rng = np.random.default_rng(3)
    link = norm.cdf if model == "thurstone" else expit
    for k, density in [(2, 1.0), (5, 1.0), (8, 0.5), (11, 0.3)]:
        counts = random_counts(rng, k, density)
        fitted = scaling.fit(counts, model)
        assert np.abs(scaling.gradient(counts, fitted, model)).max() < 1e-8
        assert fitted.sum() == pytest.approx(0.0, abs=1e-9)
        assert fitted == pytest.approx(scipy_fit(counts, link), abs=1e-5)
        # Any other point is worse.
        for _ in range(5):
            other = fitted + rng.normal(scale=0.05, size=k)
            assert scaling.objective(counts, other, model) < scaling.objective(
                counts, fitted, model
            )


def test_stacks_of_problems_equal_one_at_a_time():
    rng = np.random.default_rng(4)
    stack = np.stack([random_counts(rng, 6) for _ in range(7)])
    together = scaling.fit(stack)
    for counts, fitted in zip(stack, together, strict=True):
        assert fitted == pytest.approx(scaling.fit(counts), abs=1e-9)


def test_incomplete_designs_and_an_image_nobody_compared():
    """A chain 0 > 1 > 2 (never 0 against 2) orders all three; an uncompared image stays
    at the prior's 0."""
    counts = np.zeros((4, 4))
    counts[0, 1], counts[1, 2] = 5, 5
    fitted = scaling.fit(counts)
    assert fitted[0] > fitted[1] > fitted[2]
    assert fitted[3] == pytest.approx(0.0, abs=1e-12)
    assert fitted.sum() == pytest.approx(0.0, abs=1e-9)


def test_scaled_0_100_per_scene():
    assert scaling.scaled_0_100(np.array([-1.0, 0.0, 3.0])) == pytest.approx([0.0, 25.0, 100.0])
    assert scaling.scaled_0_100(np.array([0.0, 0.0])) == pytest.approx([50.0, 50.0])
    two_scenes = scaling.scaled_0_100(
        np.array([2.0, 1.0, 5.0, 7.0, 4.0]), np.array([0, 0, 1, 1, 0])
    )
    assert two_scenes == pytest.approx([100 / 3, 0.0, 0.0, 100.0, 100.0])


def test_merge_ties_joins_scores_closer_than_the_tolerance_within_a_scene():
    """Two scores a hair apart on either side of a rounding boundary are one tie;
    rounding would split them, merging by distance does not."""
    below, above = 1.5e-10 - 5e-14, 1.5e-10 + 5e-14
    assert np.round(below, 10) != np.round(above, 10)
    scores = np.array([above, 0.7, below, 0.7 + 1e-6, above, 2.0])
    groups = np.array([0, 0, 0, 0, 1, 1])
    merged = scaling.merge_ties(scores, groups)
    assert merged.tolist() == [below, 0.7, below, 0.7 + 1e-6, above, 2.0]
    assert scaling.merge_ties(np.array([]), np.array([], dtype=int)).size == 0


def test_images_with_the_same_votes_fit_to_one_score_once_merged():
    """Images 1 and 3 each beat image 0 twice and lost once to image 2: one optimum."""
    counts = np.zeros((4, 4))
    counts[1, 0] = counts[3, 0] = 2.0
    counts[2, 1] = counts[2, 3] = 1.0
    counts[0, 2] = 0.5
    fitted = scaling.fit(counts)
    assert fitted[1] == pytest.approx(fitted[3], abs=1e-12)
    merged = scaling.merge_ties(fitted, np.zeros(4, dtype=int))
    assert merged[1] == merged[3]
    assert len(set(merged.tolist())) == 3


def test_bootstrap_resamples_the_votes():
    """Replicates vary around the fit; with one answer only, every replicate is the fit."""
    i, j = np.array([0, 1, 0]), np.array([1, 2, 2])
    n_i, n_s, n_j = np.array([7, 6, 9]), np.array([1, 2, 0]), np.array([2, 2, 1])
    rng = np.random.default_rng(0)
    draws = scaling.bootstrap(i, j, n_i, n_s, n_j, 3, samples=400, rng=rng)
    assert draws.shape == (400, 3)
    point = scaling.fit(scaling.count_matrices(np.zeros(3, int), i, j, n_i, n_s, n_j, 1, 3)[0])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    assert (low < point).all()
    assert (point < high).all()
    assert draws.std(axis=0).min() > 0.05
    fixed = scaling.bootstrap(
        np.array([0]), np.array([1]), np.array([5]), np.array([0]), np.array([0]), 2,
        samples=10, rng=rng,
    )  # fmt: skip
    assert fixed == pytest.approx(np.tile(scaling.fit(np.array([[0, 5.0], [0, 0]])), (10, 1)))
