from django.contrib import admin

from scoring.models import Score, ScoreBatch


class ReadOnlyAdmin(admin.ModelAdmin):
    """Scores are computed, never typed in."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Score)
class ScoreAdmin(ReadOnlyAdmin):
    list_display = ("metric", "version", "image", "reference", "value", "error")
    list_filter = ("metric",)
    search_fields = ("metric", "image__name")
    raw_id_fields = ("image", "reference")


@admin.register(ScoreBatch)
class ScoreBatchAdmin(ReadOnlyAdmin):
    list_display = ("study", "metric", "state", "attempts", "enqueued_at", "finished_at")
    list_filter = ("state", "metric")
