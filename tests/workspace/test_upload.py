"""Creating a study from an uploaded zip: ``POST /api/v1/studies`` and the "New study" page,
the import job run by its task's service, and every way an upload is refused.

The job's task body (``import_jobs.import_job_run``) is called directly; a real worker
runs it in ``test_upload_worker.py``. A refused upload writes nothing: the rows and the
media folder are exactly as before, and nothing is left under the uploads folder.

Over 400 lines: one case per refused upload, as the issue lists them.
"""

import io
import zipfile
from pathlib import Path

import PIL.Image
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadhandler import StopUpload
from django.test import override_settings
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from annotation.models import Image, Pair, Study
from tests.annotation.test_api_schema import IMPORT, STUDIES, Api
from tests.factories import StudyFactory
from tests.images import write_manifest, write_png, write_scene_folder
from tests.workspace.uploads import (
    corrupt_zip,
    good_member,
    study_zip,
    symlink_zip,
    zip_folder,
    zip_members,
)
from workspace import import_jobs, tasks
from workspace.models import ImportJob
from workspace.uploads import ZipUploadHandler

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture(autouse=True)
def uploads(tmp_path, settings) -> Path:
    """Uploads go to a folder of the test's own, unpacked zips to another (the scratch)."""
    folder = tmp_path / "uploads"
    settings.IQA_UPLOAD_DIR = folder
    settings.IQA_SCRATCH_DIR = tmp_path / "scratch"
    return folder


def left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def researcher():
    return User.objects.create_user("ada", password="a good secret 1")


@pytest.fixture
def schema() -> dict:
    return APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()


@pytest.fixture
def api(schema, researcher) -> Api:
    """The researcher's token client; every response is checked against the live schema."""
    client = APIClient()
    client.force_authenticate(researcher)
    return Api(client, schema)


def post_study(api: Api, status: int, *, zip_bytes: bytes | None, **fields) -> dict:
    body = {"slug": "fresh", "design": "ref-vs-test", **fields}
    if zip_bytes is not None:
        body["file"] = io.BytesIO(zip_bytes)
        body["file"].name = "study.zip"
    response = api.client.post(STUDIES, body, format="multipart")
    assert response.status_code == status, response.content
    api.check("post", STUDIES, response)
    return response.json()


def run_job(job_id) -> ImportJob:
    """The task's body, as a worker runs it."""
    return import_jobs.import_job_run(job_id=job_id)


def get_import(api: Api, job_id, status: int = 200) -> dict:
    response = api.client.get(IMPORT.format(job_id=job_id))
    assert response.status_code == status, response.content
    api.check("get", IMPORT, response)
    return response.json()


# --- the happy path ---------------------------------------------------------------------


def test_a_zip_posted_to_the_api_becomes_a_study_with_its_summary(
    api, researcher, uploads, tmp_path
):
    """202 with the job (queued, its url); the task imports the zip through the import
    service; the job is then done with done == total and the summary per scene; the study
    belongs to the caller; the upload and the unpacked files are gone."""
    created = post_study(api, 202, zip_bytes=study_zip(tmp_path, scenes=2), votes_per_pair=5)
    job_id = created["import"]["id"]
    assert created["import"]["status"] == "queued"
    assert created["import"]["url"] == IMPORT.format(job_id=job_id)
    queued = get_import(api, job_id)
    assert (queued["status"], queued["done"], queued["total"]) == ("queued", 0, 0)
    assert "summary" not in queued
    assert "error" not in queued
    assert len(left_in(uploads)) == 1  # the zip, waiting for its worker

    assert run_job(job_id).status == "done"

    done = get_import(api, job_id)
    assert done["status"] == "done"
    assert (done["done"], done["total"]) == (6, 6)
    assert done["study"] == "fresh"
    assert done["summary"] == {
        "scenes": 2,
        "images": 6,
        "images_made": 0,
        "pairs": 4,
        "gold_pairs": 0,
        "files_stored": 6,
        "per_scene": [
            {"scene": "s0", "images": 3, "pairs": 2, "gold_pairs": 0},
            {"scene": "s1", "images": 3, "pairs": 2, "gold_pairs": 0},
        ],
    }
    study = Study.objects.get(slug="fresh")
    assert study.owner == researcher
    assert study.votes_per_pair == 5
    assert study.status == "draft"
    assert left_in(uploads) == []


