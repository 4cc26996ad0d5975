"""What import and export jobs share: how a job ends, and the sweep of jobs whose worker
stopped.

A worker killed mid-job (out of memory, a deploy, a lost machine) leaves its job
"running" with nobody running it: an import's slug stays blocked, an export's page spins.
While a job runs, its worker touches it every ``IQA_JOB_HEARTBEAT_SECONDS``
(``job_heartbeat``); ``jobs_sweep`` (the beat runs it) fails a running job silent for
``IQA_JOB_STALE_SECONDS``, saying so, and removes what it left on disk; the researcher
starts it again. An export's task is redelivered when its worker is lost; each run counts
an attempt, and a job whose worker stopped ``IQA_JOB_MAX_ATTEMPTS`` times is failed
instead of being run forever (an export too big for the worker's memory).
"""

import contextlib
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Model
from django.utils import timezone

from workspace.errors import TooManyJobs
from workspace.models import ExportJob, ImportJob, Job

UNDER_WAY = (Job.Status.QUEUED, Job.Status.RUNNING)


def jobs_room_check(*, owner: AbstractBaseUser) -> None:
    """``TooManyJobs`` when ``owner`` has ``IQA_JOBS_PER_RESEARCHER`` imports and exports
    queued or running: one researcher cannot fill the workers' queues. Call inside the
    transaction that records the new job: the owner's row is locked, so two requests at
    once are counted in turn."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    limit = settings.IQA_JOBS_PER_RESEARCHER
    under_way = sum(
        model.objects.filter(owner=owner, status__in=UNDER_WAY).count()
        for model in (ImportJob, ExportJob)
    )
    if under_way >= limit:
        raise TooManyJobs(
            f"you have {under_way} imports and exports under way, the most one researcher "
            f"may have (IQA_JOBS_PER_RESEARCHER={limit}): wait for one to finish"
        )


def job_finish(job: Job, **fields) -> Job:
    """Save ``fields`` (the status among them) on ``job`` and return it."""
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=[*fields, "updated_at"])
    return job


def job_progress(model: type[Model], job_id, *, done: int, total: int) -> None:
    """Progress written at once; it is also the job's sign of life for the sweep."""
    model.objects.filter(pk=job_id).update(done=done, total=total, updated_at=timezone.now())


@contextlib.contextmanager
def job_heartbeat(model: type[Model], job_id) -> Iterator[None]:
    """While the body runs, a thread of the worker touches the job every
    ``IQA_JOB_HEARTBEAT_SECONDS``: a long silent step (the report's bootstrap, a big
    table) is not taken for a stopped worker. A killed worker's heartbeat stops with it."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.IQA_JOB_HEARTBEAT_SECONDS):
                model.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
                    updated_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _scratch_remove(job: Job) -> None:
    """What a stopped worker left of the job: an import's upload and unpacked folder, an
    export's scratch folder (the import's stored image files are shared by content and
    stay; a later import that needs them reuses them)."""
    if isinstance(job, ImportJob):
        if job.upload:
            Path(job.upload).unlink(missing_ok=True)
        shutil.rmtree(import_scratch(job), ignore_errors=True)
    else:
        for scratch in Path(settings.IQA_EXPORT_DIR).glob(f".{job.pk}-*"):
            shutil.rmtree(scratch, ignore_errors=True)


def import_scratch(job: ImportJob) -> Path:
    """Where a worker unpacks an import's zip (``IQA_SCRATCH_DIR``, not the data folder)."""
    return Path(settings.IQA_SCRATCH_DIR) / f"import-{job.pk}"


def jobs_sweep() -> int:
    """Fail every running job silent for ``IQA_JOB_STALE_SECONDS``; how many it failed."""
    stale = timezone.now() - timedelta(seconds=settings.IQA_JOB_STALE_SECONDS)
    minutes = max(1, round(settings.IQA_JOB_STALE_SECONDS / 60))
    errors = {
        ImportJob: f"the worker stopped while importing (no progress for {minutes} min); "
        "nothing was imported: start the import again",
        ExportJob: f"the worker stopped while building the export (no progress for {minutes} "
        "min); start the export again",
    }
    failed = 0
    for model, error in errors.items():
        for job in model.objects.filter(status=Job.Status.RUNNING, updated_at__lt=stale):
            # What it left is removed first: a job reads failed only once nothing of it
            # remains (the researcher may start it again at once).
            _scratch_remove(job)
            failed += model.objects.filter(
                pk=job.pk, status=Job.Status.RUNNING, updated_at__lt=stale
            ).update(status=Job.Status.FAILED, error=error, updated_at=timezone.now())
    return failed
