"""Which weight files a pyiqa metric loads, found by creating it with nothing to load.

:func:`probe_files` creates a metric with every way pyiqa, torchvision, timm, OpenAI CLIP
and the Hugging Face libraries fetch or read a weight file intercepted. Each request is
recorded (relative to the weights folder) and answered with a stand-in, so creation goes
on to the next file and the list is complete when creation succeeds:

- a download (pyiqa's, torch.hub's, torchvision's, CLIP's) leaves an empty placeholder
  file where the real one would go;
- reading a placeholder gives a stand-in: ``torch.load`` an empty state dict (and, if
  creation then fails, a tensor, then an array: :data:`CHECKPOINT_STAND_INS`), or for a
  CLIP checkpoint a state dict with that architecture's shapes on the meta device (CLIP
  builds its model from them); ``torch.jit.load`` an identity module;
  ``scipy.io.loadmat`` an array that indexes like MATLAB's nested parameters;
- ``load_state_dict`` does nothing: networks keep their random weights;
- a Hugging Face repository loaded with ``from_pretrained`` is recorded whole (its
  snapshot is what an operator installs) and answered with a mock;
- a timm backbone is recorded by its hub file or URL (another file fetched from the
  Hugging Face hub is recorded, and creation stops there with :class:`Recorded`);
- networks stay on the CPU, even where a metric moves them to CUDA itself.

Run it on an empty weights folder (``metrics_catalog`` makes a temporary one): the
placeholders are written there.

It patches private parts of pyiqa, timm, torchvision and transformers for the time one
metric is created: a maintenance tool, imported by ``manage.py metrics_catalog`` only,
in the processes it forks; never by a worker, which loads metrics unpatched.
"""

import importlib
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from scoring.weights import HF_PREFIX, clip_path, relative, url_file_name, weights_dir

# OpenAI CLIP's loader and pyiqa's copies of it, which download with urllib to a folder
# of their own; the probe records their files as ``clip/<file>``.
CLIP_MODULES = ("clip.clip", "pyiqa.archs.clip_model", "pyiqa.archs.afineclip_model")

# OpenAI CLIP's architectures by checkpoint file: (embed_dim, image_resolution,
# vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
# transformer_width, transformer_heads, transformer_layers), the arguments of CLIP().
# Only the shapes matter to the probe: CLIP's build_model reads them from the state dict.
CLIP_ARCHITECTURES = {
    "RN50.pt": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "ViT-B-32.pt": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B-16.pt": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L-14.pt": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
}


class Recorded(Exception):
    """A file the probe cannot stand in for: recorded, and creation stops there."""


class Blank(dict):
    """The contents of a checkpoint the probe does not have: an empty state dict whose
    every entry is another blank (``torch.load(f)["params"]``), and which unpacks into
    two tensors where a file holds a pair (``sv_coef, sv = torch.load(f)``)."""

    def __missing__(self, key: object) -> "Blank":
        return Blank()

    def __delitem__(self, key: object) -> None:
        self.pop(key, None)

    def __iter__(self):
        import torch

        return iter((torch.zeros(2, 2), torch.zeros(2, 2)))


class BlankArray(np.ndarray):
    """The contents of a MATLAB parameter file the probe does not have: a float array (for
    numpy and torch to convert) whose every entry or item is another blank array
    (``params["rf"][0, 0][0, 2]``)."""

    def __new__(cls) -> "BlankArray":
        return np.zeros((2, 2)).view(cls)

    def __getitem__(self, key: object) -> "BlankArray":
        return BlankArray()

    def __iter__(self):
        return iter((BlankArray(), BlankArray()))

    def __repr__(self) -> str:
        return "BlankArray()"

    __str__ = __repr__


def _blank_tensor():
    import torch

    return torch.zeros(2, 2)


# What a checkpoint may hold, tried in this order: a state dict, a tensor, an array.
CHECKPOINT_STAND_INS = (Blank, _blank_tensor, BlankArray)


class Loaded(mock.MagicMock):
    """What a Hugging Face repository would load (a model, a processor): anything asked
    of it is another stand-in, loading weights into it loads nothing (as for networks in
    the probe), and a copy is itself (so a copy's attributes are equal)."""

    def load_state_dict(self, *args: object, **kwargs: object):
        return _load_nothing(self)

    def __deepcopy__(self, memo: dict) -> "Loaded":
        return self


def _load_nothing(module: object, *args: object, **kwargs: object):
    import torch

    return torch.nn.modules.module._IncompatibleKeys([], [])


def _stay_on_the_cpu(original):
    """``Module.to`` that leaves a network where it is when asked for a GPU: a metric
    that creates its network on CUDA (maclip) is probed on a machine without one."""

    def to(module, *args: object, **kwargs: object):
        targets = [*args, kwargs.get("device")]
        if any(str(t).startswith("cuda") for t in targets if t is not None):
            return module
        return original(module, *args, **kwargs)

    return to


def _path_of(source: object) -> Path | None:
    name = getattr(source, "name", source)  # an open file, or a path
    return Path(name) if isinstance(name, str | Path) else None


