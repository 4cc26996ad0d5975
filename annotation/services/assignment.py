"""Trial assignment: the trial a session gets next, and the leases that hold pairs.

Over 400 lines (a third of them the rules): the rules and the two paths that follow them
belong together. The types these functions exchange are in ``trials.py``.

The rules, each pinned on both paths by the tests named under it (in tests/annotation/;
``impl`` runs a test once on the PostgreSQL statements and once on the portable ORM path):

1. A pair keeps ``n_assigned`` = counted votes + live leases, and is offered while
   ``n_assigned < target_votes``: the lowest ``n_assigned`` first, at random among
   equals (``rand_key`` is redrawn on every claim). No session sees a pair twice.
   - assignment: test_each_pair_reaches_its_target_and_no_session_sees_a_pair_twice
   - assignment: test_assignment_takes_the_pairs_with_the_fewest_votes_and_leases_first
   - api_concurrency: test_fifty_sessions_voting_until_204_give_every_pair_exactly_its_target
2. A session has one open trial until it is answered: asking again returns it (a reload
   neither skips nor duplicates), also when several tabs ask at once.
   - assignment: test_asking_again_before_answering_returns_the_same_trial
   - api_concurrency: test_one_session_asking_from_several_tabs_at_once_gets_one_trial
3. Practice first: the first ``practice_trials`` trials are practice, on gold pairs first
   (their answers are obvious) then any unseen pair; practice holds no lease and is never
   counted. Fewer pairs than practice trials end practice early.
   - assignment: test_practice_comes_first_and_is_never_counted
4. Gold at ``gold_rate``: after practice a trial is gold when the request's one draw
   (``_gold_draw``) is below ``gold_rate``, on an unseen gold pair, uncounted and
   unleased; with no gold pair left it is a counted trial.
   - assignment: test_gold_trials_come_at_the_gold_rate_and_are_not_labels
5. A counted trial leases its pair for ``lease_seconds``. An expired, unanswered lease is
   swept back (``released``, ``n_assigned`` - 1); a reload after the lease expired gets a
   new trial.
   - assignment: test_an_expired_lease_returns_the_pair_to_the_pool
   - assignment: test_a_reload_after_the_lease_expired_gets_a_new_trial
   - assignment: test_the_sweep_releases_expired_unanswered_leases_only
   - tasks_leases_sweep: test_the_beat_task_sweeps_expired_leases
6. The vote undoes the sides the server chose (``a_on_left``, a fair coin per trial):
   preferred = "similar" for similar, else "a" if (choice == "left") == a_on_left, else "b".
   - votes: test_the_vote_records_the_sides_the_server_chose
   - assignment: test_sides_are_balanced_over_1000_trials (the fast path only)
7. An answer after ``lease_expires_at`` is kept and marked late; a late answer on a
   released lease counts again (``n_assigned`` + 1), the one way a pair overshoots.
   - votes: test_an_answer_within_the_lease_is_not_late
   - assignment: test_an_expired_lease_returns_the_pair_to_the_pool
8. A trial takes one answer: a retry with the same choice returns the stored vote,
   another choice conflicts, another session's trial is not found.
   - votes: test_retries_store_one_vote_and_another_choice_conflicts
   - votes: test_a_vote_for_another_sessions_trial_is_not_found
9. A session completes (``outcome``) when its counted answers reach
   ``trials_per_session`` (practice and too-fast answers are not counted: rule 14), when
   the study is no longer live (answers to trials already issued are still kept), or when
   no pair it has not seen lacks counted votes any more: the study is full for it. While
   such pairs remain but every one is held (rule 12), next-trial answers 409
   ``trials_held`` with ``Retry-After`` (when the first hold can lapse) and never
   completes the session.
   - assignment: test_the_quota_completes_the_session
   - assignment: test_a_closed_study_issues_no_new_trials_but_keeps_answers
   - assignment: test_an_expired_lease_returns_the_pair_to_the_pool (no pair left)
   - public_link: test_pairs_held_by_people_answering_make_a_newcomer_wait_not_complete
10. With ``ahead`` the trial after the open one is issued too (queued), never past the
    quota, and a counted one only for a session with a counted answer (a session that has
    answered nothing holds one lease at most). Answering the open trial makes the queued
    one open; if the open one lapses unanswered, the queued one moves up while it holds,
    else it is dropped.
    - assignment: test_ahead_queues_the_next_trial_which_opens_once_the_open_one_is_answered
    - assignment: test_ahead_never_issues_past_the_quota
    - assignment: test_the_queued_trial_moves_up_when_the_open_ones_lease_lapses
    - public_link: test_a_session_without_a_counted_answer_holds_one_lease
11. Claims pass over pairs that other claims hold (``SKIP LOCKED``): annotators never
    wait on each other. When that leaves nothing, next-trial sweeps (rule 5) and claims
    once more, this time waiting for those locks (at most ``CLAIM_LOCK_TIMEOUT_MS``); a
    wait that times out answers 409 ``try_again`` (the client retries), never a
    completion. Nothing sleeps.
    - assignment: test_a_pair_locked_by_another_claim_for_an_instant_does_not_end_the_session
    - assignment: test_the_retry_waits_for_a_pair_locked_a_tenth_of_a_second
    - assignment: test_a_pair_locked_for_longer_than_the_claim_waits_ends_the_wait_not_the_request
12. A lease keeps its pair from others (it *holds*) only while its session shows a person
    at work: its last sign of one (its first trial, or an answer, rule 14) is within the
    study's ``hold_seconds``, and it is shielded (rule 13) or has ``IQA_PROVEN_ANSWERS``
    counted answers. When rule 11's last claim of an open trial finds no pair below its
    target, it claims an unseen pair whose counted votes and holding leases stay below
    the target once the leases that do not hold are set aside, the least assigned first
    (``_pair_past_unheld``). The queued trial never claims so. A set-aside lease answered
    after all is one vote past the target, as a late answer is (rule 7); the claimer's
    own lease holds while it answers, so it is not claimed past in turn: one vote past
    the target at most per set-aside lease that is answered. People who answer at a human
    pace never lose their pairs, so an honest crowd, started together or not, gives every
    pair exactly its target.
    - public_link: test_a_stopped_sessions_lease_does_not_keep_its_pair_from_others
    - public_link: test_leases_of_sessions_answering_keep_their_pairs
    - public_link: test_newcomers_claim_past_a_set_aside_lease_once_not_again_and_again
    - public_link: test_honest_sessions_started_together_give_every_pair_its_target
13. Shields: a session's first trial shields it when fewer than
    ``IQA_SHIELDS_PER_ADDRESS`` sessions of the study from its client address (a keyed
    hash, ``address_key``) started within ``hold_seconds``. Whatever sessions they open,
    scripts from A addresses keep at most A x IQA_SHIELDS_PER_ADDRESS leases (one each:
    rule 10) from people without answering, for ``hold_seconds`` each; to hold more they
    must answer, and their answers are then judged by quality control.
    - public_link: test_only_the_first_sessions_of_an_address_are_shielded
14. An answer sooner than the study's ``min_response_ms`` after its trial was issued
    (the server's clock; ``server_ms`` is stored beside the client's ``response_ms``) is
    kept, marked ``too_fast``, and counts for nothing: not toward the quota, not as a vote
    of its pair (a counted trial's lease is given back at once), not as a sign of a person
    (rule 12), not in labels, scores or quality control.
    - public_link: test_answers_faster_than_min_response_ms_count_for_nothing

15. Stop when decided (a ref-vs-test study's ``stop_when_decided``): a counted vote that
    leaves the pair's leading answer ahead of the runner-up by more than the votes still
    due (``aggregation.decided``) sets the pair's target to its counted votes
    (``decided_at``), so rule 1 offers it no more. Leases out at that moment are honoured
    (their answers count, past the new target, as rule 7's do). Every label is the one the
    full collection gives: the decision is exact, also with concurrent votes (a vote the
    statement does not see is one of those still due).
    - sampling_stop: test_every_vote_sequence_gets_the_same_label_with_and_without_stopping
    - sampling_stop: test_a_pair_whose_first_two_votes_agree_never_issues_a_third_trial
    - sampling_stop: test_a_lease_out_when_the_pair_is_decided_is_honoured_and_its_vote_counted
16. Active sampling (a pairwise study's ``sampling = active``; ``sampling.py``): targets
    start at one and the planner raises them toward the pairs whose next vote tells most,
    within each scene's budget, so rules 1 to 14 apply unchanged. When a session's last
    claim (rule 11) finds nothing while a scene it has pairs unseen in has budget left,
    those pairs get one more target each (``starved_topup``, up to ``sampling_every``) and
    it claims again: a plan that is late never ends or stalls a session.
    - sampling_active: test_plans_spend_the_scene_budget_exactly_and_narrow_its_posterior
    - sampling_active: test_a_session_finding_nothing_allocated_gets_unseen_pairs_not_a_wait

("assignment" is test_services_assignment.py, "votes" test_services_votes.py,
"public_link" test_public_link.py, and so on.)

Two paths. On PostgreSQL next-trial, in the common case (the open trial, or a new
counted trial), and a vote are one statement each (``sql/next_trial.sql``,
``sql/vote.sql``), with ``sql/sweep.sql`` for rule 5: a statement is atomic on its own,
so there are no BEGIN/COMMIT round trips and row locks last one statement (a vote
with its next trial, ``votes.vote_submit_next``, runs the two in one transaction). Everything
else (a session's first trial, practice and gold trials, the queued trial, completion,
rule 12's claim past leases that do not hold) and every step on other
databases (SQLite serialises writers) run through the ORM in transactions. Both paths
take and return the same dataclasses (``trials.py``, ``votes.py``);
``statements.use_fast_path`` chooses (tests force the portable path through it).
Query counts are pinned in test_services_assignment (test_next_trial_queries) and
test_services_votes (test_vote_queries).

The sweep is a service, ``leases_sweep``, run by Celery beat every
``IQA_LEASE_SWEEP_EVERY`` seconds (task ``annotation.leases_sweep``) and by next-trial.
So that next-trial does not add a statement to every request, it sweeps at most once
per ``SWEEP_INTERVAL_S``, throttled through the Django cache (``cache.add`` of one key:
one count for all processes when ``IQA_CACHE_URL`` is Redis, one per process with the
local-memory default; with Redis that is one SET NX per request, no database query);
no module state. Concurrent sweeps skip rather than queue (an advisory lock in
``sweep.sql``). Rule 11 sweeps unthrottled, so an unswept expired lease never ends a
session early.
"""

