"""A study's report: exclusions, labels per pair, scores per image, agreement per metric.

Over 400 lines: the steps from votes to the report's tables, each feeding the next
(the text and JSON renderings are in ``render.py``).

``study_report`` is a pure function of the ``StudyData`` that ``selectors.study_data``
loads; the management command, the export and the benchmark all call it.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import agreement, scaling
from analysis.quality import Rules, annotator_quality, apply_decisions
from analysis.selectors import StudyData
from annotation import aggregation

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


def annotator_table(data: StudyData) -> pd.DataFrame:
    """The quality-control table: the rules' measures and verdicts, then the researcher's
    decisions in force (which override the rules for their annotators)."""
    return apply_decisions(annotator_quality(data.votes, data.rules), data.decisions)


def counted_votes(votes: pd.DataFrame, pairs: pd.DataFrame, excluded: set) -> pd.DataFrame:
    """The votes that make labels: study pairs' label answers (late ones too) and gold
    pairs' gold answers; never practice, never an excluded annotator's."""
    gold_ids = set(pairs.loc[pairs["gold_answer"] != "", "pair_id"])
    kind_fits = (votes["kind"] == "gold") == votes["pair_id"].isin(gold_ids)
    keep = kind_fits & (votes["kind"] != "practice") & ~votes["annotator"].isin(excluded)
    return votes[keep]


def pair_labels(votes: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    counts = aggregation.pair_counts(votes, pairs["pair_id"])
    labels = pd.DataFrame({"pair_id": pairs["pair_id"].to_numpy()})
    labels["is_gold"] = (pairs["gold_answer"] != "").to_numpy()
    for column in ("n_votes", "n_a", "n_similar", "n_b"):
        labels[column] = counts[column].to_numpy()
    n_a, n_s, n_b = (labels[c].to_numpy() for c in ("n_a", "n_similar", "n_b"))
    labels["p_a"] = aggregation.p_a(n_a, n_s, labels["n_votes"].to_numpy())
    labels["majority"] = aggregation.majority(n_a, n_s, n_b)
    return labels


def _scene_layout(study_pairs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
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
    layout, ia, ib = _scene_layout(study_pairs)
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


def pair_subsets(study_pairs: pd.DataFrame, images: pd.DataFrame, design: str) -> pd.DataFrame:
    """Boolean membership of each pair in each subset: "all"; for ref-vs-test the human
    outcome of the test against the reference; "condition:X" for pairs showing X."""
    info = images.set_index("image_id")
    role_a = info["role"].reindex(study_pairs["image_a"]).to_numpy()
    cond_a = info["condition"].reindex(study_pairs["image_a"]).fillna("").to_numpy()
    cond_b = info["condition"].reindex(study_pairs["image_b"]).fillna("").to_numpy()
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
    for condition in sorted(set(cond_a) | set(cond_b)):
        if condition:
            subsets[f"condition:{condition}"] = (cond_a == condition) | (cond_b == condition)
    return pd.DataFrame(subsets)


def metric_table(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Wide values (image_id x metric) and each metric's ``lower_better``."""
    if scores.empty:
        return pd.DataFrame(), pd.Series(dtype=bool)
    wide = scores.pivot(index="image_id", columns="metric", values="value")
    lower = scores.groupby("metric")["lower_better"].last().astype(bool)
    return wide, lower.reindex(wide.columns)


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The agreement table (metric x subset x delta) and the paired comparisons."""
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

    def gather(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), len(metrics)), np.nan)
        present = ~np.isnan(rows)
        out[present] = values[rows[present].astype(np.int64)]
        return out

    label = study_pairs["majority"].to_numpy()[:, None]
    subsets = pair_subsets(study_pairs, images, design)
    membership = subsets.to_numpy(dtype=np.float64)  # (pairs, subsets)

    def tally(right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(subsets, metrics) counts of pairs that count and of those right."""
        counts = membership.T @ np.isfinite(right)
        hits = membership.T @ np.nan_to_num(right, nan=0.0)
        return counts.astype(np.int64), np.rint(hits).astype(np.int64)

    n_2afc, k_2afc = tally(agreement.correct_2afc(difference, label))
    lo_2afc, hi_2afc = agreement.bootstrap_accuracy_ci(
        k_2afc.ravel(), n_2afc.ravel(), samples=samples, rng=rng
    )

    # Correlations with the human scores within scenes (subset "all" only).
    oriented = np.where(lower.to_numpy()[None, :], -1.0, 1.0) * gather(
        row.reindex(scaled["image_id"]).to_numpy()
    )
    scene_codes, _ = pd.factorize(scaled["scene"])
    correlations = agreement.scene_correlations(
        scene_codes, oriented, scaled["thurstone"].to_numpy()
    )
    srcc_lows, srcc_highs = agreement.bootstrap_mean_ci(
        correlations["srcc"], samples=samples, rng=rng
    )
    rows: list[dict] = []
    correct_at_zero = agreement.correct(difference, label, 0.0)
    for delta_kind in ("zero", "metric"):
        if delta_kind == "zero":
            metric_delta = np.zeros(len(metrics))
            right = correct_at_zero
        else:
            metric_delta = np.array([float(deltas.get(m, 0.0)) for m in metrics])
            if not (metric_delta != 0).any():
                break
            right = agreement.correct(difference, label, metric_delta[None, :])
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
    comparisons = [
        {
            "metric_a": x,
            "metric_b": y,
            "accuracy_a": overall.at[x, "accuracy"],
            "accuracy_b": overall.at[y, "accuracy"],
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


def pair_differences(
    study_pairs: pd.DataFrame, scores: pd.DataFrame
) -> tuple[list[str], np.ndarray]:
    """(metrics, oriented differences (pairs x metrics): positive where the metric prefers
    a; NaN where a score is missing)."""
    wide, lower = metric_table(scores)
    metrics = list(wide.columns)
    if not metrics or study_pairs.empty:
        return metrics, np.zeros((len(study_pairs), len(metrics)))
    values = wide.to_numpy(dtype=np.float64)
    row = pd.Series(np.arange(len(wide)), index=wide.index)

    def gather(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), len(metrics)), np.nan)
        present = ~np.isnan(rows)
        out[present] = values[rows[present].astype(np.int64)]
        return out

    a_rows = row.reindex(study_pairs["image_a"]).to_numpy()
    b_rows = row.reindex(study_pairs["image_b"]).to_numpy()
    return metrics, agreement.oriented_difference(
        gather(a_rows), gather(b_rows), lower.to_numpy()[None, :]
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
) -> Report:
    """Everything the platform reports about a study, from its data.

    ``samples`` bootstrap resamples for every interval, drawn from a generator seeded with
    ``seed``, so the same data give the same report. ``image_intervals`` adds the
    per-image bootstrap intervals (one refit per resample and scene).
    ``calibrate_folds`` (2 or more) adds each metric's delta chosen by that many folds of
    cross-validation over pairs (``delta_calibration``), from a third stream.
    """
    # Two streams, so the agreement's intervals are the same whether or not the image
    # intervals are drawn first (agreement_report skips those, the export draws them).
    image_rng, agreement_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    annotators = annotator_table(data)
    excluded = set(annotators.loc[annotators["excluded"], "annotator"])
    votes = counted_votes(data.votes, data.pairs, excluded)
    labels = pair_labels(votes, data.pairs)
    study_pairs = data.pairs.merge(labels[~labels["is_gold"]], on="pair_id")
    scaled = image_scores(
        study_pairs, data.images, intervals=image_intervals, samples=samples, rng=image_rng
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
    )
    counts = {
        "annotators": len(annotators),
        "excluded_annotators": len(excluded),
        "votes": int((data.votes["kind"] != "practice").sum()),
        "counted_votes": len(votes[votes["kind"] == "label"]),
        "pairs": len(study_pairs),
        "labelled_pairs": int(np.isin(study_pairs["majority"], agreement.LABELS).sum()),
        "scenes": int(study_pairs["scene"].nunique()),
        "images_scored": len(scaled),
        "not_judged_annotators": int((annotators.get("qc_status") == "not judged").sum())
        if "qc_status" in annotators
        else 0,
    }
    calibration, curves = pd.DataFrame(columns=CALIBRATION_COLUMNS), {}
    if calibrate_folds >= 2:
        calibration, curves = delta_calibration(
            study_pairs, data.scores, table, deltas=data.deltas, folds=calibrate_folds,
            samples=samples, rng=np.random.default_rng([seed, 2]),
        )  # fmt: skip
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
    )
