"""Annotator sessions through the services: opening one, and opening it again (a session
belongs to its browser: its token, or the recruiter's id of the same participation)."""

import pytest

from annotation import services
from annotation.errors import ParticipantIdInUse, StudyNotOpen
from annotation.models import Study
from core.errors import NotFound
from tests.factories import LiveStudyFactory, StudyFactory

pytestmark = pytest.mark.django_db

PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"


def prolific(session_id: str) -> dict:
    return {"STUDY_ID": "s1", "SESSION_ID": session_id}


def test_the_same_participation_resumes_and_a_bare_participant_id_does_not():
    """The recruiter's id of one participation (Prolific SESSION_ID) opened with the
    participant id gets the session back; the participant id alone (it is no secret)
    never does; another participation's id is another participation, with a session of
    its own: a script knowing someone's id neither takes their session nor keeps them
    out."""
    study = LiveStudyFactory()
    first = services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
        external_ids=prolific("A1"),
    )  # fmt: skip
    again = services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
        external_ids=prolific("A1"),
    )  # fmt: skip
    assert first.created
    assert not again.created
    assert again.session.token == first.session.token
    assert len(first.session.token) >= 40
    bare = services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific"
    )
    other = services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
        external_ids=prolific("A2"),
    )  # fmt: skip
    tokens = {first.session.token, bare.session.token, other.session.token}
    assert len(tokens) == 3
    assert bare.created
    assert other.created
    for ids in ({}, prolific("")):
        with pytest.raises(ParticipantIdInUse) as refused:
            services.session_open(
                study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
                external_ids=ids,
            )  # fmt: skip
        assert refused.value.status_code == 409
        assert refused.value.field == "participant_id"
    # Without a recruiter's participation id a participant id is resumed by token only.
    lab = services.session_open(study_slug=study.slug, participant_id="PID-1")
    with pytest.raises(ParticipantIdInUse):
        services.session_open(study_slug=study.slug, participant_id="PID-1")
    someone = services.session_open(study_slug=study.slug, participant_id="PID-2")
    assert someone.session.token != lab.session.token


def test_a_closed_study_answers_alike_whether_or_not_an_id_took_part():
    """On a closed study, opening with a participant id that took part (without its
    participation id) gets the very refusal someone who never took part gets; with its
    participation id, the session back (its progress and code)."""
    study = LiveStudyFactory()
    services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
        external_ids=prolific("A1"),
    )  # fmt: skip
    study.status = Study.Status.CLOSED
    study.save()
    refusals = []
    for participant in (PROLIFIC_ID, "aaaaaaaaaaaaaaaaaaaaaaaa"):
        with pytest.raises(StudyNotOpen) as refused:
            services.session_open(
                study_slug=study.slug, participant_id=participant, source="prolific",
                external_ids=prolific("A9"),
            )  # fmt: skip
        refusals.append((type(refused.value), str(refused.value), refused.value.field))
    assert refusals[0] == refusals[1]
    back = services.session_open(
        study_slug=study.slug, participant_id=PROLIFIC_ID, source="prolific",
        external_ids=prolific("A1"),
    )  # fmt: skip
    assert not back.created


def test_sessions_open_on_live_studies_only_and_a_draft_is_unknown():
    closed = StudyFactory(status=Study.Status.CLOSED)
    with pytest.raises(StudyNotOpen, match="closed"):
        services.session_open(study_slug=closed.slug)
    draft = StudyFactory(status=Study.Status.DRAFT)
    with pytest.raises(NotFound) as as_draft:
        services.session_open(study_slug=draft.slug)
    with pytest.raises(NotFound) as as_unknown:
        services.session_open(study_slug="nope")
    assert str(as_draft.value) == str(as_unknown.value).replace("nope", draft.slug)