import logging
import math
import random
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Least

from annotation import clock
from annotation.errors import TrialsHeld, TryAgain
from annotation.models import AnnotatorSession, Pair, Trial
from annotation.services import sampling, statements
from annotation.services.sessions import Progress, session_complete
from annotation.services.trials import (
    SHOWN_COLUMNS,
    HeldTrial,
    IssuedTrial,
    IssueParams,
    NextParams,
    NextRow,
    PairImages,
    SessionSnapshot,
    Slot,
    SweepParams,
    SweepRow,
)
from annotation.study_settings import Policy, study_policy
from core.errors import NotFound

logger = logging.getLogger(__name__)

Outcome = AnnotatorSession.Outcome

SWEEP_INTERVAL_S = 1
SWEEP_THROTTLE_KEY = "annotation:leases-sweep"
CLAIM_LOCK_TIMEOUT_MS = 250
TRIALS_HELD_RETRY_S = 5  # the Retry-After of rule 9's wait, at most
MAX_ROUNDS = 5  # reads of the session state per next-trial request
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout

NEXT_TRIAL = statements.Statement.load("next_trial", NextParams, NextRow)
SWEEP = statements.Statement.load("sweep", SweepParams, SweepRow)


# --- leases (rule 5) -------------------------------------------------------------------


