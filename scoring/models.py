"""Metric scores of a study's images, and the batches of work that produce them."""

from django.db import models

from annotation.models import Image, Study


class Score(models.Model):
    """One metric's value on one image (NR) or one (image, reference) (FR).

    ``version`` names what produced the value (``pyiqa-0.1.16+<weights hash>``, or a
    plug-in's own version), so new weights or a new pyiqa give new rows beside the old
    ones. A failure is stored with its message instead of a value.
    """

    metric = models.CharField(max_length=64)
    version = models.CharField(max_length=100)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="scores")
    reference = models.ForeignKey(
        Image, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    value = models.FloatField(null=True, blank=True)
    # The metric's orientation, kept with the value so that readers need no registry.
    lower_better = models.BooleanField()
    error = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0, help_text="Compute time of the value's batch share.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "version", "image", "reference"],
                condition=models.Q(reference__isnull=False),
                name="score_unique_fr",
            ),
            models.UniqueConstraint(
                fields=["metric", "version", "image"],
                condition=models.Q(reference__isnull=True),
                name="score_unique_nr",
            ),
            models.CheckConstraint(
                condition=models.Q(value__isnull=False) | ~models.Q(error=""),
                name="score_value_or_error",
            ),
        ]
        indexes = [models.Index(fields=["metric", "version"])]

    def __str__(self) -> str:
        target = f"{self.image_id}" + (f" vs {self.reference_id}" if self.reference_id else "")
        return f"{self.metric} {target}: {self.value if self.error == '' else self.error}"


class ScoreBatch(models.Model):
    """One task's work: one metric on a list of (image, reference) items of one study.

    The database, not the broker, says what is left: a batch stays ``pending`` until a
    worker has written a row for each of its items, and the sweep sends pending batches
    again when their message seems lost. A batch whose metric the workers could not run
    (missing weights, CUDA out of memory, a driver error) after every retry is
    ``failed``, with the ``reason``: no score is stored for its items, the sweep leaves
    it, and ``score_study --retry-failed`` sends it again.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed to run"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="score_batches")
    metric = models.CharField(max_length=64)
    version = models.CharField(max_length=100)
    # [[image_id, reference_id or null], ...]
    items = models.JSONField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    enqueued_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The last infrastructure fault: while pending, why it is being retried; once failed,
    # why it did not run.
    reason = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "enqueued_at"])]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.metric}: {len(self.items)} items, {self.state}"


class WorkerReport(models.Model):
    """What a scoring worker can run, written by the worker when it starts (the
    ``worker_ready`` signal) and removed when it stops: ``score_study --metrics available``
    reads the reports of the workers on the scoring queue, not the weights folder of the
    machine it runs on."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)  # the queues it consumes
    metrics = models.JSONField(default=list)  # the metric names it can load
    reported_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} ({', '.join(self.queues)}): {len(self.metrics)} metrics"
