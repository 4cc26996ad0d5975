"""Annotator load on the production setup: gunicorn, PostgreSQL and Redis, over HTTP.

Simulated annotators open a session, then answer trial after trial, in two flows measured
side by side: "one", the page's, where each vote carries the next trial
(``votes?next=1``; next-trial only when a vote brought none), and "two", next-trial then
the vote (two requests per trial, the flow before). Two modes:

- paced: 100 annotators, each answering 1 s after its trial arrives (three times faster
  than people), arriving spread over the first second. Prints trials per second and
  p50/p95/p99 latency per endpoint, per flow.
  Target: p99 under 100 ms for both endpoints.
- saturation: N annotators with no think time (each flow), then, in the same run and
  with the same client, N clients on a trivial JSON endpoint of the same server (the
  stack's ceiling). Prints trials per second per flow, their ratio, the ceiling's
  requests per second and the ratio of trials to it. Target: at least 30%. For context
  it also measures the same endpoint with one ``SELECT 1`` per request
  (``/api/v1/ping?db=1``): the ceiling of any request that touches the database.

    .venv/bin/python bench/annotate_load.py [--mode paced|saturation|both]
    .venv/bin/python bench/annotate_load.py --smoke   # seconds: what the suite runs

It needs PostgreSQL and Redis on 127.0.0.1 (``make services``); it drops and recreates
the scratch database ``iqa_bench`` (``--database``). The throttles count in Redis as
deployed (``--cache-url``, default database 13; ``--cache-url ''`` counts them in
PostgreSQL, as ``make run`` does). They are raised for the run (simulated annotators
answer far faster than people, all from one address); they still run on each request.
``bench/abuse.py`` runs with the real ones.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import _synthetic  # noqa: E402


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def prepare_database(
    name: str,
    scenes: int,
    per_scene: int,
    votes: int,
    samplings: tuple[str, ...] = ("uniform",),
    quota: int = 100_000,
) -> str:
    """A fresh database with a live pairwise study of ``scenes`` x C(per_scene, 2) pairs
    per sampling policy: ``load`` (uniform) and ``load-active`` (active sampling, each
    pair's target one until plans raise it); sessions of ``quota`` trials."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    code = f"""
import hashlib
from itertools import combinations
from annotation.models import Image, Pair, Scene, Study
for sampling in {list(samplings)!r}:
    slug = "load" if sampling == "uniform" else "load-active"
    study = Study.objects.create(slug=slug, design="pairwise", votes_per_pair={votes},
        status="live", practice_trials=0, trials_per_session={quota}, min_response_ms=0,
        sampling=sampling)
    for s in range({scenes}):
        scene = Scene.objects.create(study=study, name=f"scene-{{s}}")
        images = Image.objects.bulk_create([
            Image(scene=scene, name=f"scene-{{s}}/m{{i}}.png", role="test", condition=f"m{{i}}",
                  sha256=hashlib.sha256(f"{{slug}}-{{s}}-{{i}}".encode()).hexdigest(),
                  file=f"images/00/00/{{slug}}-{{s}}-{{i}}.png", width=384, height=288,
                  format="PNG", size_bytes=1)
            for i in range({per_scene})])
        Pair.objects.bulk_create([Pair(study=study, scene=scene, image_a=a, image_b=b,
            target_votes=1 if sampling == "active" else {votes})
            for a, b in combinations(images, 2)])
print(Pair.objects.filter(study=study).count())
"""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


# Every throttle of the annotator API, raised out of the way (they still count).
RAISED_THROTTLES = {
    "IQA_VOTE_RATE": "1000000/min",
    "IQA_SESSION_RATE": "1000000/min",
    "IQA_TRIAL_RATE": "1000000/min",
}


def start_server(
    name: str,
    port: int,
    workers: int,
    threads: int,
    data_dir: Path,
    *,
    settings: dict[str, str] | None = None,
):
    """gunicorn on the scratch database (``_synthetic.start_server``); ``settings``
    (environment variables) replace the raised throttles."""
    return _synthetic.start_server(
        name, port, data_dir, workers=workers, threads=threads,
        settings=RAISED_THROTTLES if settings is None else settings,
    )  # fmt: skip


SLUGS = {"uniform": "load", "active": "load-active"}
# The page's flow first: on a study compared with another (``--sampling both``) it is the
# one measured against the other's, so it runs on a study as fresh as the other's.
FLOWS = {
    "one": "one request per trial (votes?next=1 carries the next trial; the page's flow)",
    "two": "two requests per trial (next-trial, then the vote)",
}


def start_planner(name: str, data_dir: Path) -> subprocess.Popen:
    """A Celery worker on the server's broker and database, for active sampling's plans
    (queued after every ``sampling_every`` counted votes of a scene)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(name),
        "IQA_DATA_DIR": str(data_dir),
        "DJANGO_DEBUG": "0",
    }
    log = open(data_dir / "worker.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


class Client:
    """One keep-alive HTTP connection; returns (status, body, seconds). ``source`` is the
    local address it connects from (any of 127.0.0.0/8 on Linux): the server sees it as the
    client's address."""

    def __init__(self, port: int, source: str | None = None) -> None:
        self.port = port
        self.source = (source, 0) if source else None
        self.connection = self._connect()
        self.headers: dict[str, str] = {}  # of the last response

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=self.source
        )

    def call(self, method: str, path: str, body: dict | None = None):
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        start = time.perf_counter()
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = self._connect()
            raise
        elapsed = time.perf_counter() - start
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(raw), elapsed
        return response.status, raw.decode(errors="replace") or None, elapsed  # an error page