def leases_sweep(*, now: datetime | None = None) -> int:
    """Return the pairs of expired, unanswered counted trials to the pool; how many leases
    were released. Concurrent sweeps skip rather than queue (PostgreSQL)."""
    now = now or clock.now()
    if statements.use_fast_path():
        row = SWEEP.run(SweepParams(now=now))
        return (row.released if row is not None else None) or 0
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
    return len(expired)


def _sweep_if_due() -> None:
    """Sweep unless a sweep started less than ``SWEEP_INTERVAL_S`` ago (see the module's
    docstring: the throttle lives in the Django cache, not in this process). With the
    cache unreachable it sweeps: a cache outage costs a statement, never a request."""
    try:
        due = cache.add(SWEEP_THROTTLE_KEY, True, timeout=SWEEP_INTERVAL_S)
    except Exception:
        logger.warning("cache unreachable for the sweep throttle; sweeping", exc_info=True)
        due = True
    if due:
        leases_sweep()


# --- next trial ------------------------------------------------------------------------


def trial_next(*, token: str, ahead: bool = False, sweep: bool = True) -> IssuedTrial | None:
    """The session's open trial, or a new one; ``None`` when nothing is left (completed).

    A trial stays the session's open trial until it is answered (a reload shows the same
    trial); a counted trial whose lease expired unanswered is replaced by a new one.

    With ``ahead`` the trial after it is issued too (or the one already queued is
    returned) as ``.next``, so that a page can load its images while the annotator looks
    at the open one; answering the open trial makes the queued one open. None is queued
    when the open trial is the last one the quota allows or no pair is free.

    ``sweep`` false skips the throttled sweep (a caller's transaction would hold the
    released pairs' locks until it ends; rule 11's sweep still runs when nothing is free).
    """
    if sweep:
        _sweep_if_due()
    current = _trial_current(token)
    if current is None or not ahead:
        return current
    return replace(current, next=_trial_ahead(token, current))


