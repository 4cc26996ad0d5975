"""How well a metric agrees with people: docs/design.md ("Protocols"), the A-FINE protocol.

Pure functions on arrays. A metric's prediction for a pair (a, b) is the difference of
its oriented scores, positive when it prefers a: for FR metrics m(a, r) - m(b, r) with r
the scene's reference (m(r, r) scored like any other), for NR metrics q(a) - q(b), with
the sign flipped for metrics where lower is better. The human label is the pair's
DiffIQA majority (a, similar or b; pairs without one are left out).
"""

import numpy as np
from scipy import stats

LABELS = ("a", "similar", "b")


def oriented_difference(
    value_a: np.ndarray, value_b: np.ndarray, lower_better: bool | np.ndarray
) -> np.ndarray:
    """value_a - value_b, negated where lower is better: positive means "a is better"."""
    sign = np.where(np.asarray(lower_better, dtype=bool), -1.0, 1.0)
    return (np.asarray(value_a, dtype=np.float64) - np.asarray(value_b, dtype=np.float64)) * sign


def label_codes(label: np.ndarray) -> np.ndarray:
    """The human labels as codes: 0 a, 1 similar, 2 b, -1 none (int8, ``label``'s shape),
    so that per-metric work compares small integers, not strings."""
    label = np.asarray(label, dtype=object)
    code = np.full(label.shape, -1, dtype=np.int8)
    for value, name in enumerate(LABELS):
        code[label == name] = value
    return code


def correct(difference: np.ndarray, label: np.ndarray, delta: float = 0.0) -> np.ndarray:
    """1.0 where the metric agrees with the human label, 0.0 where not, NaN where the pair
    does not count (no human label, or no metric score).

    Agreement: the metric prefers the human's side by more than ``delta``, or the
    difference is within ``delta`` (inclusive) and the human label is similar.
    """
    return correct_codes(difference, label_codes(label), delta)


def correct_codes(difference: np.ndarray, code: np.ndarray, delta=0.0) -> np.ndarray:
    """``correct`` with the labels as ``label_codes``."""
    difference = np.asarray(difference, dtype=np.float64)
    right = np.where(
        code == 0,
        difference > delta,
        np.where(code == 2, difference < -delta, (code == 1) & (np.abs(difference) <= delta)),
    )
    return np.where((code >= 0) & np.isfinite(difference), right.astype(np.float64), np.nan)


