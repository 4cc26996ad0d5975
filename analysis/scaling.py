"""Per-scene scaling of paired comparisons: Thurstone Case V and Bradley-Terry, by MAP.

docs/design.md ("Protocols"), as the A-FINE authors scale SRIQA-Bench: counts ``C[i, j]`` of "i
preferred to j", a similar vote adding 1 to both ``C[i, j]`` and ``C[j, i]``; maximise

    sum_ij C[i, j] log F(S_i - S_j) - sum_i S_i^2 / 2

with F the standard normal CDF (Thurstone Case V) or the logistic function
(Bradley-Terry). The objective is strictly concave (log F is concave, the Gaussian prior
strictly so), so the optimum is unique, and it has sum S = 0: the likelihood does not move
when every S shifts, so at the optimum the prior's gradient -S sums to zero. Designs
need not be complete; an image nobody compared stays at the prior's 0.

Problems of the same size are solved together: damped Newton on a stack of (k, k) count
matrices, so a study of thousands of scenes is a handful of array operations.

Counting a similar vote as a win both ways pulls the scores together, and their intervals
then cover the latent values less often the more "similar" is answered. ``fit_ties`` fits
two models that take a similar vote as a tie instead (the wins ``W[i, j]`` without the
similar votes, the ties ``T`` of each pair once), with the same N(0, 1) prior on S:

- Davidson's extension of Bradley-Terry: with pi = exp(S),
  P(i > j) = pi_i / (pi_i + pi_j + nu sqrt(pi_i pi_j)), P(tie) = nu sqrt(pi_i pi_j) / (...);
- Thurstone with a tie threshold (Glenn and David): P(i > j) = Phi(S_i - S_j - tau),
  P(tie) = Phi(S_i - S_j + tau) - Phi(S_i - S_j - tau); S on the Case V scale (unit
  variance of a perceived difference), the same units as ``fit(counts, "thurstone")``.

The tie parameter (nu > 0 or tau > 0) is one for the whole study, fitted jointly with
every scene's S: how readily people say "similar" is a property of the annotators and
the instructions, and a scene of a few pairs could not estimate its own. It has a weak
prior that keeps it inside its range when nobody says "similar": log nu ~ N(0, 2^2), tau ~
Gamma(2, rate 2). The objective is jointly concave in (S, log nu) and in (S, tau) (the log
of a normal probability of an interval whose ends are linear in the parameters is concave,
by Prekopa), so the optimum is unique; Newton on the joint vector solves the scenes'
blocks together and the shared parameter by its Schur complement.

The tie models' 95% intervals (``tie_intervals``) are the Laplace approximation at that
optimum: S_i +- 1.96 sd_i, the covariance the inverse of minus the log posterior's Hessian
(the tie parameter's uncertainty included), centred per scene like S. On SRIQA-Bench's
scenes they cover the latent value about 95% of the time at 0 to 20% "similar"; a
percentile bootstrap of the tie model (``bootstrap``, the A-FINE scale's method) covers
only 92-93%, with or without ties (docs/statistics.md; ``bench/tie_coverage.py``).
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit, log_ndtr, ndtri

Model = Literal["thurstone", "bradley-terry"]
MODELS: tuple[Model, ...] = ("thurstone", "bradley-terry")
TieModel = Literal["davidson", "thurstone-ties"]
TIE_MODELS: tuple[TieModel, ...] = ("davidson", "thurstone-ties")
# The tie parameter's name in each model (reported in its natural units).
TIE_PARAMETER = {"davidson": "nu", "thurstone-ties": "tau"}
# The priors on the tie parameter: log nu ~ N(0, DAVIDSON_PRIOR_SD^2); tau ~ Gamma(2, rate 2).
DAVIDSON_PRIOR_SD = 2.0
TAU_PRIOR_RATE = 2.0

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
    counts: np.ndarray,
    model: Model = "thurstone",
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """The unique maximiser S of the objective for each count matrix of a stack.

    ``counts`` is (k, k) or (n, k, k) with ``counts[..., i, j]`` the (similar-augmented)
    number of times i was preferred to j; returns S of shape (k,) or (n, k). ``initial``
    (the shape returned) starts Newton there instead of at 0: the live report's warm start.
    """
    counts = np.asarray(counts, dtype=np.float64)
    single = counts.ndim == 2
    stack = counts[None] if single else counts
    n, k = stack.shape[0], stack.shape[-1]
    scores = np.zeros((n, k)) if initial is None else np.array(initial, float).reshape(n, k)
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
    preferred to C[j, i], similar to both (the wins plus the ties both ways)."""
    wins, ties = tie_count_matrices(scene_index, i, j, n_i, n_similar, n_j, n_scenes, k)
    return wins + ties + ties.swapaxes(-1, -2)


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
    model: Model | TieModel = "thurstone",
    tie: float | None = None,
) -> np.ndarray:
    """Scores refitted on ``samples`` resamples of one scene's votes: (samples, k).

    Resampling the scene's n votes with replacement draws the counts of its (pair,
    answer) cells from a multinomial with the observed shares, which is what is drawn.
    A tie model (``TIE_MODELS``) is refitted with its tie parameter held at ``tie``, the
    study's estimate (one scene's resample says little about it); the report gives the
    tie models ``tie_intervals`` instead, which cover better.
    """
    if model in TIE_MODELS and tie is None:
        raise ValueError(f"bootstrap of {model} needs the tie parameter (tie=...)")
    cells = np.concatenate([n_i, n_similar, n_j]).astype(np.float64)
    total = int(cells.sum())
    if total == 0:
        return np.zeros((samples, k))
    draws = rng.multinomial(total, cells / total, size=samples)
    m = len(i)
    rows = np.arange(samples)[:, None]
    if model in TIE_MODELS:
        wins, ties = np.zeros((samples, k, k)), np.zeros((samples, k, k))
        np.add.at(wins, (rows, i[None, :], j[None, :]), draws[:, :m])
        np.add.at(wins, (rows, j[None, :], i[None, :]), draws[:, 2 * m :])
        np.add.at(ties, (rows, i[None, :], j[None, :]), draws[:, m : 2 * m])
        observed = tie_count_matrices(np.zeros(m, int), i, j, n_i, n_similar, n_j, 1, k)
        point = fit_ties(*observed, model, tie=tie)[0]  # where the refits start
        return fit_ties(wins, ties, model, tie=tie, start=np.repeat(point, samples, axis=0))[0]
    counts = np.zeros((samples, k, k))
    np.add.at(counts, (rows, i[None, :], j[None, :]), draws[:, :m] + draws[:, m : 2 * m])
    np.add.at(counts, (rows, j[None, :], i[None, :]), draws[:, 2 * m :] + draws[:, m : 2 * m])
    return fit(counts, model)


