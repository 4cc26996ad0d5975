"""Changing a study's settings after import."""

from django.db import transaction

from annotation.errors import StudyImportError
from annotation.models import Study
from annotation.services.imports import check_session_settings

# Quality-control thresholds; ``OFF`` turns a rule off (stored as null).
QC_RULES = (
    "qc_min_gold_accuracy", "qc_min_median_response_ms", "qc_side_bias_alpha",
    "qc_min_majority_agreement", "qc_max_similar_share",
)  # fmt: skip
OFF = "off"

# What may change once pairs exist; design, slug and the pair plan may not.
CONFIGURABLE = (
    "title", "instructions", "status", "gold_rate", "trials_per_session", "practice_trials",
    "completion_url", "lease_seconds", "break_every", "consent", *QC_RULES,
    "qc_fast_response_ms", "metric_deltas",
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
    changes = _check_quality_control(changes)
    with transaction.atomic():
        for key, value in changes.items():
            setattr(study, key, value)
        study.save(update_fields=list(changes) or None)
    return study


def _check_quality_control(changes: dict) -> dict:
    """Thresholds as numbers (``OFF`` as None for rules), metric deltas as a clean map."""
    for key in (*QC_RULES, "qc_fast_response_ms"):
        if key not in changes:
            continue
        value = changes[key]
        if value == OFF and key in QC_RULES:
            changes[key] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise StudyImportError(f"{key} must be a number or 'off', not {value!r}") from None
        if key.endswith("_ms"):
            if not number >= 0:
                raise StudyImportError(f"{key} must be milliseconds >= 0, not {value!r}")
        elif not 0 <= number <= 1:
            raise StudyImportError(f"{key} must be between 0 and 1, not {value!r}")
        changes[key] = number
    if "metric_deltas" in changes:
        deltas = changes["metric_deltas"]
        if not isinstance(deltas, dict) or not all(
            isinstance(name, str) and isinstance(v, int | float) and v >= 0
            for name, v in deltas.items()
        ):
            raise StudyImportError(
                f"metric deltas must map metric names to numbers >= 0, not {deltas!r}"
            )
        # A delta of 0 is the default: it is not stored.
        changes["metric_deltas"] = {name: float(v) for name, v in deltas.items() if v > 0}
    return changes
