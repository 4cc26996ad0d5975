"""What import and export jobs share: how a job ends, and the sweep of jobs whose worker
stopped.

A worker killed mid-job (out of memory, a deploy, a lost machine) leaves its job
"running" with nobody running it: an import's slug stays blocked, an export's page spins.
``jobs_sweep`` (the beat runs it) fails a running job that has written no progress for
``IQA_JOB_STALE_SECONDS``, saying so, and removes an import's upload; the researcher
starts it again. An export's task is redelivered when its worker is lost; each run counts
an attempt, and a job whose worker stopped ``IQA_JOB_MAX_ATTEMPTS`` times is failed
instead of being run forever (an export too big for the worker's memory).
"""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from workspace.models import ExportJob, ImportJob, Job


def job_finish(job: Job, **fields) -> Job:
    """Save ``fields`` (the status among them) on ``job`` and return it."""
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=[*fields, "updated_at"])
    return job


def job_progress(model: type[Model], job_id, *, done: int, total: int) -> None:
    """Progress written at once; it is also the job's sign of life for the sweep."""
    model.objects.filter(pk=job_id).update(done=done, total=total, updated_at=timezone.now())


def jobs_sweep() -> int:
    """Fail every running job silent for ``IQA_JOB_STALE_SECONDS``; how many it failed."""
    stale = timezone.now() - timedelta(seconds=settings.IQA_JOB_STALE_SECONDS)
    minutes = max(1, round(settings.IQA_JOB_STALE_SECONDS / 60))
    failed = 0
    for job in ImportJob.objects.filter(status=Job.Status.RUNNING, updated_at__lt=stale):
        claimed = ImportJob.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, updated_at__lt=stale
        ).update(
            status=Job.Status.FAILED,
            error=f"the worker stopped while importing (no progress for {minutes} min); "
            "nothing was imported: start the import again",
            updated_at=timezone.now(),
        )
        if claimed and job.upload:
            Path(job.upload).unlink(missing_ok=True)
        failed += claimed
    failed += ExportJob.objects.filter(status=Job.Status.RUNNING, updated_at__lt=stale).update(
        status=Job.Status.FAILED,
        error=f"the worker stopped while building the export (no progress for {minutes} min); "
        "start the export again",
        updated_at=timezone.now(),
    )
    return failed
