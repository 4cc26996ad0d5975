"""The sweep of jobs whose worker stopped: a running import or export that has written no
progress for ``IQA_JOB_STALE_SECONDS`` is failed, saying so (an import's upload removed and
its slug free again); a job still writing progress is left alone."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.factories import StudyFactory
from workspace import import_jobs, tasks
from workspace.jobs import job_progress
from workspace.models import ExportJob, ImportJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada():
    return get_user_model().objects.create_user("ada", password="x")


def silent_for(job, seconds: float) -> None:
    type(job).objects.filter(pk=job.pk).update(
        status="running", updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_silent_import_is_failed_its_upload_removed_and_its_slug_free(ada, tmp_path, settings):
    settings.IQA_JOB_STALE_SECONDS = 600
    upload = tmp_path / "upload.zip"
    upload.write_bytes(b"PK")
    stuck = ImportJob.objects.create(owner=ada, slug="pilot", upload=str(upload))
    silent_for(stuck, 601)
    alive = ImportJob.objects.create(owner=ada, slug="other", upload="")
    silent_for(alive, 700)
    job_progress(ImportJob, alive.pk, done=3, total=10)  # a sign of life

    assert tasks.jobs_sweep() == 1

    stuck.refresh_from_db()
    alive.refresh_from_db()
    assert (stuck.status, alive.status) == ("failed", "running")
    assert stuck.error == (
        "the worker stopped while importing (no progress for 10 min); nothing was imported: "
        "start the import again"
    )
    assert not upload.exists()
    # The slug is no longer held by an import under way.
    assert import_jobs.import_options_check(slug="pilot", options={"design": "pairwise"})
    assert tasks.jobs_sweep() == 0


def test_a_silent_export_is_failed_and_a_finished_job_is_left_alone(ada, settings):
    settings.IQA_JOB_STALE_SECONDS = 600
    study = StudyFactory(owner=ada)
    stuck = ExportJob.objects.create(owner=ada, study=study, format="csv")
    silent_for(stuck, 601)
    done = ExportJob.objects.create(owner=ada, study=study, format="csv", status="done")
    ExportJob.objects.filter(pk=done.pk).update(updated_at=timezone.now() - timedelta(days=1))

    assert tasks.jobs_sweep() == 1

    stuck.refresh_from_db()
    done.refresh_from_db()
    assert stuck.status == "failed"
    assert stuck.error.startswith("the worker stopped while building the export")
    assert done.status == "done"