def correct_2afc(difference: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Strict two-alternative accuracy on pairs with a clear human preference (a or b):
    the metric must prefer that side; a metric tie is wrong. NaN elsewhere."""
    return correct_2afc_codes(difference, label_codes(label))


def correct_2afc_codes(difference: np.ndarray, code: np.ndarray) -> np.ndarray:
    """``correct_2afc`` with the labels as ``label_codes``."""
    difference = np.asarray(difference, dtype=np.float64)
    right = np.where(code == 0, difference > 0, difference < 0).astype(np.float64)
    counts = ((code == 0) | (code == 2)) & np.isfinite(difference)
    return np.where(counts, right, np.nan)


def bootstrap_accuracy_ci(
    n_correct: np.ndarray, n: np.ndarray, *, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of accuracies k/n, resampling the pairs.

    Resampling n pairs with replacement, k of them right, gives Binomial(n, k/n) right
    ones: that is what is drawn, for every cell at once. NaN where n is 0.
    """
    n_correct = np.asarray(n_correct, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    safe_n = np.maximum(n, 1)
    draws = rng.binomial(safe_n, n_correct / safe_n, size=(samples, len(n))) / safe_n
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def paired_bootstrap(
    correct_x: np.ndarray, correct_y: np.ndarray, *, samples: int, rng: np.random.Generator
) -> dict:
    """Accuracy of x minus accuracy of y on the pairs both score, with a 95% interval and
    a two-sided bootstrap p-value, resampling pairs (the same resample for both metrics)."""
    (test,) = paired_bootstraps(
        np.column_stack([correct_x, correct_y]), [(0, 1)], samples=samples, rng=rng
    )
    return test


def paired_bootstraps(
    correct: np.ndarray, pairs: list[tuple[int, int]], *, samples: int, rng: np.random.Generator
) -> list[dict]:
    """``paired_bootstrap`` for the metric columns (x, y) of ``correct`` in ``pairs``.

    A resample's difference depends only on how many pairs of each kind it holds (x right
    and y wrong, y right and x wrong, the rest), so those counts are drawn from their
    multinomial: a binomial and then a binomial of what remains, for all tests at once.
    """
    if not pairs:
        return []
    x_index, y_index = (np.array(side) for side in zip(*pairs, strict=True))
    # Counts for every two metrics at once: scored[i] . scored[j] pairs scored by both,
    # right[i] . wrong[j] pairs where only i is right.
    scored = np.isfinite(correct).astype(np.float64)
    right = np.where(scored > 0, correct > 0.5, False).astype(np.float64)
    wrong = scored - right
    n = np.rint((scored.T @ scored)[x_index, y_index]).astype(np.int64)
    right_wrong = np.rint(right.T @ wrong).astype(np.int64)
    only_x, only_y = right_wrong[x_index, y_index], right_wrong[y_index, x_index]
    safe_n = np.maximum(n, 1)
    draws_x = rng.binomial(safe_n, only_x / safe_n, size=(samples, len(n)))
    rest = safe_n - only_x
    draws_y = rng.binomial(
        safe_n - draws_x, np.divide(only_y, rest, out=np.zeros(len(n)), where=rest > 0)
    )
    differences = (draws_x - draws_y) / safe_n
    low, high = np.percentile(differences, [2.5, 97.5], axis=0)
    p_value = np.minimum(
        1.0, 2.0 * np.minimum((differences <= 0).mean(axis=0), (differences >= 0).mean(axis=0))
    )
    return [
        {
            "n_pairs": int(n[t]),
            "difference": (only_x[t] - only_y[t]) / n[t] if n[t] else np.nan,
            "ci_low": float(low[t]) if n[t] else np.nan,
            "ci_high": float(high[t]) if n[t] else np.nan,
            "p_value": float(p_value[t]) if n[t] else np.nan,
        }
        for t in range(len(n))
    ]


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along axis 1 of (n, k, m) against (n, k, 1); NaN if constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b (scipy.stats.kendalltau's default) along axis 1, over all pairs."""
    first, second = np.triu_indices(x.shape[1], 1)
    dx = np.sign(x[:, first] - x[:, second])
    dy = np.sign(y[:, first] - y[:, second])
    total = len(first)
    untied_x = (dx != 0).sum(axis=1)
    untied_y = (dy != 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (dx * dy).sum(axis=1) / np.sqrt(untied_x * untied_y.astype(np.float64))
    return np.where((untied_x == 0) | (untied_y == 0) | (total == 0), np.nan, tau)


def scene_correlations(
    scene: np.ndarray, metric_values: np.ndarray, human: np.ndarray
) -> dict[str, np.ndarray]:
    """SRCC, KRCC and PLCC between each metric and the human scores within each scene.

    ``scene`` (n,) integer codes 0..s-1, ``metric_values`` (n, m) oriented so that higher
    is better, ``human`` (n,) scaled scores. Returns {"srcc", "krcc", "plcc"} of shape
    (s, m): NaN for scenes with fewer than 3 images, a missing score, or a constant input.
    Scenes of equal size are computed together. Values equal scipy.stats' spearmanr,
    kendalltau (tau-b) and pearsonr.
    """
    scene = np.asarray(scene)
    metric_values = np.asarray(metric_values, dtype=np.float64)
    human = np.asarray(human, dtype=np.float64)
    n_scenes = int(scene.max()) + 1 if len(scene) else 0
    m = metric_values.shape[1]
    out = {name: np.full((n_scenes, m), np.nan) for name in ("srcc", "krcc", "plcc")}
    order = np.argsort(scene, kind="stable")
    sizes = np.bincount(scene, minlength=n_scenes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for k in np.unique(sizes):
        if k < 3:
            continue
        which = np.flatnonzero(sizes == k)
        rows = order[starts[which][:, None] + np.arange(k)]  # (n_k, k) image positions
        x = metric_values[rows]  # (n_k, k, m)
        y = np.broadcast_to(human[rows][:, :, None], x.shape)
        missing = np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1)
        rank_x = stats.rankdata(x, axis=1)
        rank_y = stats.rankdata(y, axis=1)
        for name, value in (
            ("srcc", _pearson_rows(rank_x, rank_y)),
            ("plcc", _pearson_rows(x, y)),
            ("krcc", _kendall_tau_b(x, y)),
        ):
            out[name][which] = np.where(missing, np.nan, value)
    return out


def bootstrap_mean_ci(
    values: np.ndarray, *, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals of the column means of ``values`` (scenes x metrics, NaN
    dropped per column), resampling the rows: the same resamples for every column."""
    values = np.asarray(values, dtype=np.float64)
    rows = values.shape[0]
    if rows == 0:
        return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    picks = rng.integers(0, rows, size=(samples, rows))
    weights = np.bincount(
        (picks + rows * np.arange(samples)[:, None]).ravel(), minlength=samples * rows
    ).reshape(samples, rows)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.where(finite, values, 0.0)) / (weights @ finite)
    low, high = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    some = finite.any(axis=0)
    if some.any():
        low[some], high[some] = np.percentile(means[:, some], [2.5, 97.5], axis=0)
    return low, high


def accuracy_by_delta(
    difference: np.ndarray, label: np.ndarray, deltas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs that count, pairs right) of one metric's 3-way A-FINE accuracy at each delta
    of ``deltas``: ``correct(difference, label, delta)`` for all of them at once, by
    sorting (a pair labelled a is right for every delta below its difference, one labelled
    similar for every delta at or above its absolute difference)."""
    difference = np.asarray(difference, dtype=np.float64)
    label = np.asarray(label, dtype=object)
    deltas = np.asarray(deltas, dtype=np.float64)
    counts = np.isin(label, LABELS) & np.isfinite(difference)
    d, lab = difference[counts], label[counts]
    a_side = np.sort(d[lab == "a"])
    b_side = np.sort(-d[lab == "b"])
    similar = np.sort(np.abs(d[lab == "similar"]))
    right = (
        len(a_side) - np.searchsorted(a_side, deltas, side="right")
        + len(b_side) - np.searchsorted(b_side, deltas, side="right")
        + np.searchsorted(similar, deltas, side="right")
    )  # fmt: skip
    return np.full(len(deltas), int(counts.sum())), right


def delta_candidates(difference: np.ndarray, label: np.ndarray) -> np.ndarray:
    """0 and every absolute difference of a counted pair: the accuracy only changes there
    (it is constant from one to the next), so its maximum is at one of them."""
    difference = np.asarray(difference, dtype=np.float64)
    counts = np.isin(np.asarray(label, dtype=object), LABELS) & np.isfinite(difference)
    return np.unique(np.concatenate([[0.0], np.abs(difference[counts])]))


def best_delta(difference: np.ndarray, label: np.ndarray) -> float:
    """The delta of highest 3-way accuracy on the given pairs: the middle of the first
    best stretch (between the candidate where it starts and the next one; the smallest
    such stretch when the best accuracy holds on several)."""
    candidates = delta_candidates(difference, label)
    _, right = accuracy_by_delta(difference, label, candidates)
    best = int(np.argmax(right))
    if best + 1 < len(candidates):
        return float((candidates[best] + candidates[best + 1]) / 2.0)
    return float(candidates[best])


def calibrate_delta(
    difference: np.ndarray,
    label: np.ndarray,
    *,
    folds: int = 5,
    samples: int,
    rng: np.random.Generator,
    curve_points: int = 101,
) -> dict:
    """A metric's delta chosen by k-fold cross-validation over pairs.

    The counted pairs (a human label and a score) are split at random into ``folds``
    parts; for each, delta is chosen on the other parts only (``best_delta``) and the
    pairs of that part are judged with it: every pair is judged once, by a delta chosen
    without it. The held-out accuracy is over all pairs so judged, with its 95% bootstrap
    interval; ``delta`` is the one chosen on all pairs (what ``--save`` stores). The
    curve: accuracy on all pairs at ``curve_points`` deltas from 0 to the 99th percentile
    of the absolute differences. ``fold_deltas`` and ``test_index`` (the positions of
    each fold's held-out pairs) show the split.
    """
    difference = np.asarray(difference, dtype=np.float64)
    label = np.asarray(label, dtype=object)
    counted = np.flatnonzero(np.isin(label, LABELS) & np.isfinite(difference))
    n = len(counted)
    result = {"n_pairs": n, "folds": 0, "delta": np.nan, "accuracy": np.nan,
              "ci_low": np.nan, "ci_high": np.nan, "fold_deltas": [], "test_index": [],
              "curve": []}  # fmt: skip
    folds = min(folds, n)
    if folds < 2:
        return result
    parts = np.array_split(rng.permutation(counted), folds)
    held_out_right = 0
    for part in parts:
        train = np.setdiff1d(counted, part, assume_unique=True)
        delta = best_delta(difference[train], label[train])
        held_out_right += int(np.nansum(correct(difference[part], label[part], delta)))
        result["fold_deltas"].append(delta)
        result["test_index"].append(np.sort(part))
    low, high = bootstrap_accuracy_ci(
        np.array([held_out_right]), np.array([n]), samples=samples, rng=rng
    )
    magnitude = np.abs(difference[counted])
    top = float(np.percentile(magnitude, 99)) if n else 0.0
    result.update(
        folds=folds,
        delta=best_delta(difference, label),
        accuracy=held_out_right / n,
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        curve=accuracy_curve(difference, label, np.linspace(0.0, top, curve_points)),
    )
    return result


def accuracy_curve(difference: np.ndarray, label: np.ndarray, deltas: np.ndarray) -> list[dict]:
    """One metric's 3-way accuracy at each delta of ``deltas`` (``accuracy_by_delta``) as
    points ``{delta, accuracy, n_pairs}``; accuracy None where no pair counts."""
    counts, right = accuracy_by_delta(difference, label, deltas)
    return [
        {"delta": float(d), "accuracy": float(r / c) if c else None, "n_pairs": int(c)}
        for d, r, c in zip(np.asarray(deltas, dtype=np.float64), right, counts, strict=True)
    ]


def delta_grid(
    difference: np.ndarray, label: np.ndarray, *, points: int, extra: tuple[float, ...] = ()
) -> np.ndarray:
    """Deltas to draw one metric's accuracy-versus-delta curve at, in the metric's units:
    0, ``points`` quantiles (0 to 1) of the counted pairs' absolute differences, each one
    of those differences (where the accuracy steps; dense where the differences are), and
    the ``extra`` deltas (a hand-set one); sorted, each once."""
    difference = np.asarray(difference, dtype=np.float64)
    counts = np.isin(np.asarray(label, dtype=object), LABELS) & np.isfinite(difference)
    magnitude = np.abs(difference[counts])
    quantiles = (
        np.quantile(magnitude, np.linspace(0.0, 1.0, points), method="lower")
        if len(magnitude)
        else []
    )
    return np.unique(np.concatenate([[0.0], quantiles, np.asarray(extra, dtype=np.float64)]))


def tie_band_curves(
    difference: np.ndarray, label: np.ndarray, *, points: int, extra: np.ndarray
) -> list[list[dict]]:
    """For every metric (column of ``difference``, pairs x metrics), ``accuracy_curve`` at
    its ``delta_grid`` (``extra``: one hand-set delta per metric), all metrics at once:
    one sort per side and metric (a, b, similar, and the magnitudes for the quantiles),
    then a binary search per grid point; nothing re-scans the pairs per point."""
    difference = np.asarray(difference, dtype=np.float64)
    code = label_codes(label)
    counted = (code >= 0)[:, None] & np.isfinite(difference)
    # Sorted along each row (a metric), NaN (not counted) last; the counted ones first.
    magnitude = np.sort(np.where(counted, np.abs(difference), np.nan).T, axis=1)
    sides = (
        np.sort(difference[code == 0].T, axis=1),  # right for every delta below
        np.sort(-difference[code == 2].T, axis=1),  # right for every delta below
        np.sort(np.abs(difference[code == 1]).T, axis=1),  # right for every delta at or above
    )
    finite = [np.isfinite(side).sum(axis=1) for side in sides]
    n = counted.sum(axis=0)
    quantiles = np.linspace(0.0, 1.0, points)
    curves = []
    for m in range(difference.shape[1]):
        k = int(n[m])
        # np.quantile(method="lower") of the counted magnitudes: the sorted value at
        # floor((k - 1) q).
        chosen = magnitude[m, np.floor((k - 1) * quantiles).astype(np.intp)] if k else []
        grid = np.unique(np.concatenate([[0.0], chosen, [float(extra[m])]]))
        a, b, similar = (side[m, : f[m]] for side, f in zip(sides, finite, strict=True))
        right = (
            len(a) - np.searchsorted(a, grid, side="right")
            + len(b) - np.searchsorted(b, grid, side="right")
            + np.searchsorted(similar, grid, side="right")
        )  # fmt: skip
        count = np.full(len(grid), k, dtype=np.int64)
        curves.append(
            [
                {"delta": float(d), "accuracy": float(r / c) if c else None, "n_pairs": int(c)}
                for d, r, c in zip(grid, right, count, strict=True)
            ]
        )
    return curves
