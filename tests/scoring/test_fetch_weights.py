"""Fetching weights: ``install_weights --fetch`` from where files are published (here a
local HTTP server standing in for them) or from a lab's mirror, checked, resumed, and
moved into place whole; failures named, nothing half-written; ``--export-mirror``.

Over 400 lines: one local HTTP server and its fixtures serve every case."""

import hashlib
import http.server
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote

import huggingface_hub.constants
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from scoring import fetch, weights
from scoring.models import Score
from tests.conftest import REPO, database_url, start_worker, stop_worker
from tests.images import write_scene_folder
from tests.scoring.test_weights import DISTS_FILES, LPIPS_FILES, NO_NETWORK, write_random_weights

pytestmark = pytest.mark.django_db(transaction=True)

HF_FILE = "huggingface:timm/resnet50.a1_in1k/model.safetensors"
HF_REPO = "huggingface:q-future/one-align"
COMMIT = "a" * 40


class Server(http.server.ThreadingHTTPServer):
    """Serves ``root`` with Range requests; ``cut`` names paths whose next GETs send
    half the file and close the connection (a count per path); ``hub`` maps a Hugging
    Face resolve path to (bytes, commit, etag) and answers as the hub does."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.cut: dict[str, int] = {}
        self.hub: dict[str, tuple[bytes, str, str]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_GET(self) -> None:
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        server: Server = self.server
        path = self.path.split("?")[0]
        server.requests.append((self.command, path, self.headers.get("Range", "")))
        extra = {}
        if path.lstrip("/") in server.hub:
            data, commit, etag = server.hub[path.lstrip("/")]
            extra = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
        else:
            file = server.root / unquote(path.lstrip("/"))
            if not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and body:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if not body:
            return
        if server.cut.get(path, 0) > 0:
            server.cut[path] -= 1
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def serve():
    servers = []

    def start(root: Path) -> Server:
        server = Server(root)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF", 0.05)
    monkeypatch.setattr(fetch, "RETRIES", 2)
    for key in ("HF_ENDPOINT", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def install(*args: str, folder: Path) -> str:
    """``install_weights ARGS`` in this process, into ``folder``; its output."""
    out = io.StringIO()
    with override_settings(IQA_WEIGHTS_DIR=folder):
        call_command("install_weights", *args, stdout=out)
    return out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_checksums_of(monkeypatch, folder: Path) -> None:
    """The catalog as if the publishers' checksums were those of the stand-in files in
    ``folder`` (the real ones name the real files)."""
    patched = json.loads(weights.CATALOG.read_text())
    for entry in patched.values():
        for file, source in entry["sources"].items():
            if "sha256" in source and (folder / file).is_file():
                source["sha256"] = sha256(folder / file)[: len(source["sha256"])]
    monkeypatch.setattr(weights, "catalog", lambda: patched)


def files_in(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a link by its target, a file by its SHA256; the
    record of fetched files left out (it names where they came from)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if relative == fetch.RECORD:
            continue
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            found[relative] = sha256(path)
    return found


@pytest.mark.slow
def test_fetch_from_a_mirror_installs_lpips_and_dists_and_a_worker_scores_with_them(
    tmp_path, serve, monkeypatch, manage, media_root
):
    """Stand-in files under the mirror layout; fetched, checked against the (stand-in)
    publishers' checksums, reported ready, and scored with by a real offline worker."""
    mirror = tmp_path / "mirror"
    write_random_weights(mirror)
    with_checksums_of(monkeypatch, mirror)
    server = serve(mirror)
    folder = tmp_path / "weights"

    out = install("--fetch", "lpips,dists", "--mirror", server.url + "/", folder=folder)
    for file in LPIPS_FILES + DISTS_FILES:
        assert (folder / file).read_bytes() == (mirror / file).read_bytes()
        assert f"fetched  {file}" in out
    assert "ready: lpips, dists" in out
    assert not list(folder.rglob("*.partial"))
    record = json.loads((folder / fetch.RECORD).read_text())
    assert record[DISTS_FILES[0]]["size"] == (mirror / DISTS_FILES[0]).stat().st_size
    assert record[DISTS_FILES[0]]["from"] == f"{server.url}/{DISTS_FILES[0]}"

    # Nothing is downloaded twice.
    server.requests.clear()
    again = install("--fetch", "lpips,dists", "--mirror", server.url, folder=folder)
    assert "0 files fetched, 4 already present" in again
    assert [r for r in server.requests if r[0] == "GET" and r[1] != "/index.json"] == []

    status = manage("metrics_status", env_extra={"IQA_WEIGHTS_DIR": str(folder)})
    lines = status.stdout.splitlines()
    for name in ("lpips", "dists"):
        line = next(line for line in lines if line.startswith(f"{name} "))
        assert line.rstrip().endswith("ready"), line

    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]}, size=(64, 64))
    manage("import_study", str(source), "--slug", "f", "--design", "ref-vs-test")
    worker = start_worker(
        name="fetched",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={"IQA_WEIGHTS_DIR": str(folder), **NO_NETWORK},
    )
    try:
        done = manage(
            "score_study", "f", "--metrics", "lpips,dists", "--wait", "--timeout", "300",
            env_extra={"IQA_WEIGHTS_DIR": str(folder), "IQA_SCORING_QUEUE": worker.queue},
        )  # fmt: skip
    finally:
        stop_worker(worker)
    assert done.returncode == 0, done.stderr
    scores = Score.objects.filter(metric__in=["lpips", "dists"])
    assert scores.count() == 4
    assert not scores.exclude(error="").exists()
    assert all("+w" in s.version for s in scores)


