"""Pretrained weights: one folder, nothing downloaded at run time.

The weights folder (``IQA_WEIGHTS_DIR``) is PyTorch's ``TORCH_HOME``: pyiqa keeps its
files in ``<folder>/hub/pyiqa/`` and torchvision its backbones in
``<folder>/hub/checkpoints/``, by the names they download them under; the Hugging Face
libraries read a cache in ``<folder>/huggingface/hub/`` and OpenAI CLIP's checkpoints
are in ``<folder>/clip/``.

A worker finds them through its environment, set when it starts
(``python -m scoring.worker``, which runs :func:`worker_environment` and then Celery);
nothing here changes a library at run time. Before a metric is created,
:func:`require_files` checks that every file the catalog names for it is there (and that
a CLIP checkpoint is the published file), so a loader never reaches for the network:
pyiqa, torchvision and CLIP download only a file they do not find, and the Hugging Face
libraries are offline.

Which files a metric needs comes from ``weights_catalog.json`` (committed; regenerate with
``manage.py metrics_catalog`` after upgrading pyiqa), made by
:func:`scoring.catalog.probe.probe_files`: creating the metric with every download and
weight load intercepted and recorded. The catalog also says where each file is published
(:func:`file_source`), which ``manage.py install_weights --fetch`` reads
(:mod:`scoring.fetch`): the one way files are downloaded.
"""

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path

from django.conf import settings

from scoring.errors import MissingWeights, UnknownMetric, WrongWeights

CATALOG = Path(__file__).with_name("weights_catalog.json")
# Files fetched from the Hugging Face hub (timm backbones, transformers models) are named
# in the catalog as ``huggingface:<repo id>/<file>`` and looked up in the Hugging Face
# cache under ``<weights>/huggingface/hub/``.
HF_PREFIX = "huggingface:"
# OpenAI CLIP's loader (and pyiqa's copy of it for A-FINE) reads ``~/.cache/clip``, and
# pyiqa's other copy ``<TORCH_HOME>/hub/clip``: neither folder can be named but through
# HOME and TORCH_HOME. A worker's HOME is this folder inside the weights folder, and both
# places are links to ``<weights>/clip``, made when a CLIP metric is first loaded.
WORKER_HOME = "worker-home"
CLIP_LINKS = (Path("hub") / "clip", Path(WORKER_HOME) / ".cache" / "clip")


# What ``install_weights --fetch recommended`` fetches: the metrics a researcher wants
# first (FR: LPIPS, DISTS, TOPIQ, A-FINE; NR: MUSIQ, MANIQA, CLIP-IQA, NIQE, BRISQUE).
RECOMMENDED = (
    "lpips", "dists", "topiq_fr", "afine_all", "musiq", "maniqa", "clipiqa", "niqe", "brisque",
)  # fmt: skip


def weights_dir() -> Path:
    return Path(settings.IQA_WEIGHTS_DIR)


# Port 9 (discard) on the loopback: nothing listens there on these machines.
CLOSED_PROXY = "http://127.0.0.1:9"


