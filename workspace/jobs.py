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
import uuid
from collections.abc import Callable, Iterator
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
def job_heartbeat(model: type[Model], job_id) -> Iterator[Callable[[int, int], None]]:
    """While the body runs, a thread of the worker touches the job every
    ``IQA_JOB_HEARTBEAT_SECONDS``: a long silent step (the report's bootstrap, a big
    table) is not taken for a stopped worker. A killed worker's heartbeat stops with it.

    Yields ``progress(done, total)``, which the same thread writes at once, on a
    connection of its own: the export reads in one REPEATABLE READ, read-only transaction
    on the worker's connection, where no write could go (and none would be seen)."""
    stop, woke = threading.Event(), threading.Event()
    latest: list[tuple[int, int]] = []

    def report(done: int, total: int) -> None:
        latest.append((done, total))
        woke.set()

    def beat() -> None:
        try:
            while True:
                woke.wait(settings.IQA_JOB_HEARTBEAT_SECONDS)
                woke.clear()
                fields = {"updated_at": timezone.now()}
                if latest:
                    fields["done"], fields["total"] = latest[-1]
                    latest.clear()
                model.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(**fields)
                if stop.is_set():
                    return
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield report
    finally:
        stop.set()
        woke.set()
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


def export_files_sweep() -> int:
    """Remove the export zips nobody may download any more: those of jobs finished more
    than ``IQA_EXPORT_KEEP_DAYS`` ago (the job stays, its ``file`` emptied: it reads
    expired) and those whose job is gone (its study deleted); how many were removed.
    Participants' data does not outlive the study, nor pile up with every export."""
    folder = Path(settings.IQA_EXPORT_DIR)
    if not folder.is_dir():
        return 0
    removed = 0
    cutoff = timezone.now() - timedelta(days=settings.IQA_EXPORT_KEEP_DAYS)
    old = ExportJob.objects.filter(status=Job.Status.DONE, updated_at__lt=cutoff).exclude(file="")
    for job in old:
        (folder / job.file).unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(file="")
        removed += 1
    names = {path.stem: path for path in folder.glob("*.zip")}
    known = {
        str(pk)
        for pk in ExportJob.objects.filter(pk__in=[n for n in names if _uuid(n)]).values_list(
            "pk", flat=True
        )
    }
    for name, path in names.items():
        if _uuid(name) and name not in known:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


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