def test_a_corrupt_file_and_a_missing_one_are_named_and_nothing_is_installed(tmp_path, serve):
    """Against the real catalog, a stand-in under a published name fails its publisher's
    checksum (the hash in the name); a file the mirror lacks is a 404. Each is named with
    its reason, the command fails, and the weights folder holds no file."""
    mirror = tmp_path / "mirror"
    write_random_weights(mirror)
    (mirror / LPIPS_FILES[1]).unlink()
    server = serve(mirror)
    folder = tmp_path / "weights"
    with pytest.raises(CommandError) as failed:
        install("--fetch", "lpips,dists", "--mirror", server.url, folder=folder)
    message = str(failed.value)
    assert re.search(
        r"hub/checkpoints/vgg16-397923af.pth: checksum mismatch: its SHA256 is [0-9a-f]{16}"
        r"\.\.\., the publisher's is 397923af",
        message,
    ), message
    assert "hub/pyiqa/DISTS_weights-f5e65c96.pth: checksum mismatch" in message
    assert "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth: HTTP 404" in message
    assert [p for p in folder.rglob("*") if p.is_file()] == []


def test_a_cut_connection_is_resumed_with_a_range_request(tmp_path, serve):
    """The first GET sends half the file and closes; the next asks for the rest with a
    Range request and the whole file is installed. A connection cut on every try gives
    up, named, and leaves no partial file."""
    mirror = tmp_path / "mirror"
    file = "hub/pyiqa/brisque_svm_weights.pth"  # no checksum in its name
    (mirror / "hub" / "pyiqa").mkdir(parents=True)
    (mirror / file).write_bytes(os.urandom(300_000))
    server = serve(mirror)
    server.cut[f"/{file}"] = 1
    folder = tmp_path / "weights"
    out = install("--fetch", "brisque", "--mirror", server.url, folder=folder)
    assert (folder / file).read_bytes() == (mirror / file).read_bytes()
    gets = [r for r in server.requests if r[0] == "GET" and r[1] == f"/{file}"]
    assert gets == [("GET", f"/{file}", ""), ("GET", f"/{file}", "bytes=150000-")]
    assert f"fetched  {file}" in out

    other = tmp_path / "weights2"
    server.cut[f"/{file}"] = 10
    with pytest.raises(CommandError) as failed:
        install("--fetch", "brisque", "--mirror", server.url, folder=other)
    assert re.search(
        rf"{file}: the connection closed after \d+ of 300000 bytes from "
        rf"{re.escape(server.url)}/{file} \(gave up after 2 retries\)",
        str(failed.value),
    ), failed.value
    assert [p for p in other.rglob("*") if p.is_file()] == []