def empty_results() -> dict:
    """What a run measures: latencies per request kind (lists, extended when merged) and
    counts (added)."""
    return {"next": [], "vote": [], "ping": [], "errors": 0, "held": 0, "sessions": 0, "full": 0}


def annotator(
    port: int,
    stop_at: float,
    think: float,
    results: dict,
    lock: threading.Lock,
    slug: str,
    flow: str = "one",
):
    """One simulated annotator. ``flow`` "one": each vote carries the next trial
    (``votes?next=1``), next-trial only when it does not (the page's flow); "two": a
    next-trial request, then the vote (the flow before, two requests per trial)."""
    # People do not arrive in the same millisecond: paced annotators start spread over
    # one think time, so the run is not a series of synchronised bursts.
    time.sleep(random.uniform(0, think))
    client = Client(port)
    timings = empty_results()
    try:
        _annotate(client, stop_at, think, slug, flow, timings)
    finally:  # whatever ended the loop, what it measured is reported
        with lock:
            for key, value in timings.items():
                results[key] += value


def _annotate(client, stop_at: float, think: float, slug: str, flow: str, timings: dict):
    """``annotator``'s loop: sessions one after the other until ``stop_at``, or until a
    new session finds the study full (counted in ``full``; the client stops there)."""
    token, trial = None, None  # the open session; the next trial, when a vote carried it
    answered = 0  # by the open session
    while time.monotonic() < stop_at:
        try:
            if token is None:  # a new person (the last one reached the quota)
                status, session, _ = client.call("POST", f"/api/v1/studies/{slug}/sessions", {})
                if status != 201:
                    timings["errors"] += 1
                    time.sleep(0.05)
                    continue
                token, answered = session["token"], 0
                timings["sessions"] += 1
            if trial is None:
                status, trial, seconds = client.call("GET", f"/api/v1/sessions/{token}/next-trial")
                if status == 204:  # the session is completed
                    if answered == 0:  # a new session with nothing to do: the study is full
                        timings["full"] += 1
                        return
                    token, trial = None, None
                    continue
                if status == 409:  # every pair left held, or busy for an instant: ask again
                    trial = None
                    timings["held"] += 1
                    time.sleep(0.05)
                    continue
                if status != 200:
                    trial = None
                    timings["errors"] += 1
                    continue
                timings["next"].append(seconds)
            if think:
                time.sleep(think)
            body = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 1000}
            next_flag = "?next=1" if flow == "one" else ""
            status, vote, seconds = client.call(
                "POST", f"/api/v1/sessions/{token}/votes{next_flag}", body
            )
            trial = None
            if status != 201:
                timings["errors"] += 1
                continue
            answered += 1
            timings["vote"].append(seconds)
            if flow == "one" and "next_trial" in vote:
                trial = vote["next_trial"]
                if trial is None:  # nothing left: the session is completed
                    token = None
        except (http.client.HTTPException, OSError):
            trial = None
            timings["errors"] += 1


def pinger(port: int, stop_at: float, results: dict, lock: threading.Lock, path: str):
    client = Client(port)
    times, errors = [], 0
    while time.monotonic() < stop_at:
        try:
            status, _, seconds = client.call("GET", path)
            if status == 200:
                times.append(seconds)
            else:
                errors += 1
        except (http.client.HTTPException, OSError):
            errors += 1
    with lock:
        results["ping"].extend(times)
        results["errors"] += errors


