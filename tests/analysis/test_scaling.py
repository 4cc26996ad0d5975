"""Thurstone Case V and Bradley-Terry MAP scaling (docs/design.md, "Protocols")."""

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


def negative_log_posterior_ties(free: np.ndarray, scenes: list, model: str) -> float:
    """Minus the tie model's log posterior written out directly, for ``scenes`` (wins,
    ties) of any sizes sharing the tie parameter: ``free`` holds each scene's first k - 1
    scores (the last is minus their sum, sum S = 0 imposed), then log nu or tau."""
    total, offset, t = 0.0, 0, free[-1]
    if model == "davidson":
        total -= -0.5 * t**2 / scaling.DAVIDSON_PRIOR_SD**2
    else:
        if t <= 0:
            return 1e12
        total -= np.log(t) - scaling.TAU_PRIOR_RATE * t
    for wins, ties in scenes:
        k = len(wins)
        pair_ties = np.triu(ties + ties.T, 1)
        s = free[offset : offset + k - 1]
        s = np.append(s, -s.sum())
        offset += k - 1
        d = s[:, None] - s[None, :]
        if model == "davidson":
            pi = np.exp(s)
            both = np.sqrt(pi[:, None] * pi[None, :])
            den = pi[:, None] + pi[None, :] + np.exp(t) * both
            win, tie = pi[:, None] / den, np.exp(t) * both / den
        else:
            win, tie = norm.cdf(d - t), norm.cdf(d + t) - norm.cdf(d - t)
        with np.errstate(divide="ignore"):
            log_tie = np.where(pair_ties > 0, np.log(tie), 0.0)
        total -= np.sum(wins * np.log(win)) + np.sum(pair_ties * log_tie) - 0.5 * s @ s
    return total


def scipy_fit_ties(wins: np.ndarray, ties: np.ndarray, model: str) -> tuple[np.ndarray, float]:
    """An independent joint fit of S and the tie parameter: scipy's optimiser on the
    objective written out directly (sum S = 0 imposed), the priors as documented."""
    k = len(wins)

    def negative(free: np.ndarray) -> float:
        return negative_log_posterior_ties(free, [(wins, ties)], model)

    start = np.append(np.zeros(k - 1), 0.0 if model == "davidson" else 0.5)
    found = optimize.minimize(negative, start, method="BFGS", options={"gtol": 1e-9})
    scores = np.append(found.x[:-1], -found.x[:-2].sum() - found.x[-2] if k > 1 else 0.0)
    tie = np.exp(found.x[-1]) if model == "davidson" else found.x[-1]
    return scores, tie


@pytest.mark.parametrize("model", scaling.TIE_MODELS)
def test_the_tie_models_find_the_joint_optimum(model):
    """S and the tie parameter together: the same point as scipy's optimiser on the
    objective written out independently (random, incomplete scenes)."""
    rng = np.random.default_rng(5)
    for k, density in [(2, 1.0), (5, 1.0), (8, 0.5)]:
        wins = random_counts(rng, k, density)
        ties = np.triu(rng.integers(0, 3, size=(k, k)).astype(float), 1)
        fitted, tie = scaling.fit_ties(wins, ties, model)
        expected, expected_tie = scipy_fit_ties(wins, ties, model)
        assert fitted == pytest.approx(expected, abs=1e-5)
        assert tie == pytest.approx(expected_tie, rel=1e-4)
        assert fitted.sum() == pytest.approx(0.0, abs=1e-9)
        # Where a similar vote is recorded (either triangle) does not matter.
        assert scaling.fit_ties(wins, ties.T, model)[0] == pytest.approx(fitted, abs=1e-12)
        # Held at its estimate, the tie parameter gives the same scores.
        held = scaling.fit_ties(wins, ties, model, tie=tie)[0]
        assert held == pytest.approx(fitted, abs=1e-8)


@pytest.mark.parametrize("model", scaling.TIE_MODELS)
def test_the_tie_models_derivatives_equal_finite_differences(model):
    rng = np.random.default_rng(6)
    k = 5
    wins = random_counts(rng, k)[None]
    ties = np.triu(rng.integers(0, 3, size=(k, k)).astype(float), 1)[None]
    pairs = scaling._Pairs.of(wins, ties)
    scores, t, h = rng.normal(size=(1, k)), 0.4, 1e-6
    _, grad, neg_hessian, grad_t, curve_t, mixed = scaling._tie_terms(model, pairs, scores, t)

    def value(s, t):
        return scaling._tie_terms(model, pairs, s, t, derivatives=False)[0]

    def grad_at(s, t):
        return scaling._tie_terms(model, pairs, s, t)[1][0]

    for i in range(k):
        e = np.zeros((1, k))
        e[0, i] = h
        assert grad[0, i] == pytest.approx(
            (value(scores + e, t) - value(scores - e, t)) / (2 * h), abs=1e-6
        )
        assert -neg_hessian[0, i] == pytest.approx(
            (grad_at(scores + e, t) - grad_at(scores - e, t)) / (2 * h), abs=1e-5
        )
    assert grad_t[0] == pytest.approx(
        (value(scores, t + h) - value(scores, t - h)) / (2 * h), abs=1e-6
    )
    shifted = scaling._tie_terms(model, pairs, scores, t + h)
    lowered = scaling._tie_terms(model, pairs, scores, t - h)
    assert -curve_t[0] == pytest.approx((shifted[3][0] - lowered[3][0]) / (2 * h), abs=1e-5)
    assert -mixed[0] == pytest.approx((shifted[1][0] - lowered[1][0]) / (2 * h), abs=1e-5)


