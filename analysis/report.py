"""A study's report: exclusions, labels per pair, scores per image, agreement per metric.

Over 400 lines: the steps from votes to the report's tables, each feeding the next
(the text and JSON renderings are in ``render.py``).

``study_report`` is a pure function of the ``StudyData`` that ``selectors.study_data``
loads; the management command, the export and the benchmark all call it.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import agreement, fusion, scaling
from analysis.quality import NOT_JUDGED, Rules
from analysis.selectors import StudyData
from analysis.tally import VoteTally, tally_frame

REF_VS_TEST = "ref-vs-test"
# For ref-vs-test pairs, the human outcome of the test image against the reference, named
# like the A-FINE paper's columns.
OUTCOME_SUBSETS = {"better": "ref<test", "similar": "ref=test", "worse": "ref>test"}
# Rows resting on fewer pairs than this are marked (``few_pairs``): their intervals are wide
# and a percentage point there is one pair or two.
MIN_PAIRS = 30
CALIBRATION_COLUMNS = [
    "metric", "delta", "folds", "n_pairs", "accuracy", "ci_low", "ci_high", "fold_deltas",
    "accuracy_zero", "ci_zero_low", "ci_zero_high", "hand_delta", "accuracy_hand",
    "ci_hand_low", "ci_hand_high", "few_pairs",
]  # fmt: skip


@dataclass(frozen=True)
class Report:
    slug: str
    design: str
    rules: Rules
    deltas: dict[str, float]
    samples: int
    seed: int
    annotators: pd.DataFrame  # quality measures, excluded, reasons
    pairs: pd.DataFrame  # pair_id, is_gold, n_votes, n_a, n_similar, n_b, p_a, majority
    image_scores: pd.DataFrame
    agreement: pd.DataFrame
    comparisons: pd.DataFrame
    counts: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    # --calibrate-delta: one row per metric (CALIBRATION_COLUMNS) and the accuracy-versus-
    # delta curve per metric; empty when not asked for.
    calibration: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=CALIBRATION_COLUMNS)
    )
    delta_curves: dict = field(default_factory=dict)
    # --model: the human score the correlations use (HUMAN_SCORE); a tie model adds its
    # columns to image_scores and its tie parameter (nu or tau) here.
    model: str = "thurstone"
    tie_parameter: float = np.nan
    # --fusion (and the live snapshot): the fusion metric's cross-validated evaluation
    # (``fusion.evaluate``); empty when not asked for.
    fusion: dict = field(default_factory=dict)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.annotators.loc[self.annotators["excluded"], ["annotator", "reasons"]]

    @property
    def decided(self) -> pd.DataFrame:
        """The annotators a researcher excluded or re-included by hand."""
        table = self.annotators
        return table.loc[
            table["manual_decision"] != "",
            ["annotator", "manual_decision", "manual_reason", "decided_by", "decided_at",
             "excluded_by_rules", "reasons"],
        ]  # fmt: skip


def image_scores(
    study_pairs: pd.DataFrame,
    images: pd.DataFrame,
    *,
    intervals: bool,
    samples: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Thurstone Case V and Bradley-Terry MAP scores of every compared image, per scene,
    with the 0..100 scaling and (``intervals``) bootstrap 95% intervals over votes."""
    layout, ia, ib = scaling.scene_layout(study_pairs)
    scene_codes, scene_names = pd.factorize(layout["scene"], sort=True)
    layout["scene_code"] = scene_codes
    sizes = np.bincount(scene_codes, minlength=len(scene_names))
    pair_scene = pd.Series(np.arange(len(scene_names)), index=scene_names)[
        study_pairs["scene"]
    ].to_numpy()
    n_a, n_s, n_b = (study_pairs[c].to_numpy() for c in ("n_a", "n_similar", "n_b"))
    result = {name: np.zeros(len(layout)) for name in scaling.MODELS}
    for k in np.unique(sizes):
        scenes_k = np.flatnonzero(sizes == k)
        slot = np.full(len(scene_names), -1)
        slot[scenes_k] = np.arange(len(scenes_k))
        chosen = np.isin(pair_scene, scenes_k)
        counts = scaling.count_matrices(
            slot[pair_scene[chosen]], ia[chosen], ib[chosen], n_a[chosen], n_s[chosen],
            n_b[chosen], len(scenes_k), int(k),
        )  # fmt: skip
        members = np.isin(scene_codes, scenes_k)
        for model in scaling.MODELS:
            fitted = scaling.fit(counts, model)
            result[model][members] = fitted[
                slot[scene_codes[members]], layout["local"].to_numpy()[members]
            ]
    out = layout[["scene", "image_id"]].copy()
    # Images with the same votes (two tests each preferred 3-0 to the reference) have the
    # same score; merging scores closer than the fit's precision keeps them tied for ranks.
    for model in scaling.MODELS:
        result[model] = scaling.merge_ties(result[model], scene_codes)
    out["thurstone"] = result["thurstone"]
    out["thurstone_0_100"] = scaling.scaled_0_100(out["thurstone"].to_numpy(), groups=scene_codes)
    out["bradley_terry"] = result["bradley-terry"]
    votes_per_image = (
        pd.concat(
            [
                pd.Series(
                    study_pairs["n_votes"].to_numpy(), index=study_pairs["image_a"].to_numpy()
                ),
                pd.Series(
                    study_pairs["n_votes"].to_numpy(), index=study_pairs["image_b"].to_numpy()
                ),
            ]
        )
        .groupby(level=0)
        .sum()
    )
    out["n_votes"] = votes_per_image.reindex(out["image_id"]).fillna(0).astype("int64").to_numpy()
    for column in ("ci_low", "ci_high", "bt_ci_low", "bt_ci_high"):
        out[column] = np.nan
    if intervals and samples > 0:
        for code in range(len(scene_names)):
            in_scene = pair_scene == code
            rows = np.flatnonzero(scene_codes == code)
            k = int(sizes[code])
            for model, low, high in (
                ("thurstone", "ci_low", "ci_high"),
                ("bradley-terry", "bt_ci_low", "bt_ci_high"),
            ):
                draws = scaling.bootstrap(
                    ia[in_scene], ib[in_scene], n_a[in_scene], n_s[in_scene], n_b[in_scene], k,
                    samples=samples, rng=rng, model=model,
                )  # fmt: skip
                lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
                local = layout["local"].to_numpy()[rows]
                out.loc[rows, low] = lo[local]
                out.loc[rows, high] = hi[local]
    names = images.set_index("image_id")
    out["image"] = names["name"].reindex(out["image_id"]).to_numpy()
    out["condition"] = names["condition"].reindex(out["image_id"]).to_numpy()
    return out[
        ["scene", "image", "condition", "n_votes", "thurstone", "thurstone_0_100", "ci_low",
         "ci_high", "bradley_terry", "bt_ci_low", "bt_ci_high", "image_id"]
    ].reset_index(drop=True)  # fmt: skip