@pytest.mark.parametrize(
    "layout",
    [
        "folders at the top",
        "folders in one top folder",
        "manifest at the top",
        "manifest in one top folder",
        "one scene at the top",
    ],
)
def test_each_zip_layout_is_found(api, tmp_path, layout):
    """The folder layout or a manifest CSV, at the zip's top or inside its single top
    folder; a single top folder holding only images is itself a scene. macOS's
    ``__MACOSX`` folder is ignored."""
    src = tmp_path / "src"
    if layout.startswith("folders"):
        write_scene_folder(src, {"s0": ["reference", "a"], "s1": ["reference", "b"]})
        expected = 2
    elif layout.startswith("manifest"):
        write_png(src / "imgs/r.png")
        write_png(src / "imgs/t.png", seed=1)
        write_manifest(
            src / "study.csv",
            [("s", "imgs/r.png", "reference", ""), ("s", "imgs/t.png", "test", "x")],
        )
        expected = 1
    else:
        write_scene_folder(src, {"only": ["reference", "a"]})
        expected = 1
    prefix = "top/" if "top folder" in layout else ""
    buffer = io.BytesIO(zip_folder(src, prefix=prefix))
    with zipfile.ZipFile(buffer, "a") as zf:
        zf.writestr("__MACOSX/s0/._reference.png", b"resource fork")
    job_id = post_study(api, 202, zip_bytes=buffer.getvalue())["import"]["id"]
    job = run_job(job_id)
    assert job.status == "done", job.error
    assert job.summary["scenes"] == expected


# --- refused before anything is queued --------------------------------------------------


def test_settings_are_checked_at_once_by_the_one_validator(api, tmp_path, uploads, snapshot):
    """400 naming the setting (the study-settings validator's message); no job, the
    upload removed."""
    before = snapshot()
    body = post_study(api, 400, zip_bytes=study_zip(tmp_path), votes_per_pair=0)
    assert body["error"]["field"] == "votes_per_pair"
    assert body["error"]["message"] == "votes_per_pair must be at least 1, not 0"
    body = post_study(
        api, 400, zip_bytes=study_zip(tmp_path), design="ref-vs-test", show_reference=True
    )
    assert body["error"]["field"] == "show_reference"
    assert ImportJob.objects.count() == 0
    assert snapshot() == before
    assert left_in(uploads) == []


def test_a_slug_that_exists_is_refused_with_409(api, tmp_path, uploads, snapshot):
    StudyFactory(slug="fresh")
    before = snapshot()
    body = post_study(api, 409, zip_bytes=study_zip(tmp_path))
    assert body["error"] == {
        "code": "slug_exists",
        "message": "a study with slug 'fresh' already exists",
        "field": "slug",
    }
    assert ImportJob.objects.count() == 0
    assert snapshot() == before
    assert left_in(uploads) == []


def test_a_slug_being_imported_is_refused_with_409(api, tmp_path, uploads):
    post_study(api, 202, zip_bytes=study_zip(tmp_path))
    body = post_study(api, 409, zip_bytes=study_zip(tmp_path))
    assert "already under way" in body["error"]["message"]
    assert len(left_in(uploads)) == 1  # the first job's zip only


def test_no_file_or_not_multipart_is_refused(api):
    body = post_study(api, 400, zip_bytes=None)
    assert body["error"]["field"] == "file"
    response = api.client.post(STUDIES, {"slug": "x", "design": "pairwise"}, format="json")
    assert response.status_code == 415
    api.check("post", STUDIES, response)
    assert ImportJob.objects.count() == 0


def test_anonymous_callers_cannot_upload(schema, tmp_path, uploads):
    anonymous = Api(APIClient(), schema)
    body = {"slug": "x", "design": "pairwise", "file": io.BytesIO(study_zip(tmp_path))}
    response = anonymous.client.post(STUDIES, body, format="multipart")
    assert response.status_code == 403
    anonymous.check("post", STUDIES, response)
    assert left_in(uploads) == []


@override_settings(IQA_UPLOAD_MAX_BYTES=20_000)
def test_a_body_over_the_upload_limit_is_refused_with_413(api, tmp_path, uploads, snapshot):
    """The Content-Length is over IQA_UPLOAD_MAX_BYTES: 413 before a byte is read; no
    job, nothing under uploads/."""
    before = snapshot()
    big = zip_members({"s/noise.bin": bytes(range(256)) * 200}, method=zipfile.ZIP_STORED)
    assert len(big) > 20_000
    body = post_study(api, 413, zip_bytes=big)
    assert body["error"]["code"] == "too_large"
    assert "IQA_UPLOAD_MAX_BYTES" in body["error"]["message"]
    assert ImportJob.objects.count() == 0
    assert snapshot() == before
    assert left_in(uploads) == []


