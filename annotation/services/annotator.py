"""Annotator sessions, trial assignment and votes.

Assignment keeps one counter per pair, ``n_assigned`` = counted votes + live leases. A
pair is offered while ``n_assigned < target_votes``, fewest first, at random among
equals (``rand_key`` is redrawn on every claim). Issuing a counted trial adds one; a
vote on a live lease converts it (no change); an expired, unanswered lease is swept
back (minus one, ``released``); a late vote on a released lease adds one again, which
is the only way a pair overshoots its target.

On PostgreSQL next-trial (in the common case) and vote are one prepared SQL statement
each (claims use ``FOR UPDATE SKIP LOCKED``, so concurrent annotators never wait on
each other's pair). Everything else (practice and gold trials, the general path of
next-trial) and every step on other databases (SQLite, where the database serialises
writers) run through the ORM in a transaction. Both are tested against the same
invariants.
"""

import json
import random
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from psycopg.rows import dict_row

from annotation import clock
from annotation.errors import Conflict, NotFound, StudyNotOpen
from annotation.models import AnnotatorSession, Pair, Study, Trial, Vote

CHOICES = ("left", "similar", "right")


@dataclass(frozen=True)
class ShownImage:
    file: str
    width: int
    height: int


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


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


@dataclass(frozen=True)
class SessionState:
    session: AnnotatorSession
    created: bool = False


@dataclass(frozen=True)
class VoteResult:
    vote_id: uuid.UUID
    created: bool  # False for a retry that returned the stored vote
    late: bool
    choice: str
    completed: bool
    progress: Progress


def session_progress(session: AnnotatorSession, study: Study) -> Progress:
    done = session.n_practice_done + session.n_done
    if session.completed_at is not None:
        return Progress(done=done, total=done)
    return Progress(done=done, total=study.practice_trials + study.trials_per_session)


def _use_fast_path() -> bool:
    return connection.vendor == "postgresql"


