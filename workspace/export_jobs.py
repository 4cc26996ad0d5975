"""Study exports built from the workspace: the job, its run on a Celery worker, its zip.

``export_job_start`` records the job and queues it after commit. ``export_job_run`` (the
task's one service) calls ``dataset.export.study_export``, the export the command runs,
into a scratch folder, zips every table and the datasheet into one file and moves it into
place as ``IQA_EXPORT_DIR/<job id>.zip``: a zip is there whole or not at all. The format
``bundle`` is ``export_study --bundle --with-images`` instead (``dataset.bundle``): the
dataset bundle with every image and the Hugging Face layout.
"""

import logging
import os
import tempfile
import zipfile
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.errors import BrokerUnavailable
from annotation.models import Study
from core.errors import DomainError
from dataset.bundle import study_bundle
from dataset.export import EXPORT_STEPS, FORMATS, study_export
from workspace.jobs import job_finish, job_heartbeat, jobs_room_check
from workspace.models import ExportJob

logger = logging.getLogger(__name__)


def export_path(job: ExportJob) -> Path:
    """Where the finished zip of ``job`` is (or will be)."""
    return Path(settings.IQA_EXPORT_DIR) / f"{job.pk}.zip"


def export_filename(job: ExportJob) -> str:
    """The name a browser saves the zip under."""
    return f"{job.study.slug}-{job.format}-{job.created_at:%Y%m%d-%H%M%S}.zip"


# What an export job can build: every table in one format, or the dataset bundle.
BUNDLE = "bundle"
JOB_FORMATS = (*FORMATS, BUNDLE)


def export_job_start(
    *, study: Study, owner: AbstractBaseUser, format: str, include_pilot: bool = False
) -> ExportJob:
    """A queued export of ``study`` in ``format`` (csv, parquet or jsonl: every table; or
    bundle: the dataset bundle with its images), with the researchers' pilot data when
    ``include_pilot`` (tables only: a bundle is the dataset); the task is sent after
    commit (``BrokerUnavailable`` if the broker does not answer: the job is then failed,
    nothing runs inline)."""
    if format not in JOB_FORMATS:
        raise DomainError(
            f"unknown format {format!r} (expected one of {', '.join(JOB_FORMATS)})",
            field="format",
        )
    if include_pilot and format == BUNDLE:
        raise DomainError(
            "a bundle is the dataset: pilot data goes only into an export of the tables",
            field="include_pilot",
        )
    with transaction.atomic():
        jobs_room_check(owner=owner)
        job = ExportJob.objects.create(
            study=study,
            owner=owner,
            format=format,
            include_pilot=include_pilot,
            total=EXPORT_STEPS,
        )
        transaction.on_commit(partial(_publish, job.pk))
    return job


def _tables_zip(job: ExportJob, tables: Path, staged: Path, progress) -> None:
    written = study_export(
        study=job.study,
        out=tables,
        fmt=job.format,
        on_progress=progress,
        formats=True,
        include_pilot=job.include_pilot,
    )
    with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for table in written:
            # The field's formats include a folder (mos/<scene>.txt): its files.
            files = sorted(table.path.rglob("*")) if table.path.is_dir() else [table.path]
            for file in files:
                if file.is_file():
                    archive.write(file, arcname=str(file.relative_to(tables)))


def _publish(job_id) -> None:
    from workspace.tasks import export_job_run as export_job_run_task

    try:
        export_job_run_task.delay(str(job_id))
    except (OperationalError, OSError) as exc:
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportJob.Status.FAILED,
            error="the Celery broker did not answer; the export was not queued",
        )
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); the export was not queued"
        ) from exc


def export_job_run(*, job_id) -> ExportJob | None:
    """Build the zip of a queued (or interrupted) export job; ``None`` for a job that does
    not exist. Idempotent: a done or failed job is left as it is, and a job run twice
    writes the same zip under the same name (each run in its own scratch folder, moved into
    place whole)."""
    job = ExportJob.objects.filter(pk=job_id).select_related("study").first()
    if job is None or job.status in (ExportJob.Status.DONE, ExportJob.Status.FAILED):
        return job
    if job.attempts >= settings.IQA_JOB_MAX_ATTEMPTS:
        return job_finish(
            job,
            status=ExportJob.Status.FAILED,
            error=f"the worker stopped while building the export {job.attempts} times "
            "(out of memory?); no export was written",
        )
    job.attempts += 1
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.RUNNING,
        done=0,
        total=EXPORT_STEPS,
        attempts=job.attempts,
        updated_at=timezone.now(),
    )

    final = export_path(job)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            # The heartbeat writes the progress: the export reads in a read-only snapshot.
            job_heartbeat(ExportJob, job.pk) as progress,
            tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{job.pk}-") as scratch,
        ):
            staged = Path(scratch) / "export.zip"
            if job.format == BUNDLE:
                study_bundle(study=job.study, path=staged, with_images=True, on_progress=progress)
            else:
                _tables_zip(job, Path(scratch) / "tables", staged, progress)
            os.replace(staged, final)
    except DomainError as exc:
        return job_finish(job, status=ExportJob.Status.FAILED, error=str(exc).splitlines()[0])
    except Exception as exc:
        logger.exception("export job %s failed", job.pk)
        job_finish(
            job,
            status=ExportJob.Status.FAILED,
            error=f"internal error ({type(exc).__name__}); no export was written",
        )
        raise
    return job_finish(
        job,
        status=ExportJob.Status.DONE,
        file=final.name,
        size_bytes=final.stat().st_size,
        done=EXPORT_STEPS,
        total=EXPORT_STEPS,
    )
