"""How a scoring worker starts: in the workers' environment, with no library patched."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from scoring import weights
from tests.conftest import start_worker, stop_worker

REPO = Path(__file__).resolve().parents[2]


def process_environment(pid: int) -> dict[str, str]:
    """The environment a process started with (Linux)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


@pytest.mark.django_db(transaction=True)
def test_a_worker_started_the_standard_way_reads_the_weights_folder_offline(tmp_path, media_root):
    """``python -m scoring.worker`` (what make run, docker compose and the tests start)
    becomes the Celery worker with the workers' environment from its first instruction:
    PyTorch's home is the weights folder and the Hugging Face libraries are offline."""
    folder = tmp_path / "weights"
    worker = start_worker(
        name="environment",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={"IQA_WEIGHTS_DIR": str(folder), "HF_HUB_OFFLINE": "0"},
    )
    try:
        environment = process_environment(worker.process.pid)
        command = Path(f"/proc/{worker.process.pid}/cmdline").read_bytes().split(b"\0")
    finally:
        stop_worker(worker)
    assert b"celery" in command  # the launcher's process is the worker itself
    assert environment["TORCH_HOME"] == str(folder.resolve())
    assert environment["HF_HUB_CACHE"] == str(folder.resolve() / "huggingface" / "hub")
    assert environment["HF_HUB_OFFLINE"] == "1"
    assert environment["TRANSFORMERS_OFFLINE"] == "1"
    assert environment["HOME"] == str(folder.resolve() / weights.WORKER_HOME)
    assert environment["IQA_WEIGHTS_DIR"] == str(folder)
    assert environment["HTTPS_PROXY"] == environment["HTTP_PROXY"] == weights.CLOSED_PROXY


def test_a_download_the_catalog_did_not_foresee_fails_at_once_in_the_worker_environment(
    tmp_path,
):
    """Behind the catalog's file check, the worker's environment sends HTTP(S) to a closed
    local port: a download (as pyiqa, torch.hub or CLIP would start it with urllib) is
    refused at once instead of reaching the network or hanging the worker."""
    code = (
        "import time, urllib.request\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    urllib.request.urlopen('https://github.com/chaofengc/IQA-PyTorch/x.pth', timeout=20)\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__, round(time.monotonic() - start, 2))\n"
    )
    environment = {**os.environ, **weights.worker_environment(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("refused URLError"), result.stdout + result.stderr
    assert float(result.stdout.split()[-1]) < 5


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_catalog_probe_patches_libraries_and_only_metrics_catalog_imports_it():
    """Workers load metrics unpatched; the probe that patches them to list their files is
    a maintenance tool that only ``manage.py metrics_catalog`` imports."""
    catalog = REPO / "scoring" / "catalog"
    for path in (REPO / "scoring").rglob("*.py"):
        imports = _imports(path)
        if not path.is_relative_to(catalog):
            assert not {n for n in imports if n.startswith("unittest")}, path
        if path.name != "metrics_catalog.py" and not path.is_relative_to(catalog):
            assert not {n for n in imports if n.startswith("scoring.catalog")}, path
    assert "unittest.mock" in _imports(catalog / "probe.py")
