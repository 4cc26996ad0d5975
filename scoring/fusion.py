"""A fusion model file (``manage.py fusion_train``) as a plug-in metric.

The file holds a linear image score f(x) = sum_m weight_m * sign_m * m(x) / scale_m
over component metrics m (sign -1 where lower is better; FR components against the
scene's reference, NR components alone): ``analysis/fusion.py`` says how it is trained
and why a linear model is an image score. Listed in ``IQA_METRIC_PLUGINS`` by its path
(a name ending in ``.json``), it is a metric like any plug-in, except that it is *derived*:
it needs no image and no weights. A worker computes it from the components' stored
scores of the versions the file names (``scoring.services.batch_score``). An item whose
components are not all scored yet waits (the batch is retried). An item whose component
failed fails with that component's error.
"""

import hashlib
import json
import math
import re
from pathlib import Path

from scoring.errors import UnknownMetric

FORMAT = "iqa-platform-fusion/1"
COMPONENT_KEYS = ("metric", "version", "kind", "lower_better", "scale", "weight")
# A fusion metric's name: what Score.metric holds, and a plain word on a command line.
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A derived metric's version starts so (``plugin-`` + ``FusionMetric.version``): the
# analysis leaves such scores out of a new fusion (they were fitted to labels).
VERSION_PREFIX = "plugin-fusion-"


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def model_check(model: object, source: str = "the fusion model") -> dict:
    """The model if it is a well-formed fusion model file's content, else UnknownMetric
    naming what is wrong: the format, a name (letters, digits, ``_ . -``, at most 64)
    that is not one of its components, and components with a metric and a version
    (non-empty strings), a kind (FR or NR), ``lower_better`` (true or false), a scale
    (a number above 0) and a weight (a finite number), each metric once."""
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise UnknownMetric(f"{source} is not a fusion model (format {FORMAT!r})")
    name = model.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UnknownMetric(
            f"{source}: name must be 1 to 64 letters, digits, _ . or - (not {name!r})"
        )
    components = model.get("components")
    if not isinstance(components, list) or not components:
        raise UnknownMetric(f"{source}: components must be a non-empty list")
    for n, component in enumerate(components):
        if not isinstance(component, dict):
            raise UnknownMetric(f"{source}: component {n} is not an object")
        missing = [k for k in COMPONENT_KEYS if k not in component]
        if missing:
            raise UnknownMetric(f"{source}: component {n} lacks {', '.join(missing)}")
        if not _text(component["metric"]) or not _text(component["version"]):
            raise UnknownMetric(f"{source}: component {n}'s metric and version must be text")
        label = f"{source}: {component['metric']}'s"
        if component["kind"] not in ("FR", "NR"):
            raise UnknownMetric(f"{label} kind must be FR or NR")
        if not isinstance(component["lower_better"], bool):
            raise UnknownMetric(f"{label} lower_better must be true or false")
        if not _number(component["weight"]):
            raise UnknownMetric(f"{label} weight is not a finite number")
        if not _number(component["scale"]) or component["scale"] <= 0:
            raise UnknownMetric(f"{label} scale must be a number above 0")
    names = [c["metric"] for c in components]
    if len(set(names)) != len(names):
        raise UnknownMetric(f"{source}: a component metric is named twice")
    if name in names:
        raise UnknownMetric(f"{source}: the name {name!r} is one of its components")
    return model


class FusionMetric:
    """The plug-in: ``name``, ``kind`` (FR when a component is), ``lower_better``
    (False), ``version`` (the file's content digest) and ``components``; ``combine``
    maps the components' values to the fused ones."""

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            model = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UnknownMetric(f"fusion model {path} cannot be read: {exc}") from exc
        self.model = model_check(model, f"fusion model {path}")
        self.path = path
        self.name = model["name"]
        self.components = model["components"]
        self.kind = "FR" if any(c["kind"] == "FR" for c in self.components) else "NR"
        self.lower_better = False
        self.batchable = True
        self.score_range = ""
        canonical = json.dumps(model, sort_keys=True).encode()
        self.version = "fusion-" + hashlib.sha256(canonical).hexdigest()[:16]

    def reloaded(self) -> "FusionMetric":
        """The file as it is now (a worker's registry keeps the one it read at start)."""
        return FusionMetric(self.path)

    def combine(self, values: dict[str, float]) -> float:
        """The fused score of one item from its components' values (by metric name)."""
        total = 0.0
        for c in self.components:
            sign = -1.0 if c["lower_better"] else 1.0
            total += c["weight"] * sign * values[c["metric"]] / c["scale"]
        return total


def is_model_path(entry: str) -> bool:
    """Whether an ``IQA_METRIC_PLUGINS`` entry names a fusion model file."""
    return entry.lower().endswith(".json")
