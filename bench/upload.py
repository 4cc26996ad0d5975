"""Creating a study by upload: a zip of noise PNGs through ``POST /api/v1/studies``.

Builds a zip of N images of about S bytes each (noise, so they do not compress; stored
uncompressed in the zip), starts gunicorn and a Celery worker on a scratch PostgreSQL
database, uploads the zip with an API token (streamed from disk with a Content-Length,
as curl does), polls ``GET /api/v1/imports/{id}`` until the import is done, and prints:
the upload's seconds, the import's seconds, the total, images per second, and the
resident memory of gunicorn's worker processes (before, and the peak during the upload,
sampled from /proc every 50 ms, with the kernel's own high-water mark VmHWM). The upload
streams to disk, so the peak must not grow with the size of the zip.

    .venv/bin/python bench/upload.py [--images 10000] [--total-mib 1024]
    .venv/bin/python bench/upload.py --smoke   # seconds: what the suite runs

It needs PostgreSQL on 127.0.0.1:5432 and Redis (``CELERY_BROKER_URL``, default
redis://127.0.0.1:6379/0; the run uses a queue of its own); it drops and recreates the
scratch database ``iqa_bench_upload`` (``--database``).
"""

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parent.parent
PER_SCENE = 10  # a reference and 9 test images


def build_zip(path: Path, n_images: int, total_bytes: int, seed: int = 0) -> tuple[int, int]:
    """``n_images`` noise PNGs of about ``total_bytes / n_images`` bytes each, in scene
    folders of ten; returns (side, bytes of the zip)."""
    per_image = total_bytes / n_images
    side = max(8, int(math.sqrt(per_image / 3)))
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf, tempfile.TemporaryDirectory() as t:
        png = Path(t) / "x.png"
        for index in range(n_images):
            scene, position = divmod(index, PER_SCENE)
            stem = "reference" if position == 0 else f"method-{position}"
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            PIL.Image.fromarray(pixels).save(png, compress_level=0)
            zf.write(png, f"study/scene-{scene:05d}/{stem}.png")
    return side, path.stat().st_size


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def prepare_database(name: str, env: dict) -> str:
    """A fresh database with a researcher; returns the researcher's API token."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from knox.models import AuthToken\n"
        "user = get_user_model().objects.create_user('bench', password='bench-password-1')\n"
        "print(AuthToken.objects.create(user=user, expiry=None)[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(log.read_text()[-3000:])
        try:
            parts = urllib.parse.urlsplit(url)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            connection.request("GET", parts.path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


class RssSampler(threading.Thread):
    """The largest resident set of any gunicorn worker process, sampled every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_kib = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            for pid in self.pids:
                self.peak_kib = max(self.peak_kib, status_kib(pid, "VmRSS"))
            time.sleep(0.05)


def upload(url: str, token: str, fields: dict, path: Path) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    head = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"'
            "\r\nContent-Type: application/zip\r\n\r\n"
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    connection.putrequest("POST", parts.path)
    connection.putheader("Authorization", f"Token {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    connection.endheaders()
    connection.send(head)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            connection.send(chunk)
    connection.send(tail)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def get_json(url: str, token: str) -> dict:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", parts.path, headers={"Authorization": f"Token {token}"})
    return json.loads(connection.getresponse().read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--total-mib", type=float, default=1024)
    parser.add_argument("--database", default="iqa_bench_upload")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--smoke", action="store_true", help="40 images, 2 MiB: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.total_mib = 40, 2
    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    queue = f"bench-upload-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="iqa-bench-upload-") as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "study.zip"
        started = time.perf_counter()
        side, zip_bytes = build_zip(archive, args.images, int(args.total_mib * 1024**2))
        print(
            f"zip: {args.images:,} noise PNGs of {side}x{side} in {PER_SCENE}-image scenes, "
            f"{zip_bytes / 1024**2:,.0f} MiB (built in {time.perf_counter() - started:.0f} s)"
        )
        env = {
            **os.environ,
            "DATABASE_URL": database_url(args.database),
            "CELERY_BROKER_URL": broker,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            # (imports have a queue of their own: the run's worker serves it too)
            "IQA_IMPORT_QUEUE": queue,
            "IQA_DATA_DIR": str(tmp_path / "data"),
            "IQA_UPLOAD_MAX_BYTES": str(zip_bytes + 1024**2),
            "IQA_UPLOAD_MAX_UNCOMPRESSED": str(2 * zip_bytes),
            "IQA_UPLOAD_MAX_MEMBERS": str(2 * args.images),
            "IQA_IMPORT_PROGRESS_MIN": str(10**9),
        }
        token = prepare_database(args.database, env)
        base = f"http://127.0.0.1:{args.port}"
        server = start(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{args.port}",
             "--workers", "2", "--threads", "4", "--no-control-socket", "--timeout", "3600"],
            env, tmp_path / "gunicorn.log",
        )  # fmt: skip
        worker = start(
            [sys.executable, "-m", "scoring.worker", "--pool", "solo", "--queues", queue,
             "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            env, tmp_path / "worker.log",
        )  # fmt: skip
        try:
            wait_for(f"{base}/api/v1/ping", server, tmp_path / "gunicorn.log")
            time.sleep(1)
            pids = children(server.pid)
            before = max(status_kib(pid, "VmRSS") for pid in pids)
            sampler = RssSampler(pids)
            sampler.start()
            fields = {"slug": "bench", "design": "ref-vs-test", "votes_per_pair": "3"}
            t0 = time.perf_counter()
            status, body = upload(f"{base}/api/v1/studies", token, fields, archive)
            t_upload = time.perf_counter() - t0
            sampler.running = False
            sampler.join()
            hwm = max(status_kib(pid, "VmHWM") for pid in pids)
            if status != 202:
                sys.exit(f"upload refused: {status} {body}")
            url = base + body["import"]["url"]
            deadline = time.monotonic() + max(300.0, args.images / 20)
            while (job := get_json(url, token))["status"] not in ("done", "failed"):
                if time.monotonic() > deadline:
                    sys.exit(f"the import did not finish: {job} (see {tmp_path}/worker.log)")
                time.sleep(0.5)
            t_total = time.perf_counter() - t0
            if job["status"] != "done":
                sys.exit(f"import failed: {job['error']}")
        finally:
            for process in (server, worker):
                process.terminate()
                process.wait(timeout=60)
    t_import = t_total - t_upload
    print(f"upload   {t_upload:8.1f} s  ({zip_bytes / 1024**2 / t_upload:,.0f} MiB/s)")
    print(f"import   {t_import:8.1f} s  (queued to done: unpack, check, store, rows)")
    print(f"total    {t_total:8.1f} s  {args.images / t_total:,.0f} images/s")
    print(
        f"web worker RSS: {before / 1024:,.0f} MiB before, peak {sampler.peak_kib / 1024:,.0f} "
        f"MiB during the upload (VmHWM {hwm / 1024:,.0f} MiB) for a "
        f"{zip_bytes / 1024**2:,.0f} MiB zip"
    )
    summary = job["summary"]
    print(f"study: {summary['scenes']:,} scenes, {summary['images']:,} images, "
          f"{summary['pairs']:,} pairs")  # fmt: skip


if __name__ == "__main__":
    main()
