"""Domain errors of scoring."""

from core.errors import DomainError, NotFound


class UnknownMetric(DomainError):
    pass


class UnknownStudy(NotFound):
    """A slug or glob given to a command matches no study."""


class MissingWeights(DomainError):
    """A metric needs files that are not in the weights folder (nothing is downloaded)."""

    def __init__(self, files: list[str], folder: str) -> None:
        self.files = files
        self.folder = folder
        super().__init__(f"missing weight files {', '.join(files)} (put them in {folder})")


class WrongWeights(DomainError):
    """A weight file is there but is not the published file (its checksum differs)."""

    def __init__(self, path: str, expected: str, found: str) -> None:
        super().__init__(
            f"{path} is not the published file (SHA256 {found[:12]}..., expected "
            f"{expected[:12]}...): replace it"
        )


class MetricUnavailable(DomainError):
    """The worker cannot run the metric now, through no fault of the items: its weights are
    missing or wrong, it did not load, CUDA ran out of memory, a driver or runtime error.
    Nothing is stored for the items; the task retries with backoff and, after the last
    try, marks its batch failed to run with this message."""


class NoWorkerReport(DomainError):
    """``available`` metrics were asked for, but no worker on the scoring queue has said
    which metrics it can run."""