def _gold_draw() -> float:
    """The request's one draw for rule 4, whichever path issues the trial (a test seam)."""
    return random.random()


def _trial_current(token: str) -> IssuedTrial | None:
    gold_draw = _gold_draw()
    if statements.use_fast_path():
        try:
            row = NEXT_TRIAL.run(NextParams(token=token, now=clock.now(), gold_draw=gold_draw))
        except IntegrityError:
            row = None  # a concurrent request of this session: the general path sorts it out
        if row is not None and row.trial_id is not None:
            return row.issued_trial()
        # Unknown token, practice or gold due, something queued, quota reached, study
        # closed, or no pair free at this instant: the general path decides.
    wait_for_locks = False
    for _ in range(MAX_ROUNDS):
        state = _session_snapshot(token)
        if state is None:
            raise NotFound("unknown session token", field="token")
        if state.completed_at is not None:
            return None
        now = clock.now()
        if state.open is not None and state.open.holds(now, pilot=state.pilot):
            return _held_trial(state.open, state.progress())
        if state.queued is not None:
            # The open trial lapsed (or was answered out of turn): the queued one moves up
            # if it still holds; otherwise it is dropped (the sweep frees its pair).
            promoted = state.queued.trial_id if state.queued.holds(now, pilot=state.pilot) else None
            AnnotatorSession.objects.filter(
                pk=state.session_id, queued_trial_id=state.queued.trial_id
            ).update(open_trial_id=promoted, queued_trial_id=None)
            continue
        if not state.takes_trials:
            session_complete(session_id=state.session_id, outcome=Outcome.CLOSED)
            return None
        if state.n_done >= state.quota:
            session_complete(session_id=state.session_id, outcome=Outcome.QUOTA)
            return None
        try:
            issued = _issue(state, gold_draw, Slot.OPEN, wait_for_locks=wait_for_locks)
        except IntegrityError:
            # Another request of this session issued a trial at the same moment (the
            # ordinal is unique per session); read again and return that one.
            continue
        if issued is not None:
            return issued
        if wait_for_locks:
            if state.policy == Policy.ACTIVE and sampling.starved_topup(
                study_id=state.study_id, session_id=state.session_id, n=state.sampling_every
            ):
                continue  # rule 16: the budget is not spent; claim what was just allocated
            _wait_or_full(state)  # raises TrialsHeld while work may come free
            session_complete(session_id=state.session_id, outcome=Outcome.FULL)
            return None
        # Rule 11: nothing claimable at this instant. Expired leases may be unswept (the
        # throttle), and other claims may hold free pairs for an instant.
        leases_sweep()
        wait_for_locks = True
    raise TryAgain("too many concurrent requests for this session; try again")