class Probe:
    """Records the files one metric's creation asks for, and stands in for them."""

    def __init__(self) -> None:
        self.folder = weights_dir().resolve()
        self.seen: list[str] = []
        self.urls: dict[str, str] = {}  # file -> the URL its loader asked for
        self.repositories: dict[str, mock.MagicMock] = {}
        # Which of CHECKPOINT_STAND_INS each checkpoint gets, and the last one given.
        self.stand_ins: dict[Path, int] = {}
        self.last_read: Path | None = None

    def create(self, name: str) -> str:
        """Create the metric with everything intercepted; the error, or "" once created."""
        import pyiqa
        import torch

        self.seen, self.urls, self.repositories, self.last_read = [], {}, {}, None
        patches = self.patches()
        for patch in patches:
            patch.start()
        try:
            pyiqa.create_metric(name, device=torch.device("cpu"))
            return ""
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        finally:
            for patch in reversed(patches):
                patch.stop()

    def next_stand_in(self) -> bool:
        """After a failure, give the last checkpoint read its next kind of stand-in (a
        checkpoint may hold a state dict, a tensor, an array); False when none is left."""
        if self.last_read is None:
            return False
        kind = self.stand_ins.get(self.last_read, 0) + 1
        if kind == len(CHECKPOINT_STAND_INS):
            return False
        self.stand_ins[self.last_read] = kind
        return True

    def record(self, name: str) -> None:
        if name not in self.seen:
            self.seen.append(name)

    def record_path(self, path: Path, url: str | None = None) -> Path:
        """Record a file under the weights folder (and the URL it is downloaded from) and
        leave a placeholder there."""
        self.record(relative(path))
        if url:
            self.urls.setdefault(relative(path), url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    def placeholder(self, source: object) -> Path | None:
        """The weights-folder file ``source`` names, recorded; None for any other file."""
        path = _path_of(source)
        if path is None or not path.resolve().is_relative_to(self.folder):
            return None
        return self.record_path(path.resolve())

    # Downloads.
    def download(self, url: str, dst: str, *args: object, **kwargs: object) -> None:
        self.record_path(Path(dst), url)

    def file_from_url(self, url: str, model_dir=None, progress=True, file_name=None) -> str:
        import pyiqa.utils.download_util as pyiqa_download

        folder = Path(model_dir or pyiqa_download.DEFAULT_CACHE_DIR)
        return str(self.record_path(folder / (file_name or url_file_name(url)), url))

    def pretrained_network(self, net, model_path, strict=True, weight_keys=None) -> None:
        if model_path.startswith(("http://", "https://")):
            self.file_from_url(model_path)
        else:
            self.record(relative(Path(model_path)))

    def state_dict_from_url(self, url: str, model_dir=None, *args: object, **kwargs: object):
        import torch.hub

        folder = Path(model_dir or Path(torch.hub.get_dir()) / "checkpoints")
        self.record_path(folder / url_file_name(url), url)
        return Blank()

    def clip_download(self, url: str, root: str) -> str:
        return str(self.record_path(clip_path(url), url))

    def timm_pretrained(self, model, pretrained_cfg=None, *args: object, **kwargs: object):
        # timm fetches a backbone from the Hugging Face hub (the config's hf_hub_id) or a URL.
        import torch.hub

        def get(key: str) -> object:
            if isinstance(pretrained_cfg, dict):
                return pretrained_cfg.get(key)
            return getattr(pretrained_cfg, key, None)

        hub_id, url = get("hf_hub_id"), get("url")
        if hub_id:
            self.record(f"{HF_PREFIX}{hub_id}/{get('hf_hub_filename') or 'model.safetensors'}")
        elif url:
            folder = Path(torch.hub.get_dir()) / "checkpoints"
            self.record_path(folder / url_file_name(str(url)), str(url))

    def hf_file(self, repo_id: str, filename: str, *args: object, **kwargs: object) -> str:
        self.record(f"{HF_PREFIX}{repo_id}/{filename}")
        raise Recorded(f"{repo_id}/{filename}")

    def hf_repository(self, cls, repo: object, *args: object, **kwargs: object) -> mock.Mock:
        """What ``from_pretrained`` loads: the same stand-in for the same repository."""
        if isinstance(repo, str) and not Path(repo).exists():
            self.record(f"{HF_PREFIX}{repo}")
        return self.repositories.setdefault(str(repo), Loaded(name=f"from_pretrained({repo!r})"))

    # Reading a file.
    def torch_load(self, original):
        def load(source: object, *args: object, **kwargs: object) -> object:
            path = self.placeholder(source)
            if path is None:
                return original(source, *args, **kwargs)
            if path.parent.name == "clip" and path.name in CLIP_ARCHITECTURES:
                return _clip_shapes(path.name)
            self.last_read = path
            return CHECKPOINT_STAND_INS[self.stand_ins.get(path, 0)]()

        return load

    def jit_load(self, original):
        import torch

        def load(source: object, *args: object, **kwargs: object) -> object:
            path = self.placeholder(source)
            if path is None:
                return original(source, *args, **kwargs)
            if path.parent.name == "clip":
                # CLIP then reads the file as a state dict (see torch_load).
                raise RuntimeError("a placeholder, not a TorchScript archive")
            return torch.nn.Identity()

        return load

    def loadmat(self, original):
        def load(source: object, *args: object, **kwargs: object) -> object:
            if self.placeholder(source) is None:
                return original(source, *args, **kwargs)
            return BlankArray()

        return load

    def patches(self) -> list:
        import pyiqa.archs.arch_util as arch_util
        import pyiqa.utils.download_util as pyiqa_download
        import scipy.io
        import timm.models._builder as timm_builder
        import torch
        import torch.hub
        import torchvision.models._api as tv_api
        import transformers
        import transformers.models.auto.modeling_auto  # defines the Auto model classes
        from transformers.models.auto.auto_factory import _BaseAutoModelClass

        patches = [
            mock.patch.object(pyiqa_download, "download_url_to_file", self.download),
            mock.patch.object(torch.hub, "download_url_to_file", self.download),
            mock.patch.object(pyiqa_download, "load_file_from_url", self.file_from_url),
            mock.patch.object(torch.hub, "load_state_dict_from_url", self.state_dict_from_url),
            mock.patch.object(tv_api, "load_state_dict_from_url", self.state_dict_from_url),
            mock.patch.object(arch_util, "load_pretrained_network", self.pretrained_network),
            mock.patch.object(arch_util, "load_file_from_url", self.file_from_url),
            mock.patch.object(timm_builder, "load_pretrained", self.timm_pretrained),
            mock.patch.object(torch.nn.Module, "load_state_dict", _load_nothing),
            mock.patch.object(torch.nn.Module, "to", _stay_on_the_cpu(torch.nn.Module.to)),
            mock.patch.object(torch.nn.Module, "cuda", lambda module, *a, **k: module),
            mock.patch.object(torch, "load", self.torch_load(torch.load)),
            mock.patch.object(torch.jit, "load", self.jit_load(torch.jit.load)),
            mock.patch.object(scipy.io, "loadmat", self.loadmat(scipy.io.loadmat)),
        ]
        for module_name in CLIP_MODULES:
            module = importlib.import_module(module_name)
            patches.append(mock.patch.object(module, "_download", self.clip_download))
        repository = classmethod(self.hf_repository)
        loaders = [
            transformers.PreTrainedModel,
            transformers.PretrainedConfig,
            transformers.PreTrainedTokenizerBase,
            transformers.ProcessorMixin,
            transformers.ImageProcessingMixin,
            transformers.FeatureExtractionMixin,
            _BaseAutoModelClass,
            transformers.AutoConfig,
            transformers.AutoTokenizer,
            transformers.AutoProcessor,
            transformers.AutoImageProcessor,
            transformers.AutoFeatureExtractor,
        ]
        while loaders:  # and every subclass with a from_pretrained of its own
            cls = loaders.pop()
            if "from_pretrained" in vars(cls):
                patches.append(mock.patch.object(cls, "from_pretrained", repository))
            loaders.extend(cls.__subclasses__())
        # Modules that imported these helpers by name.
        for module_name, module in list(sys.modules.items()):
            if module is None:
                continue
            hub_user = module_name.startswith(("timm.", "transformers.", "huggingface_hub"))
            if hub_user and getattr(module, "hf_hub_download", None) is not None:
                patches.append(mock.patch.object(module, "hf_hub_download", self.hf_file))
            if module_name.startswith("pyiqa."):
                for attribute, fake in (
                    ("load_pretrained_network", self.pretrained_network),
                    ("load_file_from_url", self.file_from_url),
                ):
                    if hasattr(module, attribute):
                        patches.append(mock.patch.object(module, attribute, fake))
        return patches


def _clip_shapes(file_name: str) -> dict:
    """A state dict with the keys and shapes of a CLIP checkpoint, on the meta device."""
    import torch
    from clip.model import CLIP

    with torch.device("meta"):
        return CLIP(*CLIP_ARCHITECTURES[file_name]).state_dict()


def probe_files(name: str) -> tuple[list[str], str, dict[str, dict]]:
    """The files pyiqa metric ``name`` loads, relative to the weights folder (Hugging Face
    files and repositories prefixed ``huggingface:``). Returns (files, error, sources): the
    error is empty when the metric was created, so the list is complete; otherwise the
    list may stop at the error. ``sources`` says where each file is published (the URL its
    loader asked for, else the libraries' tables: :mod:`scoring.catalog.sources`).

    A checkpoint's stand-in is first a state dict; when creation then fails, it is
    created again with the next kind of stand-in for the checkpoint read last."""
    from scoring.catalog.sources import catalog_sources

    probe = Probe()
    while (error := probe.create(name)) and probe.next_stand_in():
        pass
    return probe.seen, error, catalog_sources(probe.seen, probe.urls)