def _tie_links(
    model: TieModel, d: np.ndarray, t: float, derivatives: bool = True, kind: str = "win"
) -> tuple:
    """log p of a win of i over j (``kind`` "win") or of a tie ("tie") as a function of
    d = S_i - S_j and the working tie parameter t (log nu, or tau), and (``derivatives``)
    its derivatives: (f, f_d, f_dd, f_t, f_tt, f_dt)."""
    if model == "davidson":
        # Z = e^(d/2) + e^(-d/2) + e^t; win: d/2 - log Z; tie: t - log Z.
        log_z = np.logaddexp(np.logaddexp(0.5 * d, -0.5 * d), t)
        f = 0.5 * d - log_z if kind == "win" else t - log_z
        if not derivatives:
            return (f,)
        plus, minus = np.exp(0.5 * d - log_z), np.exp(-0.5 * d - log_z)
        q = np.exp(t - log_z)
        z_d = 0.5 * (plus - minus)
        z_dd = 0.25 * (plus + minus) - z_d * z_d
        z_tt = q - q * q
        z_dt = -q * z_d
        if kind == "win":
            return f, 0.5 - z_d, -z_dd, -q, -z_tt, -z_dt
        return f, -z_d, -z_dd, 1.0 - q, -z_tt, -z_dt
    if model == "thurstone-ties":
        if kind == "win":
            x = d - t
            log_f = log_ndtr(x)
            if not derivatives:
                return (log_f,)
            ratio = np.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_f)
            curve = -ratio * (x + ratio)
            return log_f, ratio, curve, -ratio, curve, -curve
        # The tie's probability is even in d: computed at a = -|d| (both ends in the lower
        # tail, where log_ndtr is exact), then d's sign put back on the odd derivatives.
        sign, a = np.sign(d), -np.abs(d)
        upper, lower = a + t, a - t
        log_upper = log_ndtr(upper)
        log_p = log_upper + np.log(-np.expm1(log_ndtr(lower) - log_upper))
        if not derivatives:
            return (log_p,)
        pu = np.exp(-0.5 * upper * upper - _LOG_SQRT_2PI - log_p)
        pl = np.exp(-0.5 * lower * lower - _LOG_SQRT_2PI - log_p)
        h_a, h_t = pu - pl, pu + pl
        second = -upper * pu + lower * pl
        h_at = -upper * pu - lower * pl - h_a * h_t
        return log_p, -sign * h_a, second - h_a * h_a, h_t, second - h_t * h_t, -sign * h_at
    raise ValueError(f"unknown tie model {model!r} (expected one of {', '.join(TIE_MODELS)})")


