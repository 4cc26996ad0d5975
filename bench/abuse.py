"""The public study link under abuse: a script and real annotators at once, over HTTP to
gunicorn and PostgreSQL, with the throttles and the assignment rules as deployed.

- The script, from one address (127.0.0.1), tries 1,000 throwaway sessions as fast as it
  can (16 connections): each session it gets answers its 2 practice trials and asks
  next-trial?ahead=1 once (the lease-hoarding script of issue 16), ignoring Retry-After.
- 50 real annotators, each from an address of its own (127.0.1.x), start at the same
  moment: a Prolific-like id, then next-trial?ahead=1 and a vote 1 s after each trial
  arrives (three times faster than people), honouring Retry-After, until 204.

It prints the real annotators' latency (p50/p95/p99 per endpoint and overall), their
completed trials and full sessions, and the script's requests by status (how many were
throttled). The study is demo-like: 2 practice trials, 40 trials per session, 3 votes per
pair, over 900 pairs (more than 50 sessions need, with the script's leases on top).

    .venv/bin/python bench/abuse.py [--database iqa_abuse] [--cache-url redis://...]

It needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (``make services``):
it drops and recreates the scratch database ``iqa_abuse``, and the web processes share
their throttle counts through the Redis database of ``--cache-url`` (as in production),
whose throttle keys it deletes first. Default throttles (config/settings.py) unless
IQA_SESSION_RATE, IQA_SESSION_RATE_PER_STUDY or IQA_TRIAL_RATE are set.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_load import (
    REPO,
    Client,
    database_url,
    latency_line,
    prepare_database,
    start_server,
)

PRACTICE, QUOTA = 2, 40


def configure_demo_like(name: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run(
        [sys.executable, "manage.py", "configure_study", "load",
         "--practice-trials", str(PRACTICE), "--trials-per-session", str(QUOTA)],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip


def forget_throttle_counts(cache_url: str) -> None:
    import redis

    client = redis.Redis.from_url(cache_url)
    for key in client.scan_iter(match="*throttle:*"):
        client.delete(key)


# --- the script ----------------------------------------------------------------------


def script(port: int, attempts: int, connections: int, start_at: float, queue) -> None:
    """Throwaway sessions from 127.0.0.1; every request's status, counted."""
    statuses: Counter = Counter()
    hoarding = Counter()
    lock = threading.Lock()
    numbers = iter(range(attempts))

    def run() -> None:
        client = Client(port)
        local, held = Counter(), 0
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                break
            try:
                status, body, _ = client.call("POST", "/api/v1/studies/load/sessions", {})
                local[("session", status)] += 1
                if status != 201:
                    continue
                token = body["token"]
                for _ in range(PRACTICE):
                    status, trial, _ = client.call("GET", f"/api/v1/sessions/{token}/next-trial")
                    local[("next-trial", status)] += 1
                    if status != 200:
                        break
                    vote = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 300}
                    status, _, _ = client.call("POST", f"/api/v1/sessions/{token}/votes", vote)
                    local[("vote", status)] += 1
                status, trial, _ = client.call(
                    "GET", f"/api/v1/sessions/{token}/next-trial?ahead=1"
                )
                local[("next-trial", status)] += 1
                if status == 200 and not trial["practice"]:
                    held += 1 + (trial.get("next") is not None)
            except OSError:
                local[("error", 0)] += 1
        with lock:
            statuses.update(local)
            hoarding["leases"] += held

    while time.monotonic() < start_at:
        time.sleep(0.01)
    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(("script", dict(statuses), hoarding["leases"], (started, time.monotonic())))


# --- the real annotators ---------------------------------------------------------------


