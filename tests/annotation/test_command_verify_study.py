"""``manage.py verify_study`` outside the worker round trips (see test_tasks_image_verify)."""

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_verify_study_names_an_unknown_slug():
    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        call_command("verify_study", "nope")
