"""Exports from the workspace: ``POST /api/v1/studies/{slug}/exports`` queues a job, a
real Celery worker builds the zip (every table of ``export_study`` and the datasheet), and
``GET`` its ``download`` URL gives it to those who reach the study, to nobody else.

The worker tests run a real ``celery worker`` process; the others call the task's service
(``export_jobs.export_job_run``) directly.
"""

import io
import itertools
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from annotation.models import Study, Vote
from annotation.services import assignment, study_import
from dataset.export import EXPORT_STEPS, TABLES
from tests.annotation.test_api_schema import EXPORT, EXPORT_DOWNLOAD, EXPORTS, Api
from tests.conftest import start_worker, stop_worker, tasks_to, wait_until
from tests.dataset.test_command_export_study import post_votes
from tests.images import write_scene_folder
from workspace import export_jobs, tasks
from workspace.models import ExportJob

User = get_user_model()


def read_member(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    data = io.BytesIO(archive.read(name))
    if name.endswith(".csv"):
        return pd.read_csv(data, keep_default_na=False, na_values=[""])
    if name.endswith(".parquet"):
        return pd.read_parquet(data)
    return pd.read_json(data, lines=True, dtype=False)


def download(client: APIClient, url: str) -> tuple[zipfile.ZipFile, object]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    return zipfile.ZipFile(io.BytesIO(body)), response


def votes_match_the_database(votes: pd.DataFrame, study: Study) -> None:
    """The exported votes are the database's, vote for vote (the check of
    ``tests/dataset/test_command_export_study.py``)."""
    stored = {
        str(vote_id): (str(trial_id), choice, preferred, pseudonym, response_ms)
        for vote_id, trial_id, choice, preferred, pseudonym, response_ms in Vote.objects.filter(
            pair__study=study
        ).values_list("id", "trial_id", "choice", "preferred", "session__pseudonym", "response_ms")
    }
    assert len(votes) == len(stored) > 0
    for row in votes.itertuples():
        assert stored[str(row.vote_id)] == (
            str(row.trial_id), row.choice, row.preferred, row.annotator, int(row.response_ms),
        )  # fmt: skip


@pytest.fixture
def exports_dir(tmp_path, settings) -> Path:
    folder = tmp_path / "exports"
    settings.IQA_EXPORT_DIR = folder
    return folder


@pytest.fixture
def people() -> dict:
    return {
        "ada": User.objects.create_user("ada", password="x"),
        "bob": User.objects.create_user("bob", password="x"),
    }


@pytest.fixture
def voted(tmp_path, monkeypatch, people) -> Study:
    """A ref-vs-test study of ada's, with gold and practice, answered by four annotators."""
    monkeypatch.setattr(assignment, "_gold_draw", itertools.cycle([0.0, 0.9, 0.9]).__next__)
    source = write_scene_folder(
        tmp_path / "src", {"s1": ["reference", "a", "b", "c"], "s2": ["reference", "d", "e"]}
    )
    study_import(
        source=source, slug="exp", design="ref-vs-test", gold_rate=0.3, practice_trials=1,
        live=True, votes_per_pair=2, owner=people["ada"],
    )  # fmt: skip
    study = Study.objects.get(slug="exp")
    post_votes(study)
    return study


@pytest.fixture
def schema() -> dict:
    return APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()


def client_of(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


# --- with a real worker ------------------------------------------------------------------


@pytest.fixture
def worker(media_root, exports_dir):
    """A real worker writing exports where this process reads them; tasks go to it."""
    worker = start_worker(
        name="export",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={"IQA_EXPORT_DIR": str(exports_dir)},
    )
    try:
        with tasks_to(worker):
            yield worker
    finally:
        stop_worker(worker)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_builds_the_zip_whose_votes_are_the_databases(
    voted, people, worker, exports_dir, schema
):
    """For each format: 202 with the job, the worker runs it to done (every step), and the
    download is one zip of every table and README.md whose votes, read with pandas, are
    the database's; Content-Disposition names it as an attachment. Another researcher gets
    404 for the job and the download."""
    ada = Api(client_of(people["ada"]), schema)
    bob = Api(client_of(people["bob"]), schema)
    for fmt in ("csv", "parquet", "jsonl"):
        started = ada.call("post", EXPORTS, 202, body={"format": fmt}, params={"slug": "exp"})
        job_id = started["export"]["id"]
        assert started["export"]["url"] == f"/api/v1/exports/{job_id}"
        params = {"job_id": job_id}
        wait_until(
            lambda params=params: (
                ada.call("get", EXPORT, 200, params=params)["status"] in ("done", "failed")
            ),
            timeout=120,
            what=f"the {fmt} export",
        )
        job = ada.call("get", EXPORT, 200, params=params)
        assert job["status"] == "done", (job, worker.log_text()[-2000:])
        assert (job["done"], job["total"]) == (EXPORT_STEPS, EXPORT_STEPS)
        assert job["download"] == f"/api/v1/exports/{job_id}/download"
        assert "error" not in job
        archive, response = download(ada.client, job["download"])
        assert response["Content-Type"] == "application/zip"
        disposition = response["Content-Disposition"]
        assert disposition.startswith("attachment;")
        assert f"exp-{fmt}-" in disposition
        # ... with the field's format for the design: A-FINE's Triplet.txt (ref-vs-test).
        assert sorted(archive.namelist()) == sorted(
            [f"{name}.{fmt}" for name in TABLES] + ["README.md", "Triplet.txt"]
        )
        votes_match_the_database(read_member(archive, f"votes.{fmt}"), Study.objects.get())
        assert "design: ref-vs-test" in archive.read("README.md").decode()
        assert job["size_bytes"] == (exports_dir / f"{job_id}.zip").stat().st_size
        bob.call("get", EXPORT, 404, params=params)
        bob.call("get", EXPORT_DOWNLOAD, 404, params=params)
    listed = ada.call("get", EXPORTS, 200, params={"slug": "exp"})
    assert [job["format"] for job in listed] == ["jsonl", "parquet", "csv"]
    assert sorted(p.name for p in exports_dir.iterdir()) == sorted(
        f"{job['id']}.zip" for job in listed
    )


# --- the service, called directly --------------------------------------------------------


@pytest.mark.django_db
def test_the_job_writes_the_zip_atomically_and_is_idempotent(voted, people, exports_dir):
    """The run leaves only ``<job id>.zip`` (no scratch files); running the task again on a
    done job changes nothing."""
    job = export_jobs.export_job_start(study=voted, owner=people["ada"], format="csv")
    assert (job.status, job.done, job.total) == ("queued", 0, EXPORT_STEPS)
    assert tasks.export_job_run(str(job.pk)) == "done"
    assert [p.name for p in exports_dir.iterdir()] == [f"{job.pk}.zip"]
    stat = (exports_dir / f"{job.pk}.zip").stat()
    assert tasks.export_job_run(str(job.pk)) == "done"
    assert (exports_dir / f"{job.pk}.zip").stat().st_mtime_ns == stat.st_mtime_ns
    job.refresh_from_db()
    assert (job.file, job.size_bytes) == (f"{job.pk}.zip", stat.st_size)
    with zipfile.ZipFile(exports_dir / f"{job.pk}.zip") as archive:
        votes_match_the_database(read_member(archive, "votes.csv"), voted)
    assert tasks.export_job_run("00000000-0000-0000-0000-000000000000") is None


@pytest.mark.django_db
def test_an_interrupted_job_runs_again(voted, people, exports_dir):
    """A job left running (its worker died; the message comes back) is built again."""
    job = export_jobs.export_job_start(study=voted, owner=people["ada"], format="jsonl")
    ExportJob.objects.filter(pk=job.pk).update(status="running", done=3)
    assert tasks.export_job_run(str(job.pk)) == "done"
    assert (exports_dir / f"{job.pk}.zip").is_file()


@pytest.mark.django_db
def test_an_export_whose_worker_stopped_every_time_is_failed_not_run_forever(
    voted, people, exports_dir, settings
):
    """Each delivery of the task is an attempt; a job whose worker was lost
    ``IQA_JOB_MAX_ATTEMPTS`` times (an export too big for its memory) is failed, saying
    so, instead of being delivered again and again."""
    settings.IQA_JOB_MAX_ATTEMPTS = 2
    job = export_jobs.export_job_start(study=voted, owner=people["ada"], format="csv")
    ExportJob.objects.filter(pk=job.pk).update(status="running", attempts=1)
    assert tasks.export_job_run(str(job.pk)) == "done"  # the second attempt
    job.refresh_from_db()
    assert job.attempts == 2
    lost = export_jobs.export_job_start(study=voted, owner=people["ada"], format="csv")
    ExportJob.objects.filter(pk=lost.pk).update(status="running", attempts=2)
    assert tasks.export_job_run(str(lost.pk)) == "failed"
    lost.refresh_from_db()
    assert lost.error == (
        "the worker stopped while building the export 2 times (out of memory?); "
        "no export was written"
    )
    assert not (exports_dir / f"{lost.pk}.zip").exists()


@pytest.mark.django_db
def test_only_those_who_reach_the_study_reach_its_exports(voted, people, exports_dir, schema):
    """The owner, a member and staff reach the job, the list and the download; another
    researcher gets 404 everywhere (as for a job that does not exist), anonymous 403. A
    job not done yet answers 409 at its download URL."""
    job = export_jobs.export_job_start(study=voted, owner=people["ada"], format="parquet")
    params = {"job_id": str(job.pk)}
    ada = Api(client_of(people["ada"]), schema)
    ada.call("get", EXPORT_DOWNLOAD, 409, params=params)
    export_jobs.export_job_run(job_id=job.pk)
    carol = User.objects.create_user("carol", password="x")
    voted.members.add(carol, through_defaults={"role": "editor"})
    staff = User.objects.create_user("root", password="x", is_staff=True)
    for user in (people["ada"], carol, staff):
        api = Api(client_of(user), schema)
        assert api.call("get", EXPORT, 200, params=params)["status"] == "done"
        assert [j["id"] for j in api.call("get", EXPORTS, 200, params={"slug": "exp"})] == [
            str(job.pk)
        ]
        archive, _ = download(api.client, f"/api/v1/exports/{job.pk}/download")
        assert "votes.parquet" in archive.namelist()
    bob = Api(client_of(people["bob"]), schema)
    bob.call("get", EXPORT, 404, params=params)
    bob.call("get", EXPORT_DOWNLOAD, 404, params=params)
    bob.call("get", EXPORTS, 404, params={"slug": "exp"})
    bob.call("post", EXPORTS, 404, body={"format": "csv"}, params={"slug": "exp"})
    ada.call("get", EXPORT, 404, params={"job_id": "00000000-0000-0000-0000-000000000000"})
    anonymous = Api(client_of(None), schema)
    anonymous.call("get", EXPORT, 403, params=params)
    anonymous.call("get", EXPORT_DOWNLOAD, 403, params=params)
    anonymous.call("post", EXPORTS, 403, body={"format": "csv"}, params={"slug": "exp"})
    assert ExportJob.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_format_is_refused(voted, people, schema):
    ada = Api(client_of(people["ada"]), schema)
    error = ada.call("post", EXPORTS, 400, body={"format": "xlsx"}, params={"slug": "exp"})
    assert error["error"]["field"] == "format"
    assert ExportJob.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_api_answers_503_and_the_job_fails(
    voted, people, schema, monkeypatch
):
    """The job is queued after commit; a broker that does not answer fails the request
    loudly (503) and the job, and nothing runs inline."""

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.export_job_run, "delay", down)
    ada = Api(client_of(people["ada"]), schema)
    error = ada.call("post", EXPORTS, 503, body={"format": "csv"}, params={"slug": "exp"})
    assert error["error"]["code"] == "broker_unavailable"
    job = ExportJob.objects.get()
    assert job.status == "failed"
    assert "broker" in job.error
    assert not job.file


@pytest.mark.django_db
def test_the_export_of_a_study_with_a_decision_carries_it(voted, people, exports_dir):
    """A decision by hand is in the zip's annotators table and its datasheet."""
    from annotation.services import annotator_exclusion_decide

    pseudonym = voted.sessions.order_by("created_at").first().pseudonym
    annotator_exclusion_decide(
        study=voted, annotator=pseudonym, excluded=True, reason="test run", user=people["ada"]
    )
    job = export_jobs.export_job_start(study=voted, owner=people["ada"], format="csv")
    with override_settings(IQA_EXPORT_DIR=exports_dir):
        export_jobs.export_job_run(job_id=job.pk)
    with zipfile.ZipFile(exports_dir / f"{job.pk}.zip") as archive:
        table = read_member(archive, "annotators.csv").set_index("annotator")
        assert table.at[pseudonym, "manual_decision"] == "excluded"
        assert table.at[pseudonym, "manual_reason"] == "test run"
        assert "excluded by hand: test run" in archive.read("README.md").decode()
