"""``import_votes``: published or earlier human labels brought into a study, all or nothing.

Round trips: a study's counted votes exported, written in each format and imported into a
fresh copy of the study give the same labels, Thurstone scores and agreement tables.
"""

import json
import random
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import AnnotatorSession, Image, Pair, Study, Trial, Vote
from annotation.services import study_import, vote_import
from annotation.services.vote_import import votes_import
from dataset.export import study_export
from scoring.models import Score
from tests.dataset.voting import cast_votes
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db

SCENES = {
    "ref-vs-test": {"s1": ["reference", "a", "b", "c", "d"], "s2": ["reference", "e", "f"]},
    "pairwise": {"s1": ["reference", "a", "b", "c"], "s2": ["x", "y", "z"]},
}


def make_study(tmp_path: Path, design: str, slug: str) -> Study:
    source = tmp_path / f"src-{design}"
    if not source.exists():
        write_scene_folder(source, SCENES[design])
    study_import(source=source, slug=slug, design=design)
    study = Study.objects.get(slug=slug)
    # A metric whose scores follow the file names, so agreement has something to measure.
    for image in Image.objects.filter(scene__study=study):
        reference = Image.objects.filter(scene=image.scene, role="reference").first()
        Score.objects.create(
            metric="psnr", version="pyiqa-0.1.16", image=image, reference=reference,
            value=float(sum(map(ord, image.name)) % 17), lower_better=False,
        )  # fmt: skip
    return study


def vote_at_random(study: Study, annotators: int = 5, seed: int = 3) -> None:
    rng = random.Random(seed)
    pairs = Pair.objects.filter(study=study, gold_answer="").order_by("scene__name", "id")
    cast_votes(
        study,
        [
            (f"u{n}", pair, rng.choice(["a", "a", "b", "similar"]))
            for n in range(annotators)
            for pair in pairs
        ],
    )


def exported(study: Study, out: Path) -> dict[str, pd.DataFrame]:
    study_export(study=study, out=out, samples=50)
    return {
        name: pd.read_csv(out / f"{name}.csv")
        for name in ("votes", "pairs", "image_scores", "agreement", "annotators")
    }


