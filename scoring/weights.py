"""Pretrained weights: one folder, nothing downloaded at run time.

The weights folder (``IQA_WEIGHTS_DIR``) is PyTorch's ``TORCH_HOME``: pyiqa keeps its
files in ``<folder>/hub/pyiqa/`` and torchvision its backbones in
``<folder>/hub/checkpoints/``, by the names they download them under. A worker points
PyTorch there before importing pyiqa, and :func:`offline` turns every download pyiqa or
torchvision would start into :class:`MissingWeights` naming the file and its folder.

Which files a metric needs comes from ``weights_catalog.json`` (committed; regenerate with
``manage.py metrics_catalog`` after upgrading pyiqa), made by :func:`probe_files`:
creating the metric with every download and weight load intercepted and recorded.
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

from scoring.errors import MissingWeights

CATALOG = Path(__file__).with_name("weights_catalog.json")
# pyiqa's copies of OpenAI CLIP's loader, which download with urllib to a folder of their
# own (``~/.cache/clip`` for A-FINE); here they read ``<weights>/clip/``.
CLIP_MODULES = ("pyiqa.archs.clip_model", "pyiqa.archs.afineclip_model")
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


def _clip_loader(original):
    """CLIP's ``_download(url, root)``, reading ``<weights>/clip/`` and never the network."""

    def load(url: str, root: str) -> str:
        folder = weights_dir() / "clip"
        target = folder / Path(url).name
        if not target.is_file():
            raise MissingWeights([target.name], str(folder))
        return original(url, str(folder))  # checks the file's sha256; no download

    return load


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
        patches.append(mock.patch.object(module, "_download", _clip_loader(module._download)))
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


class _Recorded(Exception):
    pass


