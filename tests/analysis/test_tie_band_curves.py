"""Issue 15: each metric's accuracy against its tie band delta, as the live report's
snapshot carries it (``report.tie_band_curves``): the grid (0, quantiles of the absolute
differences, the hand-set delta) and the accuracy at each point, checked against the
A-FINE rule written out pair by pair."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from analysis import agreement
from analysis.report import study_report, tie_band_curves
from analysis.selectors import study_data
from analysis.services import agreement_snapshot_refresh
from annotation import services
from scoring.models import Score
from tests.annotation.sessions import vote_after
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db


def test_the_grid_is_zero_the_quantiles_of_the_differences_and_the_extra_deltas():
    difference = np.array([0.5, -2.0, 1.0, np.nan, 4.0, -0.25])
    label = np.array(["a", "b", "similar", "a", "none", "similar"], dtype=object)
    grid = agreement.delta_grid(difference, label, points=5, extra=(0.7, 9.0))
    # Counted pairs (a label and a score): |d| = 0.5, 2, 1, 0.25.
    magnitudes = np.array([0.25, 0.5, 1.0, 2.0])
    expected = np.unique(
        np.concatenate(
            [[0.0], np.quantile(magnitudes, np.linspace(0, 1, 5), method="lower"), [0.7, 9.0]]
        )
    )
    np.testing.assert_array_equal(grid, expected)
    assert set(grid) <= {0.0, 0.7, 9.0, *magnitudes}  # differences: where accuracy steps
    assert grid[0] == 0.0
    assert grid[-1] == 9.0
    assert list(agreement.delta_grid(difference[:0], label[:0], points=5)) == [0.0]


def test_the_curve_points_are_the_accuracy_of_the_rule_at_each_delta():
    rng = np.random.default_rng(3)
    difference = np.round(rng.normal(0, 1, 200), 2)
    label = rng.choice(["a", "similar", "b", "none"], 200).astype(object)
    grid = agreement.delta_grid(difference, label, points=20)
    curve = agreement.accuracy_curve(difference, label, grid)
    assert [p["delta"] for p in curve] == list(grid)
    for point in curve:
        judged = agreement.correct(difference, label, point["delta"])
        assert point["n_pairs"] == np.isfinite(judged).sum()
        assert point["accuracy"] == pytest.approx(np.nanmean(judged))
    assert agreement.accuracy_curve(difference[:0], label[:0], np.array([0.0])) == [
        {"delta": 0.0, "accuracy": None, "n_pairs": 0}
    ]


def test_all_metrics_at_once_equal_each_metric_alone():
    """``agreement.tie_band_curves`` (one sort per side and metric, every metric at once)
    gives exactly each metric's ``delta_grid`` and ``accuracy_curve``: ties, missing
    scores, pairs without a label, a metric with no score at all and hand-set deltas."""
    rng = np.random.default_rng(7)
    difference = np.round(rng.normal(0, 1, (500, 5)), 1)  # many ties
    difference[rng.random((500, 5)) < 0.1] = np.nan
    difference[:, 3] = np.nan
    label = rng.choice(["a", "similar", "b", "none", None], 500).astype(object)
    hand = np.array([0.0, 0.35, 0.0, 0.2, 5.0])
    curves = agreement.tie_band_curves(difference, label, points=48, extra=hand)
    for m in range(5):
        grid = agreement.delta_grid(difference[:, m], label, points=48, extra=(hand[m],))
        assert curves[m] == agreement.accuracy_curve(difference[:, m], label, grid)
    assert [p["n_pairs"] for p in curves[3]] == [0, 0]  # 0 and its hand-set delta
    assert agreement.tie_band_curves(difference[:0], label[:0], points=4, extra=hand) == [
        [{"delta": 0.0, "accuracy": None, "n_pairs": 0}] + (
            [{"delta": float(d), "accuracy": None, "n_pairs": 0}] if d else [])
        for d in hand
    ]  # fmt: skip


def _a_fine(difference: float, label: str, delta: float) -> bool:
    if label == "a":
        return difference > delta
    if label == "b":
        return difference < -delta
    return abs(difference) <= delta


@pytest.fixture
def study():
    """8 pairs over 2 scenes with 3 voters (left every time: the majority is a), one
    NR metric rising with the image's id and one falling (lower is better), and a hand-set
    delta for the first."""
    owner = get_user_model().objects.create_user("ada", password="x")
    study = LiveStudyFactory(owner=owner, slug="bands", metric_deltas={"musiq": 2.5})
    pairs = make_pairs(study, 8, votes=3, scenes=2)
    images = sorted({image for pair in pairs for image in (pair.image_a, pair.image_b)},
                    key=lambda image: image.pk)  # fmt: skip
    Score.objects.bulk_create(
        [Score(metric="musiq", version="v1", image=image, value=float(i * i % 7),
               lower_better=False) for i, image in enumerate(images)]
        + [Score(metric="niqe", version="v1", image=image, value=float(i % 3),
                 lower_better=True) for i, image in enumerate(images)]
    )  # fmt: skip
    for participant in ("p1", "p2", "p3"):
        token = services.session_open(study_slug=study.slug, participant_id=participant)
        token = token.session.token
        for i in range(8):
            trial = services.trial_next(token=token)
            vote_after(token, trial.trial_id, "left", 900 + i)
    return study


def test_the_study_curves_follow_the_votes_and_pass_through_the_reported_accuracies(study):
    data = study_data(study)
    report = study_report(data, samples=20, image_intervals=False)
    curves = tie_band_curves(report, data, points=10)
    assert set(curves) == {"musiq", "niqe"}

    # Independently: each pair's human majority, and each metric's oriented difference.
    labels = report.pairs.set_index("pair_id")["majority"]
    scores = {(s.metric, s.image_id): (s.value, s.lower_better) for s in Score.objects.all()}
    for metric, curve in curves.items():
        deltas = [p["delta"] for p in curve]
        assert deltas == sorted(set(deltas))
        assert deltas[0] == 0.0
        assert len(deltas) <= 10 + 2
        hand = study.metric_deltas.get(metric)
        if hand:
            assert hand in deltas
        for point in curve:
            right = n = 0
            for pair in data.pairs.itertuples():
                label = labels[pair.pair_id]
                if label not in ("a", "similar", "b"):
                    continue
                value_a, lower = scores[(metric, pair.image_a)]
                value_b, _ = scores[(metric, pair.image_b)]
                difference = (value_b - value_a) if lower else (value_a - value_b)
                n += 1
                right += _a_fine(difference, label, point["delta"])
            assert (point["n_pairs"], point["accuracy"]) == (n, pytest.approx(right / n))
        # The report's delta-0 and own-delta rows are points of the curve.
        rows = report.agreement[
            (report.agreement["metric"] == metric) & (report.agreement["subset"] == "all")
        ]
        at = {p["delta"]: p["accuracy"] for p in curve}
        for row in rows.itertuples():
            assert at[row.delta] == pytest.approx(row.accuracy)
    assert len(report.agreement.query("delta != 0")) > 0  # musiq's own delta was reported


def test_the_snapshot_carries_the_curves(study):
    snapshot = agreement_snapshot_refresh(study=study)
    curves = snapshot.report["tie_band_curves"]
    data = study_data(study)
    report = study_report(data, samples=20, image_intervals=False)
    assert curves == tie_band_curves(report, data)
    assert 2.5 in [p["delta"] for p in curves["musiq"]]
