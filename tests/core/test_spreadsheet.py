"""CSV cells a spreadsheet will not run (core/spreadsheet.py), and the report's CSV."""

import pandas as pd

from analysis.tables import headline_csv
from core.spreadsheet import defuse, defuse_frame, restore, restore_frame


def test_formula_cells_get_a_quote_and_come_back_exactly():
    cases = {
        '=HYPERLINK("x")': '\'=HYPERLINK("x")',
        "+SUM(1,1)": "'+SUM(1,1)",
        "-2+3": "'-2+3",
        "@cmd": "'@cmd",
        "\tx": "'\tx",
        "\rx": "'\rx",
        "'quoted": "''quoted",  # a quote already there is kept through restore
        "-0.5": "-0.5",  # a number
        "1e-3": "1e-3",
        "scene/a.png": "scene/a.png",
        "": "",
    }
    for value, written in cases.items():
        assert defuse(value) == written, value
        assert restore(written) == value
    assert defuse(None) is None
    assert defuse(-3) == -3


def test_a_frame_round_trips_and_keeps_its_numbers():
    frame = pd.DataFrame({"name": ["=a", "b", None], "value": [-1.5, 2.0, 3.0]})
    written = defuse_frame(frame)
    assert list(written["name"][:2]) == ["'=a", "b"]
    assert list(written["value"]) == [-1.5, 2.0, 3.0]
    assert restore_frame(written.copy()).equals(frame)
    assert list(frame["name"][:2]) == ["=a", "b"]  # the caller's frame is untouched


def test_the_reports_headline_csv_is_defused():
    report = {
        "agreement": [
            {"metric": "=plugin()", "subset": "all", "delta": 0, "accuracy": 0.8,
             "ci_low": 0.7, "ci_high": 0.9, "n_pairs": 10, "accuracy_2afc": 0.8,
             "srcc": 0.5, "krcc": 0.4, "plcc": 0.6},
        ],
        "metric_kinds": {"=plugin()": "FR"},
        "metric_versions": {"=plugin()": "1"},
    }  # fmt: skip
    text = headline_csv(report)
    assert "\n'=plugin()," in text
