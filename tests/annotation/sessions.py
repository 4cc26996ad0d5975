"""Driving sessions through the services, as the annotator API does."""

from datetime import timedelta

from annotation import clock, services
from annotation.models import Study


def open_session(study: Study, participant: str = "") -> str:
    return services.session_open(study_slug=study.slug, participant_id=participant).session.token


def answer(token: str, trial, choice: str = "left", ms: int = 900):
    return services.vote_submit(token=token, trial_id=trial.trial_id, choice=choice, response_ms=ms)


def run_session(token: str, choice: str = "left", *, ahead: bool = False) -> list:
    trials = []
    while (trial := services.trial_next(token=token, ahead=ahead)) is not None:
        answer(token, trial, choice)
        trials.append(trial)
    return trials


def post_vote(api, token: str, body: dict):
    """POST a vote through the API as a person gives it: ``response_ms`` after the trial
    appeared. The services' clock moves that long first, so the server measures the same
    time (``server_ms``, what quality control reads) without the test sleeping."""
    clock.advance(timedelta(milliseconds=body["response_ms"]))
    return api.post(f"/api/v1/sessions/{token}/votes", body, format="json")


def vote_after(token: str, trial_id, choice: str, ms: int):
    """``services.vote_submit`` for an answer given ``ms`` after the trial appeared (the
    services' clock moves that long first: the server measures it too)."""
    clock.advance(timedelta(milliseconds=ms))
    return services.vote_submit(token=token, trial_id=trial_id, choice=choice, response_ms=ms)
