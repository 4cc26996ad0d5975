"""``configure_study``: a study's settings after import."""

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Study
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db


def test_settings_change_and_the_rest_stay(tmp_path):
    study = StudyFactory(trials_per_session=100, break_every=50)
    consent = tmp_path / "consent.txt"
    consent.write_text("You agree to compare images.\n\nYou may stop at any time.\n")
    call_command(
        "configure_study", study.slug, "--status", "live", "--trials-per-session", "30",
        "--break-every", "10", "--consent-file", str(consent),
    )  # fmt: skip
    study.refresh_from_db()
    assert study.status == Study.Status.LIVE
    assert (study.trials_per_session, study.break_every) == (30, 10)
    assert study.consent == "You agree to compare images.\n\nYou may stop at any time."
    assert study.practice_trials == 2  # not given, not changed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--break-every", "-1"], "break_every must be at least 0"),
        (["--trials-per-session", "0"], "trials_per_session must be at least 1"),
        (["--consent-file", "/nonexistent/consent.txt"], "cannot read --consent-file"),
        (["--qc-min-gold-accuracy", "1.5"], "qc_min_gold_accuracy must be between 0 and 1"),
        (["--qc-side-bias-alpha", "often"], "qc_side_bias_alpha must be a number or 'off'"),
        (
            ["--qc-min-median-response-ms", "-3"],
            "qc_min_median_response_ms must be between 0 and 600000",
        ),
        (["--qc-fast-response-ms", "off"], "qc_fast_response_ms must be a number"),
        (["--metric-delta", "psnr"], "--metric-delta 'psnr': expected METRIC=NUMBER"),
        (["--metric-delta", "psnr=-1"], "metric_deltas must map metric names to numbers >= 0"),
    ],
)
def test_invalid_settings_are_refused_and_nothing_changes(args, message):
    study = StudyFactory()
    with pytest.raises(CommandError, match=message):
        call_command("configure_study", study.slug, "--status", "live", *args)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT


def test_quality_control_rules_and_metric_deltas():
    """Defaults as documented; a rule can be changed or turned off; deltas accumulate and
    a delta of 0 removes one."""
    study = StudyFactory()
    assert (study.qc_min_gold_accuracy, study.qc_min_median_response_ms) == (0.7, 500.0)
    assert (study.qc_side_bias_alpha, study.qc_max_similar_share) == (0.001, 0.9)
    assert study.qc_min_majority_agreement is None
    call_command(
        "configure_study", study.slug, "--qc-min-gold-accuracy", "0.8",
        "--qc-min-median-response-ms", "off", "--qc-min-majority-agreement", "0.4",
        "--metric-delta", "psnr=0.5", "--metric-delta", "lpips=0.01",
    )  # fmt: skip
    study.refresh_from_db()
    assert study.qc_min_gold_accuracy == 0.8
    assert study.qc_min_median_response_ms is None
    assert study.qc_min_majority_agreement == 0.4
    assert study.metric_deltas == {"psnr": 0.5, "lpips": 0.01}
    call_command("configure_study", study.slug, "--metric-delta", "psnr=0")
    study.refresh_from_db()
    assert study.metric_deltas == {"lpips": 0.01}
    assert study.qc_min_gold_accuracy == 0.8  # not given, not changed
