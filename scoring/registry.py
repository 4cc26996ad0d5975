"""The metric registry: name -> spec, for every pyiqa metric that scores single images,
and for researchers' plug-ins.

Built from pyiqa's own ``DEFAULT_CONFIGS`` (FR/NR, ``lower_better``, score range), so it
follows the installed pyiqa. Importing pyiqa takes seconds and PyTorch with it: only
commands and workers call :func:`registry`; the web process never does.

A plug-in is an object (or class) named by a dotted path in ``IQA_METRIC_PLUGINS`` or
by an entry point in the ``iqa_platform.metrics`` group, with:

- ``name`` (str), ``kind`` ("FR" or "NR"), ``lower_better`` (bool), ``version`` (str),
  optional ``score_range`` (str) and ``files`` (weight file names under the weights
  folder; all must exist for the metric to be available);
- ``load(device)`` returning a callable ``score(images, references)`` that takes a
  float tensor N x 3 x H x W in [0, 1] (and the same for references, or None for NR)
  and returns N scores.

Or, for a metric derived from other metrics' scores (``derived``): ``components`` (a
list of {"metric", "version", "kind", ...}) and ``combine(values)`` (the components'
values of one item, by name, to its score) instead of ``load``. A fusion model file
(``manage.py fusion_train``; ``scoring/fusion.py``) is one: its path, ending in
``.json``, is an entry of ``IQA_METRIC_PLUGINS``.
"""

import functools
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from django.conf import settings

from scoring.errors import UnknownMetric
from scoring.fusion import FusionMetric, is_model_path

FR, NR = "FR", "NR"
# Metrics of a set of images (distributions), not of one image: never per-pair scores.
DISTRIBUTION_METRICS = frozenset({"fid", "sfid", "fid_dinov2", "inception_score"})
# Metrics that compare two images without a reference role (not an image score).
NOT_IMAGE_SCORES = frozenset({"fgresq_pair"})
ENTRY_POINT_GROUP = "iqa_platform.metrics"
# Metrics whose float32 values change with the other images in a forward pass (vif:
# 2.3e-4 relative on the calibration set), so they are run one image at a time to
# give exactly what pyiqa gives for a single image.
ONE_AT_A_TIME = frozenset({"vif"})


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # FR or NR
    lower_better: bool
    score_range: str = ""
    source: str = "pyiqa"  # or the plug-in's dotted path / entry point
    batchable: bool = True  # several same-size images in one forward pass
    plugin: object | None = field(default=None, compare=False, repr=False)

    @property
    def is_fr(self) -> bool:
        return self.kind == FR

    @property
    def derived(self) -> bool:
        """Computed from other metrics' stored scores (``components``), not from pixels."""
        return self.plugin is not None and hasattr(self.plugin, "components")

    @property
    def plugin_files(self) -> list[str]:
        """The weight files a plug-in metric declares (none for pyiqa's own)."""
        return list(getattr(self.plugin, "files", ()))


def pyiqa_specs() -> dict[str, MetricSpec]:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    specs = {}
    for name, config in DEFAULT_CONFIGS.items():
        if name in DISTRIBUTION_METRICS or name in NOT_IMAGE_SCORES:
            continue
        specs[name] = MetricSpec(
            name=name,
            kind=config["metric_mode"],
            lower_better=bool(config.get("lower_better", False)),
            score_range=str(config.get("score_range", "")),
            batchable=name not in ONE_AT_A_TIME,
        )
    return specs


def _load_object(path: str) -> object:
    module, _, attribute = path.rpartition(".")
    if not module:
        raise UnknownMetric(f"plug-in {path!r} is not a dotted path (module.attribute)")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise UnknownMetric(f"plug-in {path!r} cannot be loaded: {exc}") from exc


def _plugin_spec(plugin: object, source: str) -> MetricSpec:
    plugin = plugin() if isinstance(plugin, type) else plugin
    computes = ("components", "combine") if hasattr(plugin, "components") else ("load",)
    missing = [
        a for a in ("name", "kind", "lower_better", "version", *computes) if not hasattr(plugin, a)
    ]
    if missing:
        raise UnknownMetric(f"plug-in {source} lacks {', '.join(missing)}")
    if plugin.kind not in (FR, NR):
        raise UnknownMetric(f"plug-in {source}: kind must be FR or NR, not {plugin.kind!r}")
    return MetricSpec(
        name=plugin.name,
        kind=plugin.kind,
        lower_better=bool(plugin.lower_better),
        score_range=str(getattr(plugin, "score_range", "")),
        source=source,
        batchable=bool(getattr(plugin, "batchable", True)),
        plugin=plugin,
    )


def plugin_specs() -> dict[str, MetricSpec]:
    specs = {}
    for path in settings.IQA_METRIC_PLUGINS:
        plugin = FusionMetric(path) if is_model_path(path) else _load_object(path)
        spec = _plugin_spec(plugin, path)
        specs[spec.name] = spec
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = _plugin_spec(entry.load(), f"entry point {entry.name}")
        specs[spec.name] = spec
    return specs


@functools.cache
def _registry(plugins: tuple[str, ...]) -> dict[str, MetricSpec]:
    own, added = pyiqa_specs(), plugin_specs()
    for spec in added.values():
        if spec.derived and spec.name in own:
            # (a derived metric under a pyiqa name would take that metric's place in
            # every study, and wait for its own scores)
            raise UnknownMetric(f"plug-in {spec.source}: {spec.name!r} is a pyiqa metric's name")
    return {**own, **added}


def registry() -> dict[str, MetricSpec]:
    """Every metric by name; plug-ins override pyiqa metrics of the same name."""
    return _registry(tuple(settings.IQA_METRIC_PLUGINS))


def metric_get(name: str) -> MetricSpec:
    specs = registry()
    if name not in specs:
        raise UnknownMetric(f"unknown metric {name!r} (see `manage.py metrics_status`)")
    return specs[name]
