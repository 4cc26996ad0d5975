"""A fusion of the metrics trained on a study's own labels, judged only on scenes it was
not fitted to. Pure functions on arrays (no ORM); ``report.fusion_inputs`` feeds them.

The model. For a pair (a, b) the metrics' oriented differences ``d`` (positive where a
metric prefers a: ``agreement.oriented_difference``, FR metrics against the scene's
reference, NR metrics alone), each divided by its scale (the root mean square of its
differences over the training pairs), predict the votes:
P(a preferred) = sigmoid(w . d). This is a binomial logistic regression without an
intercept, so swapping a pair's sides flips the prediction (scikit-learn's
``LogisticRegression``, L2 penalty of strength 1/C). It is fitted to the votes, and a
similar vote counts as half a win for each side, as the A-FINE protocol reads "similar".
The three-way outcome (a, similar, b) comes from a tie band delta on w . d, chosen on
the training pairs by the rule ``--calibrate-delta`` uses (``agreement.best_delta``).
This two-step model stands in for an ordinal logit with a symmetric similar band, which
scikit-learn does not have: the direction w is what matters for every figure at delta 0,
and the similar votes inform it as halves, as they do the A-FINE Thurstone scores.

Why linear. w . d = f(a) - f(b) with f(x) = sum_m w_m sign_m m(x) / scale_m, so the
fused model is itself an image score: a metric that ``scoring/fusion.py`` applies to new
studies from the component metrics' stored scores. A non-linear model of the differences
would not be an image score, so none is offered.

Missing scores. A metric enters only if it has a score for both images of at least
``COVERAGE`` of the labelled pairs. The other metrics are listed with their coverage.
Pairs that lack a score of an entering metric are left out and counted
(``dropped_pairs``). The single metrics it is compared with are judged on the same pairs.

Honest evaluation. Nested cross-validation grouped by scene: ``FOLDS`` outer folds of
whole scenes (``GroupKFold``; no scene is in both a training and a test fold). Inside
each training part, C is chosen from ``C_GRID`` by ``INNER_FOLDS`` grouped folds (the
held-out log loss of the votes), then the model is fitted to the whole training part and
predicts the held-out scenes. So every figure is out of sample: accuracy (delta 0, the
headline's protocol) and 2AFC with 95% bootstrap intervals over pairs, by subset; the
accuracy with the band delta chosen in each training part; SRCC/KRCC/PLCC within the
held-out scenes (each image scored by its fold's model); and a paired bootstrap against
the best single metric on the same pairs. That metric is chosen on these very pairs,
which favours it, so a fusion that beats it beats it by at least that much. The
coefficients are those of the model fitted to every pair (its C chosen the same way),
with their spread over the outer folds.

With fewer than ``MIN_PAIRS`` usable pairs or ``MIN_SCENES`` scenes, the result says
"not enough labelled pairs" and carries no number.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import log_expit

from analysis import agreement
from scoring.fusion import FORMAT, VERSION_PREFIX

NAME = "fusion (cross-validated)"
MIN_PAIRS = 100  # usable labelled pairs
MIN_SCENES = 5  # scenes (groups): one per outer fold at least
FOLDS = 5
INNER_FOLDS = 4
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
COVERAGE = 0.95

NOT_ENOUGH = "not enough labelled pairs"
TOO_FEW_METRICS = "fewer than two metrics with scores"


@dataclass(frozen=True)
class FusionData:
    """What the fusion learns from: per labelled pair, every metric's oriented difference
    (NaN where a score is missing), the counted votes (a, similar, b), the label code
    (``agreement.label_codes``) and its scene group; optionally the pairs' subsets
    (``report.pair_subsets``) and, for the correlations, per image the metrics' oriented
    values (sign applied: higher is better), scene group and human score."""

    metrics: list[str]
    difference: np.ndarray  # (pairs, metrics)
    counts: np.ndarray  # (pairs, 3)
    label: np.ndarray  # (pairs,) int8 codes
    groups: np.ndarray  # (pairs,) int
    lower_better: dict
    subsets: pd.DataFrame | None = None
    image_values: np.ndarray | None = None  # (images, metrics)
    image_groups: np.ndarray | None = None  # (images,)
    human: np.ndarray | None = None  # (images,)


def data_concat(parts: list[FusionData]) -> FusionData:
    """Several studies' data as one: the union of their metrics (NaN where a study has
    none), scene groups kept apart; no subsets and no image scores."""
    metrics = sorted({m for part in parts for m in part.metrics})
    columns, groups, offset = [], [], 0
    for part in parts:
        at = {m: j for j, m in enumerate(part.metrics)}
        block = np.full((len(part.label), len(metrics)), np.nan)
        for j, metric in enumerate(metrics):
            if metric in at:
                block[:, j] = part.difference[:, at[metric]]
        columns.append(block)
        groups.append(part.groups + offset)
        offset += int(part.groups.max()) + 1 if len(part.groups) else 0
    lower = {m: b for part in parts for m, b in part.lower_better.items()}
    return FusionData(
        metrics=metrics,
        difference=np.vstack(columns) if columns else np.zeros((0, len(metrics))),
        counts=np.vstack([p.counts for p in parts]) if parts else np.zeros((0, 3)),
        label=np.concatenate([p.label for p in parts]) if parts else np.zeros(0, np.int8),
        groups=np.concatenate(groups) if groups else np.zeros(0, np.int64),
        lower_better=lower,
    )


# --- fitting -------------------------------------------------------------------------


def _scale(x: np.ndarray) -> np.ndarray:
    """Each column's root mean square (1 for a column of zeros: its weight stays 0)."""
    scale = np.sqrt(np.mean(x**2, axis=0)) if len(x) else np.ones(x.shape[1])
    return np.where(scale > 0, scale, 1.0)