def test_the_upload_stops_while_streaming_at_the_limit_and_its_partial_file_is_removed(
    uploads, settings
):
    """A body with no Content-Length to check up front (a chunked request) is counted as it
    streams: at the limit the handler removes its partial file and stops the upload."""
    settings.IQA_UPLOAD_MAX_BYTES = 3 * 1024
    handler = ZipUploadHandler()
    assert handler.handle_raw_input(None, {}, None, b"b") is None
    handler.new_file("file", "study.zip", "application/zip", None)
    partial = handler.path
    handler.receive_data_chunk(b"x" * 2048, 0)
    assert partial.exists()
    with pytest.raises(StopUpload):
        handler.receive_data_chunk(b"x" * 2048, 2048)
    assert handler.too_large
    assert not partial.exists()
    assert left_in(uploads) == []


def test_the_upload_is_written_to_disk_not_memory(uploads, settings):
    """The handler writes each chunk to its file under uploads/ and keeps none of it."""
    handler = ZipUploadHandler()
    handler.new_file("file", "study.zip", "application/zip", None)
    for start in range(0, 8 * 1024**2, 1024**2):
        handler.receive_data_chunk(b"z" * 1024**2, start)
    uploaded = handler.file_complete(8 * 1024**2)
    assert handler.path.stat().st_size == 8 * 1024**2
    assert uploaded.size == 8 * 1024**2
    uploaded.close()
    handler.discard()
    assert left_in(uploads) == []


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_api_answers_503_and_keeps_nothing(
    api, tmp_path, uploads, monkeypatch
):
    """The job is queued after commit; a broker that does not answer fails the request
    loudly (503), fails the job and removes its upload: nothing runs inline."""

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.import_job_run, "apply_async", down)
    body = post_study(api, 503, zip_bytes=study_zip(tmp_path))
    assert body["error"]["code"] == "broker_unavailable"
    job = ImportJob.objects.get()
    assert job.status == "failed"
    assert "broker" in job.error
    assert left_in(uploads) == []


# --- refused by the job: bad zips and every import error ---------------------------------


def case_not_a_zip(tmp):
    return b"these are my notes, not a zip\n" * 10, ["not a zip file"]


def case_corrupt(tmp):
    return corrupt_zip(tmp), ["s/reference.png: corrupt zip member", "CRC"]


def case_zip_slip(tmp):
    return zip_members({"s/reference.png": good_member(tmp), "../x.png": b"x"}), [
        "../x.png: a path with '..'"
    ]


def case_absolute_member(tmp):
    return zip_members({"/etc/x.png": b"x"}), ["/etc/x.png: an absolute path"]


def case_symlink_member(tmp):
    return symlink_zip(), ["s/link.png: a symbolic link"]


def case_bomb_by_size(tmp):
    # 3 MB of zeros deflate to a few kilobytes; the limit is 1 MB unpacked.
    return zip_members({"s/reference.png": bytes(3_000_000)}), [
        "3,000,000 bytes, more than the maximum of 1,000,000 bytes (IQA_UPLOAD_MAX_UNCOMPRESSED"
    ]


def case_bomb_by_members(tmp):
    return zip_members({f"s/{i}.png": b"x" for i in range(11)}), [
        "11 members, more than the maximum of 10 (IQA_UPLOAD_MAX_MEMBERS)"
    ]


def case_empty_zip(tmp):
    return zip_members({}), ["the zip is empty"]