def counted_votes(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    votes = tables["votes"]
    return votes[~votes["is_gold"] & ~votes["is_practice"]]


def assert_same_results(original: dict, copy: dict) -> None:
    pairs_columns = ["scene", "image_a", "image_b", "n_votes", "n_a", "n_similar", "n_b"]
    pairs_columns.append("majority")
    pd.testing.assert_frame_equal(
        original["pairs"][pairs_columns].reset_index(drop=True),
        copy["pairs"][pairs_columns].reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(original["image_scores"], copy["image_scores"])
    pd.testing.assert_frame_equal(original["agreement"], copy["agreement"])
    assert len(original["agreement"]) > 0
    assert copy["votes"]["imported"].all()
    assert not original["votes"]["imported"].any()
    assert set(copy["annotators"]["excluded"]) == set(original["annotators"]["excluded"])


def write_long_csv(votes: pd.DataFrame, path: Path) -> Path:
    votes[["scene", "image_a", "image_b", "annotator", "preferred", "response_ms"]].to_csv(
        path, index=False
    )
    return path


def write_sriqa(votes: pd.DataFrame, root: Path) -> Path:
    labels = {"a": ("Positive", "Negative"), "b": ("Negative", "Positive")}
    labels["similar"] = ("Similar", "Similar")
    for n, row in enumerate(votes.itertuples()):
        one, two = labels[row.preferred]
        folder = root / row.annotator / row.scene
        folder.mkdir(parents=True, exist_ok=True)
        body = {
            "Picture_01": {"Name": row.image_a.split("/", 1)[1], "Label": one},
            "Picture_02": {"Name": row.image_b.split("/", 1)[1], "Label": two},
        }
        (folder / f"{n:05d}.json").write_text(json.dumps(body))
    return root


def write_diffiqa(votes: pd.DataFrame, study: Study, root: Path) -> Path:
    tests = {}
    for scene in study.scenes.all():
        names = scene.images.filter(role="test").order_by("name").values_list("name", flat=True)
        tests.update({name: i for i, name in enumerate(names)})
    labels = {"a": "Positive", "similar": "Similar", "b": "Negative"}
    for row in votes.itertuples():
        idx = tests[row.image_a]
        folder = root / row.annotator / str(idx)
        folder.mkdir(parents=True, exist_ok=True)
        body = {"Picture_AI": {"Label": labels[row.preferred], "Other": 1}}
        (folder / f"{row.scene}_{idx}.json").write_text(json.dumps(body))
    return root


CASES = [
    ("pairwise", "long-csv", "copy"),
    ("ref-vs-test", "long-csv", "copy"),
    ("pairwise", "long-csv", "orm"),
    ("pairwise", "sriqa-json", "copy"),
    ("ref-vs-test", "diffiqa-json", "copy"),
]


@pytest.mark.parametrize(("design", "fmt", "path"), CASES)
def test_exported_votes_reimported_give_the_same_labels_scores_and_agreement(
    tmp_path, monkeypatch, design, fmt, path
):
    """Export a study, write its counted votes in the format, import them into a fresh
    copy of the study: pairs' labels, Thurstone (and Bradley-Terry) scores with their
    intervals, the agreement table and quality control are equal; the copy's votes are
    marked imported, its pairs' ``n_assigned`` untouched. ``copy``: PostgreSQL's COPY
    writes the rows; ``orm``: the portable path does."""
    if path == "orm":
        monkeypatch.setattr(vote_import.statements, "use_fast_path", lambda: False)
    original = make_study(tmp_path, design, "original")
    vote_at_random(original)
    before = exported(original, tmp_path / "before")
    votes = counted_votes(before)
    if fmt == "long-csv":
        source = write_long_csv(votes, tmp_path / "votes.csv")
    elif fmt == "sriqa-json":
        source = write_sriqa(votes, tmp_path / "sriqa")
    else:
        source = write_diffiqa(votes, original, tmp_path / "diffiqa")
    copy = make_study(tmp_path, design, "copy")
    result = votes_import(study=copy, source=source, fmt=fmt, source_name="paper")
    assert (result.votes, result.annotators) == (len(votes), 5)
    after = exported(copy, tmp_path / "after")
    assert_same_results(before, after)
    assert set(Pair.objects.filter(study=copy).values_list("n_assigned", flat=True)) == {0}
    sessions = AnnotatorSession.objects.filter(study=copy)
    assert {s.source for s in sessions} == {"paper"}
    assert {s.external_ids["import_annotator"] for s in sessions} == set(votes["annotator"])
    # Pseudonymised like the platform's own: the export shows no original id.
    assert not set(after["votes"]["annotator"]) & set(votes["annotator"])
    assert all(s.completed_at is not None for s in sessions)


def test_imported_votes_never_take_part_in_assignment(tmp_path):
    """Imported votes hold no lease and do not fill a pair's target: with one vote per
    pair wanted and an imported vote on every pair, a platform annotator is still given
    every pair; the sweep, even a day later, releases nothing imported."""
    from datetime import timedelta

    from annotation import clock
    from annotation.services import leases_sweep, session_open, trial_next, vote_submit

    study = make_study(tmp_path, "pairwise", "s")
    vote_at_random(study, annotators=2)
    exported_votes = counted_votes(exported(study, tmp_path / "out"))
    copy = make_study(tmp_path, "pairwise", "copy")
    votes_import(study=copy, source=write_long_csv(exported_votes, tmp_path / "v.csv"),
                 fmt="long-csv")  # fmt: skip
    Study.objects.filter(pk=copy.pk).update(status="live", practice_trials=0, votes_per_pair=1)
    Pair.objects.filter(study=copy).update(target_votes=1)
    assert leases_sweep(now=clock.now() + timedelta(days=1)) == 0
    assert not Trial.objects.filter(released=True).exists()
    token = session_open(study_slug=copy.slug, participant_id="someone").session.token
    given = 0
    while (trial := trial_next(token=token)) is not None:
        vote_submit(token=token, trial_id=trial.trial_id, choice="left")
        given += 1
        assert given <= 100
    assert given == Pair.objects.filter(study=copy, gold_answer="").count() == 9
    assert Vote.objects.filter(pair__study=copy).count() == 2 * 9 + 9


@pytest.fixture
def study(tmp_path) -> Study:
    return make_study(tmp_path, "pairwise", "target")


BAD_LONG_CSV = [
    ("scene,image_a,image_b,annotator,preferred\ns1,a.png,nope.png,u1,a\n",
     r"v.csv:2: unknown image 'nope.png' in scene 's1'"),
    ("scene,image_a,image_b,annotator,preferred\ns1,a.png,b.png,u1,a\ns1,a.png,x.png,u1,a\n",
     r"v.csv:3: unknown image 'x.png' in scene 's1'"),
    ("scene,image_a,image_b,annotator,preferred\ns1,a.png,a.png,u1,a\n",
     r"v.csv:2: a.png vs a.png is not a pair of the study's pairwise design"),
    ("scene,image_a,image_b,annotator,preferred\ns1,a.png,b.png,u1,better\n",
     r"v.csv:2: preferred 'better' is not one of a, b, similar"),
    ("scene,image_a,image_b,annotator,preferred\ns1,a.png,b.png,u1,a\ns1,b.png,a.png,u1,b\n",
     r"v.csv:3: annotator 'u1' already voted on this pair \(v.csv:2\)"),
    ("scene,image_a,annotator,preferred\ns1,a.png,u1,a\n", r"v.csv:1: missing column\(s\) image_b"),
    ("scene,image_a,image_b,annotator,preferred,response_ms\ns1,a.png,b.png,u1,a,fast\n",
     r"v.csv:2: response_ms 'fast' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "error"), BAD_LONG_CSV)
def test_bad_long_csv_is_refused_naming_the_line_and_nothing_is_written(
    study, tmp_path, snapshot, text, error
):
    path = tmp_path / "v.csv"
    path.write_text(text)
    before = snapshot()
    with pytest.raises(CommandError, match=error):
        call_command("import_votes", study.slug, str(path), "--format", "long-csv")
    assert snapshot() == before


def write_json(root: Path, relative: str, body: object) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))


def sriqa(name_1: str, label_1: str, name_2: str, label_2: str) -> dict:
    return {"Picture_01": {"Name": name_1, "Label": label_1},
            "Picture_02": {"Name": name_2, "Label": label_2}}  # fmt: skip


BAD_SRIQA = [
    ({"u1/s1/1.json": sriqa("a.png", "Positive", "nope.png", "Negative")},
     r"u1/s1/1.json: unknown image 'nope.png' in scene 's1'"),
    ({"u1/s1/1.json": sriqa("a.png", "Positive", "b.png", "Good")},
     r"u1/s1/1.json: Picture_02: label 'Good' is not one of Positive, Similar, Negative"),
    ({"u1/s1/1.json": '{"Picture_01": {"Name": "a.png",\n "Label": }'},
     r"u1/s1/1.json:2: malformed JSON"),
    ({"u1/s1/1.json": sriqa("a.png", "Positive", "b.png", "Negative"),
      "u1/s1/2.json": sriqa("b.png", "Similar", "a.png", "Similar")},
     r"u1/s1/2.json: annotator 'u1' already voted on this pair \(u1/s1/1.json\)"),
    ({"u1/s1/1.json": sriqa("a.png", "Positive", "x.png", "Negative")},
     r"u1/s1/1.json: unknown image 'x.png' in scene 's1'"),
    ({"u1/1.json": sriqa("a.png", "Positive", "b.png", "Negative")},
     r"u1/1.json: not in the layout <annotator>/<scene>/<anything>.json"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "error"), BAD_SRIQA)
def test_bad_sriqa_json_is_refused_naming_the_file_and_nothing_is_written(
    study, tmp_path, snapshot, files, error
):
    root = tmp_path / "labels"
    for relative, body in files.items():
        write_json(root, relative, body)
    before = snapshot()
    with pytest.raises(CommandError, match=error):
        call_command("import_votes", study.slug, str(root), "--format", "sriqa-json")
    assert snapshot() == before


def test_bad_diffiqa_json_is_refused_and_the_wrong_design_too(tmp_path, snapshot):
    """DiffIQA labels are test images against the reference: a pairwise study is refused;
    in a ref-vs-test study an index past the scene's test images, an unknown scene, a
    name missing from the name map, and a pair outside the design are refused."""
    pairwise = make_study(tmp_path, "pairwise", "pw")
    refvt = make_study(tmp_path, "ref-vs-test", "rt")
    root = tmp_path / "labels"
    write_json(root, "u1/0/s1_0.json", {"Picture_AI": {"Label": "Positive"}})
    before = snapshot()
    cases = [
        (pairwise.slug, root, [], "study 'pw' is pairwise; diffiqa-json labels need a ref-vs-test"),
    ]
    bad = tmp_path / "bad"
    write_json(bad, "u1/9/s1_9.json", {"Picture_AI": {"Label": "Positive"}})
    cases.append((refvt.slug, bad, [], r"u1/9/s1_9.json: scene 's1' has 4 test images; no index 9"))
    unknown = tmp_path / "unknown"
    write_json(unknown, "u1/0/zz_0.json", {"Picture_AI": {"Label": "Positive"}})
    cases.append((refvt.slug, unknown, [], r"u1/0/zz_0.json: unknown scene 'zz'"))
    names = tmp_path / "names.csv"
    names.write_text("label_name,image\ns1_1,s1/a.png\ns1_2,s1/reference.png\n")
    cases.append((refvt.slug, root, ["--names", str(names)], r"u1/0/s1_0.json: 's1_0' is not"))
    self_pair = tmp_path / "self"
    write_json(self_pair, "u1/2/s1_2.json", {"Picture_AI": {"Label": "Similar"}})
    cases.append((refvt.slug, self_pair, ["--names", str(names)], r"is not a pair of the study's"))
    for slug, source, extra, error in cases:
        with pytest.raises(CommandError, match=error):
            call_command("import_votes", slug, str(source), "--format", "diffiqa-json", *extra)
        assert snapshot() == before
    out = StringIO()
    call_command("import_votes", refvt.slug, str(root), "--format", "diffiqa-json", stdout=out)
    assert "by index" in out.getvalue()
    vote = Vote.objects.get(pair__study=refvt)
    assert (vote.pair.image_a.name, vote.pair.image_b.name, vote.preferred) == (
        "s1/a.png",
        "s1/reference.png",
        "a",
    )


def test_a_source_is_imported_once(study, tmp_path, snapshot):
    path = tmp_path / "v.csv"
    path.write_text("scene,image_a,image_b,annotator,preferred\ns1,a.png,b.png,u1,similar\n")
    call_command("import_votes", study.slug, str(path), "--format", "long-csv", stdout=StringIO())
    before = snapshot()
    with pytest.raises(CommandError, match="source 'long-csv' were already imported"):
        call_command("import_votes", study.slug, str(path), "--format", "long-csv")
    assert snapshot() == before
    call_command("import_votes", study.slug, str(path), "--format", "long-csv", "--source",
                 "second", stdout=StringIO())  # fmt: skip
    assert Vote.objects.filter(pair__study=study).count() == 2


def test_pair_ids_past_32_bits_are_not_taken_for_duplicates(study, tmp_path):
    """Ids are 64-bit: u1 on a pair whose id is 2**32 + p and u2 on pair p are two votes
    (the duplicate check keys (annotator, pair) on their dense indexes, not the ids)."""
    small = Pair.objects.get(study=study, image_a__name="s1/a.png", image_b__name="s1/b.png")
    big = Pair.objects.get(study=study, image_a__name="s2/x.png", image_b__name="s2/y.png")
    big.delete()
    big.pk = (1 << 32) + small.pk
    big.save(force_insert=True)
    path = tmp_path / "v.csv"
    path.write_text(
        "scene,image_a,image_b,annotator,preferred\ns2,x.png,y.png,u1,a\ns1,a.png,b.png,u2,b\n"
    )
    call_command("import_votes", study.slug, str(path), "--format", "long-csv", stdout=StringIO())
    assert sorted(Vote.objects.filter(pair__study=study).values_list("pair_id", flat=True)) == [
        small.pk, big.pk,
    ]  # fmt: skip