def _trial_ahead(token: str, current: IssuedTrial) -> IssuedTrial | None:
    """The queued trial after ``current`` (the open one): the one already queued, or a
    new one if the quota leaves room once ``current`` is answered."""
    state = _session_snapshot(token)
    if (
        state is None
        or state.completed_at is not None
        or not state.takes_trials
        or state.open is None
        or state.open.trial_id != current.trial_id
    ):
        return None
    after = state.after_open_answered()
    if state.queued is not None:
        if state.queued.holds(clock.now(), pilot=state.pilot):
            return _held_trial(state.queued, after.progress())
        AnnotatorSession.objects.filter(
            pk=state.session_id, queued_trial_id=state.queued.trial_id
        ).update(queued_trial_id=None)
    try:
        # Rule 10: a session that has answered nothing counted holds one lease at most.
        return _issue(after, _gold_draw(), Slot.QUEUED, counted=state.n_done >= 1)
    except IntegrityError:
        return None  # another request of this session queued one at the same moment


def _session_snapshot(token: str) -> SessionSnapshot | None:
    row = (
        AnnotatorSession.objects.filter(token=token)
        .values(
            "completed_at",
            "n_issued",
            "n_done",
            "n_practice_done",
            "study_id",
            "open_trial_id",
            "queued_trial_id",
            "pilot",
            session_id=F("id"),
            practice_trials=F("study__practice_trials"),
            quota=F("study__trials_per_session"),
            gold_rate=F("study__gold_rate"),
            lease_seconds=F("study__lease_seconds"),
            hold_seconds=F("study__hold_seconds"),
            study_status=F("study__status"),
            study_archived=ExpressionWrapper(
                Q(study__archived_at__isnull=False), output_field=BooleanField()
            ),
            sampling=F("study__sampling"),
            stop_when_decided=F("study__stop_when_decided"),
            sampling_every=F("study__sampling_every"),
            open_kind=F("open_trial__kind"),
            open_expires=F("open_trial__lease_expires_at"),
            open_released=F("open_trial__released"),
            queued_kind=F("queued_trial__kind"),
            queued_expires=F("queued_trial__lease_expires_at"),
            queued_released=F("queued_trial__released"),
        )
        .first()
    )
    if row is None:
        return None

    def held(slot: str) -> HeldTrial | None:
        trial_id = row.pop(f"{slot}_trial_id")
        kind, expires, released = (row.pop(f"{slot}_{c}") for c in ("kind", "expires", "released"))
        return None if trial_id is None else HeldTrial(trial_id, kind, expires, released)

    open_trial, queued_trial = held("open"), held("queued")
    policy = study_policy(
        sampling=row.pop("sampling"), stop_when_decided=row.pop("stop_when_decided")
    )
    return SessionSnapshot(open=open_trial, queued=queued_trial, policy=policy, **row)


def _held_trial(trial: HeldTrial, progress: Progress) -> IssuedTrial:
    row = (
        Trial.objects.filter(pk=trial.trial_id).values("a_on_left", **_image_values("pair__")).get()
    )
    return IssuedTrial.shown(
        trial_id=trial.trial_id,
        kind=trial.kind,
        a_on_left=row["a_on_left"],
        images=PairImages.from_columns(row.__getitem__),
        lease_expires_at=trial.lease_expires_at,
        progress=progress,
    )


