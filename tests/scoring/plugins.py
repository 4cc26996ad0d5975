"""Plug-in metrics registered by the tests (IQA_METRIC_PLUGINS), as a researcher would."""

import time


class MeanBrightness:
    """NR: the mean of an image's pixels in [0, 1]."""

    name = "mean_brightness"
    kind = "NR"
    lower_better = False
    version = "1"
    score_range = "0, 1"

    def load(self, device):
        return lambda images, references: images.mean(dim=(1, 2, 3))


class SlowMeanDifference:
    """FR: the mean absolute difference to the reference, slowly (a worker can be
    killed in the middle of a study)."""

    name = "slow_mean_difference"
    kind = "FR"
    lower_better = True
    version = "1"

    def load(self, device):
        def score(images, references):
            time.sleep(0.4 * len(images))
            return (images - references).abs().mean(dim=(1, 2, 3))

        return score


class PixelSpread:
    """NR: the standard deviation of an image's pixels in [0, 1]; registered through an
    entry point (see ``install_entry_point``)."""

    name = "pixel_spread"
    kind = "NR"
    lower_better = False
    version = "2"

    def load(self, device):
        return lambda images, references: images.flatten(1).std(dim=1, correction=0)


def install_entry_point(folder, name: str, target: str):
    """An installed distribution in ``folder`` (put it on the Python path) declaring
    ``target`` (``module:attribute``) in the ``iqa_platform.metrics`` entry-point group,
    as ``pip install`` of a researcher's package would."""
    info = folder / "iqa_test_metrics-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iqa-test-metrics\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[iqa_platform.metrics]\n{name} = {target}\n")
    return folder


class NeedsWeights:
    """NR: the mean of an image's pixels, once its weight file is in the weights folder
    (a worker without it cannot load the metric)."""

    name = "needs_weights"
    kind = "NR"
    lower_better = False
    version = "1"
    files = ["plugins/needs_weights.pth"]

    def load(self, device):
        return lambda images, references: images.mean(dim=(1, 2, 3))
