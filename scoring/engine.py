"""Computing scores in a worker process: models loaded once and kept, images decoded once
per batch, same-size images scored together. Imported by tasks only (it imports
PyTorch and pyiqa); CUDA is initialised here, in the process that scores, never in a
parent that forks.

Where the weights are, and that nothing is downloaded, comes from the worker's
environment (``python -m scoring.worker`` sets it; see ``scoring/weights.py``): importing
this module changes nothing. A metric is created only once every file the weights
catalog names for it is in the weights folder.
"""

import functools
import gc
import io
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from django.conf import settings

from scoring import image_cache, weights
from scoring.errors import MetricUnavailable
from scoring.registry import MetricSpec

Scorer = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]

_models: "OrderedDict[tuple[str, str], Scorer]" = OrderedDict()


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def clip_urls() -> dict[str, str]:
    """CLIP checkpoint file name -> its URL, which names its SHA256: from the tables of
    OpenAI CLIP's loader and pyiqa's two copies of it."""
    import clip.clip
    import pyiqa.archs.afineclip_model
    import pyiqa.archs.clip_model

    urls: dict[str, str] = {}
    for module in (clip.clip, pyiqa.archs.clip_model, pyiqa.archs.afineclip_model):
        for url in module._MODELS.values():
            urls.setdefault(weights.url_file_name(url), url)
    return urls


def require_files(files: list[str]) -> None:
    """Every file a metric loads is where its loader looks, before the loader runs: it
    would download a file it does not find (see weights.require_files)."""
    needs_clip = any(f.startswith("clip/") for f in files)
    weights.require_files(files, clip_urls=clip_urls() if needs_clip else {})


def _pyiqa_scorer(spec: MetricSpec, where: torch.device) -> Scorer:
    require_files(weights.metric_files(spec.name))
    import pyiqa

    metric = pyiqa.create_metric(spec.name, device=where)
    metric.eval()

    def score(images: torch.Tensor, references: torch.Tensor | None) -> torch.Tensor:
        return metric(images, references) if spec.is_fr else metric(images)

    return score


def scorer(spec: MetricSpec) -> Scorer:
    """The metric's model, loaded once per process; at most IQA_WORKER_MAX_MODELS kept."""
    where = device()
    key = (spec.name, str(where))
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    if spec.plugin is not None:
        require_files(spec.plugin_files)
        loaded = spec.plugin.load(where)
    else:
        loaded = _pyiqa_scorer(spec, where)
    _models[key] = loaded
    while len(_models) > max(1, settings.IQA_WORKER_MAX_MODELS):
        _models.popitem(last=False)
        if where.type == "cuda":
            torch.cuda.empty_cache()
    return loaded


def read(source: Path | str) -> bytes:
    """The file's bytes: a local path as it is, a name in the platform's storage through
    the worker's image cache (``scoring.image_cache``). An error here is the store's (a
    volume not mounted, a bucket that does not answer, a file removed): :func:`score_items`
    retries the batch rather than blame the item."""
    if isinstance(source, Path):
        return source.read_bytes()
    return image_cache.read_bytes(source)


def decode(data: bytes) -> torch.Tensor:
    """3 x H x W float32 in [0, 1], RGB: what pyiqa's own image loader gives. An error
    here is the item's own: the bytes were read and are not an image PIL can decode."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


# A stored item error: the file was read and is not an image (an outcome of the item).
UNDECODABLE = "cannot decode the image"


@dataclass
class Outcome:
    value: float | None
    error: str
    seconds: float


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:1000]


# Messages of PyTorch's RuntimeErrors that name the device, its driver or its libraries,
# not the input: CUDA (and its allocator), cuDNN, cuBLAS, NCCL, the driver.
FAULT_MARKERS = (
    "CUDA error",
    "CUDA out of memory",
    "CUDA driver",
    "CUDA-capable device",
    "cuDNN error",
    "CUDNN_STATUS",
    "CUBLAS_STATUS",
    "NCCL error",
    "out of memory",
)


def infrastructure_fault(exc: BaseException) -> bool:
    """Whether a forward pass failed because of the machine (memory, the GPU, its driver)
    rather than the item: such a failure is retried, never stored as the item's score."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(exc, accelerator):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in FAULT_MARKERS)


