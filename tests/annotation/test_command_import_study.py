"""``manage.py import_study`` as a process: what it prints, its exit code, and that a
refused import leaves the database and the media folder exactly as they were."""

import os
from pathlib import Path

import PIL.Image
import pytest

from tests.images import write_manifest, write_png, write_scene_folder

pytestmark = pytest.mark.django_db(transaction=True)

ELEVEN = ["reference", *(f"sr-{i}" for i in range(10))]


def test_pairwise_import_prints_55_pairs_per_scene(tmp_path, manage):
    source = write_scene_folder(tmp_path / "src", {"city": ELEVEN, "face": ELEVEN})
    done = manage("import_study", str(source), "--slug", "sriqa", "--design", "pairwise",
                  "--show-reference", "--votes-per-pair", "10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "Created study 'sriqa' (pairwise): 2 scenes, 22 images (22 new files stored), "
        "110 pairs, 10 votes per pair, 0 gold pairs; status draft"
    )
    assert lines[1:] == ["  scene city: 11 images, 55 pairs", "  scene face: 11 images, 55 pairs"]


@pytest.mark.slow
def test_a_large_import_shows_a_progress_bar(tmp_path, manage):
    source = write_scene_folder(
        tmp_path / "src", {f"s{i:02d}": ["reference", "a", "b", "c", "d"] for i in range(24)}
    )
    done = manage("import_study", str(source), "--slug", "big", "--design", "ref-vs-test")
    assert done.returncode == 0, done.stderr
    assert "importing: 100%" in done.stderr
    assert "120/120" in done.stderr
    assert "24 scenes, 120 images" in done.stdout


def _bomb(path: Path, side: int) -> Path:
    # A 1-bit blank image compresses to almost nothing but decodes to side*side pixels.
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.new("1", (side, side)).save(path, optimize=True)
    return path


def _valid_scene(src: Path) -> None:
    # A good scene that sorts first, so its files are stored before the bad one fails.
    write_scene_folder(src, {"aaa": ["reference", "one", "two"]}, seed=500)


def case_missing_file(tmp: Path):
    write_png(tmp / "imgs/r.png")
    manifest = write_manifest(
        tmp / "study.csv",
        [("s", "imgs/r.png", "reference", ""), ("s", "imgs/nope.png", "test", "x")],
    )
    return manifest, "ref-vs-test", ["study.csv line 3", "imgs/nope.png", "file not found"]


def case_folder_instead_of_file(tmp: Path):
    write_png(tmp / "imgs/r.png")
    (tmp / "imgs/dir.png").mkdir()
    manifest = write_manifest(
        tmp / "study.csv",
        [("s", "imgs/r.png", "reference", ""), ("s", "imgs/dir.png", "test", "x")],
    )
    return manifest, "ref-vs-test", ["study.csv line 3", "imgs/dir.png", "not an image file"]


