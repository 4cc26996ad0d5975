"""Background jobs a researcher starts from the workspace: study imports and exports.

A job is read by its owner (and staff) only; its progress is written by the Celery task
that runs it. Jobs hold no study data of their own beyond a summary.
"""

import uuid

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # Progress: images checked (imports) or rows/tables written (exports) of ``total``.
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # The one-line reason, naming the file (and line) at fault, when it failed.
    error = models.TextField(blank=True)
    # Runs started (a worker lost mid-job has its task delivered again).
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class ImportJob(Job):
    """A study import from an uploaded zip (or, for staff, a folder under IQA_IMPORT_ROOT)."""

    slug = models.SlugField(max_length=64)
    # The import options by their import_study names with underscores (design, ...).
    options = models.JSONField(default=dict)
    # The uploaded zip on disk (removed once the job ends), or the server folder.
    upload = models.CharField(max_length=500, blank=True)
    server_folder = models.CharField(max_length=500, blank=True)
    # What the import made: scenes, images, pairs per scene.
    summary = models.JSONField(null=True, blank=True)
    study = models.ForeignKey(
        "annotation.Study", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Scenes added to the existing study ``study`` (set when the job starts), rather than
    # a new study.
    adds_scenes = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"import {self.slug} ({self.status})"


class ExportJob(Job):
    """A study's export (every table in one format) built into one zip to download."""

    study = models.ForeignKey("annotation.Study", on_delete=models.CASCADE, related_name="+")
    # csv, parquet or jsonl (every table in that format), or bundle (the dataset bundle with
    # the images, as ``export_study --bundle --with-images``).
    format = models.CharField(max_length=8)
    # The researchers' preview answers too, marked (tables formats only).
    include_pilot = models.BooleanField(default=False)
    # The finished zip, relative to the exports folder, and its size.
    file = models.CharField(max_length=500, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"export {self.study_id} {self.format} ({self.status})"