def _statement_scope():
    """A savepoint when called inside a transaction (so a refused statement can be
    recovered from); nothing otherwise, since one statement is atomic by itself."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


# --- sessions -----------------------------------------------------------------------


def session_open(
    *,
    study_slug: str,
    participant_id: str = "",
    source: str = "",
    external_ids: dict | None = None,
    client_info: dict | None = None,
) -> SessionState:
    """Open a session on a live study; the same participant gets their session back."""
    study = Study.objects.filter(slug=study_slug).first()
    if study is None:
        raise NotFound(f"no study with slug {study_slug!r}")
    if participant_id:
        existing = _session_of_participant(study, participant_id)
        if existing is not None:
            return SessionState(session=existing)
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen(f"study {study_slug!r} is {study.status}, not open to annotators")
    try:
        with transaction.atomic():
            session = AnnotatorSession.objects.create(
                study=study,
                participant_id=participant_id,
                source=source,
                external_ids=external_ids or {},
                client_info=client_info or {},
                created_at=clock.now(),
            )
    except IntegrityError:
        # The same participant opened a session at the same moment (two tabs).
        existing = _session_of_participant(study, participant_id) if participant_id else None
        if existing is None:
            raise
        return SessionState(session=existing)
    return SessionState(session=session, created=True)


def _session_of_participant(study: Study, participant_id: str) -> AnnotatorSession | None:
    return (
        AnnotatorSession.objects.select_related("study")
        .filter(study=study, participant_id=participant_id)
        .first()
    )


def session_get(*, token: str) -> AnnotatorSession:
    session = AnnotatorSession.objects.select_related("study").filter(token=token).first()
    if session is None:
        raise NotFound("unknown session token", field="token")
    return session


# --- trials -------------------------------------------------------------------------

_last_sweep = 0.0
SWEEP_INTERVAL_S = 1.0


def leases_sweep(*, force: bool = False) -> int:
    """Return the pairs of expired, unanswered counted trials to the pool.

    Runs at most once a second per process (by the clock seam) unless ``force``;
    concurrent sweepers skip rather than queue (an advisory lock on PostgreSQL).
    Returns how many leases were released.
    """
    global _last_sweep
    now = clock.now()
    # (A clock that went back, as between tests, sweeps at once.)
    if not force and 0 <= now.timestamp() - _last_sweep < SWEEP_INTERVAL_S:
        return 0
    _last_sweep = now.timestamp()
    if _use_fast_path():
        return _run(SQL_SWEEP, {"now": now})["released"] or 0
    with transaction.atomic():
        expired = list(
            Trial.objects.select_for_update()
            .filter(
                kind=Trial.Kind.LABEL,
                answered_at__isnull=True,
                released=False,
                lease_expires_at__lt=now,
            )
            .values_list("pk", "pair_id")
        )
        Trial.objects.filter(pk__in=[trial_id for trial_id, _ in expired]).update(released=True)
        for pair_id, n in Counter(pair_id for _, pair_id in expired).items():
            Pair.objects.filter(pk=pair_id).update(n_assigned=F("n_assigned") - n)
        released = len(expired)
    return released


def trial_next(*, token: str, ahead: bool = False) -> IssuedTrial | None:
    """The session's open trial, or a new one; ``None`` when nothing is left (completed).

    A trial stays the session's open trial until it is answered (a reload shows the same
    trial); a counted trial whose lease expired unanswered is replaced by a new one.

    With ``ahead`` the trial after it is issued too (or the one already queued is
    returned) as ``.next``, so that a page can load its images while the annotator looks
    at the open one; answering the open trial makes the queued one open. None is queued
    when the open trial is the last one the quota allows or no pair is free.
    """
    current = _trial_current(token)
    if current is None or not ahead:
        return current
    return replace(current, next=_trial_ahead(token, current))


def _holds(kind: str, expires: datetime, released: bool) -> bool:
    """Whether an issued, unanswered trial may still be shown: practice and gold trials
    hold no pair and never expire; a counted one holds while its lease is live."""
    return kind != Trial.Kind.LABEL or (expires > clock.now() and not released)


def _trial_current(token: str) -> IssuedTrial | None:
    # One draw per request decides whether a gold trial is due, whichever path issues it.
    gold_draw = _gold_draw()
    if _use_fast_path():
        leases_sweep()
        try:
            row = _run(SQL_NEXT, {"token": token, "now": clock.now(), "gold_draw": gold_draw})
        except IntegrityError:
            row = None  # a concurrent request of this session: the general path sorts it out
        if row is not None and row["trial_id"] is not None:
            return _trial_from_row({**row, "open_trial_id": row["trial_id"]}, row)
        # Unknown token, practice or gold due, quota reached, study closed, or no pair
        # free at this instant: the general path decides.
    for attempt in range(5):
        state = _next_state(token)
        if state is None:
            raise NotFound("unknown session token", field="token")
        if state["completed_at"] is not None:
            return None
        if state["open_trial_id"] is not None and _holds(
            state["open_kind"], state["open_expires"], state["open_released"]
        ):
            return _trial_from_row(state, _open_trial_images(state["open_trial_id"]))
        if state["queued_trial_id"] is not None:
            # The open trial lapsed (or was answered out of turn): the queued one moves up
            # if it still holds; otherwise it is dropped (the sweep frees its pair).
            promote = _holds(
                state["queued_kind"], state["queued_expires"], state["queued_released"]
            )
            AnnotatorSession.objects.filter(
                pk=state["session_id"], queued_trial_id=state["queued_trial_id"]
            ).update(
                open_trial_id=state["queued_trial_id"] if promote else None, queued_trial_id=None
            )
            continue
        if state["study_status"] != Study.Status.LIVE:
            _session_complete(state["session_id"])
            return None
        leases_sweep()
        try:
            issued = _issue(state, gold_draw)
        except IntegrityError:
            # Another request of this session issued a trial at the same moment (the
            # ordinal is unique per session); read again and return that one.
            continue
        if issued is None:
            if attempt < 4 and _pairs_left(state):
                # Every free pair was locked by other annotators' claims at this instant
                # (SKIP LOCKED passed them over); some may stay free once those commit.
                time.sleep(0.025 * (attempt + 1))
                continue
            _session_complete(state["session_id"])
            return None
        return issued
    raise Conflict("too many concurrent requests for this session; try again")


def _trial_ahead(token: str, current: IssuedTrial) -> IssuedTrial | None:
    """The queued trial after ``current`` (the open one): the one already queued, or a
    new one if the quota leaves room once ``current`` is answered."""
    state = _next_state(token)
    if (
        state is None
        or state["completed_at"] is not None
        or state["study_status"] != Study.Status.LIVE
        or state["open_trial_id"] != current.trial_id
    ):
        return None
    # As the session will be once the open trial is answered.
    open_counts = state["open_kind"] != Trial.Kind.PRACTICE
    after = {
        **state,
        "n_done": state["n_done"] + int(open_counts),
        "n_practice_done": state["n_practice_done"] + int(not open_counts),
    }
    queued_id = state["queued_trial_id"]
    if queued_id is not None:
        if _holds(state["queued_kind"], state["queued_expires"], state["queued_released"]):
            queued = {
                **after,
                "open_trial_id": queued_id,
                "open_kind": state["queued_kind"],
                "open_expires": state["queued_expires"],
            }
            return _trial_from_row(queued, _open_trial_images(queued_id))
        AnnotatorSession.objects.filter(pk=state["session_id"], queued_trial_id=queued_id).update(
            queued_trial_id=None
        )
    leases_sweep()
    try:
        return _issue(after, _gold_draw(), queued=True)
    except IntegrityError:
        return None  # another request of this session queued one at the same moment


def _pairs_left(state: dict) -> bool:
    """Whether a pair below its target that this session has not seen exists (no locks)."""
    seen = Trial.objects.filter(session_id=state["session_id"], pair=OuterRef("pk"))
    return (
        Pair.objects.filter(
            ~Exists(seen),
            study_id=state["study_id"],
            gold_answer="",
            n_assigned__lt=F("target_votes"),
        )
        .order_by()
        .exists()
    )


def _next_state(token: str) -> dict | None:
    return (
        AnnotatorSession.objects.filter(token=token)
        .values(
            "completed_at",
            "n_issued",
            "n_done",
            "n_practice_done",
            "open_trial_id",
            "queued_trial_id",
            "study_id",
            session_id=F("id"),
            practice_trials=F("study__practice_trials"),
            quota=F("study__trials_per_session"),
            gold_rate=F("study__gold_rate"),
            lease_seconds=F("study__lease_seconds"),
            study_status=F("study__status"),
            open_kind=F("open_trial__kind"),
            open_expires=F("open_trial__lease_expires_at"),
            open_released=F("open_trial__released"),
            queued_kind=F("queued_trial__kind"),
            queued_expires=F("queued_trial__lease_expires_at"),
            queued_released=F("queued_trial__released"),
        )
        .first()
    )


def _gold_draw() -> float:
    return random.random()


def _choose_kind(state: dict, gold_draw: float) -> str:
    if state["n_issued"] < state["practice_trials"]:
        return Trial.Kind.PRACTICE
    if gold_draw < state["gold_rate"]:
        return Trial.Kind.GOLD
    return Trial.Kind.LABEL


def _issue(state: dict, gold_draw: float, *, queued: bool = False) -> IssuedTrial | None:
    """Issue a trial as the session's open trial, or (``queued``) as the one after it."""
    if state["n_done"] >= state["quota"]:
        return None
    kind = _choose_kind(state, gold_draw)
    now = clock.now()
    params = {
        "trial_id": uuid.uuid4(),
        "session_id": state["session_id"],
        "study_id": state["study_id"],
        "ordinal": state["n_issued"] + 1,
        "a_on_left": random.random() < 0.5,
        "now": now,
        "expires": now + timedelta(seconds=state["lease_seconds"]),
        "slot": "queued_trial_id" if queued else "open_trial_id",
    }
    row = None
    if kind != Trial.Kind.LABEL:
        row = _issue_uncounted(kind, params)
        if row is None and kind == Trial.Kind.PRACTICE:
            # Fewer pairs than practice trials: practice ends early.
            kind = Trial.Kind.LABEL
    if row is None:
        kind = Trial.Kind.LABEL
        row = _issue_counted(params)
        if row is None:
            return None
    images = row
    state_row = {
        "open_trial_id": params["trial_id"],
        "open_kind": kind,
        "open_expires": params["expires"],
        "a_on_left": params["a_on_left"],
        "n_done": state["n_done"],
        "n_practice_done": state["n_practice_done"],
        "practice_trials": state["practice_trials"],
        "quota": state["quota"],
    }
    return _trial_from_row(state_row, images)


