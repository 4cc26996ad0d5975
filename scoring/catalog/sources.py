"""Where each catalogued weight file is published, and the checksum its publisher gives.

The catalog records, beside each metric's files, a source per file (see
:func:`scoring.weights.file_source` for the fields). It comes from the URL the probe saw
the metric's loader ask for, else from the libraries' own tables of published files:

- pyiqa's ``default_model_urls`` (and the other module-level tables of its architectures:
  ``model_urls``, timm configurations' ``url``, its copies of CLIP's ``_MODELS``);
- torchvision's checkpoints (every model's ``Weights`` enum);
- OpenAI CLIP's ``_MODELS``;
- a Hugging Face file or repository, named by the catalog itself (``huggingface:...``).

The checksum is the one a publisher gives: the SHA256 in an OpenAI CLIP URL, and the
first hex digits of the SHA256 that pyiqa's and torchvision's file names carry
(``vgg16-397923af.pth``, torch.hub's convention). A maintenance tool, imported by
``manage.py metrics_catalog`` only: it imports pyiqa and torchvision.
"""

import importlib
import pkgutil
import re
from functools import cache
from pathlib import Path
from urllib.parse import quote

from scoring.weights import HF_PREFIX, hf_parts, url_file_name

HUB = "https://huggingface.co"
# torch.hub's rule for the hash in a file name (``-<hex>.``), at least 8 digits here.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")
CLIP_HASH = re.compile(r"^[a-f0-9]{64}$")


def _urls_in(value: object, found: list[str]) -> None:
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _urls_in(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _urls_in(item, found)


def _hub_canonical(url: str) -> str:
    """A Hugging Face URL as published (``https://huggingface.co/...``), whatever
    ``HF_ENDPOINT`` was when pyiqa built it."""
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT.rstrip("/")
    if endpoint != HUB and url.startswith(endpoint + "/"):
        return HUB + url[len(endpoint) :]
    return url


@cache
def published_urls() -> dict[str, str]:
    """File name (as the loaders save it) -> the URL it is published at, from pyiqa's,
    torchvision's and CLIP's tables; pyiqa's first where two name the same file."""
    import clip.clip
    import pyiqa.archs
    import torchvision.models

    found: list[str] = []
    for module_info in pkgutil.walk_packages(pyiqa.archs.__path__, "pyiqa.archs."):
        try:
            module = importlib.import_module(module_info.name)
        except Exception:  # an architecture whose optional dependency is missing
            continue
        for value in vars(module).values():  # its tables: default_model_urls, model_urls, ...
            if isinstance(value, dict):
                _urls_in(value, found)
    for name in torchvision.models.list_models():
        for weight in torchvision.models.get_model_weights(name):
            found.append(weight.url)
    _urls_in(clip.clip._MODELS, found)
    urls: dict[str, str] = {}
    for url in found:
        urls.setdefault(url_file_name(url), _hub_canonical(url))
    return urls


def checksum_of(file: str, url: str) -> str:
    """The SHA256 (whole, or its first hex digits) the publisher gives for ``file``, or ""."""
    if file.startswith("clip/"):
        digest = url.rstrip("/").split("/")[-2]
        return digest if CLIP_HASH.match(digest) else ""
    if file.startswith(("hub/pyiqa/", "hub/checkpoints/")):
        match = HASH_IN_NAME.search(Path(file).name)
        return match.group(1) if match else ""
    return ""


def source_for(file: str, seen_url: str | None = None) -> dict | None:
    """The catalog's source of ``file``: the URL the probe saw, else the libraries'
    tables; None where neither knows it."""
    if file.startswith(HF_PREFIX):
        repo, path = hf_parts(file)
        if not path:
            return {"url": f"{HUB}/{repo}", "repo": repo, "revision": "main"}
        return {
            "url": f"{HUB}/{repo}/resolve/main/{quote(path)}",
            "repo": repo,
            "path": path,
            "revision": "main",
        }
    url = _hub_canonical(seen_url) if seen_url else published_urls().get(Path(file).name)
    if url is None:
        return None
    source = {"url": url}
    if checksum := checksum_of(file, url):
        source["sha256"] = checksum
    return source


def catalog_sources(
    files: list[str], seen: dict[str, str], recorded: dict[str, dict] | None = None
) -> dict[str, dict]:
    """Sources for a metric's files: what the probe saw (``seen``: file -> URL), else what
    was recorded before (``recorded``), else the libraries' tables."""
    recorded = recorded or {}
    sources = {}
    for file in files:
        if file in seen:
            source = source_for(file, seen[file])
        elif file in recorded:
            source = recorded[file]
        else:
            source = source_for(file)
        if source is not None:
            sources[file] = source
    return sources
