"""Active sampling (assignment rule 16): targets start at one (every pair a vote first),
plans raise the targets of the most informative pairs within a scene's budget, a
session never waits on a plan, and every assignment rule holds on both paths."""

import random
import time
from collections import Counter

import pytest
from django.db.models import F, Sum
from django.test import override_settings

from analysis import services as analysis_services
from annotation import services
from annotation.errors import TrialsHeld
from annotation.models import Design, Pair, Scene, Trial, Vote
from annotation.services import sampling, study_configure, study_import
from tests.annotation.sessions import open_session, vote_after
from tests.conftest import wait_until
from tests.factories import (
    ImageFactory,
    LiveStudyFactory,
    PairFactory,
    SceneFactory,
    make_pairs,
)
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db
LOCAL_CACHE = "django.core.cache.backends.locmem.LocMemCache"


def active_study(n_pairs: int = 6, votes: int = 4, every: int = 2, scenes: int = 1):
    study = LiveStudyFactory(
        design=Design.PAIRWISE, votes_per_pair=votes, sampling="active", sampling_every=every
    )
    make_pairs(study, n_pairs, votes=1, scenes=scenes)
    return study


def vote_randomly(token: str, trial, rng: random.Random) -> None:
    vote_after(token, trial.trial_id, rng.choice(["left", "similar", "right"]), 900)


def test_an_imported_active_study_starts_every_pair_at_one_vote(tmp_path, media_root):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b", "c"]})
    study = study_import(
        source=source, slug="sr", design="pairwise", votes_per_pair=10, sampling="active"
    ).study
    targets = set(Pair.objects.filter(study=study, gold_answer="").values_list("target_votes"))
    assert targets == {(1,)}
    assert sampling.scene_allocation(scene_id=study.scenes.get().pk)["budget"] == 6 * 10


def test_a_plan_gives_its_batch_by_gain_over_waiting_votes_within_horizon_and_budget():
    study = active_study(n_pairs=4, votes=3, every=1)
    scene = study.scenes.get()
    pairs = [p.pk for p in Pair.objects.filter(scene=scene).order_by("pk")]
    Pair.objects.filter(pk__in=pairs[:3]).update(n_assigned=1)  # voted once; the last waits
    gains = dict(zip(pairs, [0.9, 0.4, 0.1, 0.5], strict=True))
    # One vote waits: horizon 4 leaves room for 3. The last pair's waiting vote halves it.
    assert sampling.scene_allocate(scene_id=scene.pk, gains=gains, horizon=4) == [
        pairs[0],  # 0.9
        pairs[0],  # 0.9 / 2
        pairs[1],  # 0.4 (before 0.9 / 3 and the last pair's 0.5 / 2)
    ]
    targets = dict(Pair.objects.filter(scene=scene).values_list("pk", "target_votes"))
    assert [targets[pk] for pk in pairs] == [3, 2, 1, 1]
    state = sampling.scene_allocation(scene_id=scene.pk)
    assert (state["allocated"], state["waiting"], state["budget"]) == (7, 4, 12)
    assert sampling.scene_allocate(scene_id=scene.pk, gains=gains, horizon=4) == []
    Pair.objects.filter(scene=scene).update(n_assigned=F("target_votes"))  # all answered
    assert len(sampling.scene_allocate(scene_id=scene.pk, gains=gains, horizon=100)) == 5
    state = sampling.scene_allocation(scene_id=scene.pk)
    assert state["allocated"] == state["budget"] == 12  # never past the budget
    assert sampling.scene_allocate(scene_id=scene.pk, gains=gains, horizon=100) == []


