"""The votes table streamed in chunks: the bundle's ``votes.csv`` is the database's rows,
each format's chunks add up to the table written at once, and the report read from the
compact votes reader is the report read from ``study_votes``."""

import io
import zipfile

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analysis.report import study_report
from analysis.selectors import study_data, study_votes, study_votes_compact
from annotation.models import AnnotatorSession, Pair, Study, Vote
from annotation.services import study_import
from dataset import export
from dataset.bundle import study_bundle
from dataset.export import VOTE_COLUMNS, votes_frame
from tests.dataset.voting import cast_votes
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path) -> Study:
    """A pairwise study with gold pairs: four annotators vote on every pair (gold too),
    one of them with its client's screen, one marked late."""
    source = write_scene_folder(tmp_path / "src", {"s1": ["reference", "a", "b", "c"],
                                                   "s2": ["x", "y", "z"]})  # fmt: skip
    study_import(source=source, slug="streamed", design="pairwise")
    study = Study.objects.get(slug="streamed")
    pairs = list(Pair.objects.filter(study=study).order_by("scene__name", "id"))
    answers = ["a", "b", "similar", "a", "b"]
    cast_votes(study, [(f"u{n}", pair, answers[(i + n) % 5]) for n in range(4)
                       for i, pair in enumerate(pairs)])  # fmt: skip
    first = Vote.objects.filter(session__pseudonym="anon-u1").order_by("created_at")[0]
    Vote.objects.filter(pk=first.pk).update(
        late=True, client_info={"device_pixel_ratio": 2.0, "viewport_width": 1400}
    )
    return study


def test_the_bundles_votes_member_is_the_databases_rows(study, tmp_path, monkeypatch):
    """Three rows a chunk: every vote once, oldest first, with its stored values."""
    monkeypatch.setattr(export, "VOTES_CHUNK", 3)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    bundle = study_bundle(study=study, path=tmp_path / "b.zip", samples=5)
    with zipfile.ZipFile(bundle.path) as archive:
        table = pd.read_csv(
            archive.open("votes.csv"), keep_default_na=False, na_values=[""], dtype={"vote_id": str}
        )
    rows = list(
        Vote.objects.filter(pair__study=study)
        .order_by("created_at", "id")
        .values_list("id", "pair_id", "choice", "preferred", "late", "response_ms",
                     "session__pseudonym", "created_at")
    )  # fmt: skip
    assert len(rows) == len(table) == 4 * Pair.objects.filter(study=study).count()
    assert list(table.columns) == VOTE_COLUMNS
    written = list(
        zip(table["vote_id"], table["pair_id"], table["choice"], table["preferred"],
            table["is_late"], table["response_ms"], table["annotator"],
            pd.to_datetime(table["created_at"], utc=True), strict=True)
    )  # fmt: skip
    assert written == [(str(v), p, c, pr, late, ms, a, t) for v, p, c, pr, late, ms, a, t in rows]
    screen = table[table["viewport_width"].notna()]
    assert screen[["device_pixel_ratio", "viewport_width"]].values.tolist() == [[2.0, 1400]]
    assert table["is_late"].sum() == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_chunks_add_up_to_the_table_written_at_once(study, tmp_path, monkeypatch, fmt):
    whole = tmp_path / f"whole.{fmt}"
    export._write(votes_frame(study, excluded={"anon-u2"}), whole, fmt)
    monkeypatch.setattr(export, "VOTES_CHUNK", 4)
    chunked = tmp_path / f"chunked.{fmt}"
    counts = export._write_votes(study, {"anon-u2"}, chunked, fmt)
    assert counts.votes == Vote.objects.filter(pair__study=study).count()
    assert counts.late == 1
    if fmt == "parquet":
        assert_frame_equal(pd.read_parquet(chunked), pd.read_parquet(whole))
    else:
        assert chunked.read_bytes() == whole.read_bytes()


def test_a_study_without_votes_writes_the_header(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s1": ["a", "b"]})
    study_import(source=source, slug="empty", design="pairwise")
    study = Study.objects.get(slug="empty")
    path = tmp_path / "votes.csv"
    assert export._write_votes(study, set(), path, "csv").votes == 0
    assert path.read_text() == ",".join(VOTE_COLUMNS) + "\n"


def test_the_compact_votes_reader_gives_study_votes_frame_and_the_same_report(study):
    AnnotatorSession.objects.filter(pseudonym="anon-u3").update(pseudonym="12345")
    Vote.objects.filter(session__pseudonym="anon-u0").update(response_ms=None)
    plain = study_votes(study).assign(vote_id=lambda f: f["vote_id"].astype(str))
    compact = study_votes_compact(study)
    plain = plain.sort_values("vote_id").reset_index(drop=True)
    assert compact["vote_id"].is_monotonic_increasing
    assert "12345" in set(compact["annotator"])
    assert_frame_equal(compact, plain, check_dtype=False)
    assert compact["late"].dtype == bool
    first = study_report(study_data(study), samples=20, seed=1)
    second = study_report(study_data(study, compact_votes=True), samples=20, seed=1)
    for name in ("annotators", "pairs", "image_scores", "agreement"):
        assert_frame_equal(getattr(first, name), getattr(second, name), check_dtype=False)


def test_a_bundle_built_twice_from_chunks_is_the_same(study, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "VOTES_CHUNK", 5)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    study.refresh_from_db()
    one = study_bundle(study=study, path=tmp_path / "one.zip", samples=5).path.read_bytes()
    two = study_bundle(study=study, path=tmp_path / "two.zip", samples=5).path.read_bytes()
    assert one == two
    sheet = zipfile.ZipFile(io.BytesIO(one)).read("README.md").decode()
    assert f"- votes: {Vote.objects.filter(pair__study=study).count()} (" in sheet
    assert "1 late; 0 imported" in sheet
