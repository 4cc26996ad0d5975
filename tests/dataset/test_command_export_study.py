"""``export_study``: what the API stored comes back out, raw and complete, in every format."""

import itertools
import random
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation import aggregation
from annotation.models import Image, Pair, Study
from annotation.services import assignment, study_import
from tests.annotation.sessions import post_vote
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db


def read_table(path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True, dtype=False)


def post_votes(study: Study, sessions: int = 4) -> list[dict]:
    """Annotators answer at random until done; returns what was posted, with the trial."""
    api = APIClient()
    rng = random.Random(7)
    posted = []
    for n in range(sessions):
        response = api.post(
            f"/api/v1/studies/{study.slug}/sessions", {"participant_id": f"p{n}"}, format="json"
        )
        token = response.json()["token"]
        while (trial := api.get(f"/api/v1/sessions/{token}/next-trial")).status_code == 200:
            trial = trial.json()
            body = {
                "trial_id": trial["trial_id"],
                "choice": rng.choice(["left", "similar", "right"]),
                "response_ms": rng.randint(200, 5000),
                "client": {"device_pixel_ratio": 2.0, "viewport_width": 1400},
            }
            assert post_vote(api, token, body).status_code == 201
            posted.append({**body, "trial": trial, "token": token})
    return posted


@pytest.fixture
def voted_study(tmp_path, monkeypatch) -> tuple[Study, list[dict]]:
    # Every third request draws a gold trial (while the session has gold pairs left).
    monkeypatch.setattr(assignment, "_gold_draw", itertools.cycle([0.0, 0.9, 0.9]).__next__)
    source = write_scene_folder(
        tmp_path / "src", {"s1": ["reference", "a", "b", "c"], "s2": ["reference", "d", "e"]}
    )
    study_import(
        source=source, slug="exp", design="ref-vs-test", gold_rate=0.3, practice_trials=1,
        live=True, votes_per_pair=2,
    )  # fmt: skip
    study = Study.objects.get(slug="exp")
    return study, post_votes(study)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_exported_votes_equal_what_was_posted(voted_study, tmp_path, fmt):
    study, posted = voted_study
    out = tmp_path / "out"
    call_command("export_study", study.slug, "--out", str(out), "--format", fmt, stdout=StringIO())
    votes = read_table(out / f"votes.{fmt}")
    assert len(votes) == len(posted)
    by_trial = votes.set_index("trial_id")
    names = dict(Image.objects.values_list("file", "name"))
    for item in posted:
        row = by_trial.loc[item["trial_id"]]
        assert row["choice"] == item["choice"]
        assert row["response_ms"] == item["response_ms"]
        assert row["device_pixel_ratio"] == 2.0
        # The sides the annotator saw: the trial's image URLs, by stable name.
        left_file = item["trial"]["images"]["left"].removeprefix("/media/")
        right_file = item["trial"]["images"]["right"].removeprefix("/media/")
        assert names[left_file] == row["left_image"]
        assert names[right_file] == row["right_image"]
        assert bool(row["is_practice"]) == item["trial"]["practice"]
        expected = {"left": "a" if row["left_image"] == row["image_a"] else "b"}
        expected["right"] = "b" if expected["left"] == "a" else "a"
        expected["similar"] = "similar"
        assert row["preferred"] == expected[item["choice"]]
    assert votes["vote_id"].is_unique
    assert votes["annotator"].nunique() == 4
    assert not votes["annotator"].str.startswith("p").any()  # pseudonymous
    assert votes["is_gold"].any()
    assert votes["is_practice"].sum() == 4
    assert set(votes["reference"]) == {"s1/reference.png", "s2/reference.png"}


def test_exported_pairs_count_the_counted_votes(voted_study, tmp_path):
    """Labels count label answers of annotators who pass quality control; these random
    annotators fail some gold trials, and whoever is excluded is listed with the reason."""
    study, _ = voted_study
    out = tmp_path / "out"
    call_command("export_study", study.slug, "--out", str(out), stdout=StringIO())
    pairs = read_table(out / "pairs.csv")
    votes = read_table(out / "votes.csv")
    assert len(pairs) == Pair.objects.filter(study=study).count() == 5 + 2
    study_pairs = pairs[~pairs["is_gold"]]
    annotators = read_table(out / "annotators.csv").set_index("annotator")
    excluded = set(annotators.index[annotators["excluded"]])
    assert set(votes.loc[votes["excluded"], "annotator"]) == excluded
    counted = votes[~votes["is_gold"] & ~votes["is_practice"] & ~votes["excluded"]]
    for _, pair in study_pairs.iterrows():
        mine = counted[counted["pair_id"] == pair["pair_id"]]
        assert pair["n_votes"] == len(mine) <= 2
        assert pair["n_a"] == (mine["preferred"] == "a").sum()
        assert pair["n_b"] == (mine["preferred"] == "b").sum()
        if len(mine):
            assert pair["p_a"] == pytest.approx((pair["n_a"] + 0.5 * pair["n_similar"]) / len(mine))
    gold = pairs[pairs["is_gold"]]
    assert set(gold["gold_answer"]) == {"b"}
    assert set(gold["condition_a"]) == {"gold-decoy"}
    sheet = (out / "README.md").read_text()
    assert "design: ref-vs-test" in sheet
    assert f"votes: {len(votes)}" in sheet
    for who in excluded:
        assert f"- `{who}`: {annotators.at[who, 'reasons']}" in sheet


def test_majority_follows_the_diffiqa_rule():
    n_a = np.array([2, 1, 0, 1, 0, 2])
    n_s = np.array([1, 1, 0, 2, 0, 2])
    n_b = np.array([0, 1, 3, 0, 0, 0])
    assert list(aggregation.majority(n_a, n_s, n_b)) == [
        "a",
        "none",
        "b",
        "similar",
        "none",
        "none",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_command_refuses_bad_input_and_writes_nothing(manage, tmp_path):
    out = tmp_path / "out"
    done = manage("export_study", "nope", "--out", str(out))
    assert done.returncode == 1
    assert "no study with slug 'nope'" in done.stderr
    assert not out.exists()
    Study.objects.create(slug="empty", design="pairwise")
    done = manage("export_study", "empty", "--out", str(out), "--format", "xlsx")
    assert done.returncode == 2
    assert "invalid choice: 'xlsx'" in done.stderr
    (tmp_path / "file").write_text("x")
    done = manage("export_study", "empty", "--out", str(tmp_path / "file"))
    assert done.returncode == 1
    assert "is not a folder" in done.stderr
    done = manage("export_study", "empty", "--out", str(out), "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "agreement.parquet", "annotators.parquet", "comparisons.parquet",
        "image_scores.parquet", "metric_scores.parquet", "mos", "pairs.parquet",
        "sessions.parquet", "votes.parquet",
    ]  # fmt: skip
    assert len(pd.read_parquet(out / "votes.parquet")) == 0
