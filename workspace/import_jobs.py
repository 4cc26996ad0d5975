"""Study imports started from the workspace: the job, and its run on a Celery worker.

``import_job_start`` checks what can be checked at once (the settings, through the one
validator; the slug; the server folder), records the job and queues it after commit;
``scenes_job_start`` does the same for scenes added to an existing study.
``import_job_run`` (the task's one service) unpacks the zip safely, finds the source in
it and calls ``annotation.services.study_import``, the import the command runs (or
``study_scenes_add``): all or nothing. The upload and the unpacked files are removed
whatever happens.
"""

import contextlib
import logging
import shutil
import time
from functools import partial
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.errors import BrokerUnavailable, InvalidSetting, StudyImportError
from annotation.models import Study
from annotation.services import study_import, study_scenes_add, study_writable
from annotation.study_settings import SETTINGS, study_settings_validate
from core.errors import DomainError
from workspace.errors import NotAllowed, SlugTaken, UploadRefused
from workspace.jobs import import_scratch, job_finish, job_heartbeat, job_progress, jobs_room_check
from workspace.models import ImportJob
from workspace.zips import source_find, zip_extract

logger = logging.getLogger(__name__)

# The import options a job may carry beyond the study settings (``study_import``'s names).
EXTRA_OPTIONS = ("reference_name",)
PROGRESS_EVERY_S = 0.5


def import_options_check(*, slug: str, options: dict, new_study: bool = True) -> dict:
    """The options checked and cleaned: the study settings by ``study_settings_validate``
    (``InvalidSetting`` naming the first at fault), ``reference_name``, and the slug free
    (``SlugTaken``: a study has it, or an import of it is queued or running). Scenes added
    to a study (not ``new_study``) take ``reference_name`` only, and the study's slug must
    have no import under way."""
    allowed = {"slug", *EXTRA_OPTIONS, *(SETTINGS if new_study else ())}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidSetting(f"{unknown[0]} is not an import option", field=unknown[0])
    cleaned = {}
    if new_study:
        settings_values = {k: v for k, v in options.items() if k in SETTINGS}
        cleaned = study_settings_validate({**settings_values, "slug": slug}, partial=False)
        cleaned.pop("slug")
    reference_name = options.get("reference_name", "reference") or "reference"
    if "/" in reference_name or "\\" in reference_name or len(reference_name) > 100:
        raise InvalidSetting(
            f"reference_name {reference_name!r} must be a file stem (no slash, at most 100)",
            field="reference_name",
        )
    if reference_name != "reference":
        cleaned["reference_name"] = reference_name
    if new_study and Study.objects.filter(slug=slug).exists():
        raise SlugTaken(f"a study with slug {slug!r} already exists", field="slug")
    active = (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)
    if ImportJob.objects.filter(slug=slug, status__in=active).exists():
        what = "a study" if new_study else "scenes into study"
        raise SlugTaken(f"an import of {what} {slug!r} is already under way", field="slug")
    return cleaned


def server_folder_resolve(*, name: str) -> Path:
    """``name`` (a folder or a manifest CSV, relative to ``IQA_IMPORT_ROOT``) as a path
    inside the root; ``UploadRefused`` if the option is off, the name leaves the root (an
    absolute path, ``..``, a link pointing out) or nothing is there."""
    root = settings.IQA_IMPORT_ROOT
    if root is None:
        raise UploadRefused(
            "server folders are off (IQA_IMPORT_ROOT is not set)", field="server_folder"
        )
    root = Path(root).resolve()
    pure = PurePosixPath(name.strip().replace("\\", "/"))
    if not name.strip() or pure.is_absolute() or ".." in pure.parts or ":" in name:
        raise UploadRefused(
            f"{name!r}: give a folder relative to the import root, without '..'",
            field="server_folder",
        )
    path = (root / Path(*pure.parts)).resolve()
    if not path.is_relative_to(root):
        raise UploadRefused(f"{name}: points outside the import root", field="server_folder")
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv")):
        raise UploadRefused(
            f"{name}: no such folder or manifest CSV under the import root", field="server_folder"
        )
    return path


def import_job_start(
    *,
    owner: AbstractBaseUser,
    slug: str,
    options: dict,
    upload: Path | None = None,
    server_folder: str = "",
) -> ImportJob:
    """A queued import of ``upload`` (a zip on disk, which the job now owns) or, for staff,
    of ``server_folder``; the task is sent after commit (``BrokerUnavailable`` if the
    broker does not answer: the job is then failed and its upload removed).

    Refused before anything is queued (and the upload removed): bad settings
    (``InvalidSetting``), a slug in use (``SlugTaken``), a server folder from a non-staff
    user (``NotAllowed``) or outside the root (``UploadRefused``), neither or both sources.
    """
    try:
        if (upload is None) == (not server_folder):
            raise UploadRefused("send either a zip file or a server folder", field="file")
        cleaned = import_options_check(slug=slug, options=options)
        if server_folder:
            if not owner.is_staff:
                raise NotAllowed(
                    "only staff may import a folder on the server", field="server_folder"
                )
            server_folder_resolve(name=server_folder)
        with transaction.atomic():
            jobs_room_check(owner=owner)
            job = ImportJob.objects.create(
                owner=owner,
                slug=slug,
                options=cleaned,
                upload=str(upload or ""),
                server_folder=server_folder.strip(),
            )
            transaction.on_commit(partial(_publish, job.pk))
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    return job