def case_truncated_image(tmp):
    src = write_scene_folder(tmp / "src", {"s": ["reference", "a"]})
    whole = (src / "s/a.png").read_bytes()
    (src / "s/a.png").write_bytes(whole[: len(whole) // 2])
    return zip_folder(src, prefix="study/"), ["s/a.png", "truncated or corrupt image"]


def case_manifest_bad_role(tmp):
    write_png(tmp / "m/r.png")
    write_manifest(tmp / "m/study.csv", [("s", "r.png", "original", "")])
    return zip_folder(tmp / "m"), ["study.csv line 2", "role 'original'"]


def case_manifest_escapes(tmp):
    write_png(tmp / "m/r.png")
    write_manifest(
        tmp / "m/study.csv", [("s", "r.png", "reference", ""), ("s", "../x.png", "test", "x")]
    )
    return zip_folder(tmp / "m"), ["study.csv line 3", "../x.png", "escapes"]


def case_size_differs(tmp):
    src = tmp / "src"
    write_png(src / "s/reference.png", size=(48, 32))
    write_png(src / "s/wide.png", size=(64, 32), seed=4)
    return zip_folder(src), ["s/wide.png", "64x32 differs from its reference"]


def case_no_reference(tmp):
    return zip_folder(write_scene_folder(tmp / "src", {"s": ["a", "b"]})), [
        "scene 's'",
        "no reference image",
    ]


def case_images_outside_scene_folders(tmp):
    write_png(tmp / "flat/a.png")
    write_png(tmp / "flat/b.png", seed=1)
    write_png(tmp / "flat/s/c.png", seed=2)
    return zip_folder(tmp / "flat"), ["a.png: a file outside any scene folder"]


CASES = [
    case_not_a_zip, case_corrupt, case_zip_slip, case_absolute_member, case_symlink_member,
    case_bomb_by_size, case_bomb_by_members, case_empty_zip, case_truncated_image,
    case_manifest_bad_role, case_manifest_escapes, case_size_differs, case_no_reference,
    case_images_outside_scene_folders,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__.removeprefix("case_"))
@override_settings(
    IQA_UPLOAD_MAX_UNCOMPRESSED=1_000_000, IQA_UPLOAD_MAX_MEMBERS=10, IQA_UPLOAD_MAX_RATIO=10_000
)
def test_a_bad_zip_fails_its_job_with_one_line_and_writes_nothing(
    case, api, tmp_path, uploads, snapshot, settings
):
    """The job fails with a one-line error naming the member (or file and manifest line),
    without the worker's scratch paths; rows and media are exactly as before, and the
    upload and every unpacked file are removed."""
    StudyFactory(slug="existing")
    data, fragments = case(tmp_path)
    before = snapshot()
    job_id = post_study(api, 202, zip_bytes=data, design="ref-vs-test")["import"]["id"]

    assert run_job(job_id).status == "failed"

    body = get_import(api, job_id)
    assert body["status"] == "failed"
    assert "summary" not in body
    message = body["error"]
    assert len(message.splitlines()) == 1
    for fragment in fragments:
        assert fragment in message, message
    assert str(uploads) not in message
    assert str(settings.IQA_SCRATCH_DIR) not in message
    assert "import-" not in message
    assert snapshot() == before
    assert left_in(uploads) == []
    assert left_in(settings.IQA_SCRATCH_DIR) == []


def test_a_zip_unpacks_to_at_most_twenty_times_its_size(api, tmp_path, uploads, settings):
    """A zip bomb far under IQA_UPLOAD_MAX_UNCOMPRESSED (4 GiB by default) is still
    refused at IQA_UPLOAD_MAX_RATIO (20) times its own size, in the scratch folder (not
    the data folder), which is empty again before the job reads failed."""
    bomb = zip_members({"s/reference.png": bytes(5_000_000)})  # a few KB, 5 MB unpacked
    assert len(bomb) * 20 < 5_000_000
    job_id = post_study(api, 202, zip_bytes=bomb)["import"]["id"]
    job = run_job(job_id)
    assert job.status == "failed"
    assert f"more than the maximum of {len(bomb) * 20:,} bytes" in job.error
    assert "IQA_UPLOAD_MAX_RATIO" in job.error
    assert left_in(settings.IQA_SCRATCH_DIR) == []
    assert left_in(uploads) == []


def test_the_summary_says_which_images_the_import_made(api, tmp_path, client, researcher):
    """Issue 25: 12 images uploaded with gold checks read "16 images" without a word on the
    4 more. The summary counts the images the import made (a degraded copy per scene and
    the worked example's), and the import's page says what they are."""
    job_id = post_study(api, 202, zip_bytes=study_zip(tmp_path, scenes=3), gold_rate=0.1)["import"][
        "id"
    ]
    assert run_job(job_id).status == "done"
    summary = get_import(api, job_id)["summary"]
    assert (summary["images"], summary["images_made"]) == (3 * 3 + 4, 4)
    client.force_login(researcher)
    page = client.get(f"/studies/imports/{job_id}/").content.decode()
    assert "4 were made by the import for the gold" in " ".join(page.split())


def test_a_job_is_run_once(api, tmp_path):
    """A job that is no longer queued is left as it is (a redelivered task does nothing)."""
    job_id = post_study(api, 202, zip_bytes=study_zip(tmp_path))["import"]["id"]
    first = run_job(job_id)
    assert first.status == "done"
    again = run_job(job_id)
    assert (again.status, again.summary) == ("done", first.summary)
    assert Study.objects.count() == 1
    assert run_job("00000000-0000-0000-0000-000000000000") is None


# --- who sees a job ---------------------------------------------------------------------


def test_a_job_is_seen_by_its_owner_and_staff_only(api, schema, tmp_path):
    job_id = post_study(api, 202, zip_bytes=study_zip(tmp_path))["import"]["id"]
    other = APIClient()
    other.force_authenticate(User.objects.create_user("bob", password="x"))
    get_import(Api(other, schema), job_id, 404)
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("root", password="x", is_staff=True))
    assert get_import(Api(staff, schema), job_id)["status"] == "queued"
    get_import(Api(APIClient(), schema), job_id, 403)
    get_import(api, "00000000-0000-0000-0000-000000000000", 404)


# --- a folder on the server (staff) ------------------------------------------------------


@pytest.fixture
def staff_api(schema) -> Api:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("root", password="x", is_staff=True))
    return Api(client, schema)