def annotators(port: int, n: int, think: float, start_at: float, queue) -> None:
    results = {"next": [], "vote": [], "session": [], "done": [], "throttled": 0, "errors": 0}
    lock = threading.Lock()

    def person(index: int) -> None:
        client = Client(port, source=f"127.0.1.{index + 1}")
        times = {"next": [], "vote": [], "session": []}
        throttled = errors = 0

        def call(kind: str, method: str, path: str, body=None):
            nonlocal throttled, errors
            while True:
                try:
                    status, data, seconds = client.call(method, path, body)
                except OSError:
                    errors += 1
                    time.sleep(0.5)
                    continue
                times[kind].append((time.monotonic() - seconds, seconds))
                if status != 429:
                    return status, data
                throttled += 1
                time.sleep(float(client.headers.get("retry-after", "1")))

        time.sleep(index * think / n)  # arrivals spread over one think time
        body = {"participant_id": f"{index + 1:024x}", "source": "prolific"}
        status, session = call("session", "POST", "/api/v1/studies/load/sessions", body)
        done = 0
        if status == 201:
            token = session["token"]
            while True:
                status, trial = call("next", "GET", f"/api/v1/sessions/{token}/next-trial?ahead=1")
                if status != 200:
                    errors += status != 204
                    break
                time.sleep(think)
                vote = {"trial_id": trial["trial_id"], "choice": "right", "response_ms": 1000}
                status, _ = call("vote", "POST", f"/api/v1/sessions/{token}/votes", vote)
                if status != 201:
                    errors += 1
                    break
                done += not trial["practice"]
        else:
            errors += 1
        with lock:
            for key, values in times.items():
                results[key].extend(values)
            results["done"].append(done)
            results["throttled"] += throttled
            results["errors"] += errors

    while time.monotonic() < start_at:
        time.sleep(0.01)
    started = time.monotonic()
    threads = [threading.Thread(target=person, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(("people", results, None, (started, time.monotonic())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="iqa_abuse")
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--throwaway", type=int, default=1000, help="sessions the script tries")
    parser.add_argument("--connections", type=int, default=16, help="the script's connections")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--think", type=float, default=1.0, help="seconds")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    pairs = prepare_database(args.database, scenes=60, per_scene=6, votes=3)
    configure_demo_like(args.database)
    forget_throttle_counts(args.cache_url)
    rates = {
        name: os.environ.get(name, default)
        for name, default in (("IQA_SESSION_RATE", "default"),
                              ("IQA_SESSION_RATE_PER_STUDY", "default"),
                              ("IQA_TRIAL_RATE", "default"), ("IQA_VOTE_RATE", "default"))
    }  # fmt: skip
    print(
        f"study: {pairs} pairs x 3 votes, {PRACTICE} practice + {QUOTA} trials per session; "
        f"gunicorn {args.workers} workers x {args.threads} threads; {os.cpu_count()} CPUs "
        f"shared by server, database and clients"
    )
    print("throttles: " + ", ".join(f"{k}={v}" for k, v in rates.items()))
    settings = {"IQA_CACHE_URL": args.cache_url}
    with tempfile.TemporaryDirectory(prefix="iqa-abuse-") as tmp:
        port = 19000 + os.getpid() % 1000
        server = start_server(
            args.database, port, args.workers, args.threads, Path(tmp), settings=settings
        )
        try:
            queue = multiprocessing.Queue()
            start_at = time.monotonic() + 2.0
            processes = [
                multiprocessing.Process(
                    target=script,
                    args=(port, args.throwaway, args.connections, start_at, queue),
                ),
                multiprocessing.Process(
                    target=annotators, args=(port, args.annotators, args.think, start_at, queue)
                ),
            ]
            for process in processes:
                process.start()
            reports = {kind: (data, extra, seconds) for kind, data, extra, seconds in
                       (queue.get() for _ in processes)}  # fmt: skip
            for process in processes:
                process.join()
        finally:
            server.terminate()
            server.wait(timeout=30)

    statuses, leases, (script_start, script_end) = reports["script"]
    total = sum(statuses.values())
    throttled = sum(n for (_, status), n in statuses.items() if status == 429)
    print(
        f"script: {args.throwaway} throwaway sessions tried from one address in "
        f"{script_end - script_start:.1f} s"
    )
    for kind in ("session", "next-trial", "vote", "error"):
        parts = sorted((status, n) for (k, status), n in statuses.items() if k == kind)
        if parts:
            print(f"  {kind:<11} " + ", ".join(f"{n} x {status}" for status, n in parts))
    print(f"  throttled   {throttled} of {total} requests ({throttled / max(total, 1):.1%})")
    print(f"  leases held {leases} (counted trials issued to throwaway sessions, never answered)")

    people, _, (start, end) = reports["people"]
    done = np.asarray(people["done"])
    print(
        f"real annotators: {args.annotators}, each from its own address, "
        f"{args.think:.1f} s think time, {end - start:.1f} s"
    )
    print(
        f"  completed   {int(done.sum())} counted trials; {int((done == QUOTA).sum())} of "
        f"{len(done)} full sessions ({QUOTA} trials after practice); fewest {int(done.min())}"
    )

    def seconds(kind: str, during: bool | None = None) -> list[float]:
        return [s for at, s in people[kind] if during is None or (at < script_end) == during]

    for kind in ("session", "next", "vote"):
        print(latency_line("next-trial" if kind == "next" else kind, seconds(kind)))
    every = [s for kind in ("session", "next", "vote") for s in seconds(kind)]
    print(latency_line("all", every))
    for during, label in ((True, "during the script"), (False, "after it")):
        part = [s for kind in ("session", "next", "vote") for s in seconds(kind, during)]
        print(latency_line("all", part) + f"  ({label})")
    print(f"  throttled   {people['throttled']}  errors {people['errors']}")


if __name__ == "__main__":
    main()