def _image_values(prefix: str) -> dict[str, F]:
    """file, width, height and display file of the pair's a, b and shown reference, as
    ``a_file`` etc. (``trials.SHOWN_COLUMNS``);
    ``prefix`` is the path from the queried model to the pair ("" or "pair__")."""
    fields = {"a": "image_a", "b": "image_b", "r": "shown_reference"}
    return {
        f"{key}_{column}": F(f"{prefix}{field}__{column}")
        for key, field in fields.items()
        for column in SHOWN_COLUMNS
    }


def _pair_images(pair_id: int) -> PairImages:
    row = Pair.objects.filter(pk=pair_id).values(**_image_values("")).get()
    return PairImages.from_columns(row.__getitem__)


# --- issuing (the general path) ----------------------------------------------------------


def _choose_kind(state: SessionSnapshot, gold_draw: float) -> str:
    """Rules 3 and 4 (``next_trial.sql``'s "eligible" declines the same cases)."""
    if state.n_issued < state.practice_trials:
        return Trial.Kind.PRACTICE
    if gold_draw < state.gold_rate:
        return Trial.Kind.GOLD
    return Trial.Kind.LABEL


def _issue(
    state: SessionSnapshot,
    gold_draw: float,
    slot: Slot,
    *,
    wait_for_locks: bool = False,
    counted: bool = True,
) -> IssuedTrial | None:
    """Issue a trial into ``slot``; ``None`` when the quota is reached or no pair is free
    (or, without ``counted``, when the trial due is a counted one)."""
    if state.n_done >= state.quota:
        return None
    kind = _choose_kind(state, gold_draw)
    if not counted and kind == Trial.Kind.LABEL:
        return None
    now = clock.now()
    params = IssueParams(
        trial_id=uuid.uuid4(),
        session_id=state.session_id,
        study_id=state.study_id,
        ordinal=state.n_issued + 1,
        a_on_left=random.random() < 0.5,
        now=now,
        expires=now + timedelta(seconds=state.lease_seconds),
        slot=slot,
        hold_seconds=state.hold_seconds,
        policy=state.policy,
    )
    images = None
    if kind != Trial.Kind.LABEL:
        # Fewer pairs than practice trials end practice early; no gold pair left: a label.
        images = _issue_uncounted(kind, params)
    if images is None and not counted:
        return None
    if images is None:
        kind = Trial.Kind.LABEL
        images = _issue_counted(params, wait_for_locks=wait_for_locks, pilot=state.pilot)
        if images is None:
            return None
    return IssuedTrial.shown(
        trial_id=params.trial_id,
        kind=kind,
        a_on_left=params.a_on_left,
        images=images,
        lease_expires_at=params.expires,
        progress=state.progress(),
    )


def _issue_uncounted(kind: str, params: IssueParams) -> PairImages | None:
    """A practice or gold trial: no lease on the pair, never counted as a label (rules 3, 4).

    Practice prefers gold pairs (their answers are obvious) and then any pair; gold
    takes a gold pair this session has not seen. At random in both cases.
    """
    unseen = ~Exists(Trial.objects.filter(session_id=params.session_id, pair=OuterRef("pk")))
    pairs = Pair.objects.filter(unseen, study_id=params.study_id)
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


