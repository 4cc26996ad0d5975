"""Pretrained weights: one folder, nothing downloaded at run time.

The weights folder (``IQA_WEIGHTS_DIR``) is PyTorch's ``TORCH_HOME``: pyiqa keeps its
files in ``<folder>/hub/pyiqa/`` and torchvision its backbones in
``<folder>/hub/checkpoints/``, by the names they download them under. A worker points
PyTorch there before importing pyiqa, and :func:`offline` turns every download pyiqa or
torchvision would start into :class:`MissingWeights` naming the file and its folder.

Which files a metric needs comes from ``weights_catalog.json`` (committed; regenerate with
``manage.py metrics_catalog`` after upgrading pyiqa), made by
:func:`scoring.probe.probe_files`: creating the metric with every download and weight
load intercepted and recorded.
"""

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path
from unittest import mock

from django.conf import settings

from scoring.errors import MissingWeights, WrongWeights

CATALOG = Path(__file__).with_name("weights_catalog.json")
# OpenAI CLIP's loader and pyiqa's copies of it, which download with urllib to a folder
# of their own (``~/.cache/clip``); here they read ``<weights>/clip/``.
CLIP_MODULES = ("clip.clip", "pyiqa.archs.clip_model", "pyiqa.archs.afineclip_model")
# Files fetched from the Hugging Face hub (timm backbones, transformers models) are named
# in the catalog as ``huggingface:<repo id>/<file>`` and looked up in the Hugging Face
# cache under ``<weights>/huggingface/hub/``.
HF_PREFIX = "huggingface:"


def weights_dir() -> Path:
    return Path(settings.IQA_WEIGHTS_DIR)


def use_weights_dir() -> None:
    """Point PyTorch (and so pyiqa and torchvision) at the weights folder, and make the
    Hugging Face libraries fail at once instead of reaching for the network. Call before
    pyiqa is imported: it reads the folder at import."""
    folder = weights_dir()
    os.environ["TORCH_HOME"] = str(folder)
    os.environ["HF_HOME"] = str(folder / "huggingface")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch.hub

    torch.hub.set_dir(str(folder / "hub"))


def _refuse(url: str, dst: str, *args: object, **kwargs: object) -> None:
    path = Path(dst)
    raise MissingWeights([path.name], str(path.parent))


def url_file_name(url: str) -> str:
    """The file a download URL saves to: its last path part, without the query."""
    return Path(url.split("?")[0]).name


def clip_path(url: str) -> Path:
    """Where the weights folder keeps the CLIP checkpoint at ``url``."""
    return weights_dir() / "clip" / url_file_name(url)


def clip_file(url: str, root: str) -> str:
    """CLIP's ``_download(url, root)``, reading ``<weights>/clip/`` and never the network.
    CLIP's URLs name the file's SHA256; where CLIP would download the file again over a
    file of other contents, this says so."""
    target = clip_path(url)
    if not target.is_file():
        raise MissingWeights([target.name], str(target.parent))
    expected = url.split("/")[-2]
    stat = target.stat()
    found = _file_digest(str(target), stat.st_size, stat.st_mtime)
    if found != expected:
        raise WrongWeights(str(target), expected, found)
    return str(target)


@contextmanager
def offline() -> Iterator[None]:
    """Inside, a download by pyiqa, torchvision or CLIP raises MissingWeights at once
    (the Hugging Face libraries are offline through HF_HUB_OFFLINE)."""
    import importlib

    import pyiqa.utils.download_util as pyiqa_download
    import torch.hub

    patches = [
        mock.patch.object(torch.hub, "download_url_to_file", _refuse),
        mock.patch.object(pyiqa_download, "download_url_to_file", _refuse),
    ]
    for name in CLIP_MODULES:
        module = importlib.import_module(name)
        patches.append(mock.patch.object(module, "_download", clip_file))
    for patch in patches:
        patch.start()
    try:
        yield
    finally:
        for patch in reversed(patches):
            patch.stop()


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
