"""The report rendered for people and programs: JSON-ready data and the paper-style text
table. Pure functions of a ``Report``."""

import json
import math

import numpy as np
import pandas as pd

from analysis.report import HUMAN_SCORE, MIN_PAIRS, MODEL_NAMES, Report
from analysis.scaling import TIE_MODELS, TIE_PARAMETER


def _clean(value):
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def json_ready(value):
    """``_clean`` through dicts and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return _clean(value)


def report_dict(report: Report) -> dict:
    """The report as JSON-ready data (NaN as null); with a --model other than thurstone,
    also ``scaling`` (the model, the human score column, the tie parameter) and, for a
    tie model, ``image_scores`` (both scales side by side)."""
    return {
        "study": report.slug,
        "design": report.design,
        "settings": {
            "rules": report.rules.as_dict(),
            "metric_deltas": report.deltas,
            "bootstrap_samples": report.samples,
            "seed": report.seed,
        },
        "counts": report.counts,
        "metric_versions": report.versions,
        "exclusions": _records(report.excluded),
        # Every decision in force made by hand (exclusions and re-inclusions).
        "manual_decisions": _records(_decisions_json(report.decided)),
        # Rows on fewer than min_pairs pairs carry few_pairs: true.
        "min_pairs": MIN_PAIRS,
        "agreement": _records(report.agreement),
        "comparisons": _records(report.comparisons),
        # --calibrate-delta: each metric's delta chosen by k-fold cross-validation, with its
        # held-out accuracy beside delta 0 and the hand-set delta; and the accuracy-versus-
        # delta curve per metric ({metric: [{delta, accuracy, n_pairs}, ...]}).
        "delta_calibration": _records(report.calibration),
        "delta_curves": report.delta_curves,
        **_model_dict(report),
        # --fusion: the fusion metric's cross-validated evaluation (analysis/fusion.py).
        **({"fusion": json_ready(report.fusion)} if report.fusion else {}),
    }


def _model_dict(report: Report) -> dict:
    if report.model == "thurstone":
        return {}
    scaling = {"model": report.model, "human_score": HUMAN_SCORE[report.model]}
    if report.model not in TIE_MODELS:
        return {"scaling": scaling}
    scaling[TIE_PARAMETER[report.model]] = _clean(report.tie_parameter)
    return {
        "scaling": scaling,
        "image_scores": _records(report.image_scores.drop(columns="image_id")),
    }


def _decisions_json(decided: pd.DataFrame) -> pd.DataFrame:
    decided = decided.copy()
    decided["decided_at"] = [
        None if pd.isna(at) else at.isoformat() for at in decided["decided_at"]
    ]
    return decided


def report_json(reports: list[Report]) -> str:
    return json.dumps([report_dict(r) for r in reports], indent=2)


def _cell(accuracy: float, low: float = np.nan, high: float = np.nan) -> str:
    if not math.isfinite(accuracy):
        return "-"
    if not math.isfinite(low):
        return f"{accuracy:.3f}"
    return f"{accuracy:.3f} [{low:.2f},{high:.2f}]"


def _counted(text: str, n: int, unit: str = "") -> str:
    """A number with the count it rests on; marked "!" below MIN_PAIRS pairs."""
    if text == "-":
        return text
    mark = "!" if unit == "" and n < MIN_PAIRS else ""
    return f"{text} (n={n}{unit}){mark}"


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "-"


def report_text(report: Report) -> str:
    """The paper-style table: metrics (best first) by subsets, accuracy with its 95% CI."""
    c = report.counts
    lines = [
        f"Study {report.slug} ({report.design}): {c['pairs']} pairs in {c['scenes']} scenes, "
        f"{c['labelled_pairs']} with a human label; {c['counted_votes']} counted votes from "
        f"{c['annotators'] - c['excluded_annotators']} of {c['annotators']} annotators"
        + (
            f" ({c['not_judged_annotators']} not judged: too few answers for any rule)."
            if c.get("not_judged_annotators")
            else "."
        ),
        f"n: the pairs (or scenes, or annotators) each number rests on; '!' marks fewer than "
        f"{MIN_PAIRS} pairs.",
    ]
    excluded = report.excluded
    if len(excluded):
        lines.append(f"Excluded annotators ({len(excluded)}):")
        lines += [f"  {row.annotator}: {row.reasons}" for row in excluded.itertuples()]
    else:
        lines.append("Excluded annotators: none.")
    included = report.decided[report.decided["manual_decision"] == "included"]
    if len(included):
        lines.append(f"Re-included by hand ({len(included)}):")
        lines += [f"  {row.annotator}: {row.reasons}" for row in included.itertuples()]
    table = report.agreement
    if table.empty:
        lines.append("No metric scores yet: run `python manage.py score_study "
                     f"{report.slug}` first.")  # fmt: skip
        return "\n".join(lines) + "\n"
    lines.append(
        f"Accuracy with the A-FINE rule (delta 0), 95% bootstrap intervals "
        f"({report.samples} resamples); 2AFC on pairs with a clear preference; SRCC, KRCC, "
        f"PLCC against {MODEL_NAMES[report.model]} scores within scenes, averaged over scenes."
    )
    if report.model in TIE_MODELS:
        lines.append(
            f"{MODEL_NAMES[report.model]} scores take a similar vote as a tie; "
            f"{TIE_PARAMETER[report.model]} = {report.tie_parameter:.4g} for the study."
        )
    main = [s for s in table["subset"].unique() if not s.startswith("condition:")]
    for title, subsets, extra in (
        ("", main, True),
        ("By condition (pairs showing it):", [s for s in table["subset"].unique()
                                              if s.startswith("condition:")], False),
    ):  # fmt: skip
        if not subsets:
            continue
        zero = table[table["delta"] == 0]
        header = ["metric"] + [
            f"{s.removeprefix('condition:')} (n={int(zero[zero['subset'] == s]['n_pairs'].max())})"
            for s in subsets
        ]
        column_n = {s: int(zero[zero["subset"] == s]["n_pairs"].max()) for s in subsets}
        if extra:
            header += ["2AFC", "SRCC", "KRCC", "PLCC"]
        body = []
        for metric in zero["metric"].unique():
            rows = zero[zero["metric"] == metric].set_index("subset")
            # The condition table is wide: accuracies only there (intervals in --json).
            shown = ["accuracy", "ci_low", "ci_high"] if extra else ["accuracy"]
            # A cell's own n where it differs from its column's (a missing score), and
            # "!" where the column or the cell rests on fewer than MIN_PAIRS pairs.
            cells = [metric] + [
                _cell(*rows.loc[s, shown])
                + (f" (n={int(rows.loc[s, 'n_pairs'])})" if rows.loc[s, "n_pairs"] != column_n[s]
                   else "")
                + ("!" if rows.loc[s, "n_pairs"] < MIN_PAIRS else "")
                for s in subsets
            ]  # fmt: skip
            if extra:
                whole = rows.loc["all"]
                cells += [_counted(_number(whole["accuracy_2afc"]), int(whole["n_2afc"]))] + [
                    _counted(_number(whole[key]), int(whole["n_scenes"]), " scenes")
                    for key in ("srcc", "krcc", "plcc")
                ]
            body.append(cells)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        if title:
            lines += ["", title]
        else:
            lines.append("")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    with_delta = table[table["delta"] != 0]
    if len(with_delta):
        lines += ["", "With each metric's own delta (subset all):"]
        for row in with_delta[with_delta["subset"] == "all"].itertuples():
            lines.append(f"  {row.metric} (delta {row.delta:g}): "
                         + _counted(_cell(row.accuracy, row.ci_low, row.ci_high),
                                    row.n_pairs))  # fmt: skip
    comparisons = report.comparisons
    if len(comparisons):
        top = comparisons["metric_a"].iloc[0]
        lines += ["", f"Paired bootstrap test against the best metric, {top} (subset all):"]
        for row in comparisons[comparisons["metric_a"] == top].itertuples():
            lines.append(
                f"  {top} - {row.metric_b}: {row.difference:+.3f} "
                f"[{row.ci_low:+.3f},{row.ci_high:+.3f}], "
                + _p(row.p_value, report.samples)
                + f" (n={row.n_pairs})"
                + ("!" if row.n_pairs < MIN_PAIRS else "")
            )
    lines += _calibration_lines(report)
    lines += fusion_lines(report.fusion, samples=report.samples)
    return "\n".join(lines) + "\n"


def _p(value: float, samples: int) -> str:
    """A bootstrap p-value: below one resample's share it is "p<1/samples"."""
    if value is None or not math.isfinite(value):
        return "p=-"
    return f"p={value:.3g}" if value > 0 else f"p<{1 / samples:g}"