def _image_values(prefix: str) -> dict[str, F]:
    """file, width and height of the pair's a, b and shown reference, as ``a_file`` etc.;
    ``prefix`` is the path from the queried model to the pair ("" or "pair__")."""
    fields = {"a": "image_a", "b": "image_b", "r": "shown_reference"}
    return {
        f"{key}_{column}": F(f"{prefix}{field}__{column}")
        for key, field in fields.items()
        for column in ("file", "width", "height")
    }


def _pair_images(pair_id: int) -> dict:
    return Pair.objects.filter(pk=pair_id).values(**_image_values("")).get()


def _open_trial_images(trial_id: uuid.UUID) -> dict:
    return Trial.objects.filter(pk=trial_id).values("a_on_left", **_image_values("pair__")).get()


def _trial_from_row(state: dict, images: dict) -> IssuedTrial:
    a = ShownImage(images["a_file"], images["a_width"], images["a_height"])
    b = ShownImage(images["b_file"], images["b_width"], images["b_height"])
    reference = (
        ShownImage(images["r_file"], images["r_width"], images["r_height"])
        if images["r_file"]
        else None
    )
    a_on_left = images.get("a_on_left", state.get("a_on_left"))
    return IssuedTrial(
        trial_id=state["open_trial_id"],
        practice=state["open_kind"] == Trial.Kind.PRACTICE,
        left=a if a_on_left else b,
        right=b if a_on_left else a,
        reference=reference,
        lease_expires_at=state["open_expires"],
        progress=Progress(
            done=state["n_done"] + state["n_practice_done"],
            total=state["practice_trials"] + state["quota"],
        ),
    )


