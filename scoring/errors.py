"""Domain errors of scoring."""

from core.errors import DomainError


class UnknownMetric(DomainError):
    pass


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
