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
