"""Changing a study's settings after import."""

from django.db import transaction

from annotation.models import Study
from annotation.study_settings import study_settings_validate


def study_configure(*, study: Study, **changes: object) -> Study:
    """Set the given settings (``None`` values are left alone); refuses invalid values.

    Bounds are ``annotation.study_settings``'s (``InvalidSetting`` names the setting); the
    settings fixed at import (design, slug, the pair plan) may not change. Quality-control
    rules take ``"off"`` (stored as null); metric deltas are the whole new map.
    """
    changes = {key: value for key, value in changes.items() if value is not None}
    changes = study_settings_validate(changes, partial=True)
    with transaction.atomic():
        for key, value in changes.items():
            setattr(study, key, value)
        study.save(update_fields=list(changes) or None)
    return study
