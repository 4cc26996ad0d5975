"""The researcher side's reads. Which studies a user reaches is
``annotation.selectors.studies_visible`` (through ``workspace.access``), never redone here."""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from knox.models import AuthToken

from annotation.selectors import studies_visible
from core.errors import NotFound
from workspace.models import ExportJob, ImportJob


def token_get(*, user: AbstractBaseUser) -> AuthToken | None:
    """``user``'s API token (its digest and first characters), or none."""
    return AuthToken.objects.filter(user=user).order_by("-created").first()


def import_job_get_visible(*, user: AbstractBaseUser, job_id) -> ImportJob:
    """The import job ``job_id`` if ``user`` started it or is staff, else ``NotFound``
    (another researcher's job answers like one that does not exist)."""
    jobs = ImportJob.objects.select_related("study")
    if not user.is_staff:
        jobs = jobs.filter(owner_id=user.pk)
    job = jobs.filter(pk=job_id).first() if _is_uuid(job_id) else None
    if job is None:
        raise NotFound("no import job has this id that the caller may see")
    return job


def export_job_get_visible(*, user: AbstractBaseUser, job_id) -> ExportJob:
    """The export job ``job_id`` if ``user`` may see its study (the one access rule),
    else ``NotFound``: a job of another researcher's study answers like one that does
    not exist, and so does its download."""
    job = (
        ExportJob.objects.select_related("study")
        .filter(pk=job_id, study__in=studies_visible(user=user))
        .first()
        if _is_uuid(job_id)
        else None
    )
    if job is None:
        raise NotFound("no export job has this id that the caller may see")
    return job


def export_jobs_recent(*, study, limit: int = 10) -> list[ExportJob]:
    """The study's latest export jobs, newest first (whoever of its researchers started
    them)."""
    return list(ExportJob.objects.filter(study=study).select_related("study", "owner")[:limit])


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
