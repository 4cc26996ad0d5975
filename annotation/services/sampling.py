"""How a study spends its votes: every pair its ``votes_per_pair`` (uniform), a ref-vs-test
pair no more once its majority label is decided (``stop_when_decided``, rule 15 in
``assignment.py``), or a scaled design's votes where they tell most (``sampling=active``,
rule 16).

Both act through each pair's ``target_votes``, the number the claim compares
``n_assigned`` with (``next_trial.sql``'s ``n_assigned < target_votes``, lowest
``n_assigned`` first): next-trial stays one statement with ``SKIP LOCKED``, and every
assignment rule holds as it is on both paths.

- **Stop when decided.** A counted vote that leaves the leading answer ahead of the
  runner-up by more than every answer that may still come and count (the target's votes
  not yet given, leases out past it, released trials that may be answered late;
  ``aggregation.decided``) sets the pair's target to its counted votes and ``decided_at``
  (``vote.sql``; ``pairs_decide`` on the ORM path). Leases already out are honoured:
  their votes are stored and counted, past the new target. Every label equals the one
  the full collection would give.
- **Active sampling.** A scene's budget is its pairs x ``votes_per_pair`` votes. Every pair
  starts with a target of one (a spanning first round). The planner
  (``analysis.services.sampling_plan``, a worker task after every ``sampling_every``
  counted votes in a scene and on the beat) raises the targets of the pairs whose next
  vote has the highest expected information gain (``scene_allocate``), never more than
  ``2 x sampling_every`` votes waiting in a scene, never past its budget. A pair's next
  vote is worth its gain divided by one plus its votes already waiting: a batch spreads
  over the top pairs, so that annotators working at once get different pairs. A session
  that finds nothing allocated while a scene it has not finished still has budget gets
  one more target on each of up to ``sampling_every`` pairs it has not seen
  (``starved_topup``): a slow or absent worker costs the design some efficiency, never a
  session. Plans and top-ups of a scene take turns under an advisory lock and read what
  the scene may still allocate after taking it: the budget is never passed.
"""

import heapq
import logging
from collections import Counter
from datetime import datetime

from celery import current_app
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Sum
from django.db.models.functions import Greatest
from kombu.exceptions import OperationalError

from annotation.aggregation import decided
from annotation.models import Pair, Scene, Study, Trial, Vote
from annotation.study_settings import Sampling
from config.cache import cache_count

logger = logging.getLogger(__name__)

PLAN_TASK = "analysis.sampling_plan"
PLAN_LOCK_CLASS = 4242026  # the advisory lock's first key: plans of a scene (its id second)
COUNTER_KEY = "iqa:sampling-votes:{scene_id}"
BROKER_DOWN_KEY = "iqa:sampling-broker-down"
BROKER_PAUSE_S = 30


def counted_votes() -> Q:
    """The votes that count toward a pair's target (a label vote, not too fast, not a
    pilot's), as a condition on ``Vote``."""
    return Q(kind=Trial.Kind.LABEL, too_fast=False, pilot=False)


def _late_possible(pair_ids) -> dict[int, int]:
    """Per pair, its released label trials still unanswered (an annotator's, not a
    pilot's): answers that may yet come late and count (rule 7)."""
    return dict(
        Trial.objects.filter(
            pair_id__in=pair_ids,
            kind=Trial.Kind.LABEL,
            released=True,
            answered_at__isnull=True,
            session__pilot=False,
        )
        .order_by()
        .values("pair_id")
        .annotate(n=Count("pk"))
        .values_list("pair_id", "n")
    )


def pairs_decide(*, pair_ids, now: datetime) -> int:
    """Decide the given pairs that their counted votes decide (rule 15, ``vote.sql``'s
    ``tally`` on the ORM path and after a policy change): the leading answer ahead of the
    runner-up by more than every answer that may still come and count: the target's
    votes not yet given, the leases out past it, and released trials that may be
    answered late. Such a pair's target becomes its counted votes and ``decided_at`` is
    set; how many were decided. One grouped read of the votes, one update per count."""
    pairs = {
        pk: (target, assigned)
        for pk, target, assigned in Pair.objects.filter(pk__in=pair_ids, decided_at=None)
        .order_by()
        .values_list("pk", "target_votes", "n_assigned")
    }
    if not pairs:
        return 0
    counts: dict[int, dict[str, int]] = {}
    for pair_id, preferred, n in (
        Vote.objects.filter(counted_votes(), pair_id__in=list(pairs))
        .order_by()
        .values("pair_id", "preferred")
        .annotate(n=Count("pk"))
        .values_list("pair_id", "preferred", "n")
    ):
        counts.setdefault(pair_id, {})[preferred] = n
    late = _late_possible(list(pairs))
    by_total: dict[int, list[int]] = {}
    for pk, (target, assigned) in pairs.items():
        n_a, n_similar, n_b = (counts.get(pk, {}).get(a, 0) for a in ("a", "similar", "b"))
        total = n_a + n_similar + n_b
        due = max(target, assigned) - total + late.get(pk, 0)
        if total and total < target and decided(n_a, n_similar, n_b, due):
            by_total.setdefault(total, []).append(pk)
    for total, pks in by_total.items():
        Pair.objects.filter(pk__in=pks, decided_at=None).update(target_votes=total, decided_at=now)
    return sum(len(pks) for pks in by_total.values())


