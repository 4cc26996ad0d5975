"""The report rendered for people and programs: JSON-ready data and the paper-style text
table. Pure functions of a ``Report``."""

import json
import math

import numpy as np
import pandas as pd

from analysis.report import Report


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


def report_dict(report: Report) -> dict:
    """The report as JSON-ready data (NaN as null)."""
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
        "agreement": _records(report.agreement),
        "comparisons": _records(report.comparisons),
    }


def report_json(reports: list[Report]) -> str:
    return json.dumps([report_dict(r) for r in reports], indent=2)


def _cell(accuracy: float, low: float = np.nan, high: float = np.nan) -> str:
    if not math.isfinite(accuracy):
        return "-"
    if not math.isfinite(low):
        return f"{accuracy:.3f}"
    return f"{accuracy:.3f} [{low:.2f},{high:.2f}]"


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "-"


def report_text(report: Report) -> str:
    """The paper-style table: metrics (best first) by subsets, accuracy with its 95% CI."""
    c = report.counts
    lines = [
        f"Study {report.slug} ({report.design}): {c['pairs']} pairs in {c['scenes']} scenes, "
        f"{c['labelled_pairs']} with a human label; {c['counted_votes']} counted votes from "
        f"{c['annotators'] - c['excluded_annotators']} of {c['annotators']} annotators.",
    ]
    excluded = report.excluded
    if len(excluded):
        lines.append(f"Excluded annotators ({len(excluded)}):")
        lines += [f"  {row.annotator}: {row.reasons}" for row in excluded.itertuples()]
    else:
        lines.append("Excluded annotators: none.")
    table = report.agreement
    if table.empty:
        lines.append("No metric scores yet: run `python manage.py score_study "
                     f"{report.slug}` first.")  # fmt: skip
        return "\n".join(lines) + "\n"
    lines.append(
        f"Accuracy with the A-FINE rule (delta 0), 95% bootstrap intervals "
        f"({report.samples} resamples); 2AFC on pairs with a clear preference; SRCC, KRCC, "
        "PLCC against Thurstone scores within scenes, averaged over scenes."
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
        if extra:
            header += ["2AFC", "SRCC", "KRCC", "PLCC"]
        body = []
        for metric in zero["metric"].unique():
            rows = zero[zero["metric"] == metric].set_index("subset")
            # The condition table is wide: accuracies only there (intervals in --json).
            shown = ["accuracy", "ci_low", "ci_high"] if extra else ["accuracy"]
            cells = [metric] + [_cell(*rows.loc[s, shown]) for s in subsets]
            if extra:
                whole = rows.loc["all"]
                cells += [_number(whole["accuracy_2afc"])] + [
                    _number(whole[key]) for key in ("srcc", "krcc", "plcc")
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
                         f"{_cell(row.accuracy, row.ci_low, row.ci_high)}")  # fmt: skip
    comparisons = report.comparisons
    if len(comparisons):
        top = comparisons["metric_a"].iloc[0]
        lines += ["", f"Paired bootstrap test against the best metric, {top} (subset all):"]
        for row in comparisons[comparisons["metric_a"] == top].itertuples():
            lines.append(
                f"  {top} - {row.metric_b}: {row.difference:+.3f} "
                f"[{row.ci_low:+.3f},{row.ci_high:+.3f}], "
                + (f"p={row.p_value:.3g}" if row.p_value > 0 else f"p<{1 / report.samples:g}")
            )
    return "\n".join(lines) + "\n"