def test_plans_spend_the_scene_budget_exactly_and_narrow_its_posterior(impl):
    """A scene of four images, all six pairs, a budget of 36 votes: sessions vote and the
    plans (run here as the worker runs them) spend the budget exactly, every pair voted
    first, each trial recording the policy, and the posterior narrowing as votes come."""
    study = LiveStudyFactory(
        design=Design.PAIRWISE, votes_per_pair=6, sampling="active", sampling_every=3
    )
    scene = SceneFactory(study=study)
    images = [ImageFactory(scene=scene) for _ in range(4)]
    latent = dict(zip([image.pk for image in images], [1.0, 0.8, -0.5, -1.3], strict=True))
    pairs = [
        PairFactory(scene=scene, image_a=a, image_b=b, target_votes=1)
        for k, a in enumerate(images)
        for b in images[k + 1 :]
    ]
    rng = random.Random(3)
    widths = []
    for _ in range(60):
        token = open_session(study)
        while (trial := services.trial_next(token=token)) is not None:
            stored = Trial.objects.select_related("pair").get(pk=trial.trial_id)
            d = latent[stored.pair.image_a_id] - latent[stored.pair.image_b_id]
            a_better = d + rng.gauss(0, 1) > 0
            vote_after(
                token, trial.trial_id, "left" if a_better == stored.a_on_left else "right", 900
            )
            if Vote.objects.filter(pair__study=study).count() >= len(pairs):
                analysis_services.sampling_plan(scene_id=scene.pk)
                widths.append(Scene.objects.get(pk=scene.pk).posterior_sd)
    counted = Counter(Vote.objects.filter(pair__study=study).values_list("pair_id", flat=True))
    assert sum(counted.values()) == 6 * 6  # the budget, spent exactly
    assert all(counted[p.pk] >= 1 for p in pairs)
    assert Trial.objects.filter(pair__study=study, policy="active").count() == 36
    assert widths[-1] < widths[0]


def test_a_session_finding_nothing_allocated_gets_unseen_pairs_not_a_wait(impl):
    """No worker plans: each session tops up pairs it has not seen, so sessions never end
    or wait while the budget lasts, never see a pair twice, and spend it exactly."""
    study = active_study(n_pairs=5, votes=3, every=2, scenes=1)
    rng = random.Random(1)
    sessions_seen = []
    for _ in range(20):
        token = open_session(study)
        seen = []
        while (trial := services.trial_next(token=token)) is not None:
            seen.append(Trial.objects.get(pk=trial.trial_id).pair_id)
            vote_randomly(token, trial, rng)
        sessions_seen.append(seen)
    assert all(len(seen) == len(set(seen)) for seen in sessions_seen)
    totals = Pair.objects.filter(study=study).aggregate(votes=Sum("n_assigned"))
    assert totals["votes"] == Vote.objects.filter(pair__study=study).count() == 15