def pair_decide(*, pair_id: int, now: datetime) -> bool:
    """``vote.sql``'s decision on the ORM path, inside the vote's transaction and after
    the vote is stored (the pair's row locked first): whether the pair was decided now."""
    locked = (
        Pair.objects.select_for_update(of=("self",))
        .filter(pk=pair_id, decided_at=None)
        .order_by()
        .values_list("pk", flat=True)
    )
    return bool(list(locked)) and pairs_decide(pair_ids=[pair_id], now=now) == 1


def initial_target(study: Study) -> int:
    """A new pair's target: one under active sampling (the spanning round), else
    ``votes_per_pair``."""
    return 1 if study.sampling == Sampling.ACTIVE else study.votes_per_pair


def study_targets_apply(*, study: Study, now: datetime) -> None:
    """Set the targets of the study's pairs for its policy, after the policy changed (a
    study's first targets are set at import, ``initial_target``). Uniform: every pair
    ``votes_per_pair`` again (decisions undone); stop when decided: the pairs that the
    votes already decide are decided; active: each pair's target its counted votes and
    leases (at least one), then a plan of every scene is queued."""
    pairs = Pair.objects.filter(study=study, gold_answer="")
    with transaction.atomic():
        if study.sampling == Sampling.ACTIVE:
            pairs.update(
                target_votes=Greatest(F("n_assigned"), 1, output_field=IntegerField()),
                decided_at=None,
            )
        else:
            pairs.update(target_votes=study.votes_per_pair, decided_at=None)
            if study.stop_when_decided:
                pairs_decide(pair_ids=pairs.values("pk"), now=now)
    if study.sampling == Sampling.ACTIVE:
        scene_ids = list(Scene.objects.filter(study=study).values_list("pk", flat=True))
        transaction.on_commit(lambda: [plan_request(scene_id=pk) for pk in scene_ids])


def plan_request(*, scene_id: int) -> bool:
    """Queue a plan of the scene (``analysis.sampling_plan``, by name: annotation does
    not import analysis; run in this process when Celery is eager). A broker that does
    not answer is logged, never raised, and not asked again for ``BROKER_PAUSE_S`` (a
    flag in the cache), so that an outage slows one request, not every one; the beat
    plans again."""
    try:
        if cache.get(BROKER_DOWN_KEY):
            return False
    except Exception:
        logger.warning("cache unreachable for the broker flag", exc_info=True)
    try:
        current_app.signature(PLAN_TASK, args=(scene_id,)).apply_async()
    except (OperationalError, OSError) as exc:
        logger.warning("sampling plan of scene %s not queued: %s", scene_id, exc)
        try:
            cache.set(BROKER_DOWN_KEY, True, timeout=BROKER_PAUSE_S)
        except Exception:
            logger.warning("cache unreachable for the broker flag", exc_info=True)
        return False
    return True


def vote_counted(*, scene_id: int, every: int) -> bool:
    """Count a counted vote of an active study's scene; every ``every``-th queues a plan
    (True). The count lives in the Django cache: one for all processes with Redis; with
    the per-process default each process counts its own votes, so plans come up to
    processes x ``every`` votes apart (the beat plans in between). A cache that does not
    answer skips the count."""
    try:
        n = cache_count(COUNTER_KEY.format(scene_id=scene_id))
    except Exception:
        logger.warning("cache unreachable for the sampling count", exc_info=True)
        return False
    return n % every == 0 and plan_request(scene_id=scene_id)


def _allocation(rows: list[tuple[int, int, int]], votes_per_pair: int) -> dict[str, int]:
    """Budget and standing of a scene from its pairs' (id, target_votes, n_assigned)."""
    return {
        "pairs": len(rows),
        "budget": len(rows) * votes_per_pair,
        "allocated": sum(max(target, assigned) for _, target, assigned in rows),
        "waiting": sum(max(target - assigned, 0) for _, target, assigned in rows),
    }


def _scene_pairs(scene_id: int) -> tuple[list[tuple[int, int, int]], int]:
    rows = list(
        Pair.objects.filter(scene_id=scene_id, gold_answer="")
        .order_by("pk")
        .values_list("pk", "target_votes", "n_assigned")
    )
    per_pair = (
        Scene.objects.filter(pk=scene_id).values_list("study__votes_per_pair", flat=True).first()
    )
    return rows, per_pair or 0


def scene_allocation(*, scene_id: int) -> dict[str, int]:
    """A scene's budget and where it stands: ``budget`` (pairs x votes_per_pair),
    ``allocated`` (the votes its targets promise, counted and leased included),
    ``waiting`` (allocated but not yet claimed) and ``pairs``."""
    return _allocation(*_scene_pairs(scene_id))


