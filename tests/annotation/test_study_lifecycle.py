"""A study's life past its import: pilot data kept apart, scenes added to a running study,
archive and restore, and deletion that never touches another study's files."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from analysis import tasks as agreement_tasks
from analysis.annotators import annotator_table_get
from analysis.browse import pair_table
from analysis.selectors import study_data
from annotation import clock, services
from annotation.errors import StudyArchived, StudyImportError, StudyNotOpen
from annotation.models import AnnotatorSession, Image, Pair, Study, Trial, Vote
from annotation.selectors import (
    pilot_summary,
    study_median_response_ms,
    study_progress_get,
    study_session_counts,
    study_votes_per_hour,
)
from core.errors import Conflict, DomainError, NotFound
from dataset.export import sessions_frame, votes_frame
from scoring.models import Score
from tests.annotation.sessions import open_session, run_session, vote_after
from tests.images import write_scene_folder
from workspace.services import study_remove

pytestmark = pytest.mark.django_db

STEMS = ["reference", "a", "b"]  # ref-vs-test: two pairs per scene


def imported(tmp_path: Path, slug: str, scenes=("s1", "s2"), *, live=True, seed=0) -> Study:
    source = write_scene_folder(tmp_path / slug, {s: STEMS for s in scenes}, seed=seed)
    return services.study_import(
        source=source,
        slug=slug,
        design="ref-vs-test",
        live=live,
        trials_per_session=4,
        practice_trials=0,
        votes_per_pair=2,
    ).study


def pilot_token(study: Study) -> str:
    user = get_user_model().objects.get_or_create(username="ada")[0]
    return services.pilot_session_open(study=study, user=user).token


def answer_all(token: str, choice: str = "left") -> int:
    n = 0
    while (trial := services.trial_next(token=token)) is not None:
        vote_after(token, trial.trial_id, choice, 900)
        n += 1
    return n


# --- pilot data -------------------------------------------------------------------------


def test_pilot_answers_are_stored_marked_and_count_nowhere(tmp_path):
    study = imported(tmp_path, "pilot")
    answered = answer_all(pilot_token(study))
    assert answered == 4
    assert Vote.objects.filter(pair__study=study, pilot=True).count() == 4
    # No pair's target taken: every lease a pilot answered was given back.
    assert set(Pair.objects.filter(study=study).values_list("n_assigned", flat=True)) == {0}
    counts = study_progress_get(slug=study.slug)
    assert counts.n_counted_votes == 0
    assert counts.n_sessions == 0
    session = AnnotatorSession.objects.get(study=study, pilot=True)
    assert session.completed_at is not None
    assert services.session_code_earned(session, study) is False  # a preview earns no code
    assert pilot_summary(study=study)["votes"] == 4

    # An annotator then gets every pair, its target whole.
    annotator = open_session(study, "p1")
    assert len(run_session(annotator)) == 4
    assert study_progress_get(slug=study.slug).n_counted_votes == 4


@pytest.mark.django_db(transaction=True)
def test_pilot_votes_move_no_number_of_the_report_qc_or_dashboard(tmp_path):
    """Every reader of votes gives the same with and without pilot votes: the report's
    votes (exact and compact), the live snapshot, the quality-control table, the
    dashboard's counts, and the data browser's table."""
    study = imported(tmp_path, "pilot-readers")
    run_session(open_session(study, "p1"))
    run_session(open_session(study, "p2"))

    def readings():
        cache.clear()  # computed afresh, not read from a cache keyed without pilot votes
        data = study_data(study)
        compact = study_data(study, compact_votes=True)
        table = annotator_table_get(study=study)
        browse = pair_table(study=study).pairs
        return {
            "votes": len(data.votes),
            "compact": len(compact.votes),
            "snapshot": agreement_tasks.agreement_snapshot_refresh(study.pk, "counted"),
            "qc": table.rows,
            "sessions": study_session_counts(study=study),
            "per_hour": study_votes_per_hour(study=study),
            "median": study_median_response_ms(study=study),
            "browse": browse[["pair_id", "n_a", "n_similar", "n_b"]].values.tolist(),
        }

    before = readings()
    assert before["votes"] == before["snapshot"] == 8
    run_session(pilot_token(study), "right")
    assert Vote.objects.filter(pair__study=study, pilot=True).count() == 4
    assert readings() == before


def test_a_preview_shows_every_pair_of_a_study_already_complete(tmp_path):
    study = imported(tmp_path, "complete")
    run_session(open_session(study, "p1"))
    run_session(open_session(study, "p2"))
    targets = set(Pair.objects.filter(study=study).values_list("n_assigned", "target_votes"))
    assert targets == {(2, 2)}
    assert answer_all(pilot_token(study)) == 4
    assert set(Pair.objects.filter(study=study).values_list("n_assigned", flat=True)) == {2}


def test_exports_leave_pilot_data_out_unless_asked(tmp_path):
    study = imported(tmp_path, "pilot-export")
    answer_all(pilot_token(study))
    run_session(open_session(study, "p1"))
    votes = votes_frame(study, set())
    assert len(votes) == 4
    assert not votes["is_pilot"].any()
    with_pilot = votes_frame(study, set(), include_pilot=True)
    assert len(with_pilot) == 8
    assert with_pilot["is_pilot"].sum() == 4
    assert len(sessions_frame(study)) == 1
    sessions = sessions_frame(study, include_pilot=True)
    assert sessions["pilot"].tolist().count(True) == 1
    # The pilot finished its trials, yet earned no code: a recruiter pays from this column.
    assert sessions.loc[sessions["pilot"], "completed_at"].notna().all()
    assert sessions.set_index("pilot")["code_earned"].to_dict() == {False: True, True: False}


def test_a_pilot_session_takes_trials_on_a_draft_and_annotators_do_not(tmp_path):
    study = imported(tmp_path, "draft-pilot", live=False)
    assert answer_all(pilot_token(study)) == 4
    with pytest.raises(NotFound):  # a draft is private to annotators
        open_session(study, "p1")


def test_a_pilot_trial_holds_no_pair_and_its_deletion_moves_no_count(tmp_path):
    study = imported(tmp_path, "pilot-delete")
    run_session(open_session(study, "p1"))
    token = pilot_token(study)
    issued = services.trial_next(token=token)  # open, never answered
    pair = Trial.objects.get(pk=issued.trial_id).pair
    assert pair.n_assigned == 1  # the annotator's vote only: the preview claims nothing
    assert services.trial_next(token=token).trial_id == issued.trial_id  # still its trial
    deleted = services.pilot_data_delete(study=study)
    assert (deleted.sessions, deleted.votes) == (1, 0)
    pair.refresh_from_db()
    assert pair.n_assigned == 1
    assert services.leases_sweep(now=clock.now() + timedelta(days=1)) == 0
    assert not AnnotatorSession.objects.filter(study=study, pilot=True).exists()
    assert Vote.objects.filter(pair__study=study).count() == 4  # the annotator's


def test_a_closed_or_archived_study_opens_no_pilot_session(tmp_path):
    study = imported(tmp_path, "pilot-closed")
    services.study_configure(study=study, status="closed")
    with pytest.raises(StudyNotOpen):
        pilot_token(study)
    services.study_archive(study=study)
    with pytest.raises(StudyArchived):
        pilot_token(study)


# --- adding scenes ----------------------------------------------------------------------


def test_scenes_join_a_live_study_and_its_votes_stay(tmp_path):
    study = imported(tmp_path, "grow")
    run_session(open_session(study, "p1"))
    votes_before = list(Vote.objects.filter(pair__study=study).values_list("pk", flat=True))
    assert len(pair_table(study=study).pairs) == 4
    source = write_scene_folder(tmp_path / "more", {"s3": STEMS}, seed=50)
    result = services.study_scenes_add(study=study, source=source)
    assert len(pair_table(study=study).pairs) == 6  # the browser's table sees them at once
    assert [scene.name for scene in result.scenes] == ["s3"]
    new_pairs = set(
        Pair.objects.filter(scene__name="s3", scene__study=study).values_list("pk", flat=True)
    )
    assert len(new_pairs) == 2
    assert list(Vote.objects.filter(pair__study=study).values_list("pk", flat=True)) == votes_before
    # The new pairs have the fewest votes: the next annotator is offered them first.
    trials = run_session(open_session(study, "p2"))
    pairs = [Trial.objects.get(pk=trial.trial_id).pair_id for trial in trials]
    assert set(pairs[:2]) == new_pairs
    assert Vote.objects.filter(pair_id__in=new_pairs).count() == 2


def test_a_scene_the_study_has_is_refused_and_nothing_is_written(tmp_path, snapshot):
    study = imported(tmp_path, "grow-dup")
    before = snapshot()
    source = write_scene_folder(tmp_path / "dup", {"s2": STEMS, "s9": STEMS}, seed=70)
    with pytest.raises(StudyImportError, match="'s2'"):
        services.study_scenes_add(study=study, source=source)
    assert snapshot() == before


def test_scenes_are_not_added_to_a_closed_or_archived_study(tmp_path):
    study = imported(tmp_path, "grow-closed")
    services.study_configure(study=study, status="closed")
    source = write_scene_folder(tmp_path / "more", {"s3": STEMS}, seed=80)
    with pytest.raises(StudyNotOpen):
        services.study_scenes_add(study=study, source=source)
    services.study_archive(study=study)
    with pytest.raises(StudyArchived):
        services.study_scenes_add(study=study, source=source)


# --- archive and restore ----------------------------------------------------------------


def test_a_change_read_before_an_archive_is_refused_after_it(tmp_path):
    """The settings page loaded the study, then someone archived it: the save is refused
    (the row is read again under its lock), and the archive stays."""
    study = imported(tmp_path, "arch-race", live=False)
    stale = Study.objects.get(pk=study.pk)
    services.study_archive(study=Study.objects.get(pk=study.pk))
    with pytest.raises(StudyArchived):
        services.study_configure(study=stale, status="live")
    study.refresh_from_db()
    assert (study.status, study.archived_at is not None) == ("draft", True)


def test_archive_makes_a_study_read_only_until_restored(tmp_path):
    study = imported(tmp_path, "arch")
    with pytest.raises(Conflict, match="live"):
        services.study_archive(study=study)
    services.study_configure(study=study, status="closed")
    services.study_archive(study=study)
    study.refresh_from_db()
    assert study.archived_at is not None
    with pytest.raises(StudyArchived):
        services.study_configure(study=study, title="Renamed")
    services.study_restore(study=study)
    services.study_configure(study=study, title="Renamed")
    study.refresh_from_db()
    assert (study.archived_at, study.title, study.status) == (None, "Renamed", "closed")


# --- deletion ---------------------------------------------------------------------------


def test_deletion_needs_the_slug_typed_and_a_study_not_live(tmp_path, snapshot):
    study = imported(tmp_path, "del-refused")
    before = snapshot()
    with pytest.raises(Conflict, match="live"):
        study_remove(study=study, confirm="del-refused")
    services.study_configure(study=study, status="closed")
    with pytest.raises(DomainError, match="type the study's slug"):
        study_remove(study=study, confirm="del-refuse")
    assert snapshot().files == before.files
    assert Study.objects.filter(slug="del-refused").exists()


def test_deletion_removes_the_study_and_only_the_files_no_other_study_uses(
    tmp_path, media_root, django_capture_on_commit_callbacks
):
    # Same seed: the two studies share s1's files (stored once, by content).
    doomed = imported(tmp_path, "doomed", scenes=("s1", "own"), seed=0)
    kept = imported(tmp_path, "kept", scenes=("s1",), seed=0)
    run_session(open_session(doomed, "p1"))
    answer_all(pilot_token(doomed))
    image = Image.objects.filter(scene__study=doomed).first()
    Score.objects.create(image=image, metric="psnr", version="1", value=1.0, lower_better=False)
    doomed_files = {i.file for i in Image.objects.filter(scene__study=doomed)}
    kept_files = {i.file for i in Image.objects.filter(scene__study=kept)}
    assert kept_files < doomed_files  # shared, and doomed has files of its own

    services.study_configure(study=doomed, status="closed")
    with django_capture_on_commit_callbacks(execute=True):
        deleted = study_remove(study=doomed, confirm="doomed")
    assert (deleted.sessions, deleted.votes, deleted.images) == (2, 8, 6)
    assert not Study.objects.filter(slug="doomed").exists()
    assert not AnnotatorSession.objects.filter(study_id=doomed.pk).exists()
    assert not Score.objects.filter(image_id=image.pk).exists()
    for name in kept_files:
        assert (media_root / name).exists(), name
    for name in doomed_files - kept_files:
        assert not (media_root / name).exists(), name
    assert Image.objects.filter(scene__study=kept).count() == 3