def score_items(
    spec: MetricSpec,
    items: Sequence[tuple[Path | str, Path | str | None]],
    on_scored: Callable[[list[int], list["Outcome"]], None] | None = None,
) -> list[Outcome]:
    """Score (image, reference) items (reference None for NR metrics), in order: local
    paths, or names in the platform's storage (what the worker scores; see :func:`read`).

    Each file is decoded once; items whose image (and reference) sizes match go through
    the model together, as many per forward pass as :func:`pass_size` allows (memory and
    time, measured: see there), IQA_SCORE_FORWARD_BATCH at most. ``on_scored(indices,
    outcomes)`` gets each pass's results as soon as it is done (the worker stores them
    then, so progress moves per pass). A pass that fails is retried
    item by item, so one bad item (too small for the network, say) fails alone, with its
    message. A metric that does not load (missing or wrong weights, a worker started
    without its environment, anything its loader raises) or a forward pass that fails
    for the machine's sake (:func:`infrastructure_fault`) raises MetricUnavailable: the
    items are not at fault, and nothing is returned for them.
    """
    where = device()
    try:
        model = scorer(spec)
    except Exception as exc:
        _release(where)
        raise MetricUnavailable(f"{spec.name} cannot be loaded: {_message(exc)}") from exc
    decoded: dict[Path | str, torch.Tensor | Exception] = {}
    for image, reference in items:
        for path in (image, reference):
            if path is not None and path not in decoded:
                try:
                    data = read(path)
                except OSError as exc:
                    # The store, not the item: nothing is stored, the batch is retried.
                    raise MetricUnavailable(
                        f"the image store could not be read ({_message(exc)})"
                    ) from exc
                try:
                    decoded[path] = decode(data)
                except Exception as exc:
                    decoded[path] = exc
    outcomes: list[Outcome | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for index, (image, reference) in enumerate(items):
        bad = [
            decoded[p]
            for p in (image, reference)
            if p is not None and isinstance(decoded[p], Exception)
        ]
        if bad:
            outcomes[index] = Outcome(None, f"{UNDECODABLE}: {_message(bad[0])}", 0.0)
            continue
        shape = (
            tuple(decoded[image].shape),
            tuple(decoded[reference].shape) if reference else None,
        )
        groups.setdefault(shape, []).append(index)
    undecodable = [i for i, outcome in enumerate(outcomes) if outcome is not None]
    if undecodable and on_scored is not None:
        on_scored(undecodable, [outcomes[i] for i in undecodable])
    for shape, indices in groups.items():
        key = (spec.name, str(where), shape)
        inputs = sum(decoded[p].nbytes for p in items[indices[0]] if p is not None)
        start = 0
        while start < len(indices):
            chunk = indices[start : start + pass_size(spec, shape, where)]
            with PeakMemory(where, collect=key not in _costs) as peak:
                started = time.perf_counter()
                done = _forward(model, spec, items, decoded, chunk, where)
                seconds = time.perf_counter() - started
            if all(not o.error for o in done):  # a pass retried item by item says little
                grown = peak.grown / len(chunk) if peak.grown is not None else None
                _record_cost(key, grown, seconds / len(chunk), len(chunk), inputs)
            for index, outcome in zip(chunk, done, strict=True):
                outcomes[index] = outcome
            if on_scored is not None:
                on_scored(chunk, done)
            start += len(chunk)
    return outcomes  # type: ignore[return-value]


# --- forward passes sized by measured memory and time ---------------------------------

# (metric, device, item shape) -> what its passes cost this process (``Cost``). A shape
# not measured yet runs one item alone first, which measures it.
_costs: dict[tuple, "Cost"] = {}


@dataclass(frozen=True)
class Cost:
    # The most a pass raised the process's peak memory per item (never below the item's
    # decoded inputs: a pass that reused freed memory measures low), or, where memory
    # cannot be measured, the inputs alone.
    bytes_per_item: float
    seconds_per_item: float  # the last pass's: the first carries one-off warm-up costs
    largest_pass: int  # items in the largest pass run so far


def item_cost(spec: MetricSpec, shape: tuple, where: torch.device) -> Cost | None:
    """What one item of ``shape`` costs this process's forward passes of the metric, or
    None before its first pass."""
    return _costs.get((spec.name, str(where), shape))


def _record_cost(key: tuple, grown: float | None, seconds: float, size: int, inputs: float) -> None:
    known = _costs.get(key)
    memory = max(grown or 0.0, inputs, known.bytes_per_item if known else 0.0)
    largest = max(size, known.largest_pass if known else 0)
    _costs[key] = Cost(bytes_per_item=memory, seconds_per_item=seconds, largest_pass=largest)


def pass_size(spec: MetricSpec, shape: tuple, where: torch.device) -> int:
    """Items per forward pass: IQA_SCORE_FORWARD_BATCH at most (1 for a metric that does
    not batch), and no more than IQA_SCORE_PASS_MEMORY_MB and IQA_SCORE_PASS_SECONDS allow
    by what this worker's passes of the metric on items of that shape measured. The first
    pass runs one item alone (it measures); a pass is at most twice the largest before
    it, so a measure that came out low is corrected on the way up. A worker stores each
    pass's scores as it ends, so progress moves about that often; one item that costs
    more than the bounds still runs alone."""
    cap = max(1, settings.IQA_SCORE_FORWARD_BATCH) if spec.batchable else 1
    cost = item_cost(spec, shape, where)
    if cost is None:
        return 1
    size = min(cap, 2 * cost.largest_pass)
    if cost.bytes_per_item > 0:
        size = min(size, int(settings.IQA_SCORE_PASS_MEMORY_MB * 2**20 // cost.bytes_per_item))
    if cost.seconds_per_item > 0:
        size = min(size, int(settings.IQA_SCORE_PASS_SECONDS // cost.seconds_per_item))
    return max(1, size)


class PeakMemory:
    """How much a block grew the process's peak memory (``grown``, bytes; None where it
    cannot be measured): on a GPU the allocator's peak, on Linux the resident set's high
    water mark (VmHWM, reset through /proc/self/clear_refs before the block). Memory the
    block frees and reuses is not counted, so a measure can come out low; ``collect``
    first frees what the garbage collector would (the first, deciding pass does)."""

    def __init__(self, where: torch.device, *, collect: bool = False) -> None:
        self.where = where
        self.collect = collect
        self.grown: int | None = None
        self._base: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.collect:
            # Garbage freed during the block would hide what the block allocates (the
            # peak is measured above the memory held when it starts): free it first.
            gc.collect()
        try:
            if self.where.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.where)
                self._base = torch.cuda.memory_allocated(self.where)
            else:
                Path("/proc/self/clear_refs").write_text("5")
                self._base = _proc_status_bytes("VmRSS")
        except (OSError, RuntimeError, ValueError):
            self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self._base is None or exc[0] is not None:
            return
        try:
            if self.where.type == "cuda":
                peak = torch.cuda.max_memory_allocated(self.where)
            else:
                peak = _proc_status_bytes("VmHWM")
        except (OSError, RuntimeError, ValueError):
            return
        self.grown = max(0, peak - self._base)


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no {field} in /proc/self/status")


def _outcome(value: float, seconds: float) -> Outcome:
    if np.isfinite(value):
        return Outcome(value, "", seconds)
    return Outcome(None, f"not a number: {value}", seconds)


def _forward(model, spec, items, decoded, chunk, where) -> list[Outcome]:
    def run(indices: list[int]) -> list[float]:
        images = torch.stack([decoded[items[i][0]] for i in indices]).to(where)
        references = (
            torch.stack([decoded[items[i][1]] for i in indices]).to(where) if spec.is_fr else None
        )
        with torch.no_grad():
            values = model(images, references)
        values = torch.as_tensor(values).reshape(len(indices), -1)[:, 0]
        return [float(v) for v in values.detach().cpu()]

    started = time.perf_counter()
    try:
        values = run(chunk)
        share = (time.perf_counter() - started) / len(chunk)
        return [_outcome(v, share) for v in values]
    except Exception:
        outcomes = []
        for index in chunk:
            started = time.perf_counter()
            try:
                (value,) = run([index])
                outcomes.append(_outcome(value, time.perf_counter() - started))
            except Exception as exc:
                if infrastructure_fault(exc):
                    _release(where)
                    raise MetricUnavailable(f"{spec.name} failed to run: {_message(exc)}") from exc
                outcomes.append(Outcome(None, _message(exc), time.perf_counter() - started))
        _release(where)
        return outcomes


def _release(where: torch.device) -> None:
    """Give back the memory a failed load or pass left cached on the GPU."""
    if where.type == "cuda":
        torch.cuda.empty_cache()