# The human score each --model names: its column in image_scores, which the agreement's
# SRCC, KRCC and PLCC are computed against.
HUMAN_SCORE = {
    "thurstone": "thurstone",
    "bradley-terry": "bradley_terry",
    "davidson": "davidson",
    "thurstone-ties": "thurstone_ties",
}
MODEL_NAMES = {
    "thurstone": "Thurstone",
    "bradley-terry": "Bradley-Terry",
    "davidson": "Davidson",
    "thurstone-ties": "Thurstone-with-ties",
}


def tie_scores(
    study_pairs: pd.DataFrame, model: str, *, intervals: bool
) -> tuple[pd.DataFrame, float]:
    """A tie model's MAP scores of every compared image (a similar vote a tie, not two
    wins), with 95% intervals (``intervals``; the Laplace approximation at the MAP,
    ``scaling.tie_intervals``, which covers where the percentile bootstrap falls short),
    and its tie parameter, one for the study: ((scene, image_id, <model>, <model>_ci_low,
    <model>_ci_high), nu or tau). The rows are in ``image_scores``' order."""
    column = HUMAN_SCORE[model]
    layout, ia, ib = scaling.scene_layout(study_pairs)
    scene_codes, scene_names = pd.factorize(layout["scene"], sort=True)
    sizes = np.bincount(scene_codes, minlength=len(scene_names))
    pair_scene = pd.Series(np.arange(len(scene_names)), index=scene_names)[
        study_pairs["scene"]
    ].to_numpy()
    n_a, n_s, n_b = (study_pairs[c].to_numpy() for c in ("n_a", "n_similar", "n_b"))
    local = layout["local"].to_numpy()
    out = layout[["scene", "image_id"]].copy()
    values = np.zeros(len(layout))
    lows, highs = np.full(len(layout), np.nan), np.full(len(layout), np.nan)
    parameter = np.nan
    if len(layout):
        wins, ties, members = [], [], []
        for k in np.unique(sizes):
            scenes_k = np.flatnonzero(sizes == k)
            slot = np.full(len(scene_names), -1)
            slot[scenes_k] = np.arange(len(scenes_k))
            chosen = np.isin(pair_scene, scenes_k)
            w, t = scaling.tie_count_matrices(
                slot[pair_scene[chosen]], ia[chosen], ib[chosen], n_a[chosen], n_s[chosen],
                n_b[chosen], len(scenes_k), int(k),
            )  # fmt: skip
            wins.append(w)
            ties.append(t)
            members.append((np.isin(scene_codes, scenes_k), slot))
        fitted, parameter = scaling.fit_ties(wins, ties, model)
        bounds = scaling.tie_intervals(wins, ties, model, fitted, parameter) if intervals else None
        for n, (scores, (member, slot)) in enumerate(zip(fitted, members, strict=True)):
            at = (slot[scene_codes[member]], local[member])
            values[member] = scores[at]
            if bounds is not None:
                lows[member], highs[member] = bounds[0][n][at], bounds[1][n][at]
        values = scaling.merge_ties(values, scene_codes)
    out[column] = values
    out[f"{column}_ci_low"] = lows
    out[f"{column}_ci_high"] = highs
    return out.reset_index(drop=True), float(parameter)