def scenes_job_start(
    *, study: Study, owner: AbstractBaseUser, upload: Path, reference_name: str = "reference"
) -> ImportJob:
    """A queued import of the scenes in ``upload`` (a zip, which the job now owns) into
    ``study``: ``annotation.services.study_scenes_add`` on a worker, all or nothing. An
    archived study, or another import into it under way, is refused at once (and the
    upload removed)."""
    try:
        study_writable(study)
        options = import_options_check(
            slug=study.slug,
            options={"reference_name": reference_name},
            new_study=False,
        )
        with transaction.atomic():
            jobs_room_check(owner=owner)
            job = ImportJob.objects.create(
                owner=owner,
                slug=study.slug,
                study=study,
                adds_scenes=True,
                options=options,
                upload=str(upload),
            )
            transaction.on_commit(partial(_publish, job.pk))
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    return job


def _publish(job_id) -> None:
    from workspace.tasks import import_job_run as import_job_run_task

    try:
        # On the imports' own queue: an export or a report never waits behind an import.
        import_job_run_task.apply_async((str(job_id),), queue=settings.IQA_IMPORT_QUEUE or None)
    except (OperationalError, OSError) as exc:
        job = ImportJob.objects.get(pk=job_id)
        _finish(job, error="the Celery broker did not answer; nothing was imported")
        if job.upload:
            Path(job.upload).unlink(missing_ok=True)
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); the import was not queued"
        ) from exc


class _Progress:
    """Images checked so far, written to the job row at most every ``PROGRESS_EVERY_S``.

    ``study_import`` reads and stores the images outside any transaction (its rows go in
    one short transaction at the end), so each write commits at once and the page polling
    ``GET /api/v1/imports/{id}`` sees it.
    """

    def __init__(self, job_id) -> None:
        self.job_id = job_id
        self.done = 0
        self.total = 0
        self.written_at = 0.0

    def on_total(self, total: int) -> None:
        self.total = total
        self._write()

    def on_image(self) -> None:
        self.done += 1
        if time.monotonic() - self.written_at >= PROGRESS_EVERY_S:
            self._write()

    def _write(self) -> None:
        self.written_at = time.monotonic()
        job_progress(ImportJob, self.job_id, done=self.done, total=self.total)


def import_job_run(*, job_id) -> ImportJob | None:
    """Run a queued import job to done (with its summary) or failed (with the import's
    one-line error); ``None`` for a job that does not exist. Idempotent: a job that is not
    queued any more (running, done or failed) is left as it is."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    job = ImportJob.objects.filter(pk=job_id).select_related("owner").first()
    if not claimed or job is None:
        return job
    work = import_scratch(job)
    progress = _Progress(job.pk)
    error = None
    try:
        with job_heartbeat(ImportJob, job.pk):
            if job.upload:
                work.mkdir(parents=True, exist_ok=False)
                zip_extract(
                    Path(job.upload),
                    work,
                    max_bytes=unpacked_limit(Path(job.upload)),
                    max_members=settings.IQA_UPLOAD_MAX_MEMBERS,
                )
                source = source_find(work)
            else:
                source = server_folder_resolve(name=job.server_folder)
            if job.adds_scenes:
                result = study_scenes_add(
                    study=job.study,
                    source=source,
                    on_total=progress.on_total,
                    on_image=progress.on_image,
                    **job.options,
                )
            else:
                result = study_import(
                    source=source,
                    slug=job.slug,
                    owner=job.owner,
                    on_total=progress.on_total,
                    on_image=progress.on_image,
                    **job.options,
                )
    except (DomainError, StudyImportError) as exc:
        error = _without(str(exc), work)
    except Exception as exc:
        logger.exception("import job %s failed", job.pk)
        error = f"internal error ({type(exc).__name__}); nothing was imported"
        raise
    finally:
        # The scratch folder and the upload go before the job says how it ended: a failed
        # job has nothing of it left on disk.
        shutil.rmtree(work, ignore_errors=True)
        if job.upload:
            with contextlib.suppress(FileNotFoundError):
                Path(job.upload).unlink()
        if error is not None:
            _finish(job, error=error, done=progress.done, total=progress.total)
    if error is not None:
        return job
    summary = {
        "scenes": len(result.scenes),
        "images": result.images,
        "images_made": result.made,
        "pairs": result.pairs,
        "gold_pairs": result.gold_pairs,
        "files_stored": result.files_stored,
        "per_scene": [
            {"scene": s.name, "images": s.images, "pairs": s.pairs, "gold_pairs": s.gold_pairs}
            for s in result.scenes
        ],
    }
    return _finish(
        job, summary=summary, study=result.study, done=progress.total, total=progress.total
    )


def unpacked_limit(upload: Path) -> int:
    """The most an upload may unpack to: ``IQA_UPLOAD_MAX_UNCOMPRESSED``, and at most
    ``IQA_UPLOAD_MAX_RATIO`` times the zip's own size (a 1 MB zip bomb stays 20 MB)."""
    ratio_limit = int(upload.stat().st_size * settings.IQA_UPLOAD_MAX_RATIO)
    return min(settings.IQA_UPLOAD_MAX_UNCOMPRESSED, ratio_limit)


def _finish(job: ImportJob, **fields) -> ImportJob:
    status = ImportJob.Status.DONE if "summary" in fields else ImportJob.Status.FAILED
    return job_finish(job, status=status, **fields)


def _without(message: str, work: Path) -> str:
    """A message without the worker's scratch folder in it (paths as in the zip)."""
    return message.replace(f"{work}/", "").replace(str(work), "the zip").splitlines()[0]
