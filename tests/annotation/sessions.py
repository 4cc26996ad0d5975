"""Driving sessions through the services, as the annotator API does."""

from annotation import services
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
