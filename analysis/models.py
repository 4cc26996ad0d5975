"""Stored results of the analysis: the live agreement report's snapshots."""

from django.db import models

from annotation.models import Study


class AgreementSnapshot(models.Model):
    """The latest agreement report of a study (one per variant), as ``agreement_report
    --json`` prints it plus what the page draws (per-image scores, votes per pair), with
    the high-water mark of the data it was computed from.

    ``mark`` digests what the report depends on (the sessions' answer counts, the
    decisions, the scores, the study's settings); a different mark now means the
    snapshot is stale. ``requested_at`` debounces refreshes (at most one request per
    ``IQA_AGREEMENT_DEBOUNCE_SECONDS``)."""

    class Variant(models.TextChoices):
        COUNTED = "counted", "Excluded annotators left out (as agreement_report)"
        ALL = "all", "Every annotator counted (no exclusions)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    variant = models.CharField(max_length=16, choices=Variant.choices, default=Variant.COUNTED)
    report = models.JSONField(null=True, blank=True)
    mark = models.CharField(max_length=64, blank=True)
    # Non-practice votes read, and when they were read (the report is "as of" then).
    votes = models.PositiveIntegerField(default=0)
    as_of = models.DateTimeField(null=True, blank=True)
    # The scores used (each metric's latest version; the versions are in the report).
    scores = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(default=0.0)
    # When a reader or the sweep last queued a refresh: one after ``computed_at`` is a
    # refresh queued or running.
    requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "variant"], name="agreement_snapshot_once")
        ]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.variant} as of {self.as_of}"
