"""Infrastructure faults are retried, never stored as results: a worker that cannot load
a metric leaves its batch pending, retries with backoff, then marks the batch failed to
run; ``score_study --retry-failed`` sends it again. Which metrics are available is what
the workers on the scoring queue reported."""

import signal
import socket
import subprocess
import time

import pytest
from django.conf import settings

from annotation.models import Image
from scoring.models import Score, ScoreBatch, WorkerReport
from tests.conftest import free_port, start_worker, stop_worker, wait_until
from tests.images import write_scene_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PLUGINS = "tests.scoring.plugins.MeanBrightness,tests.scoring.plugins.NeedsWeights"
WEIGHT_FILE = "plugins/needs_weights.pth"


def test_a_worker_without_the_weights_retries_then_marks_the_batch_failed_to_run(
    tmp_path, media_root, manage
):
    """The worker lacks needs_weights' file (the command's machine has it): `available`
    follows the worker's report and leaves the metric out; named, the metric's batch
    stays pending with no score while the task retries (2 retries, 1 s backoff), then
    fails to run with the reason, shown by score_study. Once the file is on the worker,
    --retry-failed sends the same batch again and every item is scored once."""
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]}, size=(40, 30))
    imported = manage("import_study", str(source), "--slug", "f", "--design", "ref-vs-test")
    assert imported.returncode == 0, imported.stderr
    worker_weights, command_weights = tmp_path / "worker-weights", tmp_path / "command-weights"
    (command_weights / "plugins").mkdir(parents=True)
    (command_weights / WEIGHT_FILE).write_bytes(b"weights")
    (worker_weights / "plugins").mkdir(parents=True)
    env = {
        "IQA_METRIC_PLUGINS": PLUGINS,
        "IQA_SCORE_MAX_RETRIES": "2",
        "IQA_SCORE_RETRY_BACKOFF": "1",
    }
    worker = start_worker(
        name="faults",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={**env, "IQA_WEIGHTS_DIR": str(worker_weights)},
    )
    command = {**env, "IQA_SCORING_QUEUE": worker.queue, "IQA_WEIGHTS_DIR": str(command_weights)}
    try:
        (report,) = WorkerReport.objects.filter(queues__contains=[worker.queue])
        assert "mean_brightness" in report.metrics
        assert "needs_weights" not in report.metrics

        # `available` is what the worker reported, not what this machine holds.
        available = manage("score_study", "f", "--wait", "--timeout", "120", env_extra=command)
        assert available.returncode == 0, available.stderr
        assert f"worker {report.hostname}" in available.stdout
        assert "f mean_brightness: done" in available.stdout
        assert "needs_weights" not in available.stdout
        assert not ScoreBatch.objects.filter(metric="needs_weights").exists()

        failed = manage(
            "score_study", "f", "--metrics", "needs_weights", "--wait", "--timeout", "120",
            env_extra=command,
        )  # fmt: skip
        assert failed.returncode == 0, failed.stderr
        (batch,) = ScoreBatch.objects.filter(metric="needs_weights")
        assert batch.state == ScoreBatch.State.FAILED
        assert "needs_weights cannot be loaded: MissingWeights" in batch.reason
        assert "needs_weights.pth" in batch.reason
        assert not Score.objects.filter(metric="needs_weights").exists()
        assert "f needs_weights: 0/3, 3 failed to run (needs_weights cannot be loaded" in (
            failed.stdout
        )
        assert worker.log_text().count("Retry in") == 2

        # Sent again without --retry-failed: nothing is sent, the command says why.
        again = manage("score_study", "f", "--metrics", "needs_weights", env_extra=command)
        assert "0 items sent" in again.stdout
        assert "3 items failed to run" in again.stdout
        assert ScoreBatch.objects.filter(metric="needs_weights").count() == 1

        (worker_weights / WEIGHT_FILE).write_bytes(b"weights")
        retried = manage(
            "score_study", "f", "--metrics", "needs_weights", "--retry-failed", "--wait",
            "--timeout", "120", env_extra=command,
        )  # fmt: skip
        assert retried.returncode == 0, retried.stderr
        assert "f needs_weights: done" in retried.stdout
    finally:
        stop_worker(worker)
    (batch,) = ScoreBatch.objects.filter(metric="needs_weights")
    assert (batch.state, batch.reason, batch.attempts) == (ScoreBatch.State.DONE, "", 2)
    rows = list(Score.objects.filter(metric="needs_weights").values_list("image_id", "error"))
    assert sorted(i for i, _ in rows) == sorted(Image.objects.values_list("pk", flat=True))
    assert {e for _, e in rows} == {""}
    # A stopped worker's report is gone: `available` no longer counts on it.
    assert not WorkerReport.objects.filter(hostname=report.hostname).exists()


def _redis(port: int, folder) -> subprocess.Popen:
    """A Redis of the test's own (the machine's, on 6379, is shared), append-only as
    docker-compose runs it."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.1)


def test_redis_killed_and_restarted_while_batches_are_queued_loses_and_doubles_nothing(
    tmp_path, media_root, manage
):
    """Twelve one-item batches are queued on a Redis that is killed (SIGKILL) while the
    worker scores them, then restarted on its append-only file: the worker reconnects,
    the sweep sends again what is still pending, and every score exists exactly once."""
    stems = ["reference", *(f"t{i}" for i in range(11))]
    source = write_scene_folder(tmp_path / "src", {"s": stems}, size=(40, 30))
    imported = manage("import_study", str(source), "--slug", "r", "--design", "ref-vs-test")
    assert imported.returncode == 0, imported.stderr
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    redis = _redis(port, tmp_path)
    env = {
        "IQA_METRIC_PLUGINS": "tests.scoring.plugins.SlowMeanDifference",
        "IQA_SCORE_BATCH_ITEMS": "1",
        "CELERY_BROKER_URL": broker,
    }
    worker = start_worker(name="redis-kill", broker_url=broker, media=media_root, extra_env=env)
    command = {**env, "IQA_SCORING_QUEUE": worker.queue}
    try:
        sent = manage("score_study", "r", "--metrics", "slow_mean_difference", env_extra=command)
        assert sent.returncode == 0, sent.stderr
        assert "12 items sent" in sent.stdout
        wait_until(lambda: Score.objects.count() >= 2, timeout=60, what="some scores")
        redis.send_signal(signal.SIGKILL)
        redis.wait(timeout=10)
        time.sleep(1.0)
        redis = _redis(port, tmp_path)
        # What the worker held when Redis died is unacknowledged until the visibility
        # timeout (hours): the sweep sends every pending batch again.
        wait_until(lambda: Score.objects.count() >= 6, timeout=60, what="scoring to go on")
        swept = manage(
            "shell", "-c",
            "from scoring.services import scores_sweep; print(scores_sweep(stale_seconds=0))",
            env_extra=command,
        )  # fmt: skip
        assert swept.returncode == 0, swept.stderr
        wait_until(
            lambda: not ScoreBatch.objects.filter(state="pending").exists(),
            timeout=120,
            what="every batch to be done",
        )
    finally:
        stop_worker(worker)
        redis.kill()
        redis.wait(timeout=10)
    rows = list(Score.objects.values_list("image_id", "reference_id"))
    assert len(rows) == len(set(rows)) == 12
    assert not Score.objects.exclude(error="").exists()
    assert ScoreBatch.objects.filter(state="done").count() == 12
