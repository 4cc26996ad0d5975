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
        (["--break-every", "-1"], "--break-every must be 0"),
        (["--trials-per-session", "0"], "--trials-per-session must be at least 1"),
        (["--consent-file", "/nonexistent/consent.txt"], "cannot read --consent-file"),
    ],
)
def test_invalid_settings_are_refused_and_nothing_changes(args, message):
    study = StudyFactory()
    with pytest.raises(CommandError, match=message):
        call_command("configure_study", study.slug, "--status", "live", *args)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
