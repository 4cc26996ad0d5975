"""The sweep of jobs whose worker stopped: a running import or export that has written no
progress for ``IQA_JOB_STALE_SECONDS`` is failed, saying so (an import's upload removed and
its slug free again); a job still writing progress is left alone."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.conftest import wait_until
from tests.factories import StudyFactory
from workspace import import_jobs, jobs, tasks
from workspace.jobs import job_heartbeat, job_progress
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
    settings.IQA_UPLOAD_DIR = tmp_path / "uploads"
    settings.IQA_SCRATCH_DIR = tmp_path / "scratch"
    upload = tmp_path / "upload.zip"
    upload.write_bytes(b"PK")
    stuck = ImportJob.objects.create(owner=ada, slug="pilot", upload=str(upload))
    unpacked = settings.IQA_SCRATCH_DIR / f"import-{stuck.pk}" / "scene"
    unpacked.mkdir(parents=True)
    (unpacked / "a.png").write_bytes(b"x")
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
    assert not (settings.IQA_SCRATCH_DIR / f"import-{stuck.pk}").exists()
    # The slug is no longer held by an import under way.
    assert import_jobs.import_options_check(slug="pilot", options={"design": "pairwise"})
    assert tasks.jobs_sweep() == 0


def test_a_silent_export_is_failed_and_a_finished_job_is_left_alone(ada, settings, tmp_path):
    settings.IQA_JOB_STALE_SECONDS = 600
    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    study = StudyFactory(owner=ada)
    stuck = ExportJob.objects.create(owner=ada, study=study, format="csv")
    scratch = settings.IQA_EXPORT_DIR / f".{stuck.pk}-k2j4" / "tables"
    scratch.mkdir(parents=True)
    silent_for(stuck, 601)
    done = ExportJob.objects.create(owner=ada, study=study, format="csv", status="done")
    ExportJob.objects.filter(pk=done.pk).update(updated_at=timezone.now() - timedelta(days=1))

    assert tasks.jobs_sweep() == 1

    stuck.refresh_from_db()
    done.refresh_from_db()
    assert stuck.status == "failed"
    assert stuck.error.startswith("the worker stopped while building the export")
    assert list(settings.IQA_EXPORT_DIR.iterdir()) == []
    assert done.status == "done"


def test_export_zips_expire_and_go_with_their_job(ada, settings, tmp_path):
    """Issue 31, item 7: export zips were never removed. The jobs sweep removes a zip
    IQA_EXPORT_KEEP_DAYS after its job finished (the job then reads expired: no download,
    409 saying so) and a zip whose job is gone with its study; a recent zip stays."""
    from rest_framework.test import APIClient

    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    settings.IQA_EXPORT_KEEP_DAYS = 7
    settings.IQA_EXPORT_DIR.mkdir()
    study, doomed = StudyFactory(owner=ada), StudyFactory(owner=ada)

    def finished(study, days: float) -> ExportJob:
        job = ExportJob.objects.create(owner=ada, study=study, format="csv", status="done")
        (settings.IQA_EXPORT_DIR / f"{job.pk}.zip").write_bytes(b"PK")
        ExportJob.objects.filter(pk=job.pk).update(
            file=f"{job.pk}.zip", updated_at=timezone.now() - timedelta(days=days)
        )
        return job

    old, recent, orphan = finished(study, 8), finished(study, 1), finished(doomed, 1)
    orphan_zip = settings.IQA_EXPORT_DIR / f"{orphan.pk}.zip"
    doomed.delete()  # its jobs go with it (cascade); the zip is left to the sweep
    assert orphan_zip.exists()
    (settings.IQA_EXPORT_DIR / "notes.zip").write_bytes(b"PK")  # not an export's: left

    assert jobs.export_files_sweep() == 2
    assert sorted(p.name for p in settings.IQA_EXPORT_DIR.iterdir()) == sorted(
        [f"{recent.pk}.zip", "notes.zip"]
    )
    api = APIClient()
    api.force_authenticate(ada)
    body = api.get(f"/api/v1/exports/{old.pk}").json()
    assert (body["status"], body["expired"]) == ("done", True)
    assert "download" not in body
    refused = api.get(f"/api/v1/exports/{old.pk}/download")
    assert refused.status_code == 409
    assert "expired" in refused.json()["error"]["message"]
    assert api.get(f"/api/v1/exports/{recent.pk}").json()["download"]
    assert jobs.export_files_sweep() == 0


@pytest.mark.django_db(transaction=True)
def test_a_long_silent_step_keeps_its_job_alive_through_the_heartbeat(ada, settings):
    """A step that writes no progress (the report's bootstrap) is not taken for a stopped
    worker: the worker's heartbeat touches the running job while it works."""
    settings.IQA_JOB_STALE_SECONDS = 600
    settings.IQA_JOB_HEARTBEAT_SECONDS = 0.05
    job = ImportJob.objects.create(owner=ada, slug="long", upload="")
    silent_for(job, 3600)
    with job_heartbeat(ImportJob, job.pk):
        wait_until(
            lambda: (
                ImportJob.objects.get(pk=job.pk).updated_at > timezone.now() - timedelta(seconds=60)
            ),
            timeout=30,
            what="the heartbeat",
        )
        assert tasks.jobs_sweep() == 0
    assert ImportJob.objects.get(pk=job.pk).status == "running"