def _tie_prior(model: TieModel, t: float) -> tuple[float, float, float]:
    """The log prior of the working tie parameter and its two derivatives."""
    if model == "davidson":
        v = DAVIDSON_PRIOR_SD**2
        return -0.5 * t * t / v, -t / v, -1.0 / v
    if t <= 0:
        return -np.inf, np.inf, -np.inf
    return np.log(t) - TAU_PRIOR_RATE * t, 1.0 / t - TAU_PRIOR_RATE, -1.0 / (t * t)


@dataclass(frozen=True)
class _Pairs:
    """A stack of problems of k images as per-pair counts over the k(k-1)/2 pairs i < j."""

    up: np.ndarray  # (n, m) i preferred to j
    down: np.ndarray  # (n, m) j preferred to i
    tie: np.ndarray  # (n, m) similar
    first: np.ndarray  # (m,) i
    second: np.ndarray  # (m,) j
    incidence: np.ndarray  # (m, k): +1 at i, -1 at j

    @classmethod
    def of(cls, wins: np.ndarray, ties: np.ndarray) -> "_Pairs":
        k = wins.shape[-1]
        first, second = np.triu_indices(k, 1)
        incidence = np.zeros((len(first), k))
        incidence[np.arange(len(first)), first] = 1.0
        incidence[np.arange(len(first)), second] = -1.0
        return cls(
            up=wins[:, first, second],
            down=wins[:, second, first],
            tie=ties[:, first, second] + ties[:, second, first],
            first=first,
            second=second,
            incidence=incidence,
        )


def _tie_terms(model: TieModel, pairs: _Pairs, scores: np.ndarray, t: float, derivatives=True):
    """Per problem of a stack: the log likelihood and (``derivatives``) its gradient in S,
    minus its Hessian in S, its derivative and minus its second derivative in t, and
    minus the mixed derivatives (S, t)."""
    d = scores[:, pairs.first] - scores[:, pairs.second]
    m = d.shape[-1]
    win = _tie_links(model, np.concatenate([d, -d], axis=-1), t, derivatives, "win")
    tie = _tie_links(model, d, t, derivatives, "tie")

    def per_pair(index: int, odd: bool) -> np.ndarray:
        """sum of counts x the index-th term; j's wins see -d, so odd terms change sign."""
        sign = -1.0 if odd else 1.0
        return (
            pairs.up * win[index][..., :m]
            + sign * pairs.down * win[index][..., m:]
            + (pairs.tie * tie[index])
        )

    value = per_pair(0, False).sum(axis=-1)
    if not derivatives:
        return value
    grad = per_pair(1, True) @ pairs.incidence
    curvature = -per_pair(2, False)
    neg_hessian = np.einsum(
        "pk,np,pl->nkl", pairs.incidence, curvature, pairs.incidence, optimize=True
    )
    grad_t = per_pair(3, False).sum(axis=-1)
    curve_t = -per_pair(4, False).sum(axis=-1)
    mixed = -(per_pair(5, True) @ pairs.incidence)
    return value, grad, neg_hessian, grad_t, curve_t, mixed


def _working(model: TieModel, tie: float) -> float:
    if not tie > 0:
        raise ValueError(f"the tie parameter {TIE_PARAMETER[model]} must be positive, got {tie}")
    return float(np.log(tie)) if model == "davidson" else float(tie)


