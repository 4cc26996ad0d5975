"""Import throughput, memory and locks: ``import_study`` on generated images, up to a
DiffIQA-size 30,000, while annotators vote on another study of the same database.

Each size runs ``manage.py import_study`` as a real process on a scratch PostgreSQL
database (``--database``, dropped and recreated) and prints the wall time, images per
second, the process's peak resident memory and the most advisory locks held at once
(sampled from ``pg_locks`` every 0.1 s: an import holds at most 256, one per bucket of
files, whatever its size; PostgreSQL's shared lock table holds about
``max_locks_per_transaction`` x ``max_connections``). Meanwhile ``--annotators`` paced
annotators, each from an address of its own, work through another study over gunicorn;
their requests, errors (any answer but 200, 201 and 204) and latency are printed. With
``--sqlite`` the import alone runs on SQLite in a temporary data folder, as ``make run``
would (no locks, no annotators).

    .venv/bin/python bench/import_study.py [--images 30000] [--size 64x48] [--smoke]

It needs PostgreSQL on 127.0.0.1:5432 (``make services``). ``--smoke`` imports 300 images
with two annotators (the test suite runs it).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from annotate_load import Client, database_url, latency_line, start_server  # noqa: E402

PER_SCENE = 10  # a reference and 9 test images


def generate(folder: Path, n_images: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for index in range(n_images):
        scene, position = divmod(index, PER_SCENE)
        stem = "reference" if position == 0 else f"method-{position}"
        path = folder / f"scene-{scene:05d}" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(path, compress_level=1)


def run_import(source: Path, env: dict, slug: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``import_study`` process."""
    command = [sys.executable, "manage.py", "import_study", str(source), "--slug", slug,
               "--design", "ref-vs-test"]  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(err.read().decode())
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


class LockMonitor(threading.Thread):
    """The most advisory locks held at once in the database, sampled every 0.1 s."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.connection = psycopg.connect(database_url(name), autocommit=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            row = self.connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            ).fetchone()
            self.peak = max(self.peak, row[0])
            self.stop.wait(0.1)

    def setting(self, name: str) -> str:
        return self.connection.execute(f"SHOW {name}").fetchone()[0]


def prepare(name: str) -> dict:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(name),
        "IQA_IMPORT_PROGRESS_MIN": "1000000000",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    code = """
import hashlib
from annotation.models import Image, Pair, Scene, Study
study = Study.objects.create(slug="voting", design="pairwise", votes_per_pair=1000,
    status="live", practice_trials=0, trials_per_session=100000, min_response_ms=0)
for s in range(20):
    scene = Scene.objects.create(study=study, name=f"s{s}")
    images = Image.objects.bulk_create([Image(scene=scene, name=f"s{s}/m{i}.png", role="test",
        condition=f"m{i}", sha256=hashlib.sha256(f"v{s}-{i}".encode()).hexdigest(),
        file=f"images/00/00/v{s}-{i}.png", width=64, height=48, format="PNG", size_bytes=1)
        for i in range(10)])
    Pair.objects.bulk_create([Pair(study=study, scene=scene, image_a=images[2 * i],
        image_b=images[2 * i + 1], target_votes=1000) for i in range(5)])