def test_the_tie_parameter_is_one_for_every_scene_of_every_size():
    """Scenes of 3 and of 4 images fitted together share one tau: the scores equal each
    scene's fit with tau held there, and the shared tau is the joint optimum (scipy on
    the scenes side by side as one block-diagonal problem)."""
    rng = np.random.default_rng(7)
    small = [random_counts(rng, 3) for _ in range(2)]
    large = [random_counts(rng, 4)]
    small_ties = [np.triu(rng.integers(0, 3, (3, 3)).astype(float), 1) for _ in range(2)]
    large_ties = [np.triu(rng.integers(0, 3, (4, 4)).astype(float), 1)]
    (fit_small, fit_large), tau = scaling.fit_ties(
        [np.stack(small), np.stack(large)],
        [np.stack(small_ties), np.stack(large_ties)],
        "thurstone-ties",
    )
    for wins, ties, fitted in zip(
        small + large, small_ties + large_ties, [*fit_small, *fit_large], strict=True
    ):
        alone = scaling.fit_ties(wins, ties, "thurstone-ties", tie=tau)[0]
        assert fitted == pytest.approx(alone, abs=1e-8)
    # A block-diagonal problem is the three scenes side by side, with one tau.
    block_w, block_t = np.zeros((10, 10)), np.zeros((10, 10))
    for offset, wins, ties in zip((0, 3, 6), small + large, small_ties + large_ties, strict=True):
        n = len(wins)
        block_w[offset : offset + n, offset : offset + n] = wins
        block_t[offset : offset + n, offset : offset + n] = ties
    joint, joint_tau = scaling.fit_ties(block_w, block_t, "thurstone-ties")
    # Sum S = 0 only overall in the block problem: each scene's mean is set by the prior
    # alone, which makes it 0 too, so the scores agree.
    assert tau == pytest.approx(joint_tau, rel=1e-8)
    assert np.concatenate([*fit_small, *fit_large]) == pytest.approx(joint, abs=1e-8)


def test_without_similar_votes_the_tie_threshold_vanishes():
    """No similar vote: tau goes to (nearly) 0 (the prior keeps it positive, at about
    one over the number of votes) and the scores are Case V's."""
    rng = np.random.default_rng(8)
    wins = random_counts(rng, 6) * 20
    fitted, tau = scaling.fit_ties(wins, np.zeros_like(wins), "thurstone-ties")
    assert 0 < tau < 2 / wins.sum()
    assert fitted == pytest.approx(scaling.fit(wins), abs=5e-3)


def test_tie_models_reject_bad_input():
    wins = np.zeros((3, 3))
    with pytest.raises(ValueError, match="unknown tie model 'elo'"):
        scaling.fit_ties(wins, wins, "elo")
    with pytest.raises(ValueError, match="tau must be positive"):
        scaling.fit_ties(wins, wins, "thurstone-ties", tie=0.0)
    with pytest.raises(ValueError, match="must not be negative"):
        scaling.fit_ties(wins - 1, wins, "davidson")
    with pytest.raises(ValueError, match="must be equal"):
        scaling.fit_ties(wins, np.zeros((2, 2)), "davidson")
    with pytest.raises(ValueError, match="needs the tie parameter"):
        scaling.bootstrap(
            np.array([0]), np.array([1]), np.array([5]), np.array([1]), np.array([0]), 2,
            samples=10, rng=np.random.default_rng(0), model="davidson",
        )  # fmt: skip


def test_tie_bootstrap_resamples_the_votes_with_the_tie_parameter_held():
    i, j = np.array([0, 1, 0]), np.array([1, 2, 2])
    n_i, n_s, n_j = np.array([7, 6, 9]), np.array([3, 2, 1]), np.array([2, 2, 1])
    wins, ties = scaling.tie_count_matrices(np.zeros(3, int), i, j, n_i, n_s, n_j, 1, 3)
    for model in scaling.TIE_MODELS:
        point, tie = scaling.fit_ties(wins[0], ties[0], model)
        draws = scaling.bootstrap(
            i, j, n_i, n_s, n_j, 3, samples=300, rng=np.random.default_rng(0), model=model,
            tie=tie,
        )  # fmt: skip
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        assert (low < point).all()
        assert (point < high).all()
        assert draws.std(axis=0).min() > 0.05