def case_dangling_symlink(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_png(src / "zzz/reference.png")
    (src / "zzz/gone.png").symlink_to(src / "zzz/deleted.png")
    return src, "ref-vs-test", ["zzz/gone.png", "file not found"]


def case_truncated(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_png(src / "zzz/reference.png", size=(64, 64))
    whole = write_png(src / "zzz/broken.png", size=(64, 64), seed=9).read_bytes()
    (src / "zzz/broken.png").write_bytes(whole[: len(whole) // 2])
    return src, "ref-vs-test", ["zzz/broken.png", "truncated or corrupt image"]


def case_not_an_image(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_png(src / "zzz/reference.png")
    (src / "zzz/notes.png").write_text("these are my notes, not pixels\n")
    return src, "ref-vs-test", ["zzz/notes.png", "not an image"]


def case_bomb_over_configured_maximum(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    _bomb(src / "zzz/bomb.png", 8000)
    write_png(src / "zzz/x.png")
    return (
        src,
        "nr-pairwise",
        ["zzz/bomb.png", "64,000,000 pixels exceeds the maximum of 50,000,000"],
    )


def case_bomb_over_pillow_limit(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    _bomb(src / "zzz/bomb.png", 20000)
    write_png(src / "zzz/x.png")
    return src, "nr-pairwise", ["zzz/bomb.png", "decompression bomb"]


def case_dotdot(tmp: Path):
    write_png(tmp / "outside.png")
    write_png(tmp / "m/r.png", seed=1)
    manifest = write_manifest(
        tmp / "m/study.csv", [("s", "r.png", "reference", ""), ("s", "../outside.png", "test", "x")]
    )
    return manifest, "ref-vs-test", ["study.csv line 3", "../outside.png", "escapes"]


def case_absolute(tmp: Path):
    write_png(tmp / "m/r.png", seed=1)
    absolute = write_png(tmp / "elsewhere.png")
    manifest = write_manifest(
        tmp / "m/study.csv", [("s", "r.png", "reference", ""), ("s", str(absolute), "test", "x")]
    )
    return manifest, "ref-vs-test", ["study.csv line 3", "absolute path"]


def case_symlink_out_of_manifest_folder(tmp: Path):
    write_png(tmp / "m/r.png", seed=1)
    (tmp / "m/link.png").symlink_to(write_png(tmp / "secret.png"))
    manifest = write_manifest(
        tmp / "m/study.csv", [("s", "r.png", "reference", ""), ("s", "link.png", "test", "x")]
    )
    return manifest, "ref-vs-test", ["study.csv line 3", "link.png", "points outside"]


def case_symlink_out_of_source_folder(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_png(src / "zzz/reference.png")
    (src / "zzz/link.png").symlink_to(write_png(tmp / "secret.png", seed=3))
    return src, "ref-vs-test", ["zzz/link.png", "points outside"]


def case_two_references(tmp: Path):
    for i in range(3):
        write_png(tmp / f"{i}.png", seed=i)
    manifest = write_manifest(
        tmp / "study.csv",
        [
            ("s", "0.png", "reference", ""),
            ("s", "1.png", "test", "x"),
            ("s", "2.png", "reference", ""),
        ],
    )
    return manifest, "pairwise", ["study.csv line 4", "two references"]


def case_no_reference(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_scene_folder(src, {"zzz": ["a", "b"]})
    return src, "ref-vs-test", ["scene 'zzz'", "no reference image"]


def case_size_differs(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    write_png(src / "zzz/reference.png", size=(48, 32))
    write_png(src / "zzz/wide.png", size=(64, 32), seed=4)
    return src, "ref-vs-test", ["zzz/wide.png", "64x32 differs from its reference", "48x32"]


def case_duplicate_rows(tmp: Path):
    write_png(tmp / "r.png")
    write_png(tmp / "a.png", seed=1)
    manifest = write_manifest(
        tmp / "study.csv",
        [("s", "r.png", "reference", ""), ("s", "a.png", "test", "x"), ("s", "a.png", "test", "x")],
    )
    return manifest, "ref-vs-test", ["study.csv line 4", "duplicate row", "line 3"]


def case_empty_scene(tmp: Path):
    src = tmp / "src"
    _valid_scene(src)
    (src / "zzz").mkdir()
    return src, "ref-vs-test", ["zzz", "empty scene"]


def case_unknown_design(tmp: Path):
    return write_scene_folder(tmp / "src", {"s": ["a", "b"]}), "pairs", ["unknown design 'pairs'"]


def case_bad_role(tmp: Path):
    write_png(tmp / "r.png")
    manifest = write_manifest(tmp / "study.csv", [("s", "r.png", "original", "")])
    return manifest, "pairwise", ["study.csv line 2", "role 'original'"]


def case_missing_columns(tmp: Path):
    (tmp / "study.csv").write_text("scene,file\ns,a.png\n")
    return (
        tmp / "study.csv",
        "pairwise",
        ["study.csv line 1", "missing column(s) path, role, condition"],
    )


def case_manifest_not_utf8(tmp: Path):
    (tmp / "study.csv").write_bytes(b"scene,path,role,condition\ns,caf\xe9.png,test,\n")
    return tmp / "study.csv", "pairwise", ["study.csv", "not UTF-8"]


CASES = [
    case_missing_file, case_folder_instead_of_file, case_dangling_symlink, case_truncated,
    case_not_an_image, case_bomb_over_configured_maximum, case_bomb_over_pillow_limit,
    case_dotdot, case_absolute, case_symlink_out_of_manifest_folder,
    case_symlink_out_of_source_folder, case_two_references, case_no_reference,
    case_size_differs, case_duplicate_rows, case_empty_scene, case_unknown_design,
    case_bad_role, case_missing_columns, case_manifest_not_utf8,
]  # fmt: skip


@pytest.fixture
def existing_study(tmp_path, manage):
    """A study already imported, so 'nothing written' is checked against a non-empty state."""
    source = write_scene_folder(tmp_path / "existing", {"old": ["reference", "p", "q"]}, seed=77)
    done = manage("import_study", str(source), "--slug", "existing", "--design", "ref-vs-test")
    assert done.returncode == 0, done.stderr
    return "existing"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__.removeprefix("case_"))
def test_bad_input_is_refused_with_one_line_naming_the_file_and_nothing_written(
    case, tmp_path, manage, snapshot, existing_study
):
    source, design, fragments = case(tmp_path)
    before = snapshot()

    done = manage("import_study", str(source), "--slug", "fresh", "--design", design)

    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("CommandError: import refused, nothing written: ")
    for fragment in fragments:
        assert fragment in message
    assert snapshot() == before


def test_an_existing_slug_is_refused_and_the_existing_study_is_untouched(
    tmp_path, manage, snapshot, existing_study
):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]}, seed=5)
    before = snapshot()
    done = manage("import_study", str(source), "--slug", existing_study, "--design", "ref-vs-test")
    assert done.returncode == 1
    assert "a study with slug 'existing' already exists" in done.stderr
    assert snapshot() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_is_refused(tmp_path, manage, snapshot):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]})
    (source / "s/a.png").chmod(0)
    before = snapshot()
    done = manage("import_study", str(source), "--slug", "x", "--design", "ref-vs-test")
    assert done.returncode == 1
    assert "s/a.png: cannot read the file (permission denied)" in done.stderr
    assert snapshot() == before