def test_a_full_disk_is_named_and_leaves_nothing_half_written(tmp_path, serve):
    """A weights folder on a 1 MiB tmpfs (as root; elsewhere a 1 MiB file size limit on
    the command's process) and a 3 MB file: the write fails, the file and the reason are
    named, and no partial file is left."""
    mirror = tmp_path / "mirror"
    file = "hub/pyiqa/niqe_modelparameters.mat"
    (mirror / "hub" / "pyiqa").mkdir(parents=True)
    (mirror / file).write_bytes(os.urandom(3_000_000))
    server = serve(mirror)
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]).returncode
        == 0
    )
    try:
        if mounted:
            with pytest.raises(CommandError) as failed:
                install("--fetch", "niqe", "--mirror", server.url, folder=folder)
            message = str(failed.value)
            assert f"{file}: cannot write {folder}/hub/pyiqa/.niqe_modelparameters" in message
            assert "No space left on device" in message
        else:

            def limit() -> None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

            done = subprocess.run(
                [sys.executable, "manage.py", "install_weights", "--fetch", "niqe",
                 "--mirror", server.url],
                cwd=REPO, capture_output=True, text=True, preexec_fn=limit, timeout=120,
                env={**os.environ, "IQA_WEIGHTS_DIR": str(folder), "DATABASE_URL": database_url()},
            )  # fmt: skip
            assert done.returncode == 1
            message = done.stderr
            assert f"{file}: cannot write {folder}/hub/pyiqa/.niqe_modelparameters" in message
            assert "File too large" in message
        assert [p for p in folder.rglob("*") if p.is_file()] == []
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def hf_cache_with_blobs(folder: Path, repo: str, files: dict[str, bytes]) -> None:
    """A Hugging Face cache as huggingface_hub writes it: blobs by ETag, the snapshot's
    files as relative links to them, and the ref."""
    root = folder / "huggingface" / "hub" / f"models--{repo.replace('/', '--')}"
    for name, content in files.items():
        blob = root / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = root / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)


def test_export_mirror_then_fetch_all_from_it_reproduces_the_weights_folder(tmp_path, serve):
    """A weights folder with pyiqa files, a timm file and a whole transformers repository
    (in a Hugging Face cache) is exported; ``--fetch all --mirror`` from the export fills
    an empty folder with the same files, links and refs, byte for byte; files the mirror
    does not hold are skipped, and a second run fetches nothing."""
    source = tmp_path / "weights"
    for file in ("hub/pyiqa/brisque_svm_weights.pth", "hub/pyiqa/niqe_modelparameters.mat"):
        (source / file).parent.mkdir(parents=True, exist_ok=True)
        (source / file).write_bytes(os.urandom(5000))
    hf_cache_with_blobs(source, "timm/resnet50.a1_in1k", {"model.safetensors": os.urandom(7000)})
    hf_cache_with_blobs(
        source,
        "q-future/one-align",
        {"config.json": b"{}", "model.safetensors": os.urandom(9000), "sub/tok.json": b"[]"},
    )
    mirror = tmp_path / "mirror"
    out = install("--export-mirror", str(mirror), folder=source)
    assert "8 files" in out
    index = json.loads((mirror / fetch.INDEX).read_text())["files"]
    assert index["hub/pyiqa/brisque_svm_weights.pth"]["sha256"] == sha256(
        source / "hub/pyiqa/brisque_svm_weights.pth"
    )
    snapshot = f"huggingface/hub/models--q-future--one-align/snapshots/{COMMIT}"
    assert (mirror / snapshot / "sub/tok.json").read_bytes() == b"[]"
    assert not (mirror / snapshot / "sub/tok.json").is_symlink()

    server = serve(mirror)
    copy = tmp_path / "copy"
    out = install("--fetch", "all", "--mirror", server.url, folder=copy)
    assert files_in(copy) == files_in(source)
    assert "4 files fetched" in out
    assert "skipped  hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth: not in the mirror" in out
    with override_settings(IQA_WEIGHTS_DIR=copy):
        assert weights.missing_files([HF_FILE, HF_REPO]) == []

    server.requests.clear()
    again = install("--fetch", "all", "--mirror", server.url, folder=copy)
    assert "0 files fetched, 4 already present" in again
    assert [r[1] for r in server.requests] == ["/index.json"]

    # A metric named one by one that the mirror lacks is a failure.
    with pytest.raises(CommandError, match=r"LPIPS_v0\.1_alex-df73285e\.pth: not in the mirror"):
        install("--fetch", "lpips", "--mirror", server.url, folder=copy)


