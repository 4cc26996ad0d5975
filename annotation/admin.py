from django.contrib import admin

from annotation.models import Image, Pair, Scene, Study


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
    # Fixed by the import: the pairs were generated from them.
    imported_fields = ["slug", "design", "show_reference", "reference_is_candidate"]

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
