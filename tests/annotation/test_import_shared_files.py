"""Concurrent imports that share a new image file, serialised per file: one import that
fails cannot remove a file the other, still running, references."""

import shutil
import threading

import pytest
from django.db import connection

from annotation.errors import StudyImportError
from annotation.models import Image
from annotation.services import study_import
from tests.images import write_png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


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
    # A's own file that nobody references is gone; the shared one is B's now.
    stored = {p.name for p in media_root.rglob("*.png")}
    assert stored == {
        Image.objects.get(name=n).file.rsplit("/", 1)[1] for n in ("s1/x.png", "s1/z.png")
    }
    with connection.cursor() as cursor:
        # The imports' file locks (namespace 0x1F5 in the key's top bits) in this database.
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint >> 20"
            " = 501 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert cursor.fetchone()[0] == 0