def _issue_uncounted(kind: str, params: dict) -> dict | None:
    """A practice or gold trial: no lease on the pair, never counted as a label.

    Practice prefers gold pairs (their answers are obvious) and then any pair; gold
    takes a gold pair this session has not seen. At random in both cases.
    """
    unseen = ~Exists(Trial.objects.filter(session_id=params["session_id"], pair=OuterRef("pk")))
    pairs = Pair.objects.filter(unseen, study_id=params["study_id"])
    if kind == Trial.Kind.GOLD:
        pairs = pairs.exclude(gold_answer="").order_by("?")
    else:
        # Gold pairs first ('' sorts last when descending), then any pair.
        pairs = pairs.order_by(F("gold_answer").desc(), "?")
    pair_id = pairs.values_list("pk", flat=True).first()
    if pair_id is None:
        return None
    with transaction.atomic():
        _open_trial(params, pair_id, kind)
    return _pair_images(pair_id)


def _issue_counted(params: dict) -> dict | None:
    """Claim the least-assigned unseen pair below its target and open a trial on it.

    The general path's claim (SQL_NEXT makes the common one on PostgreSQL), through the
    ORM: ``skip_locked`` on PostgreSQL; SQLite serialises writers instead.
    """
    unseen = ~Exists(Trial.objects.filter(session_id=params["session_id"], pair=OuterRef("pk")))
    with transaction.atomic():
        pair_id = (
            Pair.objects.select_for_update(skip_locked=True)
            .filter(
                unseen,
                study_id=params["study_id"],
                gold_answer="",
                n_assigned__lt=F("target_votes"),
            )
            .order_by("n_assigned", "rand_key")
            .values_list("pk", flat=True)
            .first()
        )
        if pair_id is None:
            return None
        Pair.objects.filter(pk=pair_id).update(
            n_assigned=F("n_assigned") + 1, rand_key=random.random()
        )
        _open_trial(params, pair_id, Trial.Kind.LABEL)
    return _pair_images(pair_id)


def _open_trial(params: dict, pair_id: int, kind: str) -> None:
    """Insert the trial and make it the session's open (or queued) trial, as
    ``params["slot"]`` says. Call inside a transaction."""
    Trial.objects.create(
        id=params["trial_id"],
        session_id=params["session_id"],
        pair_id=pair_id,
        kind=kind,
        ordinal=params["ordinal"],
        a_on_left=params["a_on_left"],
        issued_at=params["now"],
        lease_expires_at=params["expires"],
    )
    AnnotatorSession.objects.filter(pk=params["session_id"]).update(
        n_issued=F("n_issued") + 1, **{params["slot"]: params["trial_id"]}
    )


def _run(sql: str, params: dict) -> dict | None:
    """Run one hot-path statement as a server-side prepared statement; its first row.

    psycopg prepares a statement per connection after a few runs, so PostgreSQL plans
    these CTEs once per connection instead of on every request. Errors come out as
    Django's (``IntegrityError``), as from any Django cursor.
    """
    connection.ensure_connection()
    with (
        _statement_scope(),
        connection.wrap_database_errors,
        psycopg.Cursor(connection.connection, row_factory=dict_row) as cursor,
    ):
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def _session_complete(session_id: int) -> None:
    AnnotatorSession.objects.filter(pk=session_id, completed_at__isnull=True).update(
        completed_at=clock.now(), open_trial=None, queued_trial=None
    )