def pair_subsets(study_pairs: pd.DataFrame, images: pd.DataFrame, design: str) -> pd.DataFrame:
    """Boolean membership of each pair in each subset: "all"; for ref-vs-test the human
    outcome of the test against the reference; "condition:X" for pairs showing X (in
    ref-vs-test, X of the test image: every pair shows the reference, so its condition
    would be "all" again)."""
    info = images.set_index("image_id")
    role_a = info["role"].reindex(study_pairs["image_a"]).to_numpy()
    role_b = info["role"].reindex(study_pairs["image_b"]).to_numpy()
    cond_a = info["condition"].reindex(study_pairs["image_a"]).fillna("").to_numpy()
    cond_b = info["condition"].reindex(study_pairs["image_b"]).fillna("").to_numpy()
    if design == REF_VS_TEST:
        cond_a = np.where(role_a == "reference", "", cond_a)
        cond_b = np.where(role_b == "reference", "", cond_b)
    subsets = {"all": np.ones(len(study_pairs), dtype=bool)}
    if design == REF_VS_TEST:
        label = study_pairs["majority"].to_numpy()
        test_is_a = role_a != "reference"
        test_side, ref_side = np.where(test_is_a, "a", "b"), np.where(test_is_a, "b", "a")
        outcome = np.select(
            [label == test_side, label == "similar", label == ref_side],
            ["better", "similar", "worse"],
            default="",
        )
        for key, name in OUTCOME_SUBSETS.items():
            subsets[name] = outcome == key
    # (compared as codes: one pass over the pairs' strings, not one per condition)
    codes, conditions = pd.factorize(np.concatenate([cond_a, cond_b]))
    code_a, code_b = codes[: len(cond_a)], codes[len(cond_a) :]
    for code, condition in sorted(enumerate(conditions), key=lambda item: item[1]):
        if condition:
            subsets[f"condition:{condition}"] = (code_a == code) | (code_b == code)
    return pd.DataFrame(subsets)


# The last scores frame's wide table, with the frame (held, so that the identity check
# cannot match a new frame at a reused address): a report pivots the same frame three
# times, and the live refresh passes the same cached frame until the scores change.
_METRIC_TABLE: list = [None, None]