def fusion_lines(fused: dict, *, samples: int) -> list[str]:
    """The fusion metric's block of the text report (``fusion.evaluate``'s data)."""
    if not fused:
        return []
    lines = ["", f"Fusion of the metrics ({fused['name']}):"]
    for left in fused.get("left_out", []):
        lines.append(f"  left out: {left['metric']} ({left['reason']}; "
                     f"coverage {left['coverage']:.0%})")  # fmt: skip
    if fused["status"] != "ok":
        lines.append(f"  {fused['message']}.")
        return lines
    whole = fused["rows"][0]
    best = fused["best_single"]
    band = fused["band"]
    lines += [
        f"  L2 logistic regression on the metrics' standardised differences; "
        f"{fused['message']} ({fused['n_pairs']} pairs in {fused['n_scenes']} scenes, "
        f"{fused['dropped_pairs']} left out for a missing score); C chosen inside each "
        f"training part by {fused['inner_folds']} grouped folds. Out of sample:",
        f"  accuracy (delta 0) {_cell(whole['accuracy'], whole['ci_low'], whole['ci_high'])}"
        f", 2AFC {_cell(whole['accuracy_2afc'], whole['ci_2afc_low'], whole['ci_2afc_high'])}"
        + (f", SRCC {_number(whole['srcc'])}" if "srcc" in whole else "")
        + f"; with the tie band chosen in each training part "
        f"{_cell(band['accuracy'], band['ci_low'], band['ci_high'])}",
        f"  against the best single metric on the same pairs, {best['metric']} "
        f"({best['accuracy']:.3f}): {best['difference']:+.3f} "
        f"[{best['ci_low']:+.3f},{best['ci_high']:+.3f}], {_p(best['p_value'], samples)}",
    ]
    for row in fused["rows"][1:]:
        lines.append(f"  {row['subset']}: " + _counted(
            _cell(row["accuracy"], row["ci_low"], row["ci_high"]), row["n_pairs"]))  # fmt: skip
    lines.append(
        f"  weights (per standardised difference, C={fused['C']:g}; the outer folds' "
        "range; the share of folds with the same sign):"
    )
    for row in fused["coefficients"]:
        lines.append(
            f"    {row['metric']}: {row['weight']:+.3f} ({row['share']:.0%}) "
            f"[{row['fold_min']:+.3f},{row['fold_max']:+.3f}] same sign {row['same_sign']:.0%}"
        )
    return lines


def _calibration_lines(report: Report) -> list[str]:
    calibration = report.calibration
    if calibration.empty:
        return []
    folds = int(calibration["folds"].max())
    lines = [
        "",
        f"Delta chosen by {folds}-fold cross-validation over pairs (3-way accuracy maximised "
        "on the other folds, judged on the held-out fold; delta from all pairs):",
    ]
    for row in calibration.itertuples():
        if not math.isfinite(row.delta):
            lines.append(f"  {row.metric}: too few labelled pairs (n={row.n_pairs})")
            continue
        hand = (
            f"; hand-set delta {row.hand_delta:g}: "
            + _cell(row.accuracy_hand, row.ci_hand_low, row.ci_hand_high)
            if row.hand_delta
            else ""
        )
        lines.append(
            f"  {row.metric}: delta {row.delta:.4g} held-out "
            + _counted(_cell(row.accuracy, row.ci_low, row.ci_high), row.n_pairs)
            + f"; delta 0: {_cell(row.accuracy_zero, row.ci_zero_low, row.ci_zero_high)}"
            + hand
        )
    return lines
