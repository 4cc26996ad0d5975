"""Per-scene scaling of paired comparisons: Thurstone Case V and Bradley-Terry, by MAP.

DESIGN.md section 4, as the A-FINE authors scale SRIQA-Bench: counts ``C[i, j]`` of "i
preferred to j", a similar vote adding 1 to both ``C[i, j]`` and ``C[j, i]``; maximise

    sum_ij C[i, j] log F(S_i - S_j) - sum_i S_i^2 / 2

with F the standard normal CDF (Thurstone Case V) or the logistic function
(Bradley-Terry). The objective is strictly concave (log F is concave, the Gaussian prior
strictly so), so the optimum is unique, and it has sum S = 0: the likelihood does not move
when every S shifts, so at the optimum the prior's gradient -S sums to zero. Designs
need not be complete; an image nobody compared stays at the prior's 0.

Problems of the same size are solved together: damped Newton on a stack of (k, k) count
matrices, so a study of thousands of scenes is a handful of array operations.
"""

from typing import Literal

import numpy as np
from scipy.special import expit, log_expit, log_ndtr

Model = Literal["thurstone", "bradley-terry"]
MODELS: tuple[Model, ...] = ("thurstone", "bradley-terry")

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def _link(model: Model, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log F(d) and its first and second derivatives."""
    if model == "thurstone":
        log_f = log_ndtr(d)
        ratio = np.exp(-0.5 * d * d - _LOG_SQRT_2PI - log_f)  # phi(d) / Phi(d), stable
        return log_f, ratio, -ratio * (d + ratio)
    if model == "bradley-terry":
        tail = expit(-d)
        return log_expit(d), tail, -tail * (1.0 - tail)
    raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")


def objective(counts: np.ndarray, scores: np.ndarray, model: Model = "thurstone") -> np.ndarray:
    """The MAP objective for each problem of a stack: counts (..., k, k), scores (..., k)."""
    log_f, _, _ = _link(model, scores[..., :, None] - scores[..., None, :])
    return (counts * log_f).sum(axis=(-2, -1)) - 0.5 * (scores**2).sum(axis=-1)


def gradient(counts: np.ndarray, scores: np.ndarray, model: Model = "thurstone") -> np.ndarray:
    _, first, _ = _link(model, scores[..., :, None] - scores[..., None, :])
    weighted = counts * first
    return weighted.sum(axis=-1) - weighted.sum(axis=-2) - scores


def fit(
    counts: np.ndarray, model: Model = "thurstone", *, tol: float = 1e-10, max_iter: int = 100
) -> np.ndarray:
    """The unique maximiser S of the objective for each count matrix of a stack.

    ``counts`` is (k, k) or (n, k, k) with ``counts[..., i, j]`` the (similar-augmented)
    number of times i was preferred to j; returns S of shape (k,) or (n, k).
    """
    counts = np.asarray(counts, dtype=np.float64)
    single = counts.ndim == 2
    stack = counts[None] if single else counts
    n, k = stack.shape[0], stack.shape[-1]
    scores = np.zeros((n, k))
    identity = np.eye(k)
    value = objective(stack, scores, model)
    for _ in range(max_iter):
        d = scores[:, :, None] - scores[:, None, :]
        _, first, second = _link(model, d)
        weighted = stack * first
        grad = weighted.sum(axis=2) - weighted.sum(axis=1) - scores
        if np.abs(grad).max(initial=0.0) < tol:
            break
        curvature = stack * -second
        curvature = curvature + curvature.transpose(0, 2, 1)
        # -Hessian: a weighted graph Laplacian plus the prior's identity, so positive definite.
        neg_hessian = curvature.sum(axis=2)[:, :, None] * identity - curvature + identity
        step = np.linalg.solve(neg_hessian, grad[..., None])[..., 0]
        scale = np.ones(n)
        for _ in range(60):  # halve the step where it would lower the objective
            candidate = scores + scale[:, None] * step
            new_value = objective(stack, candidate, model)
            worse = new_value < value - 1e-12 * np.abs(value)
            if not worse.any():
                break
            scale[worse] *= 0.5
        scores, value = candidate, new_value
    return scores[0] if single else scores


def scaled_0_100(scores: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Min-max scaling to 0..100 within each group (scene), 50 where a group is constant.

    ``groups`` holds integer codes 0..g-1 (one group when omitted)."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.zeros(len(scores), dtype=np.int64) if groups is None else np.asarray(groups)
    if len(scores) == 0:
        return scores.copy()
    n_groups = int(groups.max()) + 1
    low = np.full(n_groups, np.inf)
    high = np.full(n_groups, -np.inf)
    np.minimum.at(low, groups, scores)
    np.maximum.at(high, groups, scores)
    span = (high - low)[groups]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (scores - low[groups]) / span * 100.0
    return np.where(span > 0, scaled, 50.0)


def merge_ties(scores: np.ndarray, groups: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """Scores with ties made exact: within each group (scene), a score less than ``atol``
    above the previous one in sorted order takes the lowest value of its run.

    Images with the same votes have the same optimum, but the fit's last digits differ
    with summation order; rounding would still split a tie that straddles a rounding
    boundary, while merging by distance cannot."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    if len(scores) == 0:
        return scores.copy()
    order = np.lexsort((scores, groups))
    ordered, ordered_groups = scores[order], groups[order]
    starts = np.ones(len(scores), dtype=bool)
    starts[1:] = (ordered_groups[1:] != ordered_groups[:-1]) | (np.diff(ordered) >= atol)
    run = np.cumsum(starts) - 1
    merged = np.empty_like(scores)
    merged[order] = ordered[starts][run]
    return merged


def count_matrices(
    scene_index: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    n_i: np.ndarray,
    n_similar: np.ndarray,
    n_j: np.ndarray,
    n_scenes: int,
    k: int,
) -> np.ndarray:
    """Stack of (k, k) counts from per-pair vote counts: i preferred adds to C[i, j], j
    preferred to C[j, i], similar to both."""
    counts = np.zeros((n_scenes, k, k))
    np.add.at(counts, (scene_index, i, j), n_i + n_similar)
    np.add.at(counts, (scene_index, j, i), n_j + n_similar)
    return counts


def bootstrap(
    i: np.ndarray,
    j: np.ndarray,
    n_i: np.ndarray,
    n_similar: np.ndarray,
    n_j: np.ndarray,
    k: int,
    *,
    samples: int,
    rng: np.random.Generator,
    model: Model = "thurstone",
) -> np.ndarray:
    """Scores refitted on ``samples`` resamples of one scene's votes: (samples, k).

    Resampling the scene's n votes with replacement draws the counts of its (pair,
    answer) cells from a multinomial with the observed shares, which is what is drawn.
    """
    cells = np.concatenate([n_i, n_similar, n_j]).astype(np.float64)
    total = int(cells.sum())
    if total == 0:
        return np.zeros((samples, k))
    draws = rng.multinomial(total, cells / total, size=samples)
    m = len(i)
    counts = np.zeros((samples, k, k))
    rows = np.arange(samples)[:, None]
    np.add.at(counts, (rows, i[None, :], j[None, :]), draws[:, :m] + draws[:, m : 2 * m])
    np.add.at(counts, (rows, j[None, :], i[None, :]), draws[:, 2 * m :] + draws[:, m : 2 * m])
    return fit(counts, model)