def test_hugging_face_files_come_through_huggingface_hub_from_HF_ENDPOINT(
    tmp_path, serve, monkeypatch
):
    """With ``HF_ENDPOINT`` at a stand-in for the hub (the resolve endpoint, with the
    commit, ETag and size headers huggingface_hub reads), a timm backbone lands in the
    weights folder's Hugging Face cache where workers find it offline, checked against
    the SHA256 in its ETag; pyiqa's own file, published on the hub, comes from the same
    endpoint. A file whose content does not match its ETag is refused, leaving nothing."""
    content = os.urandom(20_000)
    digest = hashlib.sha256(content).hexdigest()
    pyiqa_file = "hub/pyiqa/cfanet_fr_kadid_res50-2c4cc61d.pth"
    stand_ins = tmp_path / "hub"
    (stand_ins / "chaofengc/IQA-PyTorch-Weights/resolve/main").mkdir(parents=True)
    pyiqa_content = os.urandom(1000)
    (stand_ins / "chaofengc/IQA-PyTorch-Weights/resolve/main" / Path(pyiqa_file).name).write_bytes(
        pyiqa_content
    )
    (tmp_path / "for-checksums" / pyiqa_file).parent.mkdir(parents=True)
    (tmp_path / "for-checksums" / pyiqa_file).write_bytes(pyiqa_content)
    with_checksums_of(monkeypatch, tmp_path / "for-checksums")
    server = serve(stand_ins)
    server.hub["timm/resnet50.a1_in1k/resolve/main/model.safetensors"] = (content, COMMIT, digest)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    # The command runs in this process: an earlier test that imported huggingface_hub in
    # a worker's environment left it offline (it reads HF_HUB_OFFLINE once, at import),
    # where a fresh ``manage.py install_weights`` process starts online.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    folder = tmp_path / "weights"

    dry = install("--fetch", "topiq_fr", "--dry-run", folder=folder)
    assert (
        f"from {server.url}/timm/resnet50.a1_in1k/resolve/main/model.safetensors (huggingface_hub)"
    ) in dry
    assert "huggingface:timm/resnet50.a1_in1k/model.safetensors  20.0 KB (server)" in dry
    assert not folder.exists()

    out = install("--fetch", "topiq_fr", folder=folder)
    assert "ready: topiq_fr" in out
    assert (folder / pyiqa_file).read_bytes() == pyiqa_content
    repo = folder / "huggingface/hub/models--timm--resnet50.a1_in1k"
    assert (repo / "blobs" / digest).read_bytes() == content
    assert (repo / "refs" / "main").read_text() == COMMIT
    link = repo / "snapshots" / COMMIT / "model.safetensors"
    assert os.readlink(link) == f"../../blobs/{digest}"
    assert not (folder / fetch.STAGING).exists()
    heads = [r for r in server.requests if r[1].startswith("/timm/")]
    assert heads[0][0] == "HEAD"

    # The worker's offline lookup finds it.
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        "timm/resnet50.a1_in1k", "model.safetensors", cache_dir=folder / "huggingface/hub"
    )
    assert found == str(link)

    server.hub["timm/resnet50.a1_in1k/resolve/main/model.safetensors"] = (
        content,
        COMMIT,
        "b" * 64,
    )
    other = tmp_path / "weights2"
    (other / "hub" / "pyiqa").mkdir(parents=True)
    shutil.copy(folder / pyiqa_file, other / pyiqa_file)
    with pytest.raises(CommandError) as failed:
        install("--fetch", "topiq_fr", folder=other)
    assert f"{HF_FILE}: checksum mismatch: model.safetensors has SHA256 {digest[:16]}" in str(
        failed.value
    )
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*") if p.is_file()) == [
        pyiqa_file
    ]
    assert not (other / "huggingface").exists() or not any(
        (other / "huggingface").rglob("*.safetensors")
    )


