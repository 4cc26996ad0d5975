"""Stopping when decided (assignment rule 15): a ref-vs-test pair leaves assignment once its
majority label can no longer change with the votes still due, and every label equals the
one the full collection would give."""

import itertools
import random
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from annotation import services
from annotation.aggregation import decided, majority
from annotation.models import Design, Pair, Trial, Vote
from annotation.services import study_configure, study_import
from annotation.study_settings import InvalidSetting, study_settings_validate
from tests.annotation.sessions import open_session, post_vote, vote_after
from tests.factories import LiveStudyFactory, make_pairs
from tests.images import write_scene_folder

ANSWERS = ("a", "similar", "b")


def label_of(votes) -> str:
    counts = [sum(v == answer for v in votes) for answer in ANSWERS]
    return majority(*(np.array([c]) for c in counts))[0]


def stopped(votes, target: int) -> list:
    """The votes collected when assignment stops at the first decided prefix."""
    for n in range(1, target + 1):
        prefix = votes[:n]
        counts = [sum(v == answer for v in prefix) for answer in ANSWERS]
        if n < target and decided(*counts, target - n):
            return prefix
    return votes


@pytest.mark.parametrize("target", range(1, 8))
def test_every_vote_sequence_gets_the_same_label_with_and_without_stopping(target):
    """Exhaustive: all 3^target orders of answers, for targets 1 to 7."""
    for votes in itertools.product(ANSWERS, repeat=target):
        assert label_of(stopped(list(votes), target)) == label_of(votes), votes


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=40))
def test_random_vote_sequences_get_the_same_label_with_and_without_stopping(votes):
    target = len(votes)
    kept = stopped(votes, target)
    assert label_of(kept) == label_of(votes)
    # Stopping is as early as exactness allows: one vote fewer was not yet decided.
    if len(kept) < target:
        before = [sum(v == a for v in kept[:-1]) for a in ANSWERS]
        assert not decided(*before, target - len(kept) + 1)


def test_with_three_votes_two_that_agree_decide_and_two_that_differ_do_not():
    assert all(decided(*counts, 1) for counts in [(2, 0, 0), (0, 2, 0), (0, 0, 2)])
    assert not any(decided(*counts, due) for counts, due in [((1, 1, 0), 1), ((1, 0, 0), 2)])


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def answer_as(api, token: str, preferred: str) -> dict:
    """Ask for the next trial over HTTP and answer it so that ``preferred`` wins."""
    response = api.get(f"/api/v1/sessions/{token}/next-trial")
    assert response.status_code == 200, response.content
    trial = response.json()
    a_on_left = Trial.objects.get(pk=trial["trial_id"]).a_on_left
    choice = {"similar": "similar", "a": "left" if a_on_left else "right"}.get(
        preferred, "right" if a_on_left else "left"
    )
    body = {"trial_id": trial["trial_id"], "choice": choice, "response_ms": 900}
    vote = post_vote(api, token, body)
    assert vote.status_code in (200, 201), vote.content
    return trial


def new_session(api, study) -> str:
    response = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["token"]


@pytest.mark.django_db
def test_a_pair_whose_first_two_votes_agree_never_issues_a_third_trial(impl, api):
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=3, stop_when_decided=True)
    (pair,) = make_pairs(study, 1, votes=3)
    for _ in range(2):
        answer_as(api, new_session(api, study), "a")
    pair.refresh_from_db()
    assert (pair.target_votes, pair.decided_at is not None) == (2, True)
    third = new_session(api, study)
    assert api.get(f"/api/v1/sessions/{third}/next-trial").status_code == 204
    assert Trial.objects.filter(pair=pair, kind="label").count() == 2
    assert Vote.objects.filter(pair=pair).count() == 2


@pytest.mark.django_db
def test_a_pair_whose_first_two_votes_differ_gets_its_third(impl, api):
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=3, stop_when_decided=True)
    (pair,) = make_pairs(study, 1, votes=3)
    answer_as(api, new_session(api, study), "a")
    answer_as(api, new_session(api, study), "similar")
    answer_as(api, new_session(api, study), "similar")
    pair.refresh_from_db()
    assert (pair.target_votes, pair.decided_at) == (3, None)
    assert Vote.objects.filter(pair=pair).count() == 3


@pytest.mark.django_db
def test_without_the_setting_every_pair_gets_its_votes(impl, api):
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=3)
    (pair,) = make_pairs(study, 1, votes=3)
    for _ in range(3):
        answer_as(api, new_session(api, study), "b")
    pair.refresh_from_db()
    assert (pair.target_votes, pair.decided_at) == (3, None)
    assert Vote.objects.filter(pair=pair).count() == 3


@pytest.mark.django_db
def test_a_lease_out_when_the_pair_is_decided_is_honoured_and_its_vote_counted(impl):
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=3, stop_when_decided=True)
    (pair,) = make_pairs(study, 1, votes=3)
    tokens = [open_session(study) for _ in range(3)]
    trials = [services.trial_next(token=token) for token in tokens]  # three leases out
    for token, trial in zip(tokens[:2], trials[:2], strict=True):
        a_on_left = Trial.objects.get(pk=trial.trial_id).a_on_left
        vote_after(token, trial.trial_id, "left" if a_on_left else "right", 900)
    pair.refresh_from_db()
    assert (pair.target_votes, pair.decided_at is not None) == (2, True)
    late = vote_after(tokens[2], trials[2].trial_id, "similar", 900)
    assert (late.created, late.too_fast) == (True, False)
    pair.refresh_from_db()
    assert (pair.n_assigned, pair.target_votes) == (3, 2)  # counted, past the new target
    assert Vote.objects.filter(pair=pair, too_fast=False).count() == 3