# --- votes --------------------------------------------------------------------------


def vote_submit(
    *,
    token: str,
    trial_id: uuid.UUID,
    choice: str,
    response_ms: int | None = None,
    client_info: dict | None = None,
) -> VoteResult:
    """Store the answer to a trial exactly once.

    A retry with the same choice returns the stored vote (``created`` false); another
    choice raises ``Conflict``; a trial that is not this session's raises ``NotFound``.
    An answer after the lease expired is kept and marked late.
    """
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}")
    params = {
        "token": token,
        "trial_id": trial_id,
        "vote_id": uuid.uuid4(),
        "choice": choice,
        "response_ms": response_ms,
        "client_info": json.dumps(client_info or {}),
        "now": clock.now(),
    }
    row = _vote_insert(params) if _use_fast_path() else _vote_insert_orm(params)
    if row is not None:
        return VoteResult(
            vote_id=row["vote_id"],
            created=True,
            late=row["late"],
            choice=choice,
            completed=row["completed_at"] is not None,
            progress=_progress_of(row),
        )
    return _vote_existing(token=token, trial_id=trial_id, choice=choice)


def _progress_of(row: dict) -> Progress:
    done = row["n_done"] + row["n_practice_done"]
    if row["completed_at"] is not None:
        return Progress(done=done, total=done)
    return Progress(done=done, total=row["practice_trials"] + row["quota"])


def _vote_existing(*, token: str, trial_id: uuid.UUID, choice: str) -> VoteResult:
    """The slow path: a retry, a conflicting answer, or a trial that is not the session's."""
    session = session_get(token=token)
    vote = (
        Vote.objects.filter(trial_id=trial_id, session=session).only("id", "choice", "late").first()
    )
    if vote is None:
        raise NotFound(f"trial {trial_id} was not issued to this session", field="trial_id")
    if vote.choice != choice:
        raise Conflict(
            f"this trial was already answered {vote.choice!r}; a trial takes one answer",
            field="choice",
        )
    return VoteResult(
        vote_id=vote.id,
        created=False,
        late=vote.late,
        choice=vote.choice,
        completed=session.completed_at is not None,
        progress=session_progress(session, session.study),
    )


def _vote_insert(params: dict) -> dict | None:
    return _run(SQL_VOTE, params)


def _vote_insert_orm(params: dict) -> dict | None:
    now = params["now"]
    with transaction.atomic():
        trial = (
            Trial.objects.select_for_update()
            .select_related("session__study")
            .filter(pk=params["trial_id"], session__token=params["token"], answered_at__isnull=True)
            .first()
        )
        if trial is None:
            return None
        session = trial.session
        choice = params["choice"]
        if choice == "similar":
            preferred = "similar"
        else:
            preferred = "a" if (choice == "left") == trial.a_on_left else "b"
        vote = Vote.objects.create(
            id=params["vote_id"],
            trial=trial,
            session=session,
            pair_id=trial.pair_id,
            kind=trial.kind,
            choice=choice,
            preferred=preferred,
            late=trial.lease_expires_at < now,
            response_ms=params["response_ms"],
            client_info=json.loads(params["client_info"]),
            created_at=now,
        )
        Trial.objects.filter(pk=trial.pk).update(answered_at=now)
        if trial.released and trial.kind == Trial.Kind.LABEL:
            Pair.objects.filter(pk=trial.pair_id).update(n_assigned=F("n_assigned") + 1)
        practice = trial.kind == Trial.Kind.PRACTICE
        session.n_practice_done += int(practice)
        session.n_done += int(not practice)
        if session.open_trial_id == trial.pk:
            session.open_trial_id = session.queued_trial_id
            session.queued_trial_id = None
        elif session.queued_trial_id == trial.pk:
            session.queued_trial_id = None
        if not practice and session.n_done >= session.study.trials_per_session:
            session.completed_at = session.completed_at or now
        session.save(
            update_fields=[
                "n_practice_done",
                "n_done",
                "open_trial",
                "queued_trial",
                "completed_at",
            ]
        )
    return {
        "vote_id": vote.id,
        "late": vote.late,
        "n_done": session.n_done,
        "n_practice_done": session.n_practice_done,
        "completed_at": session.completed_at,
        "practice_trials": session.study.practice_trials,
        "quota": session.study.trials_per_session,
    }