def test_dry_run_lists_files_and_sources_without_the_network(tmp_path, manage):
    """On a fresh clone with no network, ``--fetch recommended --dry-run`` lists every
    file with its published source and "size unknown", fetches nothing, and succeeds."""
    folder = tmp_path / "weights"
    done = manage(
        "install_weights", "--fetch", "recommended", "--dry-run",
        env_extra={"IQA_WEIGHTS_DIR": str(folder), **NO_NETWORK},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "fetch    hub/checkpoints/vgg16-397923af.pth  size unknown  for dists" in out
    assert "from https://download.pytorch.org/models/vgg16-397923af.pth  (SHA256 397923af)" in out
    assert (
        "from https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
        "DISTS_weights-f5e65c96.pth  (SHA256 f5e65c96)"
    ) in out
    assert "/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/" in out
    assert "huggingface:timm/resnet50.a1_in1k/model.safetensors  size unknown" in out
    for name in weights.RECOMMENDED:
        assert f"for {name}" in out or f", {name}" in out, name
    assert "nothing fetched" in out
    assert not folder.exists()

    unknown = manage("install_weights", "--fetch", "lpips,dits", "--dry-run")
    assert unknown.returncode == 1
    assert "not in the weights catalog: dits (did you mean dists" in unknown.stderr


def test_every_catalogued_file_has_a_source_and_checksums_follow_the_publishers():
    """The catalog says where each file is published; pyiqa's and torchvision's hashed
    names and CLIP's URLs give their checksums; Hugging Face files name repo and path."""
    for name, entry in weights.catalog().items():
        assert set(entry["sources"]) == set(entry["files"]), name
    assert weights.file_source("dists", DISTS_FILES[0]) == {
        "url": "https://download.pytorch.org/models/vgg16-397923af.pth",
        "sha256": "397923af",
    }
    assert weights.file_source("lpips", LPIPS_FILES[1]) == {
        "url": "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
        "LPIPS_v0.1_alex-df73285e.pth",
        "sha256": "df73285e",
    }
    clip = weights.file_source("clipscore", "clip/ViT-B-32.pt")
    assert clip["url"].split("/")[-2] == clip["sha256"]
    assert weights.file_source("topiq_fr", HF_FILE) == {
        "url": "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors",
        "repo": "timm/resnet50.a1_in1k",
        "path": "model.safetensors",
        "revision": "main",
    }
    assert weights.file_source("qalign", HF_REPO)["repo"] == "q-future/one-align"
    assert "sha256" not in weights.file_source("afine_fr", "hub/pyiqa/afine.pth")
    assert set(weights.RECOMMENDED) <= set(weights.catalog())


@pytest.mark.parametrize("tamper", ["path", "blob", "ref"])
def test_a_mirror_naming_paths_outside_the_snapshot_is_refused_and_writes_nothing(
    tmp_path, serve, tamper
):
    """A mirror's index and refs name files inside the weights folder; a name that
    climbs out of the snapshot (``..``), a blob name with a slash, or a ref that is not a
    commit is refused by name before anything is downloaded or written."""
    source = tmp_path / "weights"
    hf_cache_with_blobs(source, "q-future/one-align", {"config.json": b"{}"})
    mirror = tmp_path / "mirror"
    install("--export-mirror", str(mirror), folder=source)
    root = "huggingface/hub/models--q-future--one-align"
    index_file = mirror / fetch.INDEX
    index = json.loads(index_file.read_text())
    entry = index["files"].pop(f"{root}/snapshots/{COMMIT}/config.json")
    if tamper == "path":
        index["files"][f"{root}/snapshots/{COMMIT}/../../../../../escape.json"] = entry
    elif tamper == "blob":
        index["files"][f"{root}/snapshots/{COMMIT}/config.json"] = {**entry, "blob": "../../x"}
    else:
        index["files"][f"{root}/snapshots/{COMMIT}/config.json"] = entry
        (mirror / root / "refs" / "main").write_text("../../../escape")
    index_file.write_text(json.dumps(index))
    server = serve(mirror)
    copy = tmp_path / "copy"
    with pytest.raises(CommandError, match=r"outside the snapshot|names no commit"):
        install("--fetch", "all", "--mirror", server.url, folder=copy)
    assert list(tmp_path.rglob("*escape*")) + list(tmp_path.rglob("x")) == []
    assert [p for p in (copy / "huggingface").rglob("*") if p.is_file()] == []
