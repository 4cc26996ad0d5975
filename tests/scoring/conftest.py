"""Scoring fixtures: the calibration study, a worker bound to the scoring queue, and the
workers' environment for engine tests that score in this process."""

import csv
import shutil
from pathlib import Path

import pytest
from django.test import override_settings

from annotation.services import study_import

REPO = Path(__file__).resolve().parents[2]
# pyiqa's calibration set (tests/data/README.md names its source).
CALIBRATION = REPO / "tests" / "data" / "calibration"


@pytest.fixture
def scoring_queue(celery_worker):
    """Scoring tasks go to the session's real worker."""
    with override_settings(IQA_SCORING_QUEUE=celery_worker.queue):
        yield celery_worker


@pytest.fixture
def worker_environment(settings, monkeypatch):
    """This process's environment as a worker's (scoring.weights.worker_environment),
    for the test. pyiqa, if imported already, keeps the folder it read at import."""
    from scoring import weights

    for key, value in weights.worker_environment(weights.weights_dir()).items():
        monkeypatch.setenv(key, value)


def calibration_study(tmp_path: Path, slug: str = "calibration"):
    """The five calibration pairs as a ref-vs-test study: scene ``I03`` holds
    ``reference.bmp`` and ``dist.bmp``, and so on."""
    folder = tmp_path / "calibration"
    for dist in sorted((CALIBRATION / "dist").iterdir()):
        (folder / dist.stem).mkdir(parents=True)
        shutil.copyfile(CALIBRATION / "ref" / dist.name, folder / dist.stem / "reference.bmp")
        shutil.copyfile(dist, folder / dist.stem / "dist.bmp")
    return study_import(source=folder, slug=slug, design="ref-vs-test").study


def official_values() -> dict[str, dict[str, float]]:
    """official.csv: metric -> {image file name: value}."""
    with open(CALIBRATION / "official.csv", newline="") as handle:
        return {
            row["Method"]: {k: float(v) for k, v in row.items() if k != "Method"}
            for row in csv.DictReader(handle)
        }
