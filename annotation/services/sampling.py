"""How a study spends its votes: every pair its ``votes_per_pair`` (uniform), a ref-vs-test
pair no more once its majority label is decided (``stop_when_decided``, rule 15 in
``assignment.py``), or a scaled design's votes where they tell most (``sampling=active``,
rule 16).

Both act through each pair's ``target_votes``, the number the claim compares
``n_assigned`` with (``next_trial.sql``'s ``n_assigned < target_votes``, lowest
``n_assigned`` first): next-trial stays one statement with ``SKIP LOCKED``, and every
assignment rule holds as it is on both paths.

- **Stop when decided.** A counted vote that leaves the leading answer ahead of the
  runner-up by more than the votes still due (``aggregation.decided``) sets the pair's
  target to its counted votes and ``decided_at`` (``vote.sql``; ``pair_decide`` on the
  ORM path). Leases already out are honoured: their votes are stored and counted, past
  the new target. Every label equals the one the full collection would give.
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
  session.
"""

import heapq
import logging
from collections import Counter
from datetime import datetime

from celery import current_app
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Sum
from django.db.models.functions import Greatest
from kombu.exceptions import OperationalError

from annotation.aggregation import decided
from annotation.models import Pair, Scene, Study, Trial, Vote
from annotation.study_settings import Sampling

logger = logging.getLogger(__name__)

PLAN_TASK = "analysis.sampling_plan"
COUNTER_KEY = "iqa:sampling-votes:{scene_id}"


def counted_votes() -> Q:
    """The votes that count toward a pair's target (a label vote, not too fast, not a
    pilot's), as a condition on ``Vote``."""
    return Q(kind=Trial.Kind.LABEL, too_fast=False, pilot=False)


def pair_decide(*, pair_id: int, now: datetime) -> bool:
    """``vote.sql``'s decision on the ORM path, inside the vote's transaction and after
    the vote is stored: whether the pair was decided now."""
    pair = Pair.objects.select_for_update().filter(pk=pair_id, decided_at=None).first()
    if pair is None:
        return False
    counts = dict(
        Vote.objects.filter(counted_votes(), pair_id=pair_id)
        .values("preferred")
        .annotate(n=Count("pk"))
        .values_list("preferred", "n")
    )
    n_a, n_similar, n_b = (counts.get(answer, 0) for answer in ("a", "similar", "b"))
    total = n_a + n_similar + n_b
    if total >= pair.target_votes or not decided(n_a, n_similar, n_b, pair.target_votes - total):
        return False
    Pair.objects.filter(pk=pair_id).update(target_votes=total, decided_at=now)
    return True


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
                for pair_id in pairs.values_list("pk", flat=True):
                    pair_decide(pair_id=pair_id, now=now)
    if study.sampling == Sampling.ACTIVE:
        scene_ids = list(Scene.objects.filter(study=study).values_list("pk", flat=True))
        transaction.on_commit(lambda: [plan_request(scene_id=pk) for pk in scene_ids])


def plan_request(*, scene_id: int) -> bool:
    """Queue a plan of the scene (``analysis.sampling_plan``, by name: annotation does
    not import analysis; run in this process when Celery is eager); a broker that does
    not answer is logged, never raised (the beat plans again)."""
    try:
        current_app.signature(PLAN_TASK, args=(scene_id,)).apply_async()
    except (OperationalError, OSError) as exc:
        logger.warning("sampling plan of scene %s not queued: %s", scene_id, exc)
        return False
    return True


def vote_counted(*, scene_id: int, every: int) -> bool:
    """Count a counted vote of an active study's scene; every ``every``-th queues a plan
    (True). The count lives in the Django cache (one for all processes with Redis, one per
    process otherwise: more plans, never fewer); a cache that does not answer skips the
    count (the beat plans anyway)."""
    key = COUNTER_KEY.format(scene_id=scene_id)
    try:
        n = 1 if cache.add(key, 1, timeout=None) else cache.incr(key)
    except Exception:
        logger.warning("cache unreachable for the sampling count", exc_info=True)
        return False
    return n % every == 0 and plan_request(scene_id=scene_id)


def scene_allocation(*, scene_id: int) -> dict[str, int]:
    """A scene's budget and where it stands: ``budget`` (pairs x votes_per_pair),
    ``allocated`` (the votes its targets promise, counted and leased included),
    ``waiting`` (allocated but not yet claimed) and ``pairs``."""
    pairs = Pair.objects.filter(scene_id=scene_id, gold_answer="")
    totals = pairs.aggregate(
        pairs=Count("pk"),
        allocated=Sum(Greatest("target_votes", "n_assigned", output_field=IntegerField())),
        waiting=Sum(Greatest(F("target_votes") - F("n_assigned"), 0, output_field=IntegerField())),
    )
    votes_per_pair = Scene.objects.filter(pk=scene_id).values_list(
        "study__votes_per_pair", flat=True
    )
    per_pair = votes_per_pair.first() or 0
    return {
        "pairs": totals["pairs"],
        "budget": totals["pairs"] * per_pair,
        "allocated": totals["allocated"] or 0,
        "waiting": totals["waiting"] or 0,
    }


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
        # The scene's pairs locked in id order: plans of one scene do not interleave.
        rows = list(
            Pair.objects.select_for_update()
            .filter(scene_id=scene_id, gold_answer="")
            .order_by("pk")
            .values_list("pk", "target_votes", "n_assigned")
        )
        state = scene_allocation(scene_id=scene_id)
        room = min(horizon - state["waiting"], state["budget"] - state["allocated"])
        waiting = {pk: max(target - assigned, 0) for pk, target, assigned in rows if pk in gains}
        chosen = batch_choose(gains, waiting, room)
        for pk, n in Counter(chosen).items():
            Pair.objects.filter(pk=pk).update(
                target_votes=Greatest("target_votes", "n_assigned", output_field=IntegerField()) + n
            )
    return chosen


def starved_topup(*, study_id: int, session_id: int, n: int) -> int:
    """Rule 16's way out of a stall: when a session of an active study finds nothing
    allocated, up to ``n`` pairs it has not seen, in scenes whose budget is not spent and
    with no vote waiting, get one more target (lowest count first); how many did. A plan
    is queued for each scene touched."""
    unseen = ~Exists(Trial.objects.filter(session_id=session_id, pair=OuterRef("pk")))
    topped = []
    with transaction.atomic():
        candidates = list(
            Pair.objects.select_for_update(skip_locked=True)
            .filter(unseen, study_id=study_id, gold_answer="", target_votes__lte=F("n_assigned"))
            .order_by("n_assigned", "rand_key")
            .values_list("pk", "scene_id")
        )
        room: dict[int, int] = {}
        for pk, scene_id in candidates:
            if scene_id not in room:
                state = scene_allocation(scene_id=scene_id)
                room[scene_id] = state["budget"] - state["allocated"]
            if room[scene_id] > 0 and len(topped) < n:
                room[scene_id] -= 1
                topped.append((pk, scene_id))
        Pair.objects.filter(pk__in=[pk for pk, _ in topped]).update(
            target_votes=Greatest("target_votes", "n_assigned", output_field=IntegerField()) + 1
        )
    for scene_id in {scene_id for _, scene_id in topped}:
        plan_request(scene_id=scene_id)
    return len(topped)