# --- PostgreSQL statements ----------------------------------------------------------
# One statement per step: a statement is atomic on its own, so no transaction (and no
# BEGIN/COMMIT round trips) is needed, and row locks are held for one statement only.

SQL_SWEEP = """
WITH expired AS (
    UPDATE annotation_trial SET released = TRUE
    WHERE pg_try_advisory_xact_lock(4242001)
      AND kind = 'label' AND answered_at IS NULL AND NOT released
      AND lease_expires_at < %(now)s::timestamptz
    RETURNING pair_id
), counts AS (
    SELECT pair_id, count(*) AS n FROM expired GROUP BY pair_id
), returned AS (
    UPDATE annotation_pair p SET n_assigned = p.n_assigned - counts.n
    FROM counts WHERE p.id = counts.pair_id
    RETURNING counts.n
)
SELECT sum(n) AS released FROM returned
"""

# The pair to claim: the lowest level (n_assigned) first, at a random place within it.
# Claims walk the assignment index; starting each walk at a random rand_key (rather than
# at the head) spreads the index entries that claims leave dead over the whole level,
# so a walk finds a live pair within a few entries instead of stepping over every pair
# claimed since the last vacuum. "wrap" covers the level from its start (and the levels
# above) when nothing is free after the random point. Scalar subqueries on "eligible"
# (see SQL_NEXT), not joins, keep the index walk ordered and short.
CANDIDATE = """
level AS (
    SELECT p.n_assigned FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
    ORDER BY p.n_assigned LIMIT 1
), after_point AS (
    SELECT p.id FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
      AND p.n_assigned = (SELECT n_assigned FROM level)
      AND p.rand_key >= (SELECT random())
      AND NOT EXISTS (
          SELECT 1 FROM annotation_trial t
          WHERE t.session_id = (SELECT id FROM eligible) AND t.pair_id = p.id
      )
    ORDER BY p.n_assigned, p.rand_key
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
), wrap AS (
    SELECT p.id FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
      AND NOT EXISTS (SELECT 1 FROM after_point)
      AND NOT EXISTS (
          SELECT 1 FROM annotation_trial t
          WHERE t.session_id = (SELECT id FROM eligible) AND t.pair_id = p.id
      )
    ORDER BY p.n_assigned, p.rand_key
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
), candidate AS (
    SELECT id FROM after_point UNION ALL SELECT id FROM wrap
"""

# next-trial in one statement for the common case: the session's open trial if it still
# holds, else (no practice or gold due, quota not reached, study live) a claimed counted
# pair with its new trial. No trial_id comes back when the general path must decide.
SQL_NEXT = (
    """
WITH s AS (
    SELECT s.id, s.study_id, s.completed_at, s.n_issued, s.n_done, s.n_practice_done,
           s.open_trial_id, s.queued_trial_id, st.status, st.practice_trials,
           st.trials_per_session AS quota, st.gold_rate, st.lease_seconds
    FROM annotation_annotatorsession s JOIN annotation_study st ON st.id = s.study_id
    WHERE s.token = %(token)s::text
), open AS (
    SELECT t.id, t.kind, t.a_on_left, t.lease_expires_at, t.pair_id
    FROM annotation_trial t JOIN s ON t.id = s.open_trial_id
    WHERE t.answered_at IS NULL
      AND (t.kind <> 'label' OR (t.lease_expires_at > %(now)s::timestamptz AND NOT t.released))
), eligible AS (
    SELECT s.* FROM s
    WHERE NOT EXISTS (SELECT 1 FROM open) AND s.queued_trial_id IS NULL
      AND s.completed_at IS NULL AND s.status = 'live'
      AND s.n_issued >= s.practice_trials AND s.n_done < s.quota
      AND NOT (%(gold_draw)s::float8 < s.gold_rate)
), """
    + CANDIDATE
    + """), claimed AS (
    UPDATE annotation_pair p SET n_assigned = p.n_assigned + 1, rand_key = random()
    FROM candidate WHERE p.id = candidate.id
    RETURNING p.id
), trial AS (
    INSERT INTO annotation_trial
        (id, session_id, pair_id, kind, ordinal, a_on_left, issued_at, lease_expires_at,
         released)
    SELECT gen_random_uuid(), e.id, claimed.id, 'label', e.n_issued + 1, random() < 0.5,
           %(now)s::timestamptz, %(now)s::timestamptz + e.lease_seconds * interval '1 second', FALSE
    FROM claimed, eligible e
    RETURNING id, kind, a_on_left, lease_expires_at, pair_id
), moved AS (
    UPDATE annotation_annotatorsession s
    SET n_issued = s.n_issued + 1, open_trial_id = trial.id
    FROM trial, eligible e WHERE s.id = e.id
)
SELECT s.id AS session_id, s.open_trial_id, s.n_done, s.n_practice_done,
       s.practice_trials, s.quota,
       EXISTS (SELECT 1 FROM eligible) AS claim_tried,
       coalesce(open.id, trial.id) AS trial_id,
       coalesce(open.kind, trial.kind) AS open_kind,
       coalesce(open.a_on_left, trial.a_on_left) AS a_on_left,
       coalesce(open.lease_expires_at, trial.lease_expires_at) AS open_expires,
       a.file AS a_file, a.width AS a_width, a.height AS a_height,
       b.file AS b_file, b.width AS b_width, b.height AS b_height,
       r.file AS r_file, r.width AS r_width, r.height AS r_height
FROM s
LEFT JOIN open ON TRUE
LEFT JOIN trial ON TRUE
LEFT JOIN annotation_pair p ON p.id = coalesce(open.pair_id, trial.pair_id)
LEFT JOIN annotation_image a ON a.id = p.image_a_id
LEFT JOIN annotation_image b ON b.id = p.image_b_id
LEFT JOIN annotation_image r ON r.id = p.shown_reference_id
"""
)

