"""The scoring engine in this process: decoding, batching, failures, and CUDA; weights
checked before a metric is created, and an import that leaves the environment alone."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from scoring.errors import MetricUnavailable
from scoring.registry import metric_get
from tests.images import write_png

# Scored here as a worker scores: in the workers' environment (tests/scoring/conftest.py).
pytestmark = pytest.mark.usefixtures("worker_environment")
REPO = Path(__file__).resolve().parents[2]


def test_same_size_images_are_batched_and_a_failing_item_fails_alone(tmp_path, settings):
    from scoring import engine

    settings.IQA_SCORE_FORWARD_BATCH = 4
    reference = write_png(tmp_path / "r.png", size=(64, 48), seed=1)
    images = [write_png(tmp_path / f"{i}.png", size=(64, 48), seed=10 + i) for i in range(5)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    items = [(p, reference) for p in images] + [(broken, reference), (reference, reference)]
    outcomes = engine.score_items(metric_get("psnr"), items)
    assert [bool(o.error) for o in outcomes] == [False] * 5 + [True, False]
    assert outcomes[5].error.startswith("cannot decode the image")
    assert outcomes[6].value > 60  # an image against itself: psnr at its cap

    # The same values as one image at a time (what pyiqa gives for a single image).
    settings.IQA_SCORE_FORWARD_BATCH = 1
    single = engine.score_items(metric_get("psnr"), items)
    assert [o.value for o in single[:5]] == pytest.approx([o.value for o in outcomes[:5]])


def test_a_file_the_store_cannot_read_is_retried_never_stored_as_the_items_score(tmp_path):
    """Issue 31, item 3: an image file missing (a volume not mounted) or unreadable (a
    network file system's hiccup) is the store's fault, not the item's: the whole call
    raises MetricUnavailable (the task retries the batch; nothing is stored). Only bytes
    that were read and are no image are the item's own outcome."""
    from scoring import engine

    reference = write_png(tmp_path / "r.png", size=(16, 16), seed=1)
    image = write_png(tmp_path / "a.png", size=(16, 16), seed=2)
    missing = tmp_path / "gone.png"
    with pytest.raises(MetricUnavailable, match="the image store could not be read"):
        engine.score_items(metric_get("psnr"), [(image, reference), (missing, reference)])
    folder = tmp_path / "a-folder.png"  # reading it fails as an I/O error (EISDIR)
    folder.mkdir()
    with pytest.raises(MetricUnavailable, match="IsADirectoryError"):
        engine.score_items(metric_get("psnr"), [(folder, reference)])
    (outcome,) = engine.score_items(metric_get("psnr"), [(image, reference)])
    assert outcome.value is not None


def test_images_are_decoded_as_pyiqa_decodes_them(tmp_path):
    from scoring import engine

    path = write_png(tmp_path / "a.png", size=(7, 5), seed=3)
    tensor = engine.decode(engine.read(path))
    assert tuple(tensor.shape) == (3, 5, 7)
    with PIL.Image.open(path) as image:
        expected = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    assert np.array_equal(tensor.permute(1, 2, 0).numpy(), expected)


@pytest.mark.gpu
def test_scores_on_cuda_equal_scores_on_the_cpu(tmp_path, settings, monkeypatch):
    import torch

    from scoring import engine

    reference = write_png(tmp_path / "r.png", size=(96, 64), seed=1)
    items = [(write_png(tmp_path / f"{i}.png", size=(96, 64), seed=i), reference) for i in range(8)]
    assert engine.device().type == "cuda"
    on_gpu = engine.score_items(metric_get("ssim"), items)
    monkeypatch.setattr(engine, "device", lambda: torch.device("cpu"))
    on_cpu = engine.score_items(metric_get("ssim"), items)
    assert [o.value for o in on_gpu] == pytest.approx([o.value for o in on_cpu], rel=1e-4)


def test_importing_the_engine_leaves_the_environment_alone():
    """The workers' environment is set when a worker starts (scoring.worker), never by
    importing the engine: a fresh interpreter's os.environ is the same after the import."""
    code = textwrap.dedent(
        """
        import os, django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        before = dict(os.environ)
        import scoring.engine
        after = dict(os.environ)
        print("changed:", sorted(k for k in {*before, *after} if before.get(k) != after.get(k)))
        """
    )
    # Without the workers' variables, which an import that set them would add.
    offline = {"TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    env = {k: v for k, v in os.environ.items() if k not in offline}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "changed: []" in done.stdout


def test_a_metric_missing_a_catalogued_file_is_refused_before_pyiqa_creates_it(
    tmp_path, settings, monkeypatch
):
    """Nothing that could download runs: the files the catalog names are checked first,
    and the first folder that lacks some is named with them."""
    import socket

    import pyiqa

    from scoring import engine
    from scoring.errors import MissingWeights

    settings.IQA_WEIGHTS_DIR = tmp_path
    created = []
    monkeypatch.setattr(pyiqa, "create_metric", lambda *args, **kwargs: created.append(args))

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    (tmp_path / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "hub" / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth").write_bytes(b"x")
    with pytest.raises(
        MissingWeights,
        match=f"alexnet-owt-7be5be79.pth \\(put them in {tmp_path}/hub/checkpoints\\)",
    ):
        engine.scorer(metric_get("lpips"))
    # Scoring items with it stores nothing for them: the worker, not the items, is at fault.
    with pytest.raises(MetricUnavailable) as raised:
        engine.score_items(metric_get("clipscore"), [(tmp_path / "a.png", None)])
    assert str(raised.value) == (
        "clipscore cannot be loaded: MissingWeights: missing weight files ViT-B-32.pt "
        f"(put them in {tmp_path}/clip)"
    )
    assert created == []


class _Plugin:
    """A plug-in whose forward pass raises ``error`` on the items whose mean is above 0.5
    (the bright one), as a network that meets a bad item or a failing GPU would."""

    name, kind, lower_better, version = "faulty", "NR", False, "1"

    def __init__(self, error):
        self.error = error

    def load(self, device):
        def score(images, references):
            if (images.mean(dim=(1, 2, 3)) > 0.5).any():
                raise self.error
            return images.mean(dim=(1, 2, 3))

        return score


def _dark_and_bright(folder: Path) -> list[tuple[Path, None]]:
    items = []
    for name, level in (("dark", 10), ("bright", 250)):
        PIL.Image.new("RGB", (8, 8), (level, level, level)).save(folder / f"{name}.png")
        items.append((folder / f"{name}.png", None))
    return items


MACHINE_FAULTS = {
    "cuda-oom": lambda torch: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
    "cuda-error": lambda torch: RuntimeError("CUDA error: an illegal memory access"),
    "cudnn": lambda torch: RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
    "host-memory": lambda torch: MemoryError(),
}


@pytest.mark.parametrize("fault", sorted(MACHINE_FAULTS))
def test_a_forward_pass_failing_for_the_machine_raises_instead_of_storing_a_failure(
    tmp_path, fault
):
    """CUDA out of memory, a CUDA or cuDNN error, host memory: the machine's fault, never
    the item's, so nothing is returned for the items and the task retries."""
    import torch

    from scoring import engine
    from scoring.registry import _plugin_spec

    spec = _plugin_spec(_Plugin(MACHINE_FAULTS[fault](torch)), "test")
    engine._models.clear()
    with pytest.raises(MetricUnavailable, match="faulty failed to run"):
        engine.score_items(spec, _dark_and_bright(tmp_path))
    engine._models.clear()


def test_an_item_the_network_refuses_is_stored_as_that_items_failure(tmp_path):
    """An image too small for the network (the network's own error) fails alone."""
    from scoring import engine
    from scoring.registry import _plugin_spec

    too_small = RuntimeError("Kernel size can't be greater than actual input size")
    spec = _plugin_spec(_Plugin(too_small), "test")
    engine._models.clear()
    ok, failed = engine.score_items(spec, _dark_and_bright(tmp_path))
    engine._models.clear()
    assert ok.error == ""
    assert ok.value is not None
    assert failed.value is None
    assert failed.error == "RuntimeError: Kernel size can't be greater than actual input size"


def test_files_are_looked_for_only_in_a_process_that_reads_the_weights_folder(
    tmp_path, settings, monkeypatch
):
    """In a process not started as a worker, the loaders would look elsewhere and
    download what they miss: a metric with files is not loaded there."""
    from scoring import weights
    from scoring.weights import WorkerEnvironmentError

    settings.IQA_WEIGHTS_DIR = tmp_path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    (tmp_path / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "hub" / "pyiqa" / "x.pth").write_bytes(b"x")
    with pytest.raises(WorkerEnvironmentError, match=r"TORCH_HOME is .*elsewhere"):
        weights.require_files(["hub/pyiqa/x.pth"], clip_urls={})
    weights.require_files([], clip_urls={})  # a weight-free metric: nothing to look for


def test_clip_checkpoints_are_checked_and_shown_where_clip_looks(tmp_path, settings, monkeypatch):
    """OpenAI CLIP reads ~/.cache/clip and pyiqa's copy <TORCH_HOME>/hub/clip: in the
    workers' environment both show <weights>/clip, once its checkpoint is checked."""
    from scoring import weights
    from scoring.errors import WrongWeights

    settings.IQA_WEIGHTS_DIR = tmp_path
    content = b"a CLIP checkpoint"
    digest = hashlib.sha256(content).hexdigest()
    url = f"https://openaipublic.azureedge.net/clip/models/{digest}/ViT-B-32.pt"
    urls = {"ViT-B-32.pt": url}
    # pyiqa may have been imported by an earlier test, reading another folder.
    monkeypatch.setattr(weights, "environment_problems", lambda: [])
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(b"something else")
    with pytest.raises(WrongWeights):
        weights.require_files(["clip/ViT-B-32.pt"], clip_urls=urls)
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(content)
    weights.require_files(["clip/ViT-B-32.pt"], clip_urls=urls)
    environment = weights.worker_environment(tmp_path)
    monkeypatch.setenv("HOME", environment["HOME"])
    openai_clip = Path(os.path.expanduser("~/.cache/clip"))
    pyiqa_clip = Path(environment["TORCH_HOME"]) / "hub" / "clip"
    for folder in (openai_clip, pyiqa_clip):
        assert (folder / "ViT-B-32.pt").read_bytes() == content
    weights.require_files(["clip/ViT-B-32.pt"], clip_urls=urls)  # the links are there now


def test_clip_checkpoints_are_checked_against_the_loaders_own_urls():
    from scoring import engine

    urls = engine.clip_urls()
    assert urls["ViT-B-32.pt"].split("/")[-2] == (
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    )
    assert {"RN50.pt", "ViT-L-14.pt"} <= urls.keys()


# --- forward passes sized by measured memory and time (IQA_SCORE_PASS_*) ----------------


class _Costly:
    """A plug-in whose forward pass holds ``megabytes`` of memory per item (touched, so
    resident) for ``seconds`` per item: a metric of known cost."""

    name, kind, lower_better, version = "costly", "NR", False, "1"

    def __init__(self, megabytes: int, seconds: float):
        self.megabytes, self.seconds = megabytes, seconds

    def load(self, device):
        import time

        def score(images, references):
            held = np.ones((len(images), self.megabytes, 2**20), dtype=np.uint8)
            time.sleep(self.seconds * len(images))
            return images.mean(dim=(1, 2, 3)) + float(held[0, 0, 0]) - 1

        return score


def _gray_items(folder: Path, n: int) -> list[tuple[Path, None]]:
    for i in range(n):
        PIL.Image.new("RGB", (8, 8), (i, i, i)).save(folder / f"{i}.png")
    return [(folder / f"{i}.png", None) for i in range(n)]


def _pass_sizes(spec, items) -> tuple[list[int], list]:
    from scoring import engine

    sizes: list[int] = []
    engine._models.clear()
    engine._costs.clear()
    outcomes = engine.score_items(spec, items, on_scored=lambda i, o: sizes.append(len(i)))
    engine._models.clear()
    return sizes, outcomes


MEASURED_PASSES = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.conf import settings
from pathlib import Path
sys.path.insert(0, os.getcwd())
from scoring import engine
from scoring.registry import _plugin_spec
from tests.scoring.test_engine import _Costly, _gray_items
folder = Path(sys.argv[1])
spec = _plugin_spec(_Costly(megabytes=50, seconds=0), "test")
runs = []
for batch, memory, n in ((16, 130, 7), (4, 10_000, 11)):
    settings.IQA_SCORE_FORWARD_BATCH, settings.IQA_SCORE_PASS_SECONDS = batch, 1000
    settings.IQA_SCORE_PASS_MEMORY_MB = memory
    engine._costs.clear()
    sizes = []
    outcomes = engine.score_items(
        spec, _gray_items(folder, n), on_scored=lambda i, o: sizes.append(len(i))
    )
    runs.append({"sizes": sizes, "values": [o.value for o in outcomes]})
print(json.dumps(runs))
"""


def test_a_forward_pass_holds_no_more_memory_than_the_setting_allows(tmp_path):
    """The first pass of an item size runs one item alone and measures it (the worker's
    peak resident memory); the passes after it grow, doubling, and hold at most
    IQA_SCORE_PASS_MEMORY_MB. (In a fresh interpreter, as a worker's: what earlier tests
    left in this process's heap would be reused and hide what a pass allocates.)"""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the peak resident memory cannot be reset here")
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_PASSES, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "IQA_METRIC_PLUGINS": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    bounded, capped = json.loads(done.stdout.strip().splitlines()[-1])
    # 130 MB: 2 items of 50 MB, not 3.
    assert bounded["sizes"] == [1, 2, 2, 2], bounded
    assert bounded["values"] == pytest.approx([i / 255 for i in range(7)], abs=1e-6)
    # 10,000 MB: the batch setting caps the passes, reached by doubling.
    assert capped["sizes"] == [1, 2, 4, 4], capped


def test_pass_sizes_follow_the_measured_cost(settings):
    """Time bounds a pass as memory does; a pass is at most twice the largest so far (a
    low measure is corrected on the way up); one item runs even past the bounds."""
    from scoring import engine
    from scoring.registry import metric_get

    spec, where, shape = metric_get("psnr"), engine.torch.device("cpu"), ((3, 8, 8), None)
    key = (spec.name, str(where), shape)
    settings.IQA_SCORE_FORWARD_BATCH, settings.IQA_SCORE_PASS_MEMORY_MB = 16, 1024
    settings.IQA_SCORE_PASS_SECONDS = 0.35
    try:
        engine._costs.clear()
        assert engine.pass_size(spec, shape, where) == 1  # not measured yet
        engine._costs[key] = engine.Cost(2**20, 0.1, largest_pass=16)
        assert engine.pass_size(spec, shape, where) == 3  # 3 x 0.1 s
        settings.IQA_SCORE_PASS_SECONDS = 100
        assert engine.pass_size(spec, shape, where) == 16  # the batch setting
        engine._costs[key] = engine.Cost(2**20, 0.1, largest_pass=2)
        assert engine.pass_size(spec, shape, where) == 4  # doubling
        engine._costs[key] = engine.Cost(2**31, 60.0, largest_pass=1)
        assert engine.pass_size(spec, shape, where) == 1  # past both bounds: alone
    finally:
        engine._costs.clear()


def test_where_memory_cannot_be_measured_passes_grow_by_time_alone(tmp_path, settings, monkeypatch):
    """(No /proc, say.) The decoded inputs stand for an item's memory."""
    from scoring import engine
    from scoring.registry import _plugin_spec

    class Unmeasured(engine.PeakMemory):
        def __exit__(self, *exc):
            self.grown = None

    monkeypatch.setattr(engine, "PeakMemory", Unmeasured)
    settings.IQA_SCORE_FORWARD_BATCH, settings.IQA_SCORE_PASS_MEMORY_MB = 8, 1024
    settings.IQA_SCORE_PASS_SECONDS = 1000
    spec = _plugin_spec(_Costly(megabytes=1, seconds=0), "test")
    assert _pass_sizes(spec, _gray_items(tmp_path, 15))[0] == [1, 2, 4, 8]


def test_an_undecodable_item_is_handed_back_for_storing_too(tmp_path):
    from scoring import engine

    reference = write_png(tmp_path / "r.png", size=(16, 16), seed=1)
    image = write_png(tmp_path / "a.png", size=(16, 16), seed=2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    handed: dict[int, object] = {}
    outcomes = engine.score_items(
        metric_get("psnr"),
        [(image, reference), (broken, reference)],
        on_scored=lambda indices, done: handed.update(zip(indices, done, strict=True)),
    )
    assert handed == dict(enumerate(outcomes))
    assert handed[1].error.startswith("cannot decode the image")
