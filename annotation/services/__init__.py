"""Workflows of the annotation app. Each is atomic and takes keyword-only arguments."""

from annotation.services.assignment import leases_sweep, trial_next
from annotation.services.exclusions import annotator_exclusion_decide
from annotation.services.file_claims import leftovers_sweep as store_leftovers_sweep
from annotation.services.imports import (
    ImportResult,
    SceneSummary,
    image_verify,
    study_import,
    study_verify_enqueue,
)
from annotation.services.sessions import (
    Progress,
    SessionState,
    counted_trials_required,
    session_code_earned,
    session_get,
    session_open,
    session_progress,
)
from annotation.services.trials import IssuedTrial, ShownImage
from annotation.services.votes import VoteResult, vote_submit

__all__ = [
    "ImportResult",
    "IssuedTrial",
    "Progress",
    "SceneSummary",
    "SessionState",
    "ShownImage",
    "VoteResult",
    "annotator_exclusion_decide",
    "counted_trials_required",
    "image_verify",
    "leases_sweep",
    "session_code_earned",
    "session_get",
    "session_open",
    "session_progress",
    "store_leftovers_sweep",
    "study_import",
    "study_verify_enqueue",
    "trial_next",
    "vote_submit",
]
