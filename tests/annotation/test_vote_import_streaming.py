"""``import_votes`` a chunk at a time: duplicates across chunks, the first fault in the
source's order, sessions' counts; and two imports of one source at once, of which exactly
one is written."""

import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from annotation.errors import VoteImportError
from annotation.models import AnnotatorSession, Study, Trial, Vote
from annotation.services import study_import, vote_import
from annotation.services.vote_import import votes_import
from tests.images import write_scene_folder

HEADER = "scene,image_a,image_b,annotator,preferred\n"


def make_study(tmp_path: Path, slug: str = "target") -> Study:
    source = write_scene_folder(tmp_path / "src", {"s1": ["reference", "a", "b", "c"]})
    study_import(source=source, slug=slug, design="pairwise")
    return Study.objects.get(slug=slug)


def write_csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "v.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


@pytest.mark.django_db
def test_a_duplicate_in_a_later_chunk_is_refused_naming_both_lines(tmp_path, monkeypatch, snapshot):
    """Three votes a chunk: the repeat on line 6 of the vote on line 3 is refused by both
    lines, and nothing is written though the first chunk was."""
    monkeypatch.setattr(vote_import, "CHUNK", 3)
    study = make_study(tmp_path)
    path = write_csv(tmp_path, ["s1,a.png,b.png,u1,a", "s1,a.png,c.png,u1,b",
                                "s1,a.png,b.png,u2,a", "s1,b.png,c.png,u1,a",
                                "s1,c.png,a.png,u1,similar"])  # fmt: skip
    before = snapshot()
    with pytest.raises(
        CommandError, match=r"v.csv:6: annotator 'u1' already voted on this pair \(v.csv:3\)"
    ):
        call_command("import_votes", study.slug, str(path), "--format", "long-csv")
    assert snapshot() == before


@pytest.mark.django_db
def test_the_first_fault_in_the_source_is_named(tmp_path, snapshot):
    """A duplicate on line 3 comes before an unknown image on line 4 in the same chunk."""
    study = make_study(tmp_path)
    path = write_csv(
        tmp_path, ["s1,a.png,b.png,u1,a", "s1,b.png,a.png,u1,a", "s1,a.png,zz.png,u1,a"]
    )
    before = snapshot()
    with pytest.raises(VoteImportError, match=r"v.csv:3: annotator 'u1' already voted"):
        votes_import(study=study, source=path, fmt="long-csv")
    assert snapshot() == before


@pytest.mark.django_db
def test_chunks_give_each_session_its_counts_ordinals_and_alternating_sides(tmp_path, monkeypatch):
    monkeypatch.setattr(vote_import, "CHUNK", 2)
    study = make_study(tmp_path)
    rows = ["s1,a.png,b.png,u1,a", "s1,a.png,b.png,u2,b", "s1,a.png,c.png,u1,similar",
            "s1,b.png,c.png,u3,a", "s1,b.png,c.png,u1,b", "s1,a.png,c.png,u2,a",
            "s1,reference.png,a.png,u1,a"]  # fmt: skip
    result = votes_import(study=study, source=write_csv(tmp_path, rows), fmt="long-csv")
    assert (result.votes, result.annotators) == (7, 3)
    sessions = {
        s.external_ids["import_annotator"]: s for s in AnnotatorSession.objects.filter(study=study)
    }
    assert {name: (s.n_done, s.n_issued) for name, s in sessions.items()} == {
        "u1": (4, 4), "u2": (2, 2), "u3": (1, 1),
    }  # fmt: skip
    trials = list(
        Trial.objects.filter(session=sessions["u1"]).order_by("ordinal").select_related("vote")
    )
    assert [t.ordinal for t in trials] == [0, 1, 2, 3]
    assert [t.a_on_left for t in trials] == [True, False, True, False]
    # Votes keep the source's order in time (the export orders them so).
    written = Vote.objects.filter(pair__study=study).order_by("created_at")
    assert [v.session.external_ids["import_annotator"] for v in written] == [
        row.split(",")[3] for row in rows
    ]


def _import_in_thread(study: Study, path: Path, outcome: dict, name: str) -> threading.Thread:
    def run() -> None:
        try:
            votes_import(study=study, source=path, fmt="long-csv")
            outcome[name] = "imported"
        except VoteImportError as exc:
            outcome[name] = str(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_source_at_once_write_it_once(tmp_path, monkeypatch):
    """The first import is held in the middle of writing; the second, started then, waits
    for the study's lock (it does not reach its own writing) and, once the first has
    committed, is refused: the source's votes are in the study once."""
    study = make_study(tmp_path)
    path = write_csv(tmp_path, ["s1,a.png,b.png,u1,a", "s1,a.png,c.png,u2,b"])
    first_writing, go, second_writing = threading.Event(), threading.Event(), threading.Event()
    write_chunk = vote_import._write_chunk

    def held(*args):
        if threading.current_thread().name == "first":
            first_writing.set()
            assert go.wait(60)
        else:
            second_writing.set()
        write_chunk(*args)

    monkeypatch.setattr(vote_import, "_write_chunk", held)
    outcome: dict[str, str] = {}
    first = _import_in_thread(study, path, outcome, "first")
    assert first_writing.wait(60)
    second = _import_in_thread(study, path, outcome, "second")
    for _ in range(600):  # until the second waits for the lock, or (unlocked) writes
        if second_writing.is_set() or _waiting_on_a_lock():
            break
        time.sleep(0.05)
    waited = not second_writing.is_set()
    go.set()
    first.join(60)
    second.join(60)
    assert outcome["first"] == "imported"
    assert "votes from source 'long-csv' were already imported" in outcome["second"]
    assert waited
    assert AnnotatorSession.objects.filter(study=study).count() == 2
    assert Vote.objects.filter(pair__study=study).count() == 2
    out = StringIO()
    call_command("import_votes", study.slug, str(path), "--format", "long-csv", "--source",
                 "again", stdout=out)  # fmt: skip
    assert "imported 2 votes of 2 annotators" in out.getvalue()
