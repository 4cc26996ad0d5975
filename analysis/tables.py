"""The headline table of a report (``render.report_dict``'s data, or a snapshot): one
row per metric, best first, as CSV and as a LaTeX booktabs table in the A-FINE layout
(metric rows, subset columns, the best of each column in bold). Pure functions."""

import csv
import io
import math

from core.spreadsheet import defuse

# A pair of metrics differs significantly below this p-value (the paired bootstrap).
ALPHA = 0.05


def _number(value) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def headline(report: dict) -> dict:
    """{"subsets": [...], "rows": [...]}: per metric (best overall accuracy first) its
    kind and version, accuracy with its interval and pairs per subset, 2AFC, SRCC /
    KRCC / PLCC, and ``not_worse``: the best, or not significantly worse than it."""
    rows = [r for r in report.get("agreement", []) if not r["delta"]]
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    by_metric: dict[str, dict] = {}
    for r in rows:  # already ranked: subset by subset, best metric first
        entry = by_metric.setdefault(
            r["metric"],
            {
                "metric": r["metric"],
                "kind": report.get("metric_kinds", {}).get(r["metric"], ""),
                "version": report.get("metric_versions", {}).get(r["metric"], ""),
                "subsets": {},
            },
        )
        entry["subsets"][r["subset"]] = {
            "accuracy": r["accuracy"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
            "n_pairs": r["n_pairs"],
        }  # fmt: skip
        if r["subset"] == "all":
            entry.update(
                n_pairs=r["n_pairs"], accuracy_2afc=r["accuracy_2afc"], srcc=r["srcc"],
                krcc=r["krcc"], plcc=r["plcc"],
            )  # fmt: skip
    ranked = list(by_metric.values())
    best = ranked[0]["metric"] if ranked else None
    worse = {
        c["metric_b"]
        for c in report.get("comparisons", [])
        if c["metric_a"] == best and c["p_value"] is not None and c["p_value"] < ALPHA
    }
    for entry in ranked:
        entry["not_worse"] = (
            entry["metric"] not in worse
            and entry["subsets"].get("all", {}).get("accuracy") is not None
        )
    return {"subsets": subsets, "rows": ranked, "fusion": _fusion_row(report)}


def _fusion_row(report: dict) -> dict | None:
    """The fusion metric's out-of-sample row (``--fusion``, the snapshot), shaped as a
    metric's; None when it has no figures."""
    fused = report.get("fusion") or {}
    if fused.get("status") != "ok":
        return None
    rows = {r["subset"]: r for r in fused["rows"]}
    whole = rows["all"]
    return {
        "metric": fused["name"], "kind": "fusion", "version": "", "not_worse": False,
        "subsets": {s: {k: r[k] for k in ("accuracy", "ci_low", "ci_high", "n_pairs")}
                    for s, r in rows.items()},
        "n_pairs": whole["n_pairs"], **{k: whole.get(k) for k in
                                        ("accuracy_2afc", "srcc", "krcc", "plcc")},
    }  # fmt: skip


def headline_csv(report: dict) -> str:
    table = headline(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["metric", "kind", "version", "n_pairs"]
    for s in table["subsets"]:
        header += [f"accuracy {s}", f"ci_low {s}", f"ci_high {s}", f"n_pairs {s}"]
    header += ["accuracy_2afc", "srcc", "krcc", "plcc", "not_worse_than_best"]
    writer.writerow(header)
    for row in table["rows"] + ([table["fusion"]] if table["fusion"] else []):
        line = [row["metric"], row["kind"], row["version"], row.get("n_pairs", 0)]
        for s in table["subsets"]:
            cell = row["subsets"].get(s, {})
            line += [_csv(cell.get(k)) for k in ("accuracy", "ci_low", "ci_high")]
            line.append(cell.get("n_pairs", 0))
        line += [_csv(row.get(k)) for k in ("accuracy_2afc", "srcc", "krcc", "plcc")]
        line.append("yes" if row["not_worse"] else "no")
        writer.writerow([defuse(cell) for cell in line])
    return out.getvalue()


def _csv(value) -> str:
    value = _number(value)
    return "" if value is None else repr(float(value))


def _tex(text: str) -> str:
    out = str(text)
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                          ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"),
                          ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):  # fmt: skip
        out = out.replace(char, escaped)
    return out.replace("<", "$<$").replace(">", "$>$").replace("=", "$=$")


COLUMNS = (("accuracy_2afc", "2AFC"), ("srcc", "SRCC"), ("krcc", "KRCC"), ("plcc", "PLCC"))


def headline_latex(report: dict) -> str:
    """A booktabs table: FR metrics then NR metrics (a rule between), one column per
    subset's accuracy (``all`` and the outcome subsets; not the per-condition ones),
    then 2AFC and the correlations; the best value of each column in bold; a dagger on
    metrics not significantly worse than the best."""
    table = headline(report)
    rows = table["rows"]
    # Per-condition subsets make the table too wide for a page: the CSV has them.
    subsets = [s for s in table["subsets"] if not s.startswith("condition:")]
    columns = [(s, _tex(s)) for s in subsets] + [(k, label) for k, label in COLUMNS]

    def value(row: dict, key: str):
        if key in subsets:
            return _number(row["subsets"].get(key, {}).get("accuracy"))
        return _number(row.get(key))

    best = {}
    for key, _ in columns:
        values = {v for r in rows if (v := value(r, key)) is not None}
        # Bold marks a best; a column where every metric ties has none.
        best[key] = max(values) if len(values) > 1 else None
    study = _tex(report.get("study", ""))
    lines = [
        r"% \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{Agreement of each metric with the human judgements of study "
        rf"\texttt{{{study}}}: accuracy by subset, 2AFC accuracy and the correlations "
        r"with the Thurstone scores (best in bold; $^\dagger$: not significantly worse "
        r"than the best).}",
        rf"\label{{tab:agreement-{report.get('study', '')}}}",
        r"\begin{tabular}{l" + "c" * len(columns) + "}",
        r"\toprule",
        " & ".join(["Metric"] + [label for _, label in columns]) + r" \\",
        r"\midrule",
    ]
    rows = rows + ([table["fusion"]] if table["fusion"] else [])
    for kind in ("FR", "NR", "", "fusion"):
        group = [r for r in rows if r["kind"] == kind]
        if not group:
            continue
        if lines[-1] != r"\midrule":
            lines.append(r"\midrule")
        for row in group:
            name = _tex(row["metric"]) + (r"$^\dagger$" if row["not_worse"] else "")
            cells = [name]
            for key, _ in columns:
                v = value(row, key)
                # (-0.0004 prints as -0.000: a rounded zero has no sign in a paper's table)
                text = "--" if v is None else f"{v:.3f}".replace("-0.000", "0.000")
                if v is not None and best[key] is not None and math.isclose(v, best[key]):
                    text = rf"\textbf{{{text}}}"
                cells.append(text)
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