@pytest.mark.django_db
def test_random_crowds_through_the_services_give_the_labels_of_the_full_collection(impl):
    """Fifteen pairs, random answers: with stopping every label is the one the same
    answers, all of them, give; and no pair is given a vote after it was decided."""
    rng = random.Random(7)
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=5, stop_when_decided=True)
    pairs = make_pairs(study, 15, votes=5)
    planned = {p.pk: [rng.choice(ANSWERS) for _ in range(5)] for p in pairs}
    for _ in range(5):
        token = open_session(study)
        while (trial := services.trial_next(token=token)) is not None:
            pair_id = Trial.objects.get(pk=trial.trial_id).pair_id
            done = Vote.objects.filter(pair_id=pair_id).count()
            preferred = planned[pair_id][done]
            a_on_left = Trial.objects.get(pk=trial.trial_id).a_on_left
            choice = {"similar": "similar", "a": "left" if a_on_left else "right"}.get(
                preferred, "right" if a_on_left else "left"
            )
            vote_after(token, trial.trial_id, choice, 900)
    for pair in Pair.objects.filter(study=study):
        got = list(
            Vote.objects.filter(pair=pair)
            .order_by("created_at")
            .values_list("preferred", flat=True)
        )
        assert got == planned[pair.pk][: len(got)]
        assert label_of(got) == label_of(planned[pair.pk])
        assert len(got) == len(stopped(planned[pair.pk], 5))


@pytest.mark.django_db
def test_turning_it_off_restores_the_targets_and_on_decides_what_the_votes_decide(impl):
    study = LiveStudyFactory(design=Design.REF_VS_TEST, votes_per_pair=3, stop_when_decided=True)
    pairs = make_pairs(study, 2, votes=3)
    for answers in (["a", "a"], ["a", "b"]):  # the first pair answered a twice, the other not
        token = open_session(study)
        for preferred in answers:
            trial = services.trial_next(token=token)
            a_on_left = Trial.objects.get(pk=trial.trial_id).a_on_left
            choice = "left" if a_on_left == (preferred == "a") else "right"
            vote_after(token, trial.trial_id, choice, 900)
    decided_now = Pair.objects.filter(study=study, decided_at__isnull=False)
    decided_pairs = set(decided_now.values_list("pk", flat=True))
    assert decided_pairs
    study_configure(study=study, stop_when_decided=False)
    assert list(Pair.objects.filter(study=study).values_list("target_votes", "decided_at")) == [
        (3, None),
        (3, None),
    ]
    study_configure(study=study, stop_when_decided=True)
    again = set(decided_now.values_list("pk", flat=True))
    assert again == decided_pairs
    assert len(pairs) == 2


def test_a_new_ref_vs_test_study_stops_when_decided_and_a_pairwise_one_does_not():
    assert study_settings_validate({"slug": "r", "design": "ref-vs-test"}, partial=False)[
        "stop_when_decided"
    ]
    assert not study_settings_validate({"slug": "p", "design": "pairwise"}, partial=False)[
        "stop_when_decided"
    ]
    with pytest.raises(InvalidSetting, match="stop_when_decided applies to ref-vs-test"):
        study_settings_validate(
            {"slug": "p", "design": "pairwise", "stop_when_decided": True}, partial=False
        )
    with pytest.raises(InvalidSetting, match="sampling=active applies to the pairwise"):
        study_settings_validate(
            {"slug": "r", "design": "ref-vs-test", "sampling": "active"}, partial=False
        )


@pytest.mark.django_db
def test_a_running_study_refuses_a_policy_its_design_cannot_use():
    study = LiveStudyFactory(design=Design.PAIRWISE)
    with pytest.raises(InvalidSetting, match="stop_when_decided applies to ref-vs-test"):
        study_configure(study=study, stop_when_decided=True)
    study.refresh_from_db()
    assert not study.stop_when_decided


@pytest.mark.django_db
def test_an_imported_ref_vs_test_study_stops_when_decided(tmp_path, media_root):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]})
    study = study_import(source=source, slug="diffiqa", design="ref-vs-test").study
    assert (study.stop_when_decided, study.sampling) == (True, "uniform")


@pytest.mark.django_db
def test_a_lease_that_may_still_be_answered_late_keeps_the_pair_open(impl, clock):
    """A released lease can be answered late and count (rule 7), so it is one of the
    votes that may still come: two votes that agree do not decide a pair of three votes
    while it is out. Otherwise a late "b" after "a", "a" would give the label "a" where
    the full collection ("a", "a", "b" and the re-issued trial's "b") gives none."""
    study = LiveStudyFactory(
        design=Design.REF_VS_TEST, votes_per_pair=3, stop_when_decided=True, lease_seconds=600
    )
    (pair,) = make_pairs(study, 1, votes=3)
    late_token = open_session(study)
    late_trial = services.trial_next(token=late_token)
    clock.advance(timedelta(seconds=601))
    services.leases_sweep()
    for _ in range(2):
        token = open_session(study)
        trial = services.trial_next(token=token)
        a_on_left = Trial.objects.get(pk=trial.trial_id).a_on_left
        vote_after(token, trial.trial_id, "left" if a_on_left else "right", 900)
    pair.refresh_from_db()
    assert (pair.target_votes, pair.decided_at) == (3, None)
    services.vote_submit(token=late_token, trial_id=late_trial.trial_id, choice="similar")
    pair.refresh_from_db()
    assert pair.decided_at is None  # a, a, similar with one vote due: not decided
