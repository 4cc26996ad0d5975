from django import forms
from django.contrib import admin
from django.db import models

from annotation.errors import InvalidSetting
from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote
from annotation.study_settings import FIXED_SETTINGS, SETTINGS, study_settings_validate


class StudyForm(forms.ModelForm):
    """The admin's study form (``StudyAdmin`` supplies the model and fields): the settings
    checked by the same validator as the import and ``configure_study``, so that the admin
    cannot store a value that later breaks a report."""

    def clean(self) -> dict:
        cleaned = super().clean()
        values = {name: cleaned[name] for name in SETTINGS if name in cleaned}
        new = self.instance.pk is None
        if new and any(s.required and name not in values for name, s in SETTINGS.items()):
            return cleaned  # its own field's error says what is wrong
        if "metric_deltas" in values and values["metric_deltas"] is None:
            values["metric_deltas"] = {}  # an emptied JSON box: no deltas
        try:
            cleaned.update(study_settings_validate(values, partial=not new))
        except InvalidSetting as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return cleaned


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    form = StudyForm
    list_display = [
        "slug",
        "title",
        "design",
        "status",
        "votes_per_pair",
        "gold_rate",
        "created_at",
    ]
    list_filter = ["design", "status"]
    search_fields = ["slug", "title"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # Fixed by the import: the pairs (and their target votes) were generated from them.
    imported_fields = list(FIXED_SETTINGS)
    # Changing how votes are spent re-targets the pairs: configure_study and the dashboard
    # do it (annotation.services.study_configure); a plain save here would not.
    policy_fields = ["stop_when_decided", "sampling", "sampling_every"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.imported_fields, *self.policy_fields] if obj is not None else []


@admin.register(Scene)
class SceneAdmin(admin.ModelAdmin):
    list_display = ["name", "study"]
    list_filter = ["study"]
    search_fields = ["name"]
    list_select_related = ["study"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["name", "scene", "role", "condition", "width", "height", "integrity"]
    list_filter = ["role", "integrity", "scene__study"]
    search_fields = ["name", "condition", "sha256"]
    list_select_related = ["scene__study"]
    readonly_fields = ["sha256", "file", "width", "height", "format", "size_bytes"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "scene", "image_a", "image_b", "shown_reference", "target_votes"]
    list_filter = ["study"]
    list_select_related = ["scene__study", "image_a", "image_b", "shown_reference"]
    raw_id_fields = ["scene", "image_a", "image_b", "shown_reference"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Raw annotation data: inspected in the admin, never edited there."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AnnotatorSession)
class AnnotatorSessionAdmin(ReadOnlyAdmin):
    list_display = ["pseudonym", "study", "source", "n_done", "created_at", "completed_at"]
    list_filter = ["study", "source"]
    search_fields = ["pseudonym", "participant_id"]
    list_select_related = ["study"]
    exclude = ["token"]  # the annotator's credential is not shown


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ["id", "session", "kind", "ordinal", "issued_at", "answered_at", "released"]
    list_filter = ["kind", "released", "session__study"]
    list_select_related = ["session__study"]


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "session", "kind", "choice", "preferred", "late", "created_at"]
    list_filter = ["kind", "late", "choice", "pair__study"]
    list_select_related = ["session__study"]