def tie_objective(
    wins: np.ndarray, ties: np.ndarray, scores: np.ndarray, tie: float, model: TieModel
) -> np.ndarray:
    """The MAP objective of a tie model for each problem of a stack (or one problem), at
    the tie parameter ``tie`` (nu or tau), without the tie parameter's prior (``fit_ties``
    adds it once)."""
    wins, ties, scores = (np.asarray(x, dtype=np.float64) for x in (wins, ties, scores))
    single = wins.ndim == 2
    if single:
        wins, ties, scores = wins[None], ties[None], scores[None]
    pairs = _Pairs.of(wins, ties)
    value = _tie_terms(model, pairs, scores, _working(model, tie), derivatives=False)
    value = value - 0.5 * (scores**2).sum(axis=-1)
    return value[0] if single else value


def _stacks(wins, ties) -> tuple[bool, list[bool], list[np.ndarray], list[_Pairs]]:
    """``fit_ties``' inputs checked and as stacks: whether a list was given, which stacks
    were one (k, k) problem, the (n, k, k) win stacks and their ``_Pairs``."""
    listed = isinstance(wins, list | tuple)
    win_groups = [np.asarray(w, dtype=np.float64) for w in (wins if listed else [wins])]
    tie_groups = [np.asarray(t, dtype=np.float64) for t in (ties if listed else [ties])]
    if len(win_groups) != len(tie_groups):
        raise ValueError("wins and ties must have as many stacks")
    single = [w.ndim == 2 for w in win_groups]
    win_groups = [w[None] if one else w for w, one in zip(win_groups, single, strict=True)]
    tie_groups = [t[None] if one else t for t, one in zip(tie_groups, single, strict=True)]
    for w, t in zip(win_groups, tie_groups, strict=True):
        if w.shape != t.shape or w.ndim != 3 or w.shape[-1] != w.shape[-2]:
            raise ValueError(f"wins {w.shape} and ties {t.shape} must be equal (n, k, k) stacks")
        if (w < 0).any() or (t < 0).any():
            raise ValueError("counts must not be negative")
    groups = [_Pairs.of(w, t) for w, t in zip(win_groups, tie_groups, strict=True)]
    return listed, single, win_groups, groups