def _issue_counted(
    params: IssueParams, *, wait_for_locks: bool = False, pilot: bool = False
) -> PairImages | None:
    """Claim the least-assigned unseen pair below its target and open a trial on it
    (rule 1; ``next_trial.sql`` makes the common claim on PostgreSQL).

    A ``pilot`` session (a researcher's preview) takes the least-assigned unseen pair,
    complete or not, and claims nothing: its trial is issued released (no lease on the
    pair's count, which the sweep, the vote and the pilot data's deletion then leave
    alone), so a preview shows every pair however far the study has got and never keeps
    one from an annotator.

    Pairs other claims hold are skipped, or with ``wait_for_locks`` waited for, at most
    ``CLAIM_LOCK_TIMEOUT_MS`` (rule 11); a wait that times out claims nothing. SQLite
    serialises writers instead (``select_for_update`` is a no-op there). The lock timeout
    is set back once the pair is locked (a caller's transaction goes on without it). That last claim
    of an open trial, finding no pair below its target, claims past the leases that do
    not hold (rule 12). A wait that times out raises ``TryAgain`` (rule 11).
    """
    unseen = ~Exists(Trial.objects.filter(session_id=params.session_id, pair=OuterRef("pk")))
    if pilot:
        pair_id = (
            Pair.objects.filter(unseen, study_id=params.study_id, gold_answer="")
            .order_by("n_assigned", "rand_key")
            .values_list("pk", flat=True)
            .first()
        )
        if pair_id is None:
            return None
        with transaction.atomic():
            _open_trial(params, pair_id, Trial.Kind.LABEL, released=True)
        return _pair_images(pair_id)
    timeout_set = wait_for_locks and connection.vendor == "postgresql"
    try:
        with transaction.atomic():
            if timeout_set:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT current_setting('lock_timeout'), "
                        "set_config('lock_timeout', %s, true)",
                        [f"{CLAIM_LOCK_TIMEOUT_MS}ms"],
                    )
                    (lock_timeout, _) = cursor.fetchone()
            pair_id = (
                Pair.objects.select_for_update(skip_locked=not wait_for_locks)
                .filter(
                    unseen,
                    study_id=params.study_id,
                    gold_answer="",
                    n_assigned__lt=F("target_votes"),
                )
                .order_by("n_assigned", "rand_key")
                .values_list("pk", flat=True)
                .first()
            )
            if pair_id is None and wait_for_locks and params.slot is Slot.OPEN:
                pair_id = _pair_past_unheld(params, unseen)
            if timeout_set:
                # Back to what it was: the claim's locks are taken, and in a caller's
                # transaction (a vote with its next trial) the rest must not run under it.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
            if pair_id is None:
                return None
            Pair.objects.filter(pk=pair_id).update(
                n_assigned=F("n_assigned") + 1, rand_key=random.random()
            )
            _open_trial(params, pair_id, Trial.Kind.LABEL)
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            # Rule 11: another transaction holds the pairs longer than the claim waits. A
            # conflict to retry; the pairs are still there, so never a completion.
            raise TryAgain("the study's pairs are busy for a moment; try again") from error
        raise
    return _pair_images(pair_id)


def _live_leases(now: datetime):
    """Counted trials that still lease their pair (unanswered, not released)."""
    return Trial.objects.filter(
        kind=Trial.Kind.LABEL, answered_at__isnull=True, released=False, lease_expires_at__gt=now
    )


def holds_q(now: datetime, hold_seconds: int, prefix: str = "session__") -> Q:
    """Rule 12: the sessions whose leases hold (a person at work within ``hold_seconds``,
    shielded or proven), as a condition on ``prefix`` (the path to the session)."""
    return Q(**{f"{prefix}active_at__gt": now - timedelta(seconds=hold_seconds)}) & (
        Q(**{f"{prefix}shielded": True})
        | Q(**{f"{prefix}n_done__gte": settings.IQA_PROVEN_ANSWERS})
    )


def _pair_past_unheld(params: IssueParams, unseen: Exists) -> int | None:
    """Rule 12: an unseen pair whose counted votes and holding leases stay below its target
    once the leases that do not hold are set aside; the least assigned first. Pairs other
    claims hold are skipped. Call inside the claim's transaction."""
    unheld = (
        _live_leases(params.now)
        .filter(session__study_id=params.study_id)
        .exclude(holds_q(params.now, params.hold_seconds))
    )
    per_pair = (
        unheld.filter(pair=OuterRef("pk")).order_by().values("pair").annotate(n=Count("pk"))
    ).values("n")
    return (
        Pair.objects.select_for_update(skip_locked=True)
        .filter(unseen, study_id=params.study_id, gold_answer="", pk__in=unheld.values("pair_id"))
        .annotate(n_unheld=Subquery(per_pair, output_field=IntegerField()))
        .filter(n_assigned__lt=F("target_votes") + F("n_unheld"))
        .order_by("n_assigned", "rand_key")
        .values_list("pk", flat=True)
        .first()
    )


