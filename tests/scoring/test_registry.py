"""Plug-in metrics: found by a dotted path in settings or by an installed entry point."""

import pytest

from scoring.errors import UnknownMetric
from scoring.registry import plugin_specs
from tests.scoring.plugins import install_entry_point


def test_an_installed_entry_point_registers_a_plugin(tmp_path, monkeypatch, settings):
    settings.IQA_METRIC_PLUGINS = ["tests.scoring.plugins.MeanBrightness"]
    assert "pixel_spread" not in plugin_specs()
    package = install_entry_point(tmp_path, "pixel_spread", "tests.scoring.plugins:PixelSpread")
    monkeypatch.syspath_prepend(str(package))
    specs = plugin_specs()
    spread = specs["pixel_spread"]
    assert (spread.kind, spread.lower_better, spread.source) == (
        "NR",
        False,
        "entry point pixel_spread",
    )
    assert specs["mean_brightness"].source == "tests.scoring.plugins.MeanBrightness"


def test_a_plugin_lacking_the_interface_is_refused_by_name(tmp_path, monkeypatch, settings):
    settings.IQA_METRIC_PLUGINS = []
    package = install_entry_point(tmp_path, "broken", "tests.scoring.plugins:install_entry_point")
    monkeypatch.syspath_prepend(str(package))
    with pytest.raises(UnknownMetric, match="plug-in entry point broken lacks name, kind"):
        plugin_specs()