"""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env,
                   check=True, capture_output=True)  # fmt: skip
    return env


def annotator(port: int, index: int, stop: threading.Event, results: dict, lock) -> None:
    client = Client(port, source=f"127.0.6.{index + 1}")
    latencies, requests, errors = [], 0, []

    def call(method: str, path: str, body=None):
        nonlocal requests
        requests += 1
        try:
            status, data, seconds = client.call(method, path, body)
        except OSError as exc:
            errors.append(f"{method} {path}: {exc}")
            return 0, None
        latencies.append(seconds)
        if status not in (200, 201, 204):
            errors.append(f"{method} {path}: {status} {data}")
        return status, data

    while not stop.is_set():
        status, session = call("POST", "/api/v1/studies/voting/sessions", {})
        if status != 201:
            stop.wait(1)
            continue
        token = session["token"]
        while not stop.is_set():
            status, trial = call("GET", f"/api/v1/sessions/{token}/next-trial")
            if status != 200:
                break
            stop.wait(0.5)
            vote = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 500}
            call("POST", f"/api/v1/sessions/{token}/votes", vote)
    with lock:
        results["latencies"] += latencies
        results["requests"] += requests
        results["errors"] += errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--size", default="64x48", help="WIDTHxHEIGHT of each image")
    parser.add_argument("--database", default="iqa_bench_import")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--sqlite", action="store_true", help="the import alone, on SQLite")
    parser.add_argument("--smoke", action="store_true", help="300 images, two annotators")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.annotators = 300, 2
    size = tuple(int(v) for v in args.size.split("x"))
    sizes = (args.images // 10, args.images)
    with tempfile.TemporaryDirectory(prefix="iqa-bench-") as tmp:
        if args.sqlite:
            print(f"import_study, ref-vs-test, {size[0]}x{size[1]} PNG, {PER_SCENE} per scene, "
                  "SQLite")  # fmt: skip
            print(f"{'images':>8} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13}")
            for n_images in sizes:
                source = Path(tmp) / f"src-{n_images}"
                generate(source, n_images, size, seed=n_images)
                data_dir = Path(tmp) / f"data-{n_images}"
                env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
                env |= {"IQA_DATA_DIR": str(data_dir), "IQA_IMPORT_PROGRESS_MIN": str(10**9)}
                subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO,
                               env=env, check=True)  # fmt: skip
                seconds, peak = run_import(source, env, slug=f"bench-{n_images}")
                print(f"{n_images:>8} {seconds:>8.1f} {n_images / seconds:>9.0f} {peak:>13.0f}")
            return
        env = prepare(args.database) | {"IQA_MEDIA_ROOT": str(Path(tmp) / "media")}
        monitor = LockMonitor(args.database)
        print(
            f"import_study, ref-vs-test, {size[0]}x{size[1]} PNG, {PER_SCENE} per scene, "
            f"PostgreSQL (max_locks_per_transaction {monitor.setting('max_locks_per_transaction')}"
            f", max_connections {monitor.setting('max_connections')}); {args.annotators} "
            "annotators voting on another study meanwhile"
        )
        print(f"{'images':>8} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13} "
              f"{'peak locks':>11}")  # fmt: skip
        port = 20000 + os.getpid() % 1000
        server = start_server(
            args.database, port, 2, 4, Path(tmp),
            settings={"IQA_SESSION_RATE": "100000/min", "IQA_TRIAL_RATE": "100000/min"},
        )  # fmt: skip
        results = {"latencies": [], "requests": 0, "errors": []}
        stop, lock = threading.Event(), threading.Lock()
        people = [
            threading.Thread(target=annotator, args=(port, i, stop, results, lock))
            for i in range(args.annotators)
        ]
        try:
            for person in people:
                person.start()
            monitor.start()
            for n_images in sizes:
                source = Path(tmp) / f"src-{n_images}"
                generate(source, n_images, size, seed=n_images)
                monitor.peak = 0
                seconds, peak = run_import(source, env, slug=f"bench-{n_images}")
                print(
                    f"{n_images:>8} {seconds:>8.1f} {n_images / seconds:>9.0f} {peak:>13.0f} "
                    f"{monitor.peak:>11}"
                )
        finally:
            stop.set()
            for person in people:
                person.join()
            monitor.stop.set()
            server.terminate()
            server.wait(timeout=30)
    print(
        f"annotators: {results['requests']} requests, {len(results['errors'])} errors"
        + (f" (first: {results['errors'][0]})" if results["errors"] else "")
    )
    print(latency_line("annotators", results["latencies"]))
    sys.exit(1 if results["errors"] else 0)


if __name__ == "__main__":
    main()