def _wait_or_full(state: SessionSnapshot) -> None:
    """Rule 9: raise ``TrialsHeld`` when a pair this session has not seen still lacks
    counted votes (its leases all hold, or it would have been claimed), with the seconds
    until the first of those leases can stop holding; return when there is none (the
    study is full for this session)."""
    now = clock.now()
    unseen = ~Exists(Trial.objects.filter(session_id=state.session_id, pair=OuterRef("pk")))
    leases = (
        Trial.objects.filter(
            pair=OuterRef("pk"), kind=Trial.Kind.LABEL, answered_at__isnull=True, released=False
        )
        .order_by()
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )
    lacking = (
        Pair.objects.filter(unseen, study_id=state.study_id, gold_answer="")
        .annotate(n_leased=Coalesce(Subquery(leases, output_field=IntegerField()), Value(0)))
        .filter(n_assigned__lt=F("target_votes") + F("n_leased"))
    )
    if not lacking.exists():
        return
    hold = timedelta(seconds=state.hold_seconds)
    lapse = (
        _live_leases(now)
        .filter(pair__in=lacking.values("pk"))
        .aggregate(at=Min(Least("lease_expires_at", F("session__active_at") + hold)))["at"]
    )
    wait = min(max(math.ceil((lapse - now).total_seconds()) if lapse else 1, 1), state.hold_seconds)
    # People answer in seconds: ask again soon, not only when the first hold can lapse.
    raise TrialsHeld(
        "every trial left is being answered by other annotators; the first of them can "
        f"come free in {wait} s",
        retry_after=min(wait, TRIALS_HELD_RETRY_S),
    )


def _open_trial(params: IssueParams, pair_id: int, kind: str, *, released: bool = False) -> None:
    """Insert the trial and put it in the session's ``params.slot``; a session's first
    trial starts it (rule 13). Call inside a transaction. ``released``: a label trial
    that holds no lease on its pair's count (a pilot session's)."""
    Trial.objects.create(
        id=params.trial_id,
        session_id=params.session_id,
        pair_id=pair_id,
        kind=kind,
        ordinal=params.ordinal,
        a_on_left=params.a_on_left,
        issued_at=params.now,
        lease_expires_at=params.expires,
        released=released,
        policy=params.policy,
    )
    session = AnnotatorSession.objects.filter(pk=params.session_id)
    if params.ordinal == 1:
        _session_start(params)
    if params.slot is Slot.OPEN:
        session.update(n_issued=F("n_issued") + 1, open_trial_id=params.trial_id)
    else:
        session.update(n_issued=F("n_issued") + 1, queued_trial_id=params.trial_id)


def _session_start(params: IssueParams) -> None:
    """Rule 13: the session's first trial is its first sign of a person, and shields it
    when fewer than ``IQA_SHIELDS_PER_ADDRESS`` sessions of the study from its address
    started within ``hold_seconds`` (a session with no address, opened by a command or a
    test, is shielded). Concurrent first trials from one address may each see the count
    below the limit: the limit holds up to the requests in flight."""
    session = AnnotatorSession.objects.filter(pk=params.session_id)
    key = session.values_list("address_key", flat=True).first() or ""
    shielded = True
    if key:
        since = params.now - timedelta(seconds=params.hold_seconds)
        started = AnnotatorSession.objects.filter(
            study_id=params.study_id, address_key=key, started_at__gt=since
        ).count()
        shielded = started < settings.IQA_SHIELDS_PER_ADDRESS
    session.update(started_at=params.now, active_at=params.now, shielded=shielded)