def client_process(kind: str, port: int, n: int, start_at: float, duration: float, think, queue):
    """Run ``n`` simulated clients in threads of this process; report their timings."""
    results = empty_results()
    lock = threading.Lock()
    while time.monotonic() < start_at:
        time.sleep(0.01)
    stop_at = start_at + duration
    if kind.startswith("/"):
        target, args = pinger, (port, stop_at, results, lock, kind)
    else:  # "annotate:<slug>:<flow>"
        _, slug, flow = kind.split(":")
        target, args = annotator, (port, stop_at, think, results, lock, slug, flow)
    threads = [threading.Thread(target=target, args=args) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def drive(kind: str, port: int, clients: int, duration: float, think: float, processes: int):
    """Spread ``clients`` over client processes; returns merged timings and the duration."""
    queue = multiprocessing.Queue()
    start_at = time.monotonic() + 2.0  # every process starts together
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    workers = [
        multiprocessing.Process(
            target=client_process, args=(kind, port, share, start_at, duration, think, queue)
        )
        for share in shares
        if share
    ]
    for worker in workers:
        worker.start()
    merged = empty_results()
    for _ in workers:
        part = queue.get()
        for key, value in part.items():
            merged[key] += value
    for worker in workers:
        worker.join()
    return merged


def latency_line(name: str, seconds: list[float], indent: int = 2) -> str:
    pad = " " * indent
    if not seconds:
        return f"{pad}{name:<11} no requests"
    ms = np.asarray(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return (
        f"{pad}{name:<11} n={len(ms):>7}  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms"
    )


def sessions_line(result: dict, indent: int = 2) -> str:
    """The sessions a run opened, and a warning when the study ran out of work."""
    line = f"{' ' * indent}{'sessions':<11} {result['sessions']} opened"
    if result["full"]:
        line += (
            f"; STUDY FULL for {result['full']} new sessions (those clients stopped: fewer "
            "clients than asked at the end; use more --scenes)"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["paced", "saturation", "both"], default="both")
    parser.add_argument("--database", default="iqa_bench")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--annotators", type=int, default=100, help="paced mode")
    parser.add_argument("--think", type=float, default=1.0, help="paced mode, seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="saturation mode clients")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--per-scene", type=int, default=11, help="images per scene")
    parser.add_argument("--votes", type=int, default=10, help="target votes per pair")
    parser.add_argument(
        "--quota",
        type=int,
        default=100_000,
        help="trials per session; a client whose session ends opens a new one (a new person)",
    )
    parser.add_argument(
        "--sampling",
        choices=["uniform", "active", "both"],
        default="uniform",
        help="saturation: the study's sampling policy; both: uniform then active, their ratio",
    )
    parser.add_argument(
        "--cache-url",
        default="redis://127.0.0.1:6379/13",
        help="IQA_CACHE_URL, where throttles count (Redis, as deployed); '' for the "
        "database (the embedded default's store)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="both modes, 2 s each, a few clients: seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.mode, args.duration, args.annotators, args.concurrency = "both", 2.0, 4, 2
        args.workers, args.threads, args.client_processes, args.scenes = 1, 2, 1, 3
    samplings = ("uniform", "active") if args.sampling == "both" else (args.sampling,)

    pairs = prepare_database(
        args.database, args.scenes, args.per_scene, args.votes, samplings, args.quota
    )
    store = f"Redis ({args.cache_url})" if args.cache_url else "PostgreSQL (no IQA_CACHE_URL)"
    print(
        f"study: {pairs} pairs, {args.votes} votes each, sessions of {args.quota} trials; "
        f"gunicorn {args.workers} workers x {args.threads} threads; throttles counted in "
        f"{store}; {os.cpu_count()} CPUs shared by server, database and client"
    )
    settings = {**RAISED_THROTTLES, "IQA_CACHE_URL": args.cache_url}
    with tempfile.TemporaryDirectory(prefix="iqa-bench-") as tmp:
        port = 18000 + os.getpid() % 1000
        server = start_server(
            args.database, port, args.workers, args.threads, Path(tmp), settings=settings
        )
        planner = start_planner(args.database, Path(tmp)) if "active" in samplings else None

        def run(kind: str, clients: int, think: float) -> dict:
            return drive(kind, port, clients, args.duration, think, args.client_processes)

        try:
            if args.mode in ("paced", "both"):
                print(
                    f"paced: {args.annotators} annotators, {args.think:.1f} s think time, "
                    f"{args.duration:.0f} s per flow"
                )
                for flow in FLOWS:
                    result = run(f"annotate:load:{flow}", args.annotators, args.think)
                    print(f"  {FLOWS[flow]}")
                    print(f"    trials/s    {len(result['vote']) / args.duration:.1f}")
                    print(latency_line("next-trial", result["next"], 4))
                    print(latency_line("vote", result["vote"], 4))
                    print(f"    errors      {result['errors']}")
                    print(sessions_line(result, 4))
            if args.mode in ("saturation", "both"):
                rates = {}
                for sampling in samplings[:-1]:
                    before = run(f"annotate:{SLUGS[sampling]}:one", args.concurrency, 0.0)
                    rates[sampling] = len(before["vote"]) / args.duration
                    print(f"saturation, sampling={sampling}: {rates[sampling]:.1f} trials/s")
                    print(latency_line("next-trial", before["next"]))
                    print(latency_line("vote", before["vote"]))
                    print(f"  errors      {before['errors']} (409 asked again: {before['held']})")
                    print(sessions_line(before))
                last = samplings[-1]
                flows = {flow: run(f"annotate:{SLUGS[last]}:{flow}", args.concurrency, 0.0)
                         for flow in FLOWS}  # fmt: skip
                ceiling = run("/api/v1/ping", args.concurrency, 0.0)
                db_ceiling = run("/api/v1/ping?db=1", args.concurrency, 0.0)
                ping_rate = len(ceiling["ping"]) / args.duration
                db_rate = len(db_ceiling["ping"]) / args.duration
                print(
                    f"saturation, sampling={last}: {args.concurrency} clients, no think time, "
                    f"{args.duration:.0f} s per run"
                )
                trial_rates = {}
                for flow, trials in flows.items():
                    trial_rates[flow] = len(trials["vote"]) / args.duration
                    print(f"  {FLOWS[flow]}")
                    print(f"    trials/s    {trial_rates[flow]:.1f}")
                    print(latency_line("next-trial", trials["next"], 4))
                    print(latency_line("vote", trials["vote"], 4))
                    print(f"    errors      {trials['errors']} (409 asked again: {trials['held']})")
                    print(sessions_line(trials, 4))
                trial_rate = trial_rates["one"]
                print(
                    f"  one request / two requests per trial: "
                    f"{trial_rate / max(trial_rates['two'], 1e-9):.2f}x"
                )
                if rates:
                    ratio = trial_rate / rates["uniform"]
                    print(f"  active / uniform trials/s: {ratio:.1%} (goal: within 10%)")
                print(f"  ceiling     {ping_rate:.1f} requests/s on /api/v1/ping")
                print(latency_line("ping", ceiling["ping"]))
                print(
                    f"  ratio       {trial_rate / ping_rate:.1%} of the ceiling (target 30%; "
                    f"two requests per trial: {trial_rates['two'] / ping_rate:.1%})"
                )
                print(
                    f"  db ceiling  {db_rate:.1f} requests/s on /api/v1/ping?db=1 "
                    "(one SELECT 1 per request)"
                )
                print(latency_line("ping?db=1", db_ceiling["ping"]))
                print(f"  ratio       {trial_rate / db_rate:.1%} of the db ceiling")
                errors = sum(f["errors"] for f in flows.values())
                errors += ceiling["errors"] + db_ceiling["errors"]
                held = sum(f["held"] for f in flows.values())
                print(f"  errors      {errors} (409 asked again: {held})")
        finally:
            server.terminate()
            server.wait(timeout=30)
            if planner is not None:
                planner.terminate()
                planner.wait(timeout=30)
            failures = server_failures(Path(tmp) / "gunicorn.log")
            if failures:
                print(f"server errors logged: {len(failures)}; the last:\n{failures[-1]}")


def server_failures(log: Path) -> list[str]:
    """The requests that failed with a 500 in gunicorn's log: Django logs each as a record
    that starts "Internal Server Error: PATH", its traceback after it (chained exceptions
    included), up to the next record or gunicorn's own "[...]" lines. An error count
    without its cause explains nothing."""
    text = log.read_text(errors="replace") if log.exists() else ""
    records = re.split(r"(?m)^(?=Internal Server Error: )", text)[1:]
    return [re.split(r"(?m)^\[", record, maxsplit=1)[0].strip()[-4000:] for record in records]


if __name__ == "__main__":
    main()
