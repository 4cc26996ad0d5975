"""Workflows of the annotation app. Each is atomic and takes keyword-only arguments."""

from annotation.services.annotator import (
    IssuedTrial,
    Progress,
    SessionState,
    VoteResult,
    leases_sweep,
    session_get,
    session_open,
    session_progress,
    trial_next,
    vote_submit,
)
from annotation.services.imports import (
    ImportResult,
    SceneSummary,
    image_verify,
    study_import,
    study_verify_enqueue,
)

__all__ = [
    "ImportResult",
    "IssuedTrial",
    "Progress",
    "SceneSummary",
    "SessionState",
    "VoteResult",
    "image_verify",
    "leases_sweep",
    "session_get",
    "session_open",
    "session_progress",
    "study_import",
    "study_verify_enqueue",
    "trial_next",
    "vote_submit",
]
