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
from pathlib import Path

from scoring.errors import UnknownMetric

FORMAT = "iqa-platform-fusion/1"
COMPONENT_KEYS = ("metric", "version", "kind", "lower_better", "scale", "weight")


def model_check(model: object, source: str = "the fusion model") -> dict:
    """The model if it is a fusion model file's content, else UnknownMetric naming what
    is wrong."""
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise UnknownMetric(f"{source} is not a fusion model (format {FORMAT!r})")
    name = model.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise UnknownMetric(f"{source}: name must be a string of 1 to 64 characters")
    components = model.get("components")
    if not isinstance(components, list) or not components:
        raise UnknownMetric(f"{source}: components must be a non-empty list")
    for component in components:
        missing = [
            k for k in COMPONENT_KEYS if not isinstance(component, dict) or k not in component
        ]
        if missing:
            raise UnknownMetric(f"{source}: a component lacks {', '.join(missing)}")
        if component["kind"] not in ("FR", "NR"):
            raise UnknownMetric(f"{source}: {component['metric']}'s kind must be FR or NR")
        for key in ("scale", "weight"):
            value = component[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UnknownMetric(f"{source}: {component['metric']}'s {key} is not a number")
            if not math.isfinite(value) or (key == "scale" and value <= 0):
                raise UnknownMetric(f"{source}: {component['metric']}'s {key} is {value}")
    if len({c["metric"] for c in components}) != len(components):
        raise UnknownMetric(f"{source}: a component metric is named twice")
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
