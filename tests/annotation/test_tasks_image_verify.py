"""A round trip through a real Celery worker process on the real broker."""

import pytest

from annotation import services
from annotation.models import Image
from annotation.services import study_import
from tests.conftest import start_worker, stop_worker, wait_until
from tests.images import write_scene_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _study(tmp_path, slug="v"):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b", "c"]}, seed=40)
    return study_import(source=source, slug=slug, design="ref-vs-test").study


def _settled(study) -> bool:
    return not Image.objects.filter(scene__study=study, integrity=Image.Integrity.PENDING).exists()


def test_a_worker_verifies_every_stored_image_and_flags_missing_or_altered_files(
    tmp_path, media_root, celery_worker
):
    study = _study(tmp_path)
    assert services.study_verify_enqueue(study=study) == 4
    wait_until(lambda: _settled(study), what="the worker to check 4 images")
    assert set(Image.objects.values_list("integrity", flat=True)) == {"ok"}
    assert Image.objects.filter(integrity_checked_at__isnull=True).count() == 0

    altered = Image.objects.get(name="s/a.png")
    (media_root / altered.file).write_bytes(b"tampered")
    removed = Image.objects.get(name="s/b.png")
    (media_root / removed.file).unlink()

    services.study_verify_enqueue(study=study)
    wait_until(lambda: _settled(study), what="the worker to check again")
    states = dict(Image.objects.values_list("name", "integrity"))
    assert states == {
        "s/reference.png": "ok",
        "s/a.png": "mismatch",
        "s/b.png": "missing",
        "s/c.png": "ok",
    }
    assert "annotation.image_verify" in celery_worker.log_text()


def test_verify_study_command_waits_for_the_worker_and_reports(tmp_path, celery_worker, manage):
    # The command runs in its own process and publishes to the worker's queue.
    study = _study(tmp_path, slug="cmd")
    done = manage("verify_study", study.slug, "--wait", "--timeout", "60", env_extra={
        "CELERY_TASK_DEFAULT_QUEUE": celery_worker.queue
    })  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Queued 4 image checks for 'cmd'." in done.stdout
    assert "Checked: ok: 4" in done.stdout


def test_the_embedded_file_system_broker_carries_tasks_to_a_worker(tmp_path, media_root, manage):
    """What `make run` uses: kombu's filesystem:// transport, no broker server."""
    study = _study(tmp_path, slug="fs")
    embedded = {"CELERY_BROKER_URL": "filesystem://", "IQA_DATA_DIR": str(tmp_path / "data")}
    worker = start_worker(
        name="fs", broker_url="filesystem://", media=media_root, extra_env=embedded
    )
    try:
        done = manage("verify_study", "fs", "--wait", "--timeout", "60", env_extra={
            **embedded, "CELERY_TASK_DEFAULT_QUEUE": worker.queue
        })  # fmt: skip
    finally:
        stop_worker(worker)
    assert done.returncode == 0, done.stderr + worker.log_text()[-2000:]
    assert "Checked: ok: 4" in done.stdout
    assert set(Image.objects.filter(scene__study=study).values_list("integrity", flat=True)) == {
        "ok"
    }


def test_with_the_broker_down_verify_fails_loudly_and_leaves_nothing_pending(tmp_path, manage):
    study = _study(tmp_path, slug="down")
    done = manage("verify_study", "down", env_extra={"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: the Celery broker did not answer")
    assert "0 of 4 checks were queued" in done.stderr
    assert set(Image.objects.filter(scene__study=study).values_list("integrity", flat=True)) == {
        "unchecked"
    }
