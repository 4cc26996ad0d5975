"""Annotator sessions through the services: opening one, the same participant's again."""

import pytest

from annotation import services
from annotation.errors import StudyNotOpen
from annotation.models import Study
from core.errors import NotFound
from tests.factories import LiveStudyFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_the_same_participant_gets_the_same_session_back():
    study = LiveStudyFactory()
    first = services.session_open(study_slug=study.slug, participant_id="PID-1")
    again = services.session_open(study_slug=study.slug, participant_id="PID-1")
    other = services.session_open(study_slug=study.slug, participant_id="PID-2")
    assert first.created
    assert not again.created
    assert again.session.token == first.session.token
    assert other.session.token != first.session.token
    assert len(first.session.token) >= 40


def test_sessions_open_on_live_studies_only():
    for status in (Study.Status.DRAFT, Study.Status.CLOSED):
        study = StudyFactory(status=status)
        with pytest.raises(StudyNotOpen, match=status):
            services.session_open(study_slug=study.slug)
    with pytest.raises(NotFound):
        services.session_open(study_slug="nope")