def fit_ties(
    wins: np.ndarray | list[np.ndarray],
    ties: np.ndarray | list[np.ndarray],
    model: TieModel,
    *,
    tie: float | None = None,
    start: np.ndarray | list[np.ndarray] | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> tuple[np.ndarray | list[np.ndarray], float]:
    """The MAP scores of a tie model and its tie parameter (nu or tau).

    ``wins[..., i, j]`` counts i preferred to j (a similar vote not among them) and
    ``ties[..., i, j] + ties[..., j, i]`` the similar votes on the pair; each is (k, k),
    a stack (n, k, k), or a list of stacks of different k (the scenes of a study by size).
    The tie parameter is shared by every problem given and fitted jointly with them, or
    held at ``tie`` (then each problem is separate, as in a bootstrap of one scene).
    ``start`` (scores in the shape given) only saves iterations: the optimum is unique.
    Returns the scores in the shape given and the tie parameter.
    """
    if model not in TIE_MODELS:
        raise ValueError(f"unknown tie model {model!r} (expected one of {', '.join(TIE_MODELS)})")
    listed, single, win_groups, groups = _stacks(wins, ties)
    joint = tie is None
    if joint:
        # Start where two equal images would give the study's share of ties.
        n_ties = sum(float(g.tie.sum()) for g in groups)
        total = n_ties + sum(float(g.up.sum() + g.down.sum()) for g in groups)
        share = min(max(n_ties / total if total else 0.0, 1e-3), 0.9)
        t = np.log(2 * share / (1 - share)) if model == "davidson" else ndtri((1 + share) / 2)
    else:
        t = _working(model, tie)
    if start is None:
        scores = [np.zeros(w.shape[:2]) for w in win_groups]
    else:
        starts = list(start) if listed else [start]
        scores = [
            np.array(s, dtype=np.float64).reshape(w.shape[:2])
            for s, w in zip(starts, win_groups, strict=True)
        ]

    def values(candidate: list[np.ndarray], t: float) -> list[np.ndarray]:
        return [
            _tie_terms(model, g, s, t, derivatives=False) - 0.5 * (s**2).sum(axis=-1)
            for g, s in zip(groups, candidate, strict=True)
        ]

    def total(parts: list[np.ndarray], t: float) -> float:
        return float(sum(p.sum() for p in parts)) + _tie_prior(model, t)[0]

    value = values(scores, t)
    for _ in range(max_iter):
        steps, through_t = [], []
        grad_t, curve_t = 0.0, 0.0
        if joint:
            _, prior_grad, prior_curve = _tie_prior(model, t)
            grad_t, curve_t = prior_grad, -prior_curve
        for g, s in zip(groups, scores, strict=True):
            _, grad, neg_hessian, g_t, c_t, mixed = _tie_terms(model, g, s, t)
            grad = grad - s
            neg_hessian = neg_hessian + np.eye(s.shape[-1])
            if joint:
                solved = np.linalg.solve(neg_hessian, np.stack([grad, mixed], axis=-1))
                steps.append(solved[..., 0])
                through_t.append(solved[..., 1])
                # The shared parameter's equation, the scenes' blocks eliminated (Schur).
                grad_t += float(g_t.sum()) - float((mixed * solved[..., 0]).sum())
                curve_t += float(c_t.sum()) - float((mixed * solved[..., 1]).sum())
            else:
                steps.append(np.linalg.solve(neg_hessian, grad[..., None])[..., 0])
        step_t = grad_t / curve_t if joint else 0.0
        if joint:
            steps = [x - step_t * y for x, y in zip(steps, through_t, strict=True)]
        largest = max([np.abs(x).max(initial=0.0) for x in steps] + [abs(step_t)])
        if largest < tol:
            scores = [s + x for s, x in zip(scores, steps, strict=True)]
            t += step_t
            break
        if joint:  # one shared parameter: halve the whole step while it lowers the total
            scale, before = 1.0, total(value, t)
            for _ in range(60):
                new_t = t + scale * step_t
                if _tie_prior(model, new_t)[0] > -np.inf:
                    candidate = [s + scale * x for s, x in zip(scores, steps, strict=True)]
                    new_value = values(candidate, new_t)
                    if total(new_value, new_t) >= before - 1e-12 * abs(before):
                        break
                scale *= 0.5
            else:
                break
            scores, value, t = candidate, new_value, new_t
            continue
        new_scores, new_value = [], []
        for g, s, x, v in zip(groups, scores, steps, value, strict=True):
            scale = np.ones(len(s))
            for _ in range(60):  # halve the step where it would lower the objective
                candidate = s + scale[:, None] * x
                trial = _tie_terms(model, g, candidate, t, derivatives=False)
                trial = trial - 0.5 * (candidate**2).sum(axis=-1)
                worse = trial < v - 1e-12 * np.abs(v)
                if not worse.any():
                    break
                scale[worse] *= 0.5
            else:  # rows no halving improved keep their scores (never a worse step)
                candidate[worse], trial[worse] = s[worse], v[worse]
            new_scores.append(candidate)
            new_value.append(trial)
        scores, value = new_scores, new_value
    scores = [s[0] if one else s for s, one in zip(scores, single, strict=True)]
    natural = float(np.exp(t)) if model == "davidson" else float(t)
    return (scores if listed else scores[0]), natural


def tie_covariance(
    wins: np.ndarray | list[np.ndarray],
    ties: np.ndarray | list[np.ndarray],
    model: TieModel,
    scores: np.ndarray | list[np.ndarray],
    tie: float,
    *,
    joint: bool = True,
) -> np.ndarray | list[np.ndarray]:
    """The Laplace approximation of the posterior covariance of each problem's scores, at
    the MAP (``scores``, ``tie``) that ``fit_ties`` returned for these counts (same shapes).

    The inverse of minus the Hessian of the log posterior in every problem's S and
    (``joint``, as ``fit_ties`` fits it without ``tie=``) the shared tie parameter, whose
    uncertainty reaches each problem through its Schur complement; then restricted to
    sum S = 0 (``P C P``, P = I - 11'/k). The likelihood fixes only differences of S: the
    prior alone sets their mean, which the MAP puts at 0, so the uncertainty that counts
    is that of S_i less its problem's mean, the scale the scores are reported on.
    Returns (n, k, k) per stack, in the shape given ((k, k) for one problem).
    """
    if model not in TIE_MODELS:
        raise ValueError(f"unknown tie model {model!r} (expected one of {', '.join(TIE_MODELS)})")
    listed, single, win_groups, groups = _stacks(wins, ties)
    points = [
        np.asarray(s, dtype=np.float64).reshape(w.shape[:2])
        for s, w in zip(list(scores) if listed else [scores], win_groups, strict=True)
    ]
    t = _working(model, tie)
    inverses, through_t = [], []
    schur = -_tie_prior(model, t)[2]
    for g, s in zip(groups, points, strict=True):
        _, _, neg_hessian, _, curve_t, mixed = _tie_terms(model, g, s, t)
        inverse = np.linalg.inv(neg_hessian + np.eye(s.shape[-1]))
        inverses.append(inverse)
        if joint:
            u = np.einsum("nkl,nl->nk", inverse, mixed)
            through_t.append(u)
            schur += float(curve_t.sum()) - float((mixed * u).sum())
    out = []
    for n, inverse in enumerate(inverses):
        if joint:
            u = through_t[n]
            inverse = inverse + u[:, :, None] * u[:, None, :] / schur
        k = inverse.shape[-1]
        centre = np.eye(k) - 1.0 / k
        covariance = centre @ inverse @ centre
        out.append(covariance[0] if single[n] else covariance)
    return out if listed else out[0]


def tie_intervals(
    wins: np.ndarray | list[np.ndarray],
    ties: np.ndarray | list[np.ndarray],
    model: TieModel,
    scores: np.ndarray | list[np.ndarray],
    tie: float,
    *,
    level: float = 0.95,
    joint: bool = True,
) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | list[np.ndarray]]:
    """A tie model's ``level`` intervals of each score: S_i +- z sd_i with sd_i from
    ``tie_covariance`` (the Laplace approximation at the MAP), z the normal quantile.
    Returns (low, high) in the shape of ``scores``.

    Why not the percentile bootstrap the A-FINE scale keeps: on SRIQA-Bench's 100 scenes
    (``tests/analysis/coverage_simulation.py``, 5 seeds) the tie model's covered the
    latent value 92.8-93.1% of the time on average at 0-20% "similar", short even
    without ties (a unanimous pair never varies in a resample). These cover 94.7-94.9%
    on average at every rate, each of 20 seeds within 93.1-96.5% (docs/statistics.md), with
    no refit.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    z = float(ndtri(0.5 + level / 2))
    listed = isinstance(scores, list | tuple)
    covariance = tie_covariance(wins, ties, model, scores, tie, joint=joint)
    lows, highs = [], []
    for s, c in zip(
        list(scores) if listed else [scores], covariance if listed else [covariance], strict=True
    ):
        half = z * np.sqrt(np.clip(np.diagonal(c, axis1=-2, axis2=-1), 0.0, None))
        lows.append(np.asarray(s, dtype=np.float64) - half)
        highs.append(np.asarray(s, dtype=np.float64) + half)
    return (lows, highs) if listed else (lows[0], highs[0])


def tie_count_matrices(
    scene_index: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    n_i: np.ndarray,
    n_similar: np.ndarray,
    n_j: np.ndarray,
    n_scenes: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks of (k, k) wins and ties from per-pair vote counts: i preferred adds to
    W[i, j], j preferred to W[j, i], similar to T[i, j] (once)."""
    wins = np.zeros((n_scenes, k, k))
    ties = np.zeros((n_scenes, k, k))
    np.add.at(wins, (scene_index, i, j), n_i)
    np.add.at(wins, (scene_index, j, i), n_j)
    np.add.at(ties, (scene_index, i, j), n_similar)
    return wins, ties


def scene_layout(study_pairs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Each scene's compared images with a local index: (images[scene, image_id, local],
    local index of a, local index of b) for the given pairs."""
    ends = pd.DataFrame(
        {
            "scene": np.concatenate([study_pairs["scene"], study_pairs["scene"]]),
            "image_id": np.concatenate([study_pairs["image_a"], study_pairs["image_b"]]),
        }
    ).drop_duplicates()
    ends = ends.sort_values(["scene", "image_id"], kind="stable").reset_index(drop=True)
    ends["local"] = ends.groupby("scene").cumcount()
    local = pd.Series(ends["local"].to_numpy(), index=ends["image_id"].to_numpy())
    return ends, local[study_pairs["image_a"]].to_numpy(), local[study_pairs["image_b"]].to_numpy()