def metric_table(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Wide values (image_id x metric) and each metric's ``lower_better`` (callers read
    them, never write: the last frame's are shared)."""
    if scores.empty:
        return pd.DataFrame(), pd.Series(dtype=bool)
    if _METRIC_TABLE[0] is scores:
        return _METRIC_TABLE[1]
    wide = scores.pivot(index="image_id", columns="metric", values="value")
    lower = scores.groupby("metric")["lower_better"].last().astype(bool)
    _METRIC_TABLE[:] = [scores, (wide, lower.reindex(wide.columns))]
    return _METRIC_TABLE[1]


def agreement_tables(
    study_pairs: pd.DataFrame,
    images: pd.DataFrame,
    scores: pd.DataFrame,
    scaled: pd.DataFrame,
    *,
    design: str,
    deltas: dict[str, float],
    samples: int,
    rng: np.random.Generator,
    human: str = "thurstone",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The agreement table (metric x subset x delta) and the paired comparisons; the
    correlations are against the ``human`` column of ``scaled``."""
    metrics, difference = pair_differences(study_pairs, scores)
    wide, lower = metric_table(scores)
    columns = [
        "metric", "subset", "delta", "n_pairs", "accuracy", "ci_low", "ci_high", "n_2afc",
        "accuracy_2afc", "ci_2afc_low", "ci_2afc_high", "n_scenes", "srcc", "srcc_ci_low",
        "srcc_ci_high", "krcc", "plcc", "few_pairs",
    ]  # fmt: skip
    comparison_columns = [
        "metric_a", "metric_b", "n_pairs", "accuracy_a", "accuracy_b", "difference", "ci_low",
        "ci_high", "p_value", "few_pairs",
    ]  # fmt: skip
    if not metrics or study_pairs.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=comparison_columns)
    values = wide.to_numpy(dtype=np.float64)
    row = pd.Series(np.arange(len(wide)), index=wide.index)

    label = agreement.label_codes(study_pairs["majority"].to_numpy())[:, None]
    subsets = pair_subsets(study_pairs, images, design)
    membership = subsets.to_numpy(dtype=np.float64)  # (pairs, subsets)

    def tally(right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(subsets, metrics) counts of pairs that count and of those right."""
        finite = ~np.isnan(right)  # (right is 0, 1 or NaN)
        counts = membership.T @ finite
        hits = membership.T @ np.where(finite, right, 0.0)
        return counts.astype(np.int64), np.rint(hits).astype(np.int64)

    n_2afc, k_2afc = tally(agreement.correct_2afc_codes(difference, label))
    lo_2afc, hi_2afc = agreement.bootstrap_accuracy_ci(
        k_2afc.ravel(), n_2afc.ravel(), samples=samples, rng=rng
    )

    # Correlations with the human scores within scenes (subset "all" only).
    oriented = np.where(lower.to_numpy()[None, :], -1.0, 1.0) * _gather(
        values, row.reindex(scaled["image_id"]).to_numpy()
    )
    scene_codes, _ = pd.factorize(scaled["scene"])
    correlations = scene_correlations(
        scores, scaled["image_id"].to_numpy(), scene_codes, oriented, scaled[human].to_numpy()
    )
    srcc_lows, srcc_highs = agreement.bootstrap_mean_ci(
        correlations["srcc"], samples=samples, rng=rng
    )
    rows: list[dict] = []
    correct_at_zero = agreement.correct_codes(difference, label, 0.0)
    for delta_kind in ("zero", "metric"):
        if delta_kind == "zero":
            metric_delta = np.zeros(len(metrics))
            right = correct_at_zero
        else:
            metric_delta = np.array([float(deltas.get(m, 0.0)) for m in metrics])
            if not (metric_delta != 0).any():
                break
            right = agreement.correct_codes(difference, label, metric_delta[None, :])
        n, k = tally(right)
        low, high = agreement.bootstrap_accuracy_ci(k.ravel(), n.ravel(), samples=samples, rng=rng)
        low, high = low.reshape(n.shape), high.reshape(n.shape)
        for m, metric in enumerate(metrics):
            if delta_kind == "metric" and metric_delta[m] == 0:
                continue
            srcc = correlations["srcc"][:, m]
            srcc_low, srcc_high = srcc_lows[m], srcc_highs[m]
            for s, subset in enumerate(subsets.columns):
                whole = subset == "all"
                flat = s * len(metrics) + m
                rows.append(
                    {
                        "metric": metric,
                        "subset": subset,
                        "delta": float(metric_delta[m]),
                        "n_pairs": int(n[s, m]),
                        "accuracy": k[s, m] / n[s, m] if n[s, m] else np.nan,
                        "ci_low": low[s, m],
                        "ci_high": high[s, m],
                        "n_2afc": int(n_2afc[s, m]),
                        "accuracy_2afc": k_2afc[s, m] / n_2afc[s, m] if n_2afc[s, m] else np.nan,
                        "ci_2afc_low": lo_2afc[flat],
                        "ci_2afc_high": hi_2afc[flat],
                        "n_scenes": int(np.isfinite(srcc).sum()) if whole else 0,
                        "srcc": _nanmean(srcc) if whole else np.nan,
                        "srcc_ci_low": srcc_low if whole else np.nan,
                        "srcc_ci_high": srcc_high if whole else np.nan,
                        "krcc": _nanmean(correlations["krcc"][:, m]) if whole else np.nan,
                        "plcc": _nanmean(correlations["plcc"][:, m]) if whole else np.nan,
                        "few_pairs": bool(n[s, m] < MIN_PAIRS),
                    }
                )
    table = pd.DataFrame(rows, columns=columns)
    overall = table[(table["subset"] == "all") & (table["delta"] == 0)].set_index("metric")
    ranked = overall["accuracy"].sort_values(ascending=False, kind="stable").index
    column = {metric: m for m, metric in enumerate(metrics)}
    tested = [(x, y) for position, x in enumerate(ranked) for y in ranked[position + 1 :]]
    tests = agreement.paired_bootstraps(
        correct_at_zero, [(column[x], column[y]) for x, y in tested], samples=samples, rng=rng
    )
    accuracy = overall["accuracy"].to_dict()
    comparisons = [
        {
            "metric_a": x,
            "metric_b": y,
            "accuracy_a": accuracy[x],
            "accuracy_b": accuracy[y],
            **test,
            "few_pairs": test["n_pairs"] < MIN_PAIRS,
        }
        for (x, y), test in zip(tested, tests, strict=True)
    ]
    metric_rank = {metric: position for position, metric in enumerate(ranked)}
    subset_rank = {subset: position for position, subset in enumerate(subsets.columns)}
    table = table.assign(
        _own=table["delta"] != 0,
        _subset=table["subset"].map(subset_rank),
        _metric=table["metric"].map(metric_rank),
    ).sort_values(["_own", "_subset", "_metric"], kind="stable")
    table = table.drop(columns=["_own", "_subset", "_metric"])
    return table.reset_index(drop=True), pd.DataFrame(comparisons, columns=comparison_columns)


# The last differences, with the scores frame (held) and the pairs' images they are of:
# a report computes them twice (its table, the tie band curves), and the live refresh
# for the same pairs and scores frame every time. Read-only.
_DIFFERENCES: list = [None, None, None, None]


# The last scene correlations, with what they were computed from (the scores frame,
# held; the images, their scenes and human scores): the live refresh recomputes only the
# scenes whose human scores moved (each scene's correlations are its own).
_CORRELATIONS: list = [None] * 5


def scene_correlations(
    scores: pd.DataFrame,
    image_ids: np.ndarray,
    scene_codes: np.ndarray,
    oriented: np.ndarray,
    human: np.ndarray,
) -> dict[str, np.ndarray]:
    """``agreement.scene_correlations`` of the images (``oriented``: their metric scores
    from ``scores``), recomputing only the scenes whose ``human`` scores differ from the
    last call's when the rest is the same."""
    kept = _CORRELATIONS
    same = (
        kept[0] is scores
        and np.array_equal(kept[1], image_ids)
        and np.array_equal(kept[2], scene_codes)
    )
    if same:
        old = kept[3]
        moved = ~((old == human) | (np.isnan(old) & np.isnan(human)))
        scenes = np.unique(scene_codes[moved])
        result = {name: values.copy() for name, values in kept[4].items()}
        if len(scenes):
            rows = np.isin(scene_codes, scenes)
            part = agreement.scene_correlations(
                np.searchsorted(scenes, scene_codes[rows]), oriented[rows], human[rows]
            )
            for name in result:
                result[name][scenes] = part[name]
    else:
        result = agreement.scene_correlations(scene_codes, oriented, human)
    _CORRELATIONS[:] = [scores, image_ids.copy(), scene_codes.copy(), human.copy(), result]
    return {name: values.copy() for name, values in result.items()}


def _gather(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows of ``values`` (images x metrics) at ``rows`` (float positions, NaN for an
    image without scores: a row of NaN)."""
    out = np.full((len(rows), values.shape[1]), np.nan)
    present = ~np.isnan(rows)
    out[present] = values[rows[present].astype(np.int64)]
    return out


def pair_differences(
    study_pairs: pd.DataFrame, scores: pd.DataFrame
) -> tuple[list[str], np.ndarray]:
    """(metrics, oriented differences (pairs x metrics): positive where the metric prefers
    a; NaN where a score is missing). The array is read-only (the last one is shared)."""
    image_a = study_pairs["image_a"].to_numpy()
    image_b = study_pairs["image_b"].to_numpy()
    kept = _DIFFERENCES
    if kept[0] is scores and np.array_equal(kept[1], image_a) and np.array_equal(kept[2], image_b):
        return kept[3]
    metrics, difference = _pair_differences(study_pairs, scores)
    difference.flags.writeable = False
    _DIFFERENCES[:] = [scores, image_a.copy(), image_b.copy(), (metrics, difference)]
    return metrics, difference


def _pair_differences(
    study_pairs: pd.DataFrame, scores: pd.DataFrame
) -> tuple[list[str], np.ndarray]:
    wide, lower = metric_table(scores)
    metrics = list(wide.columns)
    if not metrics or study_pairs.empty:
        return metrics, np.zeros((len(study_pairs), len(metrics)))
    values = wide.to_numpy(dtype=np.float64)
    row = pd.Series(np.arange(len(wide)), index=wide.index)

    a_rows = row.reindex(study_pairs["image_a"]).to_numpy()
    b_rows = row.reindex(study_pairs["image_b"]).to_numpy()
    return metrics, agreement.oriented_difference(
        _gather(values, a_rows), _gather(values, b_rows), lower.to_numpy()[None, :]
    )


def delta_calibration(
    study_pairs: pd.DataFrame,
    scores: pd.DataFrame,
    table: pd.DataFrame,
    *,
    deltas: dict[str, float],
    folds: int,
    samples: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Each metric's delta chosen by ``folds``-fold cross-validation over the study's
    labelled pairs (``agreement.calibrate_delta``), beside its delta-0 and hand-set rows of
    the agreement ``table`` (subset all); and each metric's accuracy-versus-delta curve."""
    metrics, difference = pair_differences(study_pairs, scores)
    label = study_pairs["majority"].to_numpy() if len(study_pairs) else np.array([])
    whole = table[table["subset"] == "all"] if len(table) else table
    rows, curves = [], {}
    for m, metric in enumerate(metrics):
        result = agreement.calibrate_delta(
            difference[:, m], label, folds=folds, samples=samples, rng=rng
        )
        mine = whole[whole["metric"] == metric]
        zero = mine[mine["delta"] == 0]
        hand = mine[mine["delta"] != 0]
        rows.append(
            {
                "metric": metric,
                "delta": result["delta"],
                "folds": result["folds"],
                "n_pairs": result["n_pairs"],
                "accuracy": result["accuracy"],
                "ci_low": result["ci_low"],
                "ci_high": result["ci_high"],
                "fold_deltas": [float(d) for d in result["fold_deltas"]],
                "accuracy_zero": zero["accuracy"].iat[0] if len(zero) else np.nan,
                "ci_zero_low": zero["ci_low"].iat[0] if len(zero) else np.nan,
                "ci_zero_high": zero["ci_high"].iat[0] if len(zero) else np.nan,
                "hand_delta": float(deltas.get(metric, 0.0)),
                "accuracy_hand": hand["accuracy"].iat[0] if len(hand) else np.nan,
                "ci_hand_low": hand["ci_low"].iat[0] if len(hand) else np.nan,
                "ci_hand_high": hand["ci_high"].iat[0] if len(hand) else np.nan,
                "few_pairs": result["n_pairs"] < MIN_PAIRS,
            }
        )
        curves[metric] = result["curve"]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS), curves


def report_counts(tally: VoteTally, study_pairs: pd.DataFrame, scaled: pd.DataFrame) -> dict:
    """The report's counts: annotators (excluded, not judged), votes (counted), pairs
    (labelled), scenes and images scored."""
    annotators = tally.annotators
    return {
        "annotators": len(annotators),
        "excluded_annotators": len(tally.excluded),
        "votes": tally.votes,
        "counted_votes": tally.counted_votes,
        "pairs": len(study_pairs),
        "labelled_pairs": int(np.isin(study_pairs["majority"], agreement.LABELS).sum()),
        "scenes": int(study_pairs["scene"].nunique()),
        "images_scored": len(scaled),
        "not_judged_annotators": int((annotators["qc_status"] == NOT_JUDGED).sum())
        if "qc_status" in annotators
        else 0,
    }


def fusion_inputs(
    study_pairs: pd.DataFrame,
    images: pd.DataFrame,
    scores: pd.DataFrame,
    scaled: pd.DataFrame,
    *,
    design: str,
    human: str = "thurstone",
) -> fusion.FusionData:
    """What ``fusion.evaluate`` learns from, for one study's labelled pairs: the metrics'
    oriented differences, the counted votes, the labels, the scenes as groups, the
    subsets, and per compared image the metrics' oriented values and ``human`` score.
    ``scores`` hold no fusion model's scores (``without_derived``)."""
    metrics, difference = pair_differences(study_pairs, scores)
    wide, lower = metric_table(scores)
    codes, scenes = pd.factorize(study_pairs["scene"], sort=True)
    scene_code = pd.Series(np.arange(len(scenes)), index=scenes)
    if metrics and len(scaled):
        at = pd.Series(np.arange(len(wide)), index=wide.index).reindex(scaled["image_id"])
        image_values = _gather(wide.to_numpy(dtype=np.float64), at.to_numpy())
        image_values *= np.where(lower.to_numpy(), -1.0, 1.0)[None, :]
    else:
        image_values = np.zeros((len(scaled), len(metrics)))
    return fusion.FusionData(
        metrics=metrics,
        difference=np.asarray(difference, dtype=np.float64),
        counts=study_pairs[["n_a", "n_similar", "n_b"]].to_numpy(dtype=np.float64)
        if len(study_pairs)
        else np.zeros((0, 3)),
        label=agreement.label_codes(study_pairs["majority"].to_numpy()),
        groups=codes.astype(np.int64),
        lower_better={m: bool(b) for m, b in lower.items()},
        subsets=pair_subsets(study_pairs, images, design).reset_index(drop=True),
        image_values=image_values,
        image_groups=scene_code.reindex(scaled["scene"]).fillna(-1).to_numpy(dtype=np.int64),
        human=scaled[human].to_numpy(dtype=np.float64),
    )


def without_derived(scores: pd.DataFrame, versions: dict[str, str]) -> pd.DataFrame:
    """The scores less those a fusion model computed (``fusion.derived_metrics``); the
    same frame when there are none (the differences' cache is kept by frame)."""
    derived = fusion.derived_metrics(versions)
    return scores[~scores["metric"].isin(derived)] if derived else scores


def study_fusion(
    study_pairs: pd.DataFrame,
    images: pd.DataFrame,
    scores: pd.DataFrame,
    scaled: pd.DataFrame,
    *,
    design: str,
    versions: dict[str, str],
    samples: int,
    seed: int,
    human: str = "thurstone",
) -> dict:
    """The fusion metric's cross-validated evaluation on the study (``fusion.evaluate``),
    from its own random stream, so the other figures do not depend on whether it ran.
    A fusion model's own scores (``versions``) are not among the features."""
    scores = without_derived(scores, versions)
    data = fusion_inputs(study_pairs, images, scores, scaled, design=design, human=human)
    return fusion.evaluate(data, samples=samples, rng=np.random.default_rng([seed, 3]))


def study_fusion_data(data: StudyData) -> fusion.FusionData:
    """``fusion_inputs`` of a study from its data: the counted labels (quality control
    applied), the Thurstone scores for the correlations."""
    study_pairs = labelled_study_pairs(data.pairs, tally_frame(data).labels)
    scaled = image_scores(
        study_pairs, data.images, intervals=False, samples=0, rng=np.random.default_rng(0)
    )
    scores = without_derived(data.scores, data.versions)
    return fusion_inputs(study_pairs, data.images, scores, scaled, design=data.design)


def labelled_study_pairs(pairs: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The study's pairs (not gold) with their labels (``pair_labels``)."""
    return pairs.merge(labels[~labels["is_gold"]], on="pair_id")


def tie_band_curves(report: Report, data: StudyData, *, points: int = 48) -> dict:
    """Each metric's 3-way accuracy (subset all) as a function of its tie band delta, for
    the live report's chart and its delta preview: ``{metric: [{delta, accuracy,
    n_pairs}, ...]}`` at 0, ``points`` quantiles of the metric's absolute differences on
    the labelled pairs, and its hand-set delta (``agreement.delta_grid``). The labels are
    the ``report``'s (computed from ``data``), so the curve passes through the report's
    delta-0 and own-delta accuracies."""
    study_pairs = labelled_study_pairs(data.pairs, report.pairs)
    metrics, difference = pair_differences(study_pairs, data.scores)
    label = study_pairs["majority"].to_numpy() if len(study_pairs) else np.array([])
    hand = np.array([float(report.deltas.get(metric, 0.0)) for metric in metrics])
    curves = agreement.tie_band_curves(difference, label, points=points, extra=hand)
    return dict(zip(metrics, curves, strict=True))


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else np.nan


def study_report(
    data: StudyData,
    *,
    samples: int = 1000,
    seed: int = 0,
    image_intervals: bool = True,
    calibrate_folds: int = 0,
    model: str = "thurstone",
    tally: VoteTally | None = None,
    fusion: bool = False,
) -> Report:
    """Everything the platform reports about a study, from its data.

    ``samples`` bootstrap resamples for every interval, drawn from a generator seeded with
    ``seed``, so the same data give the same report. ``image_intervals`` adds the
    per-image bootstrap intervals (one refit per resample and scene).
    ``calibrate_folds`` (2 or more) adds each metric's delta chosen by that many folds of
    cross-validation over pairs (``delta_calibration``), from a third stream.
    ``model`` (``HUMAN_SCORE``) is the human score the correlations are computed against;
    a tie model (``scaling.TIE_MODELS``) adds its scores and intervals to
    ``image_scores`` (Laplace intervals, no resampling; with ``image_intervals``), beside
    the A-FINE-compatible ones. ``tally``: what the report needs of the votes
    (``analysis/tally.py``), when the caller has it; else computed from ``data.votes``.
    ``fusion`` adds the fusion metric's cross-validated evaluation (``study_fusion``).
    """
    if model not in HUMAN_SCORE:
        raise ValueError(f"unknown model {model!r} (expected one of {', '.join(HUMAN_SCORE)})")
    # Two streams, so the agreement's intervals are the same whether or not the image
    # intervals are drawn first (agreement_report skips those, the export draws them).
    image_rng, agreement_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    tally = tally if tally is not None else tally_frame(data)
    annotators, labels = tally.annotators, tally.labels
    study_pairs = labelled_study_pairs(data.pairs, labels)
    scaled = image_scores(
        study_pairs, data.images, intervals=image_intervals, samples=samples, rng=image_rng
    )
    tie_parameter = np.nan
    if model in scaling.TIE_MODELS:
        tied, tie_parameter = tie_scores(study_pairs, model, intervals=image_intervals)
        added = [c for c in tied.columns if c not in ("scene", "image_id")]
        scaled = pd.concat(
            [scaled.drop(columns="image_id"), tied[added], scaled[["image_id"]]], axis=1
        )
    table, comparisons = agreement_tables(
        study_pairs,
        data.images,
        data.scores,
        scaled,
        design=data.design,
        deltas=data.deltas,
        samples=samples,
        rng=agreement_rng,
        human=HUMAN_SCORE[model],
    )
    counts = report_counts(tally, study_pairs, scaled)
    calibration, curves = pd.DataFrame(columns=CALIBRATION_COLUMNS), {}
    if calibrate_folds >= 2:
        calibration, curves = delta_calibration(
            study_pairs, data.scores, table, deltas=data.deltas, folds=calibrate_folds,
            samples=samples, rng=np.random.default_rng([seed, 2]),
        )  # fmt: skip
    fused = (
        study_fusion(
            study_pairs,
            data.images,
            data.scores,
            scaled,
            design=data.design,
            versions=data.versions,
            samples=samples,
            seed=seed,
            human=HUMAN_SCORE[model],
        )
        if fusion
        else {}
    )
    return Report(
        slug=data.slug,
        design=data.design,
        rules=data.rules,
        deltas=data.deltas,
        samples=samples,
        seed=seed,
        annotators=annotators,
        pairs=labels,
        image_scores=scaled,
        agreement=table,
        comparisons=comparisons,
        counts=counts,
        versions=data.versions,
        calibration=calibration,
        delta_curves=curves,
        model=model,
        tie_parameter=tie_parameter,
        fusion=fused,
    )
