"""Workflows of the annotation app. Each is atomic and takes keyword-only arguments."""

from annotation.services.assignment import leases_sweep, trial_next
from annotation.services.exclusions import annotator_exclusion_decide
from annotation.services.file_claims import leftovers_sweep as store_leftovers_sweep
from annotation.services.imports import (
    ImportResult,
    SceneSummary,
    image_verify,
    study_import,
    study_scenes_add,
    study_verify_enqueue,
)
from annotation.services.sessions import (
    PilotDeleted,
    Progress,
    SessionState,
    counted_trials_required,
    pilot_data_delete,
    pilot_session_open,
    session_code_earned,
    session_get,
    session_open,
    session_progress,
)
from annotation.services.studies import (
    StudyDeleted,
    study_archive,
    study_configure,
    study_delete,
    study_restore,
    study_writable,
)
from annotation.services.trials import IssuedTrial, ShownImage
from annotation.services.votes import VoteAndNext, VoteResult, vote_submit, vote_submit_next

__all__ = [
    "ImportResult",
    "IssuedTrial",
    "PilotDeleted",
    "Progress",
    "SceneSummary",
    "SessionState",
    "ShownImage",
    "StudyDeleted",
    "VoteAndNext",
    "VoteResult",
    "annotator_exclusion_decide",
    "counted_trials_required",
    "image_verify",
    "leases_sweep",
    "pilot_data_delete",
    "pilot_session_open",
    "session_code_earned",
    "session_get",
    "session_open",
    "session_progress",
    "store_leftovers_sweep",
    "study_archive",
    "study_configure",
    "study_delete",
    "study_import",
    "study_restore",
    "study_scenes_add",
    "study_verify_enqueue",
    "study_writable",
    "trial_next",
    "vote_submit",
    "vote_submit_next",
]
