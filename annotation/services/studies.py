"""Changing a study's settings after import."""

from django.db import transaction

from annotation.errors import StudyImportError
from annotation.models import Study
from annotation.services.imports import check_session_settings

# What may change once pairs exist; design, slug and the pair plan may not.
CONFIGURABLE = (
    "title", "instructions", "status", "gold_rate", "trials_per_session", "practice_trials",
    "completion_url", "lease_seconds", "break_every", "consent",
)  # fmt: skip


def study_configure(*, study: Study, **changes: object) -> Study:
    """Set the given settings (``None`` values are left alone); refuses invalid values."""
    changes = {key: value for key, value in changes.items() if value is not None}
    unknown = sorted(set(changes) - set(CONFIGURABLE))
    if unknown:
        raise StudyImportError(f"cannot change {', '.join(unknown)} after import")
    if "status" in changes and changes["status"] not in Study.Status.values:
        raise StudyImportError(
            f"status {changes['status']!r} is not one of {', '.join(Study.Status.values)}"
        )
    if "gold_rate" in changes and not 0.0 <= float(changes["gold_rate"]) < 1.0:
        raise StudyImportError(f"--gold-rate must be in [0, 1), not {changes['gold_rate']}")
    check_session_settings(
        trials_per_session=changes.get("trials_per_session"),
        practice_trials=changes.get("practice_trials"),
        completion_url=changes.get("completion_url"),
        lease_seconds=changes.get("lease_seconds"),
        break_every=changes.get("break_every"),
    )
    with transaction.atomic():
        for key, value in changes.items():
            setattr(study, key, value)
        study.save(update_fields=list(changes) or None)
    return study
