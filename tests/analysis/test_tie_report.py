"""``--model`` in the report: a tie model's scores beside the A-FINE-compatible ones,
and the default report unchanged."""

import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from analysis import scaling
from analysis.render import report_dict, report_text
from analysis.report import study_report
from tests.analysis.test_report import VOTES, study
from tests.factories import StudyFactory, make_pairs


@pytest.mark.parametrize(
    ("model", "column"), [("davidson", "davidson"), ("thurstone-ties", "thurstone_ties")]
)
def test_a_tie_model_adds_its_columns_and_leaves_the_default_ones_alone(model, column):
    default = study_report(study(VOTES), samples=100, seed=3)
    tied = study_report(study(VOTES), samples=100, seed=3, model=model)
    pd.testing.assert_frame_equal(
        default.image_scores, tied.image_scores[default.image_scores.columns]
    )
    assert list(tied.image_scores.columns[-4:]) == [
        column,
        f"{column}_ci_low",
        f"{column}_ci_high",
        "image_id",
    ]
    # The scores are the tie model's fit of the counted votes (pair 12's two similar
    # votes a tie, not two wins each way), with its tie parameter for the study.
    pairs = tied.pairs[~tied.pairs["is_gold"]].merge(study(VOTES).pairs, on="pair_id")
    names = dict(zip(study(VOTES).images["image_id"], study(VOTES).images["name"], strict=True))
    order = sorted(set(pairs["image_a"]) | set(pairs["image_b"]))
    local = {image: n for n, image in enumerate(order)}
    wins, ties = scaling.tie_count_matrices(
        np.zeros(len(pairs), int), pairs["image_a"].map(local).to_numpy(),
        pairs["image_b"].map(local).to_numpy(), pairs["n_a"].to_numpy(),
        pairs["n_similar"].to_numpy(), pairs["n_b"].to_numpy(), 1, len(order),
    )  # fmt: skip
    expected, parameter = scaling.fit_ties(wins, ties, model)
    scores = tied.image_scores.set_index("image")
    assert scores.loc[[names[i] for i in order], column].to_numpy() == pytest.approx(
        expected[0], abs=1e-9
    )
    assert tied.tie_parameter == pytest.approx(parameter)
    # Its intervals are the Laplace ones (scaling.tie_intervals), not resampled.
    low, high = scaling.tie_intervals(wins, ties, model, expected, parameter)
    ordered = scores.loc[[names[i] for i in order]]
    assert ordered[f"{column}_ci_low"].to_numpy() == pytest.approx(low[0], abs=1e-8)
    assert ordered[f"{column}_ci_high"].to_numpy() == pytest.approx(high[0], abs=1e-8)
    assert (scores[f"{column}_ci_low"] < scores[column]).all()
    assert (scores[column] < scores[f"{column}_ci_high"]).all()
    # The agreement's other numbers do not depend on the model.
    assert default.agreement.equals(tied.agreement)


def test_the_json_and_text_name_the_model_only_when_asked():
    default = report_dict(study_report(study(VOTES), samples=20))
    assert "scaling" not in default
    assert "image_scores" not in default
    report = study_report(study(VOTES), samples=20, model="thurstone-ties")
    data = json.loads(json.dumps(report_dict(report)))
    assert data["scaling"]["model"] == "thurstone-ties"
    assert data["scaling"]["human_score"] == "thurstone_ties"
    assert data["scaling"]["tau"] == pytest.approx(report.tie_parameter)
    assert {"thurstone", "thurstone_ties", "thurstone_ties_ci_low"} <= set(data["image_scores"][0])
    logistic = study_report(study(VOTES), samples=20, model="bradley-terry")
    assert report_dict(logistic)["scaling"] == {
        "model": "bradley-terry", "human_score": "bradley_terry",
    }  # fmt: skip
    assert "tau = " in report_text(report) or "No metric scores" in report_text(report)
    with pytest.raises(ValueError, match="unknown model 'elo'"):
        study_report(study(VOTES), samples=20, model="elo")


@pytest.mark.django_db
def test_the_commands_take_model(tmp_path, capsys):
    made = StudyFactory()
    make_pairs(made, 3)
    with pytest.raises(CommandError, match="invalid choice: 'elo'"):
        call_command("agreement_report", made.slug, "--model", "elo")
    call_command("agreement_report", made.slug, "--model", "davidson", "--json", "--samples", "10")
    data = json.loads(capsys.readouterr().out)
    assert data[0]["scaling"]["model"] == "davidson"
    with pytest.raises(CommandError, match="--model goes with --out"):
        call_command(
            "export_study", made.slug, "--bundle", str(tmp_path / "b.zip"), "--model", "davidson"
        )
    call_command(
        "export_study",
        made.slug,
        "--out",
        str(tmp_path / "out"),
        "--model",
        "thurstone-ties",
        "--samples",
        "10",
    )
    header = (tmp_path / "out" / "image_scores.csv").read_text().splitlines()[0]
    assert header.endswith("thurstone_ties,thurstone_ties_ci_low,thurstone_ties_ci_high")
    assert "`thurstone_ties`" in (tmp_path / "out" / "README.md").read_text()