def numerical_hessian(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central second differences of f at x."""
    n = len(x)
    hessian = np.empty((n, n))
    steps = np.eye(n) * h
    for a in range(n):
        for b in range(n):
            hessian[a, b] = (
                f(x + steps[a] + steps[b])
                - f(x + steps[a] - steps[b])
                - f(x - steps[a] + steps[b])
                + f(x - steps[a] - steps[b])
            ) / (4 * h * h)
    return hessian


@pytest.mark.parametrize("model", scaling.TIE_MODELS)
def test_the_tie_models_covariance_is_the_inverse_hessian_of_the_posterior(model):
    """Laplace at the joint MAP: the covariance of each scene's scores equals the inverse
    of the numerical Hessian of the log posterior written out independently (scenes of 3
    and 4 images sharing the tie parameter, each with sum S = 0 imposed), mapped back to
    the k scores; with the tie parameter held, the inverse of the scores' block alone."""
    rng = np.random.default_rng(11)
    small = [random_counts(rng, 3) for _ in range(2)]
    large = [random_counts(rng, 4)]
    small_ties = [np.triu(rng.integers(0, 3, (3, 3)).astype(float), 1) for _ in range(2)]
    large_ties = [np.triu(rng.integers(0, 3, (4, 4)).astype(float), 1)]
    wins, ties = [np.stack(small), np.stack(large)], [np.stack(small_ties), np.stack(large_ties)]
    (fit_small, fit_large), tie = scaling.fit_ties(wins, ties, model)
    covariance = scaling.tie_covariance(wins, ties, model, [fit_small, fit_large], tie)
    scenes = list(zip(small + large, small_ties + large_ties, strict=True))
    at = np.concatenate([s[:-1] for s in [*fit_small, *fit_large]])
    at = np.append(at, np.log(tie) if model == "davidson" else tie)
    hessian = numerical_hessian(lambda x: negative_log_posterior_ties(x, scenes, model), at)
    expected = np.linalg.inv(hessian)
    held = np.linalg.inv(hessian[:-1, :-1])
    got = [*covariance[0], *covariance[1]]
    got_held = scaling.tie_covariance(wins, ties, model, [fit_small, fit_large], tie, joint=False)
    got_held = [*got_held[0], *got_held[1]]
    offset = 0
    for n, scores in enumerate([*fit_small, *fit_large]):
        k = len(scores)
        to_scores = np.vstack([np.eye(k - 1), -np.ones(k - 1)])  # free -> S, sum S = 0
        block = slice(offset, offset + k - 1)
        offset += k - 1
        assert got[n] == pytest.approx(to_scores @ expected[block, block] @ to_scores.T, abs=1e-5)
        assert got_held[n] == pytest.approx(to_scores @ held[block, block] @ to_scores.T, abs=1e-5)
        assert got[n].sum(axis=1) == pytest.approx(0.0, abs=1e-12)
    # The shared parameter's uncertainty widens every scene's intervals a little.
    assert all((np.diag(a) > np.diag(b)).all() for a, b in zip(got, got_held, strict=True))


def test_tie_intervals_are_the_map_plus_minus_z_sd():
    i, j = np.array([0, 1, 0]), np.array([1, 2, 2])
    n_i, n_s, n_j = np.array([7, 6, 9]), np.array([3, 2, 1]), np.array([2, 2, 1])
    wins, ties = scaling.tie_count_matrices(np.zeros(3, int), i, j, n_i, n_s, n_j, 1, 3)
    scores, tau = scaling.fit_ties(wins[0], ties[0], "thurstone-ties")
    sd = np.sqrt(np.diag(scaling.tie_covariance(wins[0], ties[0], "thurstone-ties", scores, tau)))
    for level in (0.95, 0.5):
        low, high = scaling.tie_intervals(
            wins[0], ties[0], "thurstone-ties", scores, tau, level=level
        )
        z = norm.ppf(0.5 + level / 2)
        assert low == pytest.approx(scores - z * sd, abs=1e-12)
        assert high == pytest.approx(scores + z * sd, abs=1e-12)
    with pytest.raises(ValueError, match="level must be between 0 and 1, got 95"):
        scaling.tie_intervals(wins[0], ties[0], "thurstone-ties", scores, tau, level=95)
    with pytest.raises(ValueError, match="unknown tie model 'elo'"):
        scaling.tie_covariance(wins[0], ties[0], "elo", scores, tau)
