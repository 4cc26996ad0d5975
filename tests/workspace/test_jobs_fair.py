"""Fair background work (issue 24): a researcher's imports and exports under way are
limited, and imports run on a queue of their own, so that another researcher's export
never waits behind them."""

import io
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient

from annotation.models import Study
from annotation.services import study_import
from tests.annotation.test_api_schema import EXPORTS, IMPORT, STUDIES
from tests.conftest import start_worker, stop_worker, tasks_to, wait_until
from tests.dataset.test_command_export_study import post_votes
from tests.factories import StudyFactory
from tests.images import write_scene_folder
from tests.workspace.uploads import study_zip
from workspace import export_jobs, import_jobs
from workspace.errors import TooManyJobs
from workspace.models import ExportJob, ImportJob

User = get_user_model()


@pytest.fixture
def people() -> dict:
    return {
        "ada": User.objects.create_user("ada", password="x"),
        "bob": User.objects.create_user("bob", password="x"),
    }


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
@override_settings(IQA_JOBS_PER_RESEARCHER=2)
def test_a_researchers_jobs_under_way_are_limited(people, tmp_path):
    """With IQA_JOBS_PER_RESEARCHER imports and exports queued or running, a researcher's
    next one is refused (429 too_many_jobs, saying why), and nothing is recorded; another
    researcher is not held up; once one of them ends there is room again."""
    ada, bob = people["ada"], people["bob"]
    study = StudyFactory(owner=ada, slug="ada-study")
    ImportJob.objects.create(owner=ada, slug="coming", status=ImportJob.Status.RUNNING)
    first = export_jobs.export_job_start(study=study, owner=ada, format="csv")
    with pytest.raises(TooManyJobs, match="IQA_JOBS_PER_RESEARCHER=2"):
        export_jobs.export_job_start(study=study, owner=ada, format="csv")
    refused = client_of(ada).post(
        EXPORTS.format(slug="ada-study"), {"format": "csv"}, format="json"
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_jobs"
    assert ExportJob.objects.filter(owner=ada).count() == 1
    upload = tmp_path / "upload.zip"
    upload.write_bytes(study_zip(tmp_path))
    with pytest.raises(TooManyJobs):
        import_jobs.import_job_start(
            owner=ada, slug="more", options={"design": "ref-vs-test"}, upload=upload
        )
    assert not upload.exists()  # the refused upload is removed
    assert not ImportJob.objects.filter(slug="more").exists()
    bob_study = StudyFactory(owner=bob, slug="bob-study")
    export_jobs.export_job_start(study=bob_study, owner=bob, format="csv")
    ExportJob.objects.filter(pk=first.pk).update(status=ExportJob.Status.DONE)
    assert export_jobs.export_job_start(study=study, owner=ada, format="csv").status == "queued"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_export_never_waits_behind_another_researchers_import(people, tmp_path, media_root):
    """Ada's import goes to the imports' queue; Bob's export to the default queue. With
    no worker on the imports' queue Ada's import stays queued while a worker builds Bob's
    export to the end; an import worker then runs Ada's import."""
    imports_queue = f"imports-{uuid.uuid4().hex[:8]}"
    dirs = {
        "IQA_UPLOAD_DIR": tmp_path / "uploads",
        "IQA_EXPORT_DIR": tmp_path / "exports",
        "IQA_SCRATCH_DIR": tmp_path / "scratch",
    }
    env = {name: str(path) for name, path in dirs.items()}
    source = write_scene_folder(tmp_path / "src", {"s1": ["reference", "a", "b"]})
    study_import(
        source=source, slug="bobs", design="ref-vs-test", live=True, votes_per_pair=2,
        owner=people["bob"],
    )  # fmt: skip
    post_votes(Study.objects.get(slug="bobs"))
    worker = start_worker(
        name="default", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    imports = None
    try:
        with tasks_to(worker), override_settings(IQA_IMPORT_QUEUE=imports_queue, **dirs):
            ada, bob = client_of(people["ada"]), client_of(people["bob"])
            upload = io.BytesIO(study_zip(tmp_path))
            upload.name = "study.zip"
            body = {"slug": "adas", "design": "ref-vs-test", "file": upload}
            started = ada.post(STUDIES, body, format="multipart")
            assert started.status_code == 202, started.content
            job_id = started.json()["import"]["id"]
            export = bob.post(EXPORTS.format(slug="bobs"), {"format": "csv"}, format="json")
            assert export.status_code == 202, export.content
            export_id = export.json()["export"]["id"]
            wait_until(
                lambda: ExportJob.objects.get(pk=export_id).status in ("done", "failed"),
                timeout=120,
                what="Bob's export",
            )
            assert ExportJob.objects.get(pk=export_id).status == "done", worker.log_text()[-2000:]
            assert ImportJob.objects.get(pk=job_id).status == "queued"  # behind nothing
            imports = start_worker(
                name="imports", broker_url=settings.CELERY_BROKER_URL, media=media_root,
                extra_env=env, queue=imports_queue,
            )  # fmt: skip
            wait_until(
                lambda: (
                    ada.get(IMPORT.format(job_id=job_id)).json()["status"] in ("done", "failed")
                ),
                timeout=120,
                what="Ada's import",
            )
            assert ada.get(IMPORT.format(job_id=job_id)).json()["status"] == "done"
    finally:
        stop_worker(worker)
        if imports is not None:
            stop_worker(imports)
