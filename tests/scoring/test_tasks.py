"""Scoring on real workers: plug-ins beside pyiqa metrics, a killed worker, the sweep."""

import signal

import numpy as np
import PIL.Image
import pytest
from django.conf import settings
from django.test import override_settings

from annotation.models import Image, Study
from scoring import services
from scoring.models import Score, ScoreBatch
from scoring.registry import metric_get
from tests.conftest import start_worker, stop_worker, wait_until
from tests.images import write_scene_folder
from tests.scoring.plugins import install_entry_point

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PLUGINS = "tests.scoring.plugins.MeanBrightness,tests.scoring.plugins.SlowMeanDifference"


def test_a_plugin_metric_scores_a_study_next_to_the_built_in_ones(tmp_path, media_root, manage):
    """One plug-in named in IQA_METRIC_PLUGINS, one declared by an installed package's
    entry point: both score beside psnr."""
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]}, size=(40, 30))
    manage("import_study", str(source), "--slug", "p", "--design", "ref-vs-test")
    package = install_entry_point(
        tmp_path / "site", "pixel_spread", "tests.scoring.plugins:PixelSpread"
    )
    env = {"IQA_METRIC_PLUGINS": PLUGINS, "PYTHONPATH": str(package)}
    worker = start_worker(
        name="plugin", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    try:
        status = manage("metrics_status", env_extra=env)
        assert "mean_brightness" in status.stdout
        assert "[plug-in tests.scoring.plugins.MeanBrightness]" in status.stdout
        assert "[plug-in entry point pixel_spread]" in status.stdout
        done = manage(
            "score_study", "p", "--metrics", "psnr,mean_brightness,pixel_spread", "--wait",
            "--timeout", "300", env_extra={**env, "IQA_SCORING_QUEUE": worker.queue},
        )  # fmt: skip
    finally:
        stop_worker(worker)
    assert done.returncode == 0, done.stderr
    assert "p mean_brightness: done" in done.stdout
    assert "p pixel_spread: done" in done.stdout
    assert "p psnr: done" in done.stdout
    for image in Image.objects.all():
        with PIL.Image.open(media_root / image.file) as file:
            pixels = np.asarray(file.convert("RGB"), dtype=np.float64) / 255.0
        score = Score.objects.get(metric="mean_brightness", image=image)
        assert score.value == pytest.approx(pixels.mean(), rel=1e-5)
        assert score.reference is None
        assert score.version == "plugin-1"
        spread = Score.objects.get(metric="pixel_spread", image=image)
        assert spread.value == pytest.approx(pixels.std(), rel=1e-4)
        assert spread.version == "plugin-2"
    assert Score.objects.filter(metric="psnr").count() == 3


def test_a_worker_killed_mid_study_loses_and_duplicates_nothing(tmp_path, media_root, manage):
    stems = ["reference", *(f"t{i}" for i in range(11))]
    source = write_scene_folder(tmp_path / "src", {"s": stems}, size=(40, 30))
    manage("import_study", str(source), "--slug", "k", "--design", "ref-vs-test")
    study = Study.objects.get(slug="k")
    env = {"IQA_METRIC_PLUGINS": PLUGINS, "IQA_SCORE_BATCH_ITEMS": "1"}
    first = start_worker(
        name="killed", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    with override_settings(
        IQA_METRIC_PLUGINS=PLUGINS.split(","),
        IQA_SCORE_BATCH_ITEMS=1,
        IQA_SCORING_QUEUE=first.queue,
    ):
        spec = metric_get("slow_mean_difference")
        (plan,) = services.study_score(study=study, specs=[spec])
        assert plan.queued == 12
        wait_until(lambda: Score.objects.count() >= 3, timeout=120, what="some scores")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        assert ScoreBatch.objects.filter(state="pending").exists()

        second = start_worker(
            name="after",
            broker_url=settings.CELERY_BROKER_URL,
            media=media_root,
            extra_env=env,
            queue=first.queue,
        )
        try:
            # The batch the killed worker held is not acknowledged; the sweep sends every
            # pending batch again (those still queued then arrive twice).
            assert services.scores_sweep(stale_seconds=0) >= 1
            wait_until(
                lambda: not ScoreBatch.objects.filter(state="pending").exists(),
                timeout=180,
                what="the second worker to finish",
            )
        finally:
            stop_worker(second)
    rows = list(Score.objects.values_list("image_id", "reference_id"))
    assert len(rows) == 12
    assert len(set(rows)) == 12
    assert not Score.objects.exclude(error="").exists()


def test_progress_moves_pass_by_pass_within_one_batch(tmp_path, media_root, manage):
    """A batch's scores are stored as each forward pass ends (IQA_SCORE_PASS_SECONDS long
    at most), not when the whole batch is done: the progress a researcher watches (scores
    stored) moves while one batch of 13 slow items runs."""
    stems = ["reference", *(f"t{i}" for i in range(12))]
    source = write_scene_folder(tmp_path / "src", {"s": stems}, size=(40, 30))
    manage("import_study", str(source), "--slug", "pp", "--design", "ref-vs-test")
    study = Study.objects.get(slug="pp")
    env = {"IQA_METRIC_PLUGINS": PLUGINS, "IQA_SCORE_PASS_SECONDS": "1"}  # 0.4 s an item
    worker = start_worker(
        name="passes", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    seen: list[int] = []
    try:
        with override_settings(
            IQA_METRIC_PLUGINS=PLUGINS.split(","), IQA_SCORING_QUEUE=worker.queue
        ):
            (plan,) = services.study_score(study=study, specs=[metric_get("slow_mean_difference")])
            assert plan.queued == 13  # the reference against itself too
            assert ScoreBatch.objects.count() == 1

            def finished() -> bool:
                seen.append(Score.objects.count())
                return not ScoreBatch.objects.filter(state="pending").exists()

            wait_until(finished, timeout=120, interval=0.1, what="the batch to finish")
    finally:
        stop_worker(worker)
    assert Score.objects.count() == 13
    # Passes of 1 item (the measuring one), then 2 (0.8 s), ...: counts in between seen.
    assert len({n for n in seen if 0 < n < 13}) >= 3, seen
