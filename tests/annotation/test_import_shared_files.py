"""Concurrent imports that share a new image file, serialised per file: one import that
fails cannot remove a file the other, still running, references."""

import shutil
import threading

import pytest
from django.db import connection

from annotation import services
from annotation.errors import StudyImportError
from annotation.models import Image, StoreLeftover
from annotation.services import file_claims, study_import
from tests.images import write_png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The imports' file locks (namespace 0x1F5 in the key's top bits) in this database.
FILE_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint >> 20 = 501"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_a_failing_import_keeps_the_new_file_another_running_import_found(tmp_path, media_root):
    """Import A stores a new file X, then import B finds X in the store; A then fails on a
    broken image and cleans up while B has not committed yet: X stays (B holds it), B
    commits, and its image's file is there. Once both are over, nothing is left held."""
    shared = write_png(tmp_path / "shared.png", size=(40, 30), seed=7)
    a_source, b_source = tmp_path / "a", tmp_path / "b"
    shutil.copyfile(shared, (a_source / "s1").mkdir(parents=True) or a_source / "s1" / "x.png")
    write_png(a_source / "s1" / "y.png", size=(40, 30), seed=8)
    (a_source / "s2").mkdir()
    (a_source / "s2" / "broken.png").write_bytes(b"not an image")
    write_png(a_source / "s2" / "w.png", size=(40, 30), seed=10)
    shutil.copyfile(shared, (b_source / "s1").mkdir(parents=True) or b_source / "s1" / "x.png")
    write_png(b_source / "s1" / "z.png", size=(40, 30), seed=9)

    a_stored_x, b_found_x, a_done = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def run(name, source, on_image):
        try:
            outcome[name] = study_import(
                source=source, slug=name, design="pairwise", on_image=on_image
            )
        except Exception as exc:
            outcome[name] = exc
        finally:
            connection.close()

    a_images = iter(range(100))

    def a_progress():
        if next(a_images) == 0:  # x.png is stored: wait for B to find it, then go on
            a_stored_x.set()
            assert b_found_x.wait(timeout=30)

    b_images = iter(range(100))

    def b_progress():
        if next(b_images) == 0:  # B found x.png: hold on until A has failed and cleaned up
            b_found_x.set()
            assert a_done.wait(timeout=30)

    def run_a():
        try:
            run("a", a_source, a_progress)
        finally:
            a_done.set()

    thread_a = threading.Thread(target=run_a)
    thread_b = threading.Thread(target=lambda: run("b", b_source, b_progress))
    thread_a.start()
    assert a_stored_x.wait(timeout=30), outcome
    thread_b.start()
    thread_a.join(timeout=60)
    thread_b.join(timeout=60)
    assert not thread_a.is_alive()
    assert not thread_b.is_alive()

    assert isinstance(outcome["a"], StudyImportError), outcome["a"]
    assert "broken.png" in str(outcome["a"])
    assert not isinstance(outcome["b"], Exception), outcome["b"]
    for image in Image.objects.filter(scene__study__slug="b"):
        assert (media_root / image.file).is_file(), image.name
    # A's own file that nobody references is gone (at once, or by the sweep if B held its
    # bucket of files); the shared one is B's now.
    services.store_leftovers_sweep()
    stored = {p.name for p in media_root.rglob("*.png")}
    assert stored == {
        Image.objects.get(name=n).file.rsplit("/", 1)[1] for n in ("s1/x.png", "s1/z.png")
    }
    with connection.cursor() as cursor:
        cursor.execute(FILE_LOCKS)
        assert cursor.fetchone()[0] == 0


def other_connection():
    import psycopg

    from tests.conftest import database_url

    return psycopg.connect(database_url(), autocommit=True)


def test_an_import_holds_a_bounded_number_of_locks_whatever_its_size(tmp_path):
    """Issue 31, item 1: an import held one advisory lock per file to its end, and about
    12,800 filled PostgreSQL's shared lock table (default max_locks_per_transaction),
    failing the import and every other request. Now it holds one per bucket of files: of
    600 images, never more than file_claims.BUCKETS locks at once (sampled from another
    connection as the import goes), and none after."""
    source = tmp_path / "big"
    for scene in range(60):
        for index, stem in enumerate(["reference", *(f"m{i}" for i in range(9))]):
            write_png(
                source / f"s{scene:02d}" / f"{stem}.png", size=(8, 8), seed=scene * 10 + index
            )
    watcher = other_connection()
    peaks = []

    def sample():
        peaks.append(watcher.execute(FILE_LOCKS).fetchone()[0])

    try:
        study_import(source=source, slug="big", design="ref-vs-test", on_image=sample)
        after = watcher.execute(FILE_LOCKS).fetchone()[0]
    finally:
        watcher.close()
    assert Image.objects.filter(scene__study__slug="big").count() == 600
    assert max(peaks) <= file_claims.BUCKETS
    assert max(peaks) > 100  # the files spread over the buckets
    assert after == 0


def test_a_refused_imports_files_another_import_holds_are_swept_once_free(
    tmp_path, media_root, monkeypatch
):
    """A refused import cannot remove a file whose bucket another import holds (it may be
    that import's file): it leaves it in StoreLeftover; once the bucket is free, the
    beat's sweep removes it, since no row references it. With one bucket, every file
    shares it."""
    monkeypatch.setattr(file_claims, "BUCKETS", 1)
    source = tmp_path / "a"
    write_png(source / "s1" / "x.png", size=(40, 30), seed=1)
    (source / "s1" / "z-broken.png").write_bytes(b"not an image")  # after x.png
    holder = other_connection()  # another import, holding the one bucket
    holder.execute("SELECT pg_advisory_lock_shared(%s)", [file_claims._key(0)])
    try:
        with pytest.raises(StudyImportError):
            study_import(source=source, slug="a", design="pairwise")
        left = list(StoreLeftover.objects.values_list("path", flat=True))
        assert len(left) == 1
        assert (media_root / left[0]).is_file()
        assert services.store_leftovers_sweep() == 0  # still held
        assert (media_root / left[0]).is_file()
    finally:
        holder.close()
    assert services.store_leftovers_sweep() == 1
    assert not (media_root / left[0]).exists()
    assert not StoreLeftover.objects.exists()
