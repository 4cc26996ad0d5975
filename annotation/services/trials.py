"""What assignment exchanges: the trial shown, the session as next-trial reads it, and the
parameters and rows of its statements (``sql/next_trial.sql``, ``sql/sweep.sql``) and of
the ORM path that does the same (``assignment.py``, where the rules are).
"""

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from annotation.models import Study, Trial
from annotation.services.sessions import Progress


class Slot(enum.Enum):
    """Where an issued trial goes: the session's open trial, or the one queued after it."""

    OPEN = "open"
    QUEUED = "queued"


# The image columns a shown trial reads, per image (``a_file`` ... ``r_display_file``).
SHOWN_COLUMNS = ("file", "width", "height", "display_file")


@dataclass(frozen=True)
class ShownImage:
    file: str
    width: int
    height: int
    # The PNG shown instead when browsers cannot show ``file``'s format, else "".
    display_file: str = ""


@dataclass(frozen=True)
class PairImages:
    a: ShownImage
    b: ShownImage
    reference: ShownImage | None

    @classmethod
    def from_columns(cls, column: Callable[[str], Any]) -> "PairImages":
        """From columns ``a_file``, ``a_width``, ``a_height``, ``a_display_file`` ...
        ``r_display_file`` (``r_file`` empty: none)."""

        def image(key: str) -> ShownImage:
            return ShownImage(*(column(f"{key}_{c}") for c in SHOWN_COLUMNS))

        return cls(a=image("a"), b=image("b"), reference=image("r") if column("r_file") else None)


@dataclass(frozen=True)
class IssuedTrial:
    trial_id: uuid.UUID
    practice: bool
    left: ShownImage
    right: ShownImage
    reference: ShownImage | None
    lease_expires_at: datetime
    progress: Progress
    # With ``trial_next(ahead=True)``: the trial issued after this one, if any.
    next: "IssuedTrial | None" = None

    @classmethod
    def shown(
        cls,
        *,
        trial_id: uuid.UUID,
        kind: str,
        a_on_left: bool,
        images: PairImages,
        lease_expires_at: datetime,
        progress: Progress,
    ) -> "IssuedTrial":
        return cls(
            trial_id=trial_id,
            practice=kind == Trial.Kind.PRACTICE,
            left=images.a if a_on_left else images.b,
            right=images.b if a_on_left else images.a,
            reference=images.reference,
            lease_expires_at=lease_expires_at,
            progress=progress,
        )


@dataclass(frozen=True)
class HeldTrial:
    """The session's open or queued trial, as next-trial reads it."""

    trial_id: uuid.UUID
    kind: str
    lease_expires_at: datetime
    released: bool

    def holds(self, now: datetime, *, pilot: bool = False) -> bool:
        """Whether it may still be shown: practice and gold trials hold no pair and never
        expire; a counted one holds while its lease is live (rule 5). A pilot session's
        label trials are issued released (they never hold a pair's count): theirs hold
        until the lease's time is up."""
        if self.kind != Trial.Kind.LABEL:
            return True
        return self.lease_expires_at > now and (pilot or not self.released)


@dataclass(frozen=True)
class SessionSnapshot:
    """A session and its study's settings, as the general path of next-trial reads them."""

    session_id: int
    study_id: int
    study_status: str
    completed_at: datetime | None
    n_issued: int
    n_done: int
    n_practice_done: int
    practice_trials: int
    quota: int
    gold_rate: float
    lease_seconds: int
    hold_seconds: int
    open: HeldTrial | None
    queued: HeldTrial | None
    pilot: bool = False
    study_archived: bool = False
    policy: str = "uniform"  # the study's sampling policy (``Study.policy``)
    sampling_every: int = 10

    @property
    def takes_trials(self) -> bool:
        """Whether the study gives this session trials: a live study; a draft too for a
        researcher's pilot session (preview); never an archived study."""
        if self.study_archived:
            return False
        return self.study_status == Study.Status.LIVE or (
            self.pilot and self.study_status == Study.Status.DRAFT
        )

    def progress(self) -> Progress:
        return Progress.of(
            n_done=self.n_done, n_practice_done=self.n_practice_done,
            practice_trials=self.practice_trials, quota=self.quota,
        )  # fmt: skip

    def after_open_answered(self) -> "SessionSnapshot":
        """The session as it will be once its open trial is answered (rule 10)."""
        counted = self.open is not None and self.open.kind != Trial.Kind.PRACTICE
        return replace(
            self,
            n_done=self.n_done + int(counted),
            n_practice_done=self.n_practice_done + int(not counted),
            open=self.queued,
            queued=None,
        )


@dataclass(frozen=True)
class NextParams:
    token: str
    now: datetime
    gold_draw: float


@dataclass(frozen=True)
class NextRow:
    """``next_trial.sql``'s row; ``trial_id`` is ``None`` when the general path decides."""

    session_id: int
    open_trial_id: uuid.UUID | None
    n_done: int
    n_practice_done: int
    practice_trials: int
    quota: int
    claim_tried: bool
    trial_id: uuid.UUID | None
    open_kind: str | None
    a_on_left: bool | None
    open_expires: datetime | None
    a_file: str | None
    a_width: int | None
    a_height: int | None
    b_file: str | None
    b_width: int | None
    b_height: int | None
    r_file: str | None
    r_width: int | None
    r_height: int | None
    a_display_file: str | None
    b_display_file: str | None
    r_display_file: str | None

    def issued_trial(self) -> IssuedTrial:
        return IssuedTrial.shown(
            trial_id=self.trial_id,
            kind=self.open_kind,
            a_on_left=self.a_on_left,
            images=PairImages.from_columns(partial(getattr, self)),
            lease_expires_at=self.open_expires,
            progress=Progress.of(
                n_done=self.n_done,
                n_practice_done=self.n_practice_done,
                practice_trials=self.practice_trials,
                quota=self.quota,
            ),
        )


@dataclass(frozen=True)
class SweepParams:
    now: datetime


@dataclass(frozen=True)
class SweepRow:
    released: int | None  # NULL when nothing expired


@dataclass(frozen=True)
class IssueParams:
    """A trial about to be issued (the general path)."""

    trial_id: uuid.UUID
    session_id: int
    study_id: int
    ordinal: int
    a_on_left: bool
    now: datetime
    expires: datetime
    slot: Slot
    hold_seconds: int
    policy: str = "uniform"