def test_turning_active_on_and_off_retargets_the_pairs(impl):
    study = LiveStudyFactory(design=Design.PAIRWISE, votes_per_pair=5)
    make_pairs(study, 3, votes=5)
    token = open_session(study)
    vote_randomly(token, services.trial_next(token=token), random.Random(0))
    study_configure(study=study, sampling="active")
    assert sorted(Pair.objects.filter(study=study).values_list("target_votes", flat=True)) == [
        1,
        1,
        1,
    ]
    study_configure(study=study, sampling="uniform")
    assert set(Pair.objects.filter(study=study).values_list("target_votes", flat=True)) == {5}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_votes_queue_a_plan_that_a_real_worker_runs(celery_worker):
    """Every sampling_every counted votes of a scene queue ``analysis.sampling_plan``; a
    real worker plans the scene (its time and uncertainty recorded)."""
    study = active_study(n_pairs=6, votes=5, every=2)
    scene = Scene.objects.get(study=study)
    rng = random.Random(2)
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        token = open_session(study)
        for _ in range(4):  # the plan after the second finds 4 waiting: no room, no fit
            vote_randomly(token, services.trial_next(token=token), rng)
    wait_until(
        lambda: Scene.objects.filter(pk=scene.pk, planned_at__isnull=False).exists(),
        timeout=60,
        what="the worker's plan",
    )
    scene.refresh_from_db()
    assert scene.posterior_sd > 0
    # The plan after the fourth vote: 2 pairs still wait for their first vote, 2 more
    # allocated up to the horizon (2 x sampling_every).
    assert sampling.scene_allocation(scene_id=scene.pk)["waiting"] == 2 * 2


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_does_not_answer_costs_one_request_not_every_one():
    """plan_request logs a broker that refuses, sets the pause flag, and does not ask it
    again while the flag lasts (the beat plans later)."""
    from django.core.cache import cache
    from kombu import pools as kombu_pools

    from config.celery import app

    previous = (app.conf.broker_write_url, app.conf.task_publish_retry)
    app.conf.broker_write_url, app.conf.task_publish_retry = "redis://127.0.0.1:9/0", False
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    cache.delete(sampling.BROKER_DOWN_KEY)
    try:
        assert sampling.plan_request(scene_id=1) is False
        assert cache.get(sampling.BROKER_DOWN_KEY) is True
        started = time.monotonic()
        assert sampling.plan_request(scene_id=1) is False
        assert time.monotonic() - started < 0.5  # the flag answered, not the broker
    finally:
        app.conf.broker_write_url, app.conf.task_publish_retry = previous
        kombu_pools.reset()
        app._pool = None
        app.amqp._producer_pool = None
        cache.delete(sampling.BROKER_DOWN_KEY)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_beat_sweep_queues_plans_of_live_active_scenes_with_budget_left(celery_worker):
    live = active_study(n_pairs=4, votes=3, every=2, scenes=2)  # room: 2 wait of 4
    done = active_study(n_pairs=2, votes=1, every=1)  # budget allocated: targets 1 x 2 pairs
    draft = active_study(n_pairs=2, votes=3, every=1)
    draft.status = "draft"
    draft.save(update_fields=["status"])
    assert analysis_services.sampling_plans_sweep() == 2  # the live study's two scenes
    wait_until(
        lambda: Scene.objects.filter(study=live, planned_at__isnull=False).count() == 2,
        timeout=60,
        what="the worker's plans",
    )
    assert not Scene.objects.filter(study__in=[done, draft], planned_at__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_two_sessions_starving_at_once_both_get_a_trial_within_the_budget(monkeypatch):
    """Session A's top-up is held inside its transaction while session B starves too: B
    waits for A's turn on the scene (no pair is locked, so B is never told the study is
    full), then finds A's allocation (409 trials_held at worst, asked again as the page
    does) and gets a trial; the budget is not passed."""
    import threading

    from django.db import connections

    from annotation.models import AnnotatorSession

    # No vote queues a plan (a worker of the test session would allocate before A starves).
    study = active_study(n_pairs=6, votes=2, every=1000)
    spanning = open_session(study)
    while (trial := services.trial_next(token=spanning)) is not None:
        vote_after(spanning, trial.trial_id, "left", 900)  # every pair's first vote
    a, b = open_session(study), open_session(study)
    paused, go = threading.Event(), threading.Event()
    original = sampling._raise_targets
    holder = {}

    def raise_targets(votes):
        if threading.current_thread() is holder.get("a"):
            paused.set()
            go.wait(30)
        return original(votes)

    monkeypatch.setattr(sampling, "_raise_targets", raise_targets)
    got = {}

    def run(name, token):
        try:
            for _ in range(3):
                try:
                    got[name] = services.trial_next(token=token)
                    return
                except TrialsHeld:  # what A allocated came free meanwhile: ask again
                    continue
        finally:
            connections.close_all()

    holder["a"] = threading.Thread(target=run, args=("a", a))
    holder["a"].start()
    assert paused.wait(30)
    second = threading.Thread(target=run, args=("b", b))
    second.start()
    second.join(1.0)
    assert second.is_alive()  # B waits for A's turn on the scene
    go.set()
    holder["a"].join(30)
    second.join(30)
    assert got["a"] is not None
    assert got["b"] is not None
    assert not AnnotatorSession.objects.filter(token__in=[a, b], outcome="full").exists()
    state = sampling.scene_allocation(scene_id=study.scenes.get().pk)
    assert state["allocated"] <= state["budget"] == 12
