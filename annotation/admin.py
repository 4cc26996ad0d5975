from django.contrib import admin
from django.db import models

from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
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
    imported_fields = [
        "slug", "design", "show_reference", "reference_is_candidate", "votes_per_pair",
    ]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return self.imported_fields if obj is not None else []


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