# Answer a trial: mark it answered (only if it is this session's and unanswered), insert
# the vote with the sides undone, give a released lease's pair its count back, and move
# the session on. No row comes back for a retry, a conflict or a foreign trial.
SQL_VOTE = """
WITH answered AS (
    UPDATE annotation_trial t SET answered_at = %(now)s::timestamptz
    FROM annotation_annotatorsession s
    WHERE t.id = %(trial_id)s::uuid AND t.session_id = s.id AND s.token = %(token)s::text
      AND t.answered_at IS NULL
    RETURNING t.id, t.session_id, t.pair_id, t.kind, t.a_on_left, t.released,
              t.lease_expires_at < %(now)s::timestamptz AS late
), vote AS (
    INSERT INTO annotation_vote
        (id, trial_id, session_id, pair_id, kind, choice, preferred, late, response_ms,
         client_info, created_at)
    SELECT %(vote_id)s::uuid, answered.id, answered.session_id, answered.pair_id, answered.kind,
           %(choice)s::text,
           CASE WHEN %(choice)s::text = 'similar' THEN 'similar'
                WHEN (%(choice)s::text = 'left') = answered.a_on_left THEN 'a' ELSE 'b' END,
           answered.late, %(response_ms)s::integer, %(client_info)s::jsonb, %(now)s::timestamptz
    FROM answered
    RETURNING id, late
), recounted AS (
    UPDATE annotation_pair p SET n_assigned = p.n_assigned + 1
    FROM answered
    WHERE p.id = answered.pair_id AND answered.released AND answered.kind = 'label'
), moved AS (
    UPDATE annotation_annotatorsession s
    SET n_practice_done = s.n_practice_done + (answered.kind = 'practice')::int,
        n_done = s.n_done + (answered.kind <> 'practice')::int,
        open_trial_id = CASE WHEN s.open_trial_id = answered.id THEN s.queued_trial_id
                             ELSE s.open_trial_id END,
        queued_trial_id = CASE WHEN answered.id IN (s.open_trial_id, s.queued_trial_id) THEN NULL
                               ELSE s.queued_trial_id END,
        completed_at = CASE
            WHEN s.completed_at IS NULL AND answered.kind <> 'practice'
                 AND s.n_done + 1 >= st.trials_per_session THEN %(now)s::timestamptz
            ELSE s.completed_at END
    FROM answered, annotation_study st
    WHERE s.id = answered.session_id AND st.id = s.study_id
    RETURNING s.n_done, s.n_practice_done, s.completed_at, st.practice_trials,
              st.trials_per_session AS quota
)
SELECT vote.id AS vote_id, vote.late, moved.* FROM vote, moved
"""
