"""The live report's kept counts (``analysis/live.py``) equal a full regroup of the votes
after random sequences of votes (label, gold, practice; late ones; untimed ones), retries
of an answered trial, votes committed between the counters' read and the votes' read,
sessions that are deleted, and exclusions by hand; and the live snapshot's numbers equal
``agreement_report``'s on the same data (its scene fits to 1e-6), the exact snapshot
following once the votes stop."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model

from analysis import live
from analysis.models import AgreementSceneImages, AgreementSnapshot
from analysis.quality import annotator_quality
from analysis.render import report_dict
from analysis.report import study_report
from analysis.selectors import study_data, study_rules, study_votes
from analysis.services import SAMPLES, SEED, agreement_snapshot_refresh
from analysis.snapshot_selectors import session_counters, session_votes
from analysis.tally import counted_votes, pair_labels
from annotation.models import AnnotatorSession, Study, Vote
from annotation.services import annotator_exclusion_decide
from tests.analysis.live_votes import open_sessions, retry, votes_now
from tests.factories import LiveStudyFactory, make_gold_pair, make_pairs

pytestmark = pytest.mark.django_db

SEQUENCES = 12
STEPS = 6


def _full_counts(study: Study, state: live.LiveState) -> tuple[np.ndarray, np.ndarray]:
    """The per-pair counts regrouped from all votes: those whose kind fits the pair (every
    annotator) and the label votes."""
    votes = study_votes(study)
    data = study_data(study)
    fits = counted_votes(votes, data.pairs, set())
    labels = votes[votes["kind"] == "label"]
    ids = pd.Series(state.pair_ids)

    def grouped(frame):
        counts = pair_labels(frame, pd.DataFrame({"pair_id": ids, "gold_answer": ""}))
        return counts[["n_a", "n_similar", "n_b"]].to_numpy()

    return grouped(fits), grouped(labels)


def test_kept_counts_equal_a_full_regroup_after_random_sequences():
    """Seeded random sequences of votes, retries, votes committed between the two reads of
    a refresh, deleted sessions and exclusions: after every refresh the kept per-pair and
    per-annotator counts, the quality table and the counted labels equal those regrouped
    from all votes."""
    staff = get_user_model().objects.create_user("ada", is_staff=True)
    for sequence in range(SEQUENCES):
        rng = np.random.default_rng(sequence)
        study = LiveStudyFactory(slug=f"live-{sequence}")
        pairs = make_pairs(study, 12, scenes=3) + [make_gold_pair(study) for _ in range(2)]
        open_sessions(study, int(rng.integers(3, 7)))
        data = study_data(study)
        rules = dataclasses.replace(study_rules(study), min_answers=2, min_gold=1)
        state = live.state_new(data.pairs, rules)
        for step in range(STEPS):
            votes_now(study, rng, pairs, int(rng.integers(0, 12)))
            if rng.random() < 0.3:
                retry(AnnotatorSession.objects.filter(study=study).order_by("?").first())
            if step == STEPS - 2 and rng.random() < 0.5:
                AnnotatorSession.objects.filter(study=study).order_by("?").first().delete()
            counters = session_counters(study=study)
            if rng.random() < 0.4:  # votes committed after the counters were read
                votes_now(study, rng, pairs, int(rng.integers(1, 4)))
            changed = live.changed_sessions(state, counters)
            state = live.state_apply(
                state, counters, session_votes(study=study, session_ids=changed)
            )
            # Every session's votes read cover its counter as read.
            seen = pd.Series(state.seen, index=state.session_ids)
            read = counters.set_index("session_id")["answered"]
            assert (seen.reindex(read.index).fillna(0) >= read).all()
            state = live.state_load(live.state_dump(state))  # as stored between refreshes
            # The next refresh (nothing written between its reads) catches up exactly.
            counters = session_counters(study=study)
            changed = live.changed_sessions(state, counters)
            state = live.state_apply(
                state, counters, session_votes(study=study, session_ids=changed)
            )

            fits, labels = _full_counts(study, state)
            assert np.array_equal(state.fit_counts, fits), (sequence, step)
            assert np.array_equal(state.label_counts, labels), (sequence, step)
            expected = annotator_quality(study_votes(study), rules)
            pd.testing.assert_frame_equal(live.annotator_quality(state, rules), expected)

            if rng.random() < 0.5 and len(expected):
                who = str(expected["annotator"].iloc[int(rng.integers(len(expected)))])
                hand = bool(rng.random() < 0.7)
                annotator_exclusion_decide(
                    study=study, annotator=who, reason="test", excluded=hand, user=staff
                )
            data = study_data(study)
            report = study_report(data, samples=1, seed=0)
            excluded = set(report.excluded["annotator"])
            kept = live.labels(state, live.counted_counts(state, excluded))
            full = report.pairs.sort_values("pair_id").reset_index(drop=True)
            pd.testing.assert_frame_equal(kept, full, check_dtype=False)
        # The final refresh sees every vote: a session's votes read equal its counter.
        counters = session_counters(study=study)
        state = live.state_apply(
            state, counters,
            session_votes(study=study, session_ids=live.changed_sessions(state, counters)),
        )  # fmt: skip
        assert len(live.changed_sessions(state, session_counters(study=study))) == 0
        assert state.votes == Vote.objects.filter(session__study=study).count()


def test_live_snapshot_matches_the_report_then_the_exact_one_follows():
    """A live refresh after new votes gives agreement_report's numbers for the same data
    (labels, counts, agreement point estimates exactly; the warm-started scene fits to
    1e-6) and refits only the scenes whose counts moved; a refresh with nothing new then
    stores the exact report, equal to agreement_report's JSON."""
    study = LiveStudyFactory(slug="live-report")
    pairs = make_pairs(study, 24, scenes=4)
    rng = np.random.default_rng(3)
    open_sessions(study, 8)
    votes_now(study, rng, pairs, 80)
    first = agreement_snapshot_refresh(study=study)
    assert first.exact  # the first snapshot is computed exactly
    first = agreement_snapshot_refresh(study=study, mode="live")  # seeds the kept fits
    scene = pairs[0].scene
    votes_now(study, rng, [p for p in pairs if p.scene_id == scene.pk], 6)

    snapshot = agreement_snapshot_refresh(study=study)
    assert not snapshot.exact
    assert snapshot.report["live"]["refitted_scenes"] == 1
    expected = report_dict(study_report(study_data(study), samples=SAMPLES, seed=SEED,
                                        image_intervals=False))  # fmt: skip
    assert snapshot.report["counts"] == expected["counts"]
    assert snapshot.report["exclusions"] == expected["exclusions"]
    points = ["metric", "subset", "delta", "n_pairs", "accuracy", "n_2afc", "accuracy_2afc"]
    live_rows = [{k: r[k] for k in points} for r in snapshot.report["agreement"]]
    assert live_rows == [{k: r[k] for k in points} for r in expected["agreement"]]

    exact = agreement_snapshot_refresh(study=study)  # nothing moved: the exact one
    assert exact.exact
    assert {key: exact.report[key] for key in expected} == expected
    assert exact.report["live"]["exact"] is True
    again = AgreementSnapshot.objects.get(pk=exact.pk)
    assert agreement_snapshot_refresh(study=study).computed_at == again.computed_at


def test_live_fits_equal_cold_fits():
    """The warm-started fits of the moved scenes equal the report's cold fits to 1e-6."""
    study = LiveStudyFactory(slug="live-fits")
    pairs = make_pairs(study, 24, scenes=4)
    rng = np.random.default_rng(4)
    open_sessions(study, 6, prefix="q")
    votes_now(study, rng, pairs, 60)
    agreement_snapshot_refresh(study=study, mode="live")
    votes_now(study, rng, pairs, 30)
    snapshot = agreement_snapshot_refresh(study=study, mode="live")
    report = study_report(study_data(study), samples=1, seed=0, image_intervals=False)
    cold = report.image_scores.set_index("image")
    blocks = AgreementSceneImages.objects.filter(snapshot=snapshot)
    images = [image for block in blocks for image in json.loads(block.images_json)]
    assert len(images) == len(cold)
    for image in images:
        assert image["thurstone"] == pytest.approx(cold.at[image["image"], "thurstone"], abs=1e-6)
        assert image["bradley_terry"] == pytest.approx(
            cold.at[image["image"], "bradley_terry"], abs=1e-6
        )
