"""Stored results of the analysis: the live agreement report's snapshots."""

from django.db import models

from annotation.models import Study


class AgreementSnapshot(models.Model):
    """The latest agreement report of a study (one per variant), as ``agreement_report
    --json`` prints it plus what the page draws (votes per pair, accuracy against delta;
    the per-image scores are in ``AgreementSceneImages``, per scene), with the high-water
    mark of the data it was computed from.

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
    # False while the report is the live, incremental one (warm-started fits, intervals
    # possibly older than the point estimates); True once it is computed exactly as
    # ``agreement_report`` (the refresh after the data stop moving).
    exact = models.BooleanField(default=True)
    # The live report's scene fits and the counts they rest on (``live.fits_dump``): the
    # next live refresh refits only the scenes whose counts moved, from these.
    fits = models.BinaryField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "variant"], name="agreement_snapshot_once")
        ]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.variant} as of {self.as_of}"


class AgreementSceneImages(models.Model):
    """One scene's block of the page's scatter, as JSON text rendered by the refresh
    (``services.scene_images_json``): ``images_json``, each compared image of the scene
    with its condition, votes and human scores (Thurstone, Bradley-Terry); ``scores_json``,
    each image's metric scores by image name. A row per scene, not one text for all:
    images x metrics is by far the biggest part of a snapshot (about 20 MB at 100,000
    pairs and 30 metrics). A live refresh rewrites ``images_json`` of the scenes whose
    numbers moved only (the scenes its new votes fell in: a few KB each); the metric
    scores are written when the scores (or the snapshot's rows) are written anew.
    ``updated_at``: the ``computed_at`` of the refresh that last wrote the row (the
    block's ``ETag``)."""

    snapshot = models.ForeignKey(AgreementSnapshot, on_delete=models.CASCADE, related_name="+")
    scene = models.CharField(max_length=200)
    images_json = models.TextField()
    scores_json = models.TextField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "scene"], name="agreement_scene_once")
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id}/{self.scene}"


class AgreementState(models.Model):
    """What the live report keeps up to date between refreshes (``analysis/live.py``):
    the votes read so far in compact arrays, per-pair and per-annotator counts and each
    session's votes read; ``data`` is its ``.npz``.
    One per study (both variants share it); a derived cache that can be dropped at any
    time (the next refresh reads everything again)."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="+")
    data = models.BinaryField()
    votes = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.study_id}: {self.votes} votes"