def worker_environment(folder: Path) -> dict[str, str]:
    """The environment a scoring worker runs in, for the weights folder ``folder``:
    PyTorch (so pyiqa, torchvision and timm's URL downloads) and CLIP look there, and the
    Hugging Face libraries read their cache there and never the network. Set before the
    worker's interpreter starts: pyiqa and huggingface_hub read it when imported."""
    folder = Path(folder).resolve()
    return {
        "TORCH_HOME": str(folder),
        "HF_HOME": str(folder / "huggingface"),
        "HF_HUB_CACHE": str(folder / "huggingface" / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HOME": str(folder / WORKER_HOME),
        # A last guard for a file the catalog does not list (a plug-in without ``files``,
        # a pyiqa upgrade that renamed one): HTTP(S) goes to a closed local port, so a
        # download fails at once instead of reaching the network or hanging a worker.
        # The worker speaks no HTTP itself (Redis and PostgreSQL are not proxied).
        "HTTP_PROXY": CLOSED_PROXY,
        "HTTPS_PROXY": CLOSED_PROXY,
        "http_proxy": CLOSED_PROXY,
        "https_proxy": CLOSED_PROXY,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def url_file_name(url: str) -> str:
    """The file a download URL saves to: its last path part, without the query."""
    return Path(url.split("?")[0]).name


def clip_path(url: str) -> Path:
    """Where the weights folder keeps the CLIP checkpoint at ``url``."""
    return weights_dir() / "clip" / url_file_name(url)


def clip_file(url: str, root: str) -> str:
    """The CLIP checkpoint at ``url``, as ``<weights>/clip/`` holds it, checked as CLIP's
    ``_download(url, root)`` checks it but never downloaded. CLIP's URLs name the file's
    SHA256; where CLIP would download the file again over a file of other contents,
    this says so."""
    target = clip_path(url)
    if not target.is_file():
        raise MissingWeights([target.name], str(target.parent))
    expected = url.split("/")[-2]
    stat = target.stat()
    found = _file_digest(str(target), stat.st_size, stat.st_mtime)
    if found != expected:
        raise WrongWeights(str(target), expected, found)
    return str(target)


def metric_files(name: str) -> list[str]:
    """The files pyiqa metric ``name`` loads, from the catalog. A metric the catalog does
    not know is refused: what it would load (or download) is unknown."""
    files = needed_files(name)
    if files is None:
        raise UnknownMetric(
            f"{name} is not in the weights catalog, so the files it loads are unknown and "
            "it is not loaded (run manage.py metrics_catalog)"
        )
    return files


def require_files(files: list[str], *, clip_urls: Mapping[str, str]) -> None:
    """Check, before any loader runs (a loader downloads what it does not find), that the
    metric's files are where its loaders will look: raise MissingWeights naming the
    missing files of the first folder that lacks some, WrongWeights for a CLIP
    checkpoint of other contents (``clip_urls``: file name -> the URL CLIP checks it
    against), WorkerEnvironmentError where this process does not point the libraries at
    the weights folder."""
    missing = missing_files(files)
    if missing:
        first = _place(missing[0])[0]
        names = [name for folder, name in map(_place, missing) if folder == first]
        raise MissingWeights(names, first)
    if not files:
        return  # nothing to look for, so nothing to download
    problems = environment_problems()
    if problems:
        raise WorkerEnvironmentError(
            "this process does not read the weights folder (start workers with "
            f"`python -m scoring.worker`): {'; '.join(problems)}"
        )
    clip = [f for f in files if f.startswith("clip/")]
    for file in clip:
        if Path(file).name in clip_urls:
            clip_file(clip_urls[Path(file).name], str(weights_dir() / "clip"))
    if clip:
        _link_clip_folders(clip)


class WorkerEnvironmentError(RuntimeError):
    """The process's environment would send the loaders elsewhere than the weights folder
    (a worker started without scoring.worker): they would download what they miss."""


def environment_problems() -> list[str]:
    """How this process's environment differs from :func:`worker_environment` for the
    weights folder, including what pyiqa and huggingface_hub read when imported."""
    expected = worker_environment(weights_dir())
    problems = [
        f"{key} is {os.environ.get(key)!r}, not {value!r}"
        for key, value in expected.items()
        if os.environ.get(key) != value
    ]
    pyiqa_download = sys.modules.get("pyiqa.utils.download_util")
    pyiqa_folder = str(Path(expected["TORCH_HOME"]) / "hub" / "pyiqa")
    if pyiqa_download is not None and pyiqa_folder != pyiqa_download.DEFAULT_CACHE_DIR:
        problems.append(
            f"pyiqa was imported reading {pyiqa_download.DEFAULT_CACHE_DIR}, not {pyiqa_folder}"
        )
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and not hub.HF_HUB_OFFLINE:
        problems.append("huggingface_hub was imported online")
    return problems


def _link_clip_folders(files: list[str]) -> None:
    """Make the places CLIP's loaders read (:data:`CLIP_LINKS`) links to
    ``<weights>/clip`` if they are not there yet, and check that each shows ``files``
    there: a loader that does not find its file downloads it."""
    folder = weights_dir()
    for place in CLIP_LINKS:
        link = folder / place
        failed = ""
        if not link.exists() and not link.is_symlink():
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                target = Path(*[".."] * (len(place.parts) - 1), "clip")
                link.symlink_to(target, target_is_directory=True)
            except OSError as exc:
                # Made by another worker at the same moment (then the check below passes),
                # or a folder the worker cannot write (named in the error).
                failed = f" (could not link it to {folder / 'clip'}: {exc.strerror})"
        for file in files:
            seen = link / Path(file).name
            if not (seen.is_file() and seen.samefile(folder / file)):
                raise MissingWeights([seen.name], f"{link}{failed}")


def _place(file: str) -> tuple[str, str]:
    """(folder, name) of a catalogued file, as MissingWeights names them."""
    if file.startswith(HF_PREFIX):
        return str(weights_dir() / "huggingface" / "hub"), file.removeprefix(HF_PREFIX)
    path = weights_dir() / file
    return str(path.parent), path.name


def relative(path: Path) -> str:
    """A weight file's place under the weights folder, e.g. ``hub/pyiqa/x.pth``."""
    try:
        return str(Path(path).resolve().relative_to(weights_dir().resolve()))
    except ValueError:
        return str(path)


@cache
def catalog() -> dict[str, dict]:
    if not CATALOG.exists():
        return {}
    return json.loads(CATALOG.read_text())


def needed_files(name: str) -> list[str] | None:
    """The files (relative to the weights folder) a pyiqa metric needs; None if unknown."""
    entry = catalog().get(name)
    return None if entry is None else list(entry["files"])


def file_source(name: str, file: str) -> dict | None:
    """Where ``file`` of metric ``name`` is published, as the catalog records it: ``url``,
    and ``sha256`` where the publisher gives it (the whole SHA256, or its first hex digits
    as pyiqa's and torchvision's file names carry them); for a Hugging Face file or
    repository also ``repo``, ``path`` (none for a whole repository) and ``revision``.
    None where the catalog knows no source."""
    entry = catalog().get(name) or {}
    return (entry.get("sources") or {}).get(file)


def fetch_command(names: list[str]) -> str:
    """The command that fetches the files of metrics ``names`` (all, when every metric
    in the catalog is named)."""
    which = "all" if set(names) >= set(catalog()) else ",".join(names)
    return f"python manage.py install_weights --fetch {which}"


def hf_parts(name: str) -> tuple[str, str]:
    """``huggingface:owner/repo/path/in/repo`` -> (repo id, path); the path is "" for a
    whole repository (a transformers model loaded with ``from_pretrained``)."""
    owner, _, rest = name.removeprefix(HF_PREFIX).partition("/")
    repo, _, filename = rest.partition("/")
    return f"{owner}/{repo}", filename


def _hf_cached(name: str) -> str | None:
    """Where the Hugging Face cache in the weights folder holds ``name`` (a file, or a
    repository's snapshot), or None."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = str(weights_dir() / "huggingface" / "hub")
    repo, filename = hf_parts(name)
    if not filename:
        try:
            return snapshot_download(repo, cache_dir=cache, local_files_only=True)
        except LocalEntryNotFoundError:
            return None
    found = try_to_load_from_cache(repo, filename, cache_dir=cache)
    return found if isinstance(found, str) else None


def missing_files(files: list[str]) -> list[str]:
    return [
        f
        for f in files
        if not (
            _hf_cached(f) is not None if f.startswith(HF_PREFIX) else (weights_dir() / f).is_file()
        )
    ]


@cache
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def files_digest(files: list[str]) -> str:
    """One hash over the named weight files' contents (and names)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        if name.startswith(HF_PREFIX):
            # The cache's path names the snapshot: the repository's commit.
            digest.update(name.encode() + b"\0" + relative(Path(_hf_cached(name))).encode())
            continue
        path = weights_dir() / name
        stat = path.stat()
        digest.update(
            name.encode() + b"\0" + _file_digest(str(path), stat.st_size, stat.st_mtime).encode()
        )
    return digest.hexdigest()


def pyiqa_version() -> str:
    return package_version("pyiqa")