def probe_files(name: str) -> tuple[list[str], str]:
    """The files pyiqa metric ``name`` loads (relative to the weights folder), found by
    creating it with every download and every weight load recorded and skipped (the
    network is left with random weights). Returns (files, error: "" when it was created).
    """
    import pyiqa
    import pyiqa.archs.arch_util as arch_util
    import pyiqa.utils.download_util as pyiqa_download
    import torch
    import torch.hub
    import torchvision.models._api as tv_api

    seen: list[str] = []

    def record(path: Path) -> None:
        if relative(path) not in seen:
            seen.append(relative(path))

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        record(Path(dst))
        raise _Recorded(dst)

    def fake_file(url: str, model_dir=None, progress=True, file_name=None) -> str:
        folder = Path(model_dir or pyiqa_download.DEFAULT_CACHE_DIR)
        path = folder / (file_name or Path(url.split("?")[0]).name)
        record(path)
        return str(path)

    def fake_network(net, model_path, strict=True, weight_keys=None) -> None:
        if model_path.startswith(("http://", "https://")):
            fake_file(model_path)
        else:
            record(Path(model_path))

    def fake_state_dict(url: str, model_dir=None, *args: object, **kwargs: object):
        folder = Path(model_dir or Path(torch.hub.get_dir()) / "checkpoints")
        record(folder / Path(url.split("?")[0]).name)
        return None

    original_load = torch.nn.Module.load_state_dict

    def skip_none(self, state_dict, *args: object, **kwargs: object):
        if state_dict is None:
            return torch.nn.modules.module._IncompatibleKeys([], [])
        return original_load(self, state_dict, *args, **kwargs)

    def fake_clip(url: str, root: str) -> str:
        path = weights_dir() / "clip" / Path(url).name
        record(path)
        return str(path)

    def fake_hf(repo_id: str, filename: str, *args: object, **kwargs: object):
        name = f"{HF_PREFIX}{repo_id}/{filename}"
        if name not in seen:
            seen.append(name)
        raise _Recorded(name)

    import huggingface_hub
    import huggingface_hub.file_download

    patches = [
        mock.patch.object(huggingface_hub, "hf_hub_download", fake_hf),
        mock.patch.object(huggingface_hub.file_download, "hf_hub_download", fake_hf),
        mock.patch.object(pyiqa_download, "download_url_to_file", fake_download),
        mock.patch.object(torch.hub, "download_url_to_file", fake_download),
        mock.patch.object(pyiqa_download, "load_file_from_url", fake_file),
        mock.patch.object(torch.hub, "load_state_dict_from_url", fake_state_dict),
        mock.patch.object(tv_api, "load_state_dict_from_url", fake_state_dict),
        mock.patch.object(torch.nn.Module, "load_state_dict", skip_none),
        mock.patch.object(arch_util, "load_pretrained_network", fake_network),
        mock.patch.object(arch_util, "load_file_from_url", fake_file),
    ]
    # Arch modules import these helpers by name.
    import importlib
    import sys

    def fake_timm(model, pretrained_cfg=None, *args: object, **kwargs: object) -> None:
        # timm fetches its backbones from the Hugging Face hub (model.safetensors of the
        # config's hf_hub_id) or from a URL; record the file, keep the random weights.
        get = (
            pretrained_cfg.get
            if isinstance(pretrained_cfg, dict)
            else (lambda key, default=None: getattr(pretrained_cfg, key, default))
        )
        hub_id, url = get("hf_hub_id"), get("url")
        if hub_id:
            name = f"{HF_PREFIX}{hub_id}/{get('hf_hub_filename') or 'model.safetensors'}"
            if name not in seen:
                seen.append(name)
        elif url:
            record(Path(torch.hub.get_dir()) / "checkpoints" / Path(url.split("?")[0]).name)

    import timm.models._builder as timm_builder

    patches.append(mock.patch.object(timm_builder, "load_pretrained", fake_timm))
    for module_name in CLIP_MODULES:
        patches.append(
            mock.patch.object(importlib.import_module(module_name), "_download", fake_clip)
        )
    for module_name, module in list(sys.modules.items()):
        hub_user = module_name.startswith(("timm.", "transformers.")) and module is not None
        if hub_user and getattr(module, "hf_hub_download", None) is not None:
            patches.append(mock.patch.object(module, "hf_hub_download", fake_hf))
        if module_name.startswith("pyiqa.") and module is not None:
            for attribute, fake in (
                ("load_pretrained_network", fake_network),
                ("load_file_from_url", fake_file),
            ):
                if hasattr(module, attribute):
                    patches.append(mock.patch.object(module, attribute, fake))
    error = ""
    for patch in patches:
        patch.start()
    try:
        pyiqa.create_metric(name, device=torch.device("cpu"))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        for patch in reversed(patches):
            patch.stop()
    return seen, error


@cache
def catalog() -> dict[str, dict]:
    if not CATALOG.exists():
        return {}
    return json.loads(CATALOG.read_text())


def needed_files(name: str) -> list[str] | None:
    """The files (relative to the weights folder) a pyiqa metric needs; None if unknown."""
    entry = catalog().get(name)
    return None if entry is None else list(entry["files"])


def _hf_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    # Repo ids are owner/name; the file's path inside the repo follows.
    owner, _, rest = name.removeprefix(HF_PREFIX).partition("/")
    repo, _, filename = rest.partition("/")
    found = try_to_load_from_cache(
        f"{owner}/{repo}", filename, cache_dir=str(weights_dir() / "huggingface" / "hub")
    )
    return isinstance(found, str)


def missing_files(files: list[str]) -> list[str]:
    return [
        f
        for f in files
        if not (_hf_cached(f) if f.startswith(HF_PREFIX) else (weights_dir() / f).is_file())
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
            digest.update(name.encode() + b"\0")  # the cache's snapshot names the content
            continue
        path = weights_dir() / name
        stat = path.stat()
        digest.update(
            name.encode() + b"\0" + _file_digest(str(path), stat.st_size, stat.st_mtime).encode()
        )
    return digest.hexdigest()


def pyiqa_version() -> str:
    return package_version("pyiqa")
