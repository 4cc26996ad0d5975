"""Active sampling's choice of comparisons: the expected information gain of one more vote
on each pair of a scene, under the posterior of the scene's scores.

The posterior is the Laplace approximation of the Thurstone model with a tie threshold
(``scaling.fit_ties`` with ``"thurstone-ties"``, ``scaling.tie_covariance``): a Gaussian
N(S, C) at the MAP, the model the report's tie intervals use, so a "similar" answer is one
of the three outcomes the gain counts (not a win both ways). For a pair (i, j) the
difference d = S_i - S_j is N(m, v) with m = S_i - S_j and v = C_ii + C_jj - 2 C_ij, and
one more vote y in {i, similar, j} has

    P(y = i | d) = Phi(d - tau),  P(y = j | d) = Phi(-d - tau),  P(similar | d) = the rest.

Its expected information gain about the scores is the mutual information of y and d (ASAP,
Mikhailiuk et al. 2020, maximise the expected KL divergence between the posteriors after
and before the vote, which is the same quantity in expectation):

    I(y; d) = H(E_d[P(y | d)]) - E_d[H(P(y | d))],

the expectations over d by Gauss-Hermite quadrature. It is high where the outcome is
uncertain because the scores are (a close pair the votes have not settled) and low both
for an obvious pair (the outcome is certain) and for a well-measured close pair (the
outcome is a coin whatever more votes say). Pure functions on arrays.
"""

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import entr, ndtr

from analysis.scaling import fit_ties, tie_covariance

TIE_MODEL = "thurstone-ties"
# Probabilists' Gauss-Hermite: E[f(Z)], Z ~ N(0, 1), as sum w f(x) with w normalised.
_NODES, _WEIGHTS = hermegauss(32)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def outcome_probabilities(d: np.ndarray, tau: float) -> np.ndarray:
    """P(i preferred), P(similar), P(j preferred) for score differences ``d``, stacked on a
    last axis of 3."""
    d = np.asarray(d, dtype=np.float64)
    better, worse = ndtr(d - tau), ndtr(-d - tau)
    return np.stack([better, np.clip(1.0 - better - worse, 0.0, 1.0), worse], axis=-1)


def information_gain(
    scores: np.ndarray, covariance: np.ndarray, i: np.ndarray, j: np.ndarray, tau: float
) -> np.ndarray:
    """The expected information gain (nats) of one more vote on each pair (i[k], j[k]),
    under the Gaussian posterior N(scores, covariance) and the tie threshold ``tau``."""
    i, j = np.asarray(i, dtype=np.intp), np.asarray(j, dtype=np.intp)
    mean = scores[i] - scores[j]
    variance = covariance[i, i] + covariance[j, j] - 2.0 * covariance[i, j]
    d = mean[:, None] + np.sqrt(np.clip(variance, 0.0, None))[:, None] * _NODES[None, :]
    p = outcome_probabilities(d, tau)  # (pairs, nodes, 3)
    marginal = np.einsum("pnk,n->pk", p, _WEIGHTS)
    conditional = np.einsum("pn,n->p", entr(p).sum(axis=-1), _WEIGHTS)
    return np.clip(entr(marginal).sum(axis=-1) - conditional, 0.0, None)


def scene_posterior(wins: np.ndarray, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A scene's posterior: MAP scores (k,), the Laplace covariance (k, k) of the scores
    centred as reported (tie parameter's uncertainty included) and tau, from its (k, k)
    wins and ties (``scaling.tie_count_matrices``)."""
    scores, tau = fit_ties(wins, ties, TIE_MODEL)
    covariance = tie_covariance(wins, ties, TIE_MODEL, scores, tau)
    return np.asarray(scores), np.asarray(covariance), float(tau)


def pair_gains(
    wins: np.ndarray, ties: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, float]:
    """Each pair's expected information gain and the mean posterior standard deviation
    of the scene's scores (its uncertainty, as the dashboard shows it)."""
    scores, covariance, tau = scene_posterior(wins, ties)
    gains = information_gain(scores, covariance, i, j, tau)
    return gains, float(np.sqrt(np.clip(np.diag(covariance), 0.0, None)).mean())