def _wins(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's wins of a and of b: a similar vote half a win each way."""
    return counts[:, 0] + counts[:, 1] / 2.0, counts[:, 2] + counts[:, 1] / 2.0


def _rows(x: np.ndarray, counts: np.ndarray):
    """The votes as weighted rows of a binary problem: every other pair turned round
    (b against a; the same likelihood without an intercept) so that both classes occur
    whatever the votes; a similar vote half a win each way."""
    sign = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)
    turned = x * sign[:, None]
    win_a, win_b = _wins(counts)
    first = np.where(sign > 0, win_a, win_b)
    second = np.where(sign > 0, win_b, win_a)
    rows = np.vstack([turned, turned])
    y = np.concatenate([np.ones(len(x)), np.zeros(len(x))])
    weight = np.concatenate([first, second])
    keep = weight > 0
    return rows[keep], y[keep], weight[keep]


def _model(C: float):
    from sklearn.linear_model import LogisticRegression  # (not imported by the web process)

    return LogisticRegression(
        C=C, fit_intercept=False, solver="newton-cholesky", max_iter=200, warm_start=True
    )


def _group_folds(k: int, x: np.ndarray, groups: np.ndarray):
    """``k`` folds of whole groups (scikit-learn's ``GroupKFold``: sizes balanced,
    deterministic)."""
    from sklearn.model_selection import GroupKFold

    return GroupKFold(n_splits=k).split(x, groups=groups)