def test_staff_import_a_folder_under_the_import_root(staff_api, tmp_path, settings):
    settings.IQA_IMPORT_ROOT = tmp_path / "root"
    write_scene_folder(tmp_path / "root/lab/study1", {"s": ["reference", "a", "b"]})
    created = post_study(staff_api, 202, zip_bytes=None, server_folder="lab/study1")
    job = run_job(created["import"]["id"])
    assert job.status == "done", job.error
    assert job.summary["images"] == 3
    # The folder is the server's: the import reads it and leaves it.
    assert (tmp_path / "root/lab/study1/s/a.png").exists()


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../elsewhere", "without '..'"),
        ("/etc", "without '..'"),
        ("missing", "no such folder"),
        ("link", "points outside the import root"),
    ],
)
def test_a_server_folder_outside_the_root_is_refused(staff_api, tmp_path, settings, name, fragment):
    settings.IQA_IMPORT_ROOT = tmp_path / "root"
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root/link").symlink_to(tmp_path / "elsewhere")
    body = post_study(staff_api, 400, zip_bytes=None, server_folder=name)
    assert body["error"]["field"] == "server_folder"
    assert fragment in body["error"]["message"]
    assert ImportJob.objects.count() == 0


def test_server_folders_are_for_staff_and_off_without_a_root(api, staff_api, tmp_path, settings):
    settings.IQA_IMPORT_ROOT = tmp_path
    assert (
        post_study(api, 403, zip_bytes=None, server_folder="x")["error"]["field"] == "server_folder"
    )
    settings.IQA_IMPORT_ROOT = None
    body = post_study(staff_api, 400, zip_bytes=None, server_folder="x")
    assert "IQA_IMPORT_ROOT is not set" in body["error"]["message"]


def test_a_tiff_study_through_the_upload_gets_display_pngs(api, tmp_path):
    """The zip path runs the import service, so images browsers cannot show get their PNG."""
    src = tmp_path / "src"
    for stem, seed in (("reference", 0), ("a", 1)):
        png = write_png(tmp_path / f"{stem}.png", seed=seed)
        (src / "s").mkdir(parents=True, exist_ok=True)
        PIL.Image.open(png).save(src / f"s/{stem}.tif")
    job = run_job(post_study(api, 202, zip_bytes=zip_folder(src))["import"]["id"])
    assert job.status == "done", job.error
    images = Image.objects.filter(scene__study__slug="fresh")
    assert {image.format for image in images} == {"TIFF"}
    assert all(image.display_file.endswith(".png") for image in images)
    assert Pair.objects.filter(study__slug="fresh").count() == 1


def test_options_left_out_of_the_form_keep_their_defaults(api, tmp_path):
    """A multipart body without ``reference_is_candidate`` keeps its default (true): the
    pairwise reference is compared like any other image."""
    job = run_job(
        post_study(api, 202, zip_bytes=study_zip(tmp_path), design="pairwise")["import"]["id"]
    )
    assert job.summary["pairs"] == 2 * 3  # C(3, 2) per scene, the reference included
    job = run_job(
        post_study(
            api, 202, zip_bytes=study_zip(tmp_path, seed=9), slug="other", design="pairwise",
            reference_is_candidate="false",
        )["import"]["id"]
    )  # fmt: skip
    assert job.summary["pairs"] == 2 * 1


def test_a_file_and_a_folder_of_one_name_are_refused_by_name(tmp_path):
    """A zip holding ``s`` as a file and ``s/a.png`` cannot be unpacked: the refusal names
    the member (no internal error)."""
    from workspace.errors import UploadRefused
    from workspace.zips import zip_extract

    archive = tmp_path / "collide.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("s", b"a file")
        zf.writestr("s/a.png", b"an image")
    with pytest.raises(UploadRefused, match=r"^s/a\.png: cannot be unpacked"):
        zip_extract(archive, tmp_path / "out", max_bytes=10**6, max_members=10)
