"""``export_study`` writes the metric_scores table."""

import pandas as pd
import pytest

from dataset.export import study_export
from scoring.models import Score
from tests.factories import ImageFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_metric_scores_are_exported_with_failures_and_orientation(tmp_path):
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study, name="s")
    reference = ImageFactory(scene=scene, name="s/reference.png", role="reference")
    test = ImageFactory(scene=scene, name="s/blur.png")
    Score.objects.create(
        metric="psnr", version="pyiqa-0.1.16", image=test, reference=reference, value=31.5,
        lower_better=False,
    )  # fmt: skip
    Score.objects.create(
        metric="lpips", version="pyiqa-0.1.16+wabc", image=test, reference=reference,
        value=None, lower_better=True, error="MissingWeights: missing weight files x.pth",
    )  # fmt: skip
    Score.objects.create(
        metric="niqe", version="pyiqa-0.1.16", image=test, value=5.0, lower_better=True
    )
    study_export(study=study, out=tmp_path, fmt="csv")
    table = pd.read_csv(tmp_path / "metric_scores.csv", keep_default_na=False)
    assert list(table.columns) == [
        "metric", "image", "reference", "value", "lower_better", "version", "error",
    ]  # fmt: skip
    rows = {row.metric: row for row in table.itertuples()}
    assert (rows["psnr"].image, rows["psnr"].reference) == ("s/blur.png", "s/reference.png")
    assert float(rows["psnr"].value) == 31.5
    assert rows["lpips"].value == ""
    assert rows["lpips"].error.startswith("MissingWeights")
    assert rows["niqe"].reference == ""
    assert str(rows["niqe"].lower_better) == "True"
    assert "metric_scores" in (tmp_path / "README.md").read_text()


def test_every_csv_cell_a_spreadsheet_would_run_starts_with_a_quote(tmp_path):
    """OWASP's rule on every CSV table: a text cell beginning with =, +, -, @, a tab or a
    carriage return is written with a leading ' (numbers, such as a negative score, are
    left alone); the other formats keep the value as it is, and so does reading back
    through ``core.spreadsheet.restore``."""
    import csv

    from annotation import services
    from annotation.models import AnnotatorSession
    from core.spreadsheet import restore
    from tests.factories import LiveStudyFactory, make_pairs

    study = LiveStudyFactory(design="pairwise")
    (pair,) = make_pairs(study, 1)
    pair.image_a.condition = "+SUM(1,1)"
    pair.image_a.save(update_fields=["condition"])
    token = services.session_open(
        study_slug=study.slug, client_info={"user_agent": '=HYPERLINK("https://evil.example")'}
    ).session.token
    services.vote_submit(
        token=token, trial_id=services.trial_next(token=token).trial_id, choice="left"
    )
    Score.objects.create(
        metric="niqe", version="v", image=pair.image_b, value=-2.5, lower_better=True
    )
    for fmt in ("csv", "jsonl"):
        study_export(study=study, out=tmp_path / fmt, fmt=fmt)
    with open(tmp_path / "csv/sessions.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["user_agent"] == '\'=HYPERLINK("https://evil.example")'
    with open(tmp_path / "csv/pairs.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["condition_a"] == "'+SUM(1,1)"
    with open(tmp_path / "csv/metric_scores.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["value"] == "-2.5"  # a number, not a formula
    for path in (tmp_path / "csv").glob("*.csv"):
        with open(path, newline="") as handle:
            for cells in csv.reader(handle):
                for cell in cells:
                    assert not cell.startswith(("=", "+", "@", "\t", "\r")), (path.name, cell)
                    if cell.startswith("-"):
                        float(cell)  # only numbers begin with '-'
    sessions = pd.read_json(tmp_path / "jsonl/sessions.jsonl", lines=True)
    assert sessions["user_agent"].iloc[0] == '=HYPERLINK("https://evil.example")'
    assert restore('\'=HYPERLINK("https://evil.example")') == '=HYPERLINK("https://evil.example")'
    assert AnnotatorSession.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_export_of_a_live_study_describes_one_instant(tmp_path):
    """Issue 31, item 4: votes that arrive while a live study exports (here, a whole new
    annotator's, committed right after the report's tally was read) are in none of its
    tables rather than in votes.csv alone: the export reads one snapshot, so the votes
    table, the pairs' counts and the annotators agree."""
    import threading

    from django.db import connection

    from annotation import services
    from annotation.models import Vote
    from tests.factories import LiveStudyFactory, make_pairs

    study = LiveStudyFactory(design="pairwise", slug="live")
    make_pairs(study, 6, votes=5)

    def annotate(participant: str) -> None:
        token = services.session_open(study_slug="live", participant_id=participant)
        token = token.session.token
        while (trial := services.trial_next(token=token)) is not None:
            services.vote_submit(token=token, trial_id=trial.trial_id, choice="left")

    for participant in ("p1", "p2", "p3"):
        annotate(participant)

    def late_annotator(done: int, total: int) -> None:
        if done == 1:  # the report (and its tally) has been read
            thread = threading.Thread(target=lambda: (annotate("late"), connection.close()))
            thread.start()
            thread.join()

    study_export(study=study, out=tmp_path, fmt="csv", on_progress=late_annotator)
    votes = pd.read_csv(tmp_path / "votes.csv", keep_default_na=False)
    pairs = pd.read_csv(tmp_path / "pairs.csv", keep_default_na=False)
    annotators = pd.read_csv(tmp_path / "annotators.csv", keep_default_na=False)
    sessions = pd.read_csv(tmp_path / "sessions.csv", keep_default_na=False)
    assert len(votes) == 18  # 3 annotators x 6 pairs; the late one's 6 are not in
    assert int(pairs["n_votes"].sum()) == len(votes)
    assert set(annotators["annotator"]) == set(votes["annotator"])
    assert set(sessions["annotator"]) == set(votes["annotator"])
    assert Vote.objects.filter(pair__study=study).count() == 24  # stored all the same