def _fit(model, x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    rows, y, weight = _rows(x, counts)
    if len(np.unique(y)) < 2:  # no vote at all (one pair with votes is turned one way)
        return np.zeros(x.shape[1])
    model.fit(rows, y, sample_weight=weight)
    return model.coef_[0].copy()


def _log_loss(x: np.ndarray, counts: np.ndarray, coef: np.ndarray) -> tuple[float, float]:
    """(summed log loss of the votes, their weight): a similar vote half each way."""
    z = x @ coef
    win_a, win_b = _wins(counts)
    return float(-(win_a * log_expit(z) + win_b * log_expit(-z)).sum()), float(
        (win_a + win_b).sum()
    )


def choose_c(x: np.ndarray, counts: np.ndarray, groups: np.ndarray) -> tuple[float, list]:
    """The C of ``C_GRID`` with the lowest held-out log loss over ``INNER_FOLDS`` grouped
    folds of these pairs (1.0 when there are fewer than two groups); and the loss per C."""
    k = min(INNER_FOLDS, len(np.unique(groups)))
    if k < 2:
        return 1.0, []
    losses = np.zeros(len(C_GRID))
    weight = 0.0
    for train, test in _group_folds(k, x, groups):
        model = _model(C_GRID[0])
        for c, C in enumerate(C_GRID):  # warm-started along the path
            model.set_params(C=C)
            coef = _fit(model, x[train], counts[train])
            loss, w = _log_loss(x[test], counts[test], coef)
            losses[c] += loss
        weight += w
    mean = losses / max(weight, 1e-12)
    return float(C_GRID[int(np.argmin(mean))]), [float(v) for v in mean]


def fit(x_raw: np.ndarray, counts: np.ndarray, groups: np.ndarray) -> dict:
    """The model fitted to these pairs: scales, weights (per scaled difference), C."""
    scale = _scale(x_raw)
    x = x_raw / scale
    C, _ = choose_c(x, counts, groups)
    coef = _fit(_model(C), x, counts)
    z = x @ coef
    return {"scale": scale, "coef": coef, "C": C, "train_z": z}


# --- evaluation ----------------------------------------------------------------------


def usable(data: FusionData) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """(the metrics that enter, as column indices; those left out with their coverage
    and why; the pairs kept: labelled, with every entering metric's difference)."""
    labelled = data.label >= 0
    finite = np.isfinite(data.difference[labelled])
    n = int(labelled.sum())
    coverage = finite.mean(axis=0) if n else np.zeros(len(data.metrics))
    enter, left_out = [], []
    for j, metric in enumerate(data.metrics):
        values = data.difference[labelled, j]
        if coverage[j] < COVERAGE:
            reason = f"scores on fewer than {COVERAGE:.0%} of the pairs"
        elif not np.any(values[np.isfinite(values)] != 0):
            reason = "the same score for both images of every pair"
        else:
            enter.append(j)
            continue
        left_out.append({"metric": metric, "coverage": float(coverage[j]), "reason": reason})
    enter = np.array(enter, dtype=np.int64)
    rows = labelled & np.isfinite(data.difference[:, enter]).all(axis=1)
    return enter, left_out, rows


def _empty(status: str, message: str, **extra) -> dict:
    return {"name": NAME, "status": status, "message": message, "min_pairs": MIN_PAIRS,
            "min_scenes": MIN_SCENES, **extra}  # fmt: skip


def evaluate(data: FusionData, *, samples: int, rng: np.random.Generator) -> dict:
    """The nested cross-validation of the module docstring, as JSON-ready data:
    ``status`` "ok" with the figures, or why there are none."""
    enter, left_out, rows = usable(data)
    n_pairs, n_scenes = int(rows.sum()), len(np.unique(data.groups[rows]))
    head = {"metrics": [data.metrics[j] for j in enter], "left_out": left_out,
            "n_pairs": n_pairs, "n_scenes": n_scenes,
            "dropped_pairs": int((data.label >= 0).sum()) - n_pairs}  # fmt: skip
    if len(enter) < 2:
        return _empty(TOO_FEW_METRICS, f"{TOO_FEW_METRICS}: {len(enter)}", **head)
    if n_pairs < MIN_PAIRS or n_scenes < MIN_SCENES:
        return _empty(
            NOT_ENOUGH,
            f"{NOT_ENOUGH}: {n_pairs} pairs in {n_scenes} scenes with every metric's "
            f"score (at least {MIN_PAIRS} pairs in {MIN_SCENES} scenes)",
            **head,
        )
    x_raw = data.difference[np.ix_(rows, enter)]
    counts, code, groups = data.counts[rows], data.label[rows], data.groups[rows]
    folds = min(FOLDS, n_scenes)
    z = np.full(n_pairs, np.nan)
    band = np.full(n_pairs, np.nan)
    fold_of = np.full(n_pairs, -1)
    fold_coef, fold_c, fold_deltas = [], [], []
    image_z = None
    if data.image_values is not None:
        image_z = np.full(len(data.image_values), np.nan)
        image_x = data.image_values[:, enter]
    for k, (train, test) in enumerate(_group_folds(folds, x_raw, groups)):
        model = fit(x_raw[train], counts[train], groups[train])
        z[test] = (x_raw[test] / model["scale"]) @ model["coef"]
        delta = agreement.best_delta(model["train_z"], np.array(agreement.LABELS, object)[
            code[train]])  # fmt: skip
        band[test] = agreement.correct_codes(z[test], code[test], delta)
        fold_of[test] = k
        fold_coef.append(model["coef"] / model["scale"])  # per unit of each metric's difference
        fold_c.append(model["C"])
        fold_deltas.append(delta)
        if image_z is not None:
            held = np.isin(data.image_groups, np.unique(groups[test]))
            image_z[held] = (image_x[held] / model["scale"]) @ model["coef"]
    final = fit(x_raw, counts, groups)
    singles = data.difference[np.ix_(rows, enter)]
    result = _figures(z, band, code, singles, [data.metrics[j] for j in enter],
                      data.subsets.loc[rows] if data.subsets is not None else None,
                      samples=samples, rng=rng)  # fmt: skip
    if image_z is not None:
        result["rows"][0].update(_correlations(image_z, data, samples=samples, rng=rng))
    metrics = [data.metrics[j] for j in enter]
    unit = final["coef"] / final["scale"]
    folds_unit = np.array(fold_coef)
    magnitude = np.abs(final["coef"])
    coefficients = [
        {
            "metric": metric,
            "lower_better": bool(data.lower_better.get(metric, False)),
            "weight": float(final["coef"][j]),
            "share": float(magnitude[j] / magnitude.sum()) if magnitude.sum() else 0.0,
            "scale": float(final["scale"][j]),
            "fold_mean": float(np.mean(folds_unit[:, j] * final["scale"][j])),
            "fold_sd": float(np.std(folds_unit[:, j] * final["scale"][j], ddof=1))
            if folds > 1
            else 0.0,
            "fold_min": float(np.min(folds_unit[:, j] * final["scale"][j])),
            "fold_max": float(np.max(folds_unit[:, j] * final["scale"][j])),
            "same_sign": float(np.mean(np.sign(folds_unit[:, j]) == np.sign(unit[j]))),
        }
        for j, metric in enumerate(metrics)
    ]
    coefficients.sort(key=lambda row: -abs(row["weight"]))
    return {
        **_empty("ok", f"{folds}-fold cross-validation grouped by scene", **head),
        "folds": folds,
        "inner_folds": INNER_FOLDS,
        "c_grid": list(C_GRID),
        "C": final["C"],
        "fold_C": fold_c,
        "fold_deltas": [float(d) for d in fold_deltas],
        **result,
        "coefficients": coefficients,
    }


def _figures(z, band, code, singles, metrics, subsets, *, samples, rng) -> dict:
    """The out-of-sample rows by subset, the band accuracy, and the paired test against
    the best single metric on the same pairs."""
    right = agreement.correct_codes(z, code, 0.0)
    right_2afc = agreement.correct_2afc_codes(z, code)
    membership = subsets if subsets is not None else pd.DataFrame({"all": np.ones(len(z), bool)})
    rows = []
    for subset in membership.columns:
        member = membership[subset].to_numpy(dtype=bool)
        rows.append({"metric": NAME, "subset": subset, "delta": 0.0,
                     **_accuracy(right[member], rng, samples, ""),
                     **_accuracy(right_2afc[member], rng, samples, "_2afc", n="n_2afc"),
                     "n_scenes": 0, "srcc": np.nan, "srcc_ci_low": np.nan,
                     "srcc_ci_high": np.nan, "krcc": np.nan, "plcc": np.nan,
                     "few_pairs": bool(member.sum() < MIN_PAIRS)})  # fmt: skip
    single_right = agreement.correct_codes(singles, code[:, None], 0.0)
    accuracy = np.nanmean(single_right, axis=0)
    best = int(np.argmax(accuracy))
    test = agreement.paired_bootstrap(right, single_right[:, best], samples=samples, rng=rng)
    return {
        "rows": rows,
        "band": {"delta": "chosen in each training part", **_accuracy(band, rng, samples, "")},
        "best_single": {
            "metric": metrics[best],
            "accuracy": float(accuracy[best]),
            "accuracy_2afc": float(
                np.nanmean(agreement.correct_2afc_codes(singles[:, best], code))
            ),
            **{f"{k}": v for k, v in test.items()},
        },
        "single_accuracy": {m: float(a) for m, a in zip(metrics, accuracy, strict=True)},
    }


def _accuracy(right: np.ndarray, rng, samples: int, suffix: str, n: str = "n_pairs") -> dict:
    counted = right[np.isfinite(right)]
    k, total = int(counted.sum()), len(counted)
    low, high = agreement.bootstrap_accuracy_ci(
        np.array([k]), np.array([total]), samples=samples, rng=rng
    )
    return {
        n: total,
        f"accuracy{suffix}": k / total if total else np.nan,
        f"ci{suffix}_low": float(low[0]),
        f"ci{suffix}_high": float(high[0]),
    }


def _correlations(image_z: np.ndarray, data: FusionData, *, samples: int, rng) -> dict:
    """SRCC/KRCC/PLCC of the out-of-fold image scores with the human scores, within
    scenes, averaged over the scenes (as the agreement table's)."""
    codes, _ = pd.factorize(data.image_groups)
    out = agreement.scene_correlations(codes, image_z[:, None], data.human)
    srcc = out["srcc"][:, 0]
    low, high = agreement.bootstrap_mean_ci(out["srcc"], samples=samples, rng=rng)

    def mean(values):
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if len(finite) else np.nan

    return {"n_scenes": int(np.isfinite(srcc).sum()), "srcc": mean(srcc),
            "srcc_ci_low": float(low[0]), "srcc_ci_high": float(high[0]),
            "krcc": mean(out["krcc"][:, 0]), "plcc": mean(out["plcc"][:, 0])}  # fmt: skip


# --- the model file ------------------------------------------------------------------


def model_file(
    data: FusionData, evaluation: dict, *, name: str, kinds: dict, versions: dict,
    studies: list[str],
) -> dict:  # fmt: skip
    """The fitted model as the JSON the plug-in reads (``scoring/fusion.py``): the
    component metrics (name, version, kind, lower_better, scale, weight), the training
    studies and the cross-validated figures. The model is refitted to every usable pair
    (the coefficients' ``weight``). Raises ValueError when the evaluation has none."""
    if evaluation["status"] != "ok":
        raise ValueError(evaluation["message"])
    components = []
    for row in sorted(evaluation["coefficients"], key=lambda r: r["metric"]):
        if row["metric"] not in kinds or row["metric"] not in versions:
            raise ValueError(f"{row['metric']}: its kind and version are needed")
        components.append(
            {
                "metric": row["metric"],
                "version": versions[row["metric"]],
                "kind": kinds[row["metric"]],
                "lower_better": row["lower_better"],
                "scale": row["scale"],
                "weight": row["weight"],
            }
        )
    return {
        "format": FORMAT,
        "name": name,
        "kind": "FR" if any(c["kind"] == "FR" for c in components) else "NR",
        "lower_better": False,
        "score": "sum of weight * (value, negated where lower is better) / scale",
        "components": components,
        "C": evaluation["C"],
        # What it was trained on and how it did there, out of sample (``evaluate``).
        "training": {"studies": studies, "evaluation": evaluation},
    }


def derived_metrics(versions: dict[str, str]) -> set[str]:
    """The metrics whose scores a fusion model computed (``scoring/fusion.py``): never
    features of a new fusion (they were fitted to labels, perhaps these very ones)."""
    return {metric for metric, version in versions.items() if version.startswith(VERSION_PREFIX)}


def apply(model: dict, data: FusionData) -> np.ndarray:
    """The model's prediction w . d for each pair of ``data`` (NaN where a component's
    difference is missing)."""
    at = {m: j for j, m in enumerate(data.metrics)}
    z = np.zeros(len(data.label))
    for component in model["components"]:
        j = at.get(component["metric"])
        if j is None:
            return np.full(len(data.label), np.nan)
        z = z + data.difference[:, j] * component["weight"] / component["scale"]
    return z


def transfer(model: dict, data: FusionData, *, samples: int, rng) -> dict:
    """A model trained elsewhere judged on ``data``: its accuracy (delta 0) and 2AFC
    against the best single metric of ``data`` on the same pairs (paired bootstrap)."""
    names = [c["metric"] for c in model["components"]]
    z = apply(model, data)
    keep = (data.label >= 0) & np.isfinite(z)
    enter = [data.metrics.index(m) for m in names if m in data.metrics]
    if not keep.sum() or len(enter) < len(names):
        return {"n_pairs": int(keep.sum()), "status": "the study lacks a component's scores"}
    code = data.label[keep]
    singles = data.difference[np.ix_(keep, enter)]
    figures = _figures(z[keep], np.full(int(keep.sum()), np.nan), code, singles, names, None,
                       samples=samples, rng=rng)  # fmt: skip
    return {"status": "ok", **figures["rows"][0], "best_single": figures["best_single"]}