def _scenes_lock(scene_ids) -> None:
    """Inside a transaction: plans and top-ups of these scenes one at a time (PostgreSQL
    advisory locks until the transaction ends, taken in id order so that two callers
    never wait on each other in a circle; other databases serialise writers). What a
    scene may still allocate is read after the lock, so allocations never pass the
    budget. Pairs are not locked: claims go on meanwhile."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for scene_id in sorted(set(scene_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PLAN_LOCK_CLASS, scene_id])


def batch_choose(gains: dict, waiting: dict, room: int) -> list:
    """``room`` votes for a batch, one at a time, each to the pair whose next vote is worth
    most: its gain divided by one plus its votes waiting or already given in this batch
    (``scene_allocate``). Returns one pair per vote, in the order chosen."""
    queue = [(-gains[pk] / (1 + waiting.get(pk, 0)), pk) for pk in gains]
    heapq.heapify(queue)
    given = Counter()
    chosen = []
    while queue and len(chosen) < room:
        _, pk = heapq.heappop(queue)
        chosen.append(pk)
        given[pk] += 1
        heapq.heappush(queue, (-gains[pk] / (1 + waiting.get(pk, 0) + given[pk]), pk))
    return chosen


def scene_allocate(*, scene_id: int, gains: dict[int, float], horizon: int) -> list[int]:
    """Raise the targets of the scene's pairs by the votes of a batch: so that at most
    ``horizon`` votes wait and the allocation stays within the budget, each vote of the
    batch to the pair whose next vote is worth most, the gain (pair id to the expected
    information gain of one more vote) divided by one plus the pair's votes already
    waiting or given in this batch. So a batch spreads over the top pairs (annotators
    working at once get different pairs) and still gives a pair that is worth several
    times the others several votes. Returns the pairs raised, one entry per vote, in the
    order given. A pair past its target (a late answer) starts from its count."""
    with transaction.atomic():
        _scenes_lock([scene_id])
        rows, per_pair = _scene_pairs(scene_id)
        state = _allocation(rows, per_pair)
        room = min(horizon - state["waiting"], state["budget"] - state["allocated"])
        waiting = {pk: max(target - assigned, 0) for pk, target, assigned in rows if pk in gains}
        chosen = batch_choose(gains, waiting, room)
        _raise_targets(Counter(chosen))
    return chosen


def _raise_targets(votes: Counter) -> None:
    """Each pair's target up by its count of votes, from its count if it is past it; one
    statement per distinct count."""
    by_count: dict[int, list[int]] = {}
    for pk, n in votes.items():
        by_count.setdefault(n, []).append(pk)
    for n, pks in by_count.items():
        Pair.objects.filter(pk__in=pks).update(
            target_votes=Greatest("target_votes", "n_assigned", output_field=IntegerField()) + n
        )


def _scene_rooms(where: Q) -> dict[int, int]:
    """Per scene of the pairs ``where`` selects: its budget less what its targets
    allocate (one grouped read)."""
    return {
        scene_id: pairs * per_pair - (allocated or 0)
        for scene_id, per_pair, pairs, allocated in Pair.objects.filter(where, gold_answer="")
        .order_by()
        .values("scene_id", "study__votes_per_pair")
        .annotate(
            pairs=Count("pk"),
            allocated=Sum(Greatest("target_votes", "n_assigned", output_field=IntegerField())),
        )
        .values_list("scene_id", "study__votes_per_pair", "pairs", "allocated")
    }


def starved_topup(*, study_id: int, session_id: int, n: int) -> int:
    """Rule 16's way out of a stall: when a session of an active study finds nothing
    allocated, up to ``n`` pairs it has not seen, with no vote waiting, in scenes whose
    budget is not spent, get one more target (lowest count first); how many did. This
    may leave more than ``2 x sampling_every`` votes waiting in a scene, never more than
    its budget. A plan is queued for each scene touched. No pair is locked: another
    session starving at the same moment sees the same pairs, and raising one twice is
    two votes, each within the budget."""
    open_scenes = [pk for pk, room in _scene_rooms(Q(study_id=study_id)).items() if room > 0]
    if not open_scenes:
        return 0
    unseen = ~Exists(Trial.objects.filter(session_id=session_id, pair=OuterRef("pk")))
    candidates = list(
        Pair.objects.filter(
            unseen, scene_id__in=open_scenes, gold_answer="", target_votes__lte=F("n_assigned")
        )
        .order_by("n_assigned", "rand_key")
        .values_list("pk", "scene_id")[: 4 * n]
    )
    if not candidates:
        return 0
    topped: list[tuple[int, int]] = []
    with transaction.atomic():
        scenes = {scene_id for _, scene_id in candidates}
        _scenes_lock(scenes)
        rooms = _scene_rooms(Q(scene_id__in=scenes))  # read again under the locks
        for pk, scene_id in candidates:
            if rooms.get(scene_id, 0) > 0 and len(topped) < n:
                rooms[scene_id] -= 1
                topped.append((pk, scene_id))
        _raise_targets(Counter(pk for pk, _ in topped))
    for scene_id in {scene_id for _, scene_id in topped}:
        plan_request(scene_id=scene_id)
    return len(topped)
