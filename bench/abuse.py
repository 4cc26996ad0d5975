"""The public study link against scripts (issue 24): each strategy runs for a bounded
time from five loopback addresses against gunicorn (two workers) and PostgreSQL, with the
throttles and assignment rules as deployed; meanwhile a real participant from a sixth
address runs a paced session, beside three other paced people.

Strategies (``--strategies all`` or a comma list):

- never-answer: open sessions as fast as each address may, ask next-trial?ahead=1, hold.
- answer-once-then-hold: open, answer the first trial at once (too fast to count), then
  ask next-trial?ahead=1 and hold.
- answer-fast: open, answer every trial the moment it arrives, until none is left.
- renew-on-expiry: lease_seconds 10: open and ask, then ask again on every expiry.
- id-takeover: open sessions with the participant's own Prolific id (and made-up
  SESSION_IDs) before and while the participant works.
- session-flood: open sessions as fast as the throttle lets five addresses, one trial each.

Each strategy has a study of its own (--pairs pairs x 3 votes, --quota trials a session,
no practice, min_response_ms 400); ``--pairs 10 --others 0`` is the issue's study (30 votes
to give, 10 of them the participant's). Per strategy it prints the participant's counted trials
against the quota and the seconds it was told to wait or refused (409 trials_held, 429),
the completion codes the scripts' sessions got below the quota (read through the API;
must be 0), what the scripts did, and the paced people's latency (p50/p95/p99).

    .venv/bin/python bench/abuse.py [--strategies all] [--duration 30] [--smoke]

It needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (``make services``):
it drops and recreates the scratch database ``iqa_abuse`` (``--database``), and the web
processes share their throttle counts through the Redis database of ``--cache-url`` (as
in production), whose throttle keys it deletes first. ``--smoke`` runs every strategy for
a few seconds with a quota of 2 (the test suite runs it).
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_load import REPO, Client, database_url, latency_line, start_server

STRATEGIES = (
    "never-answer",
    "answer-once-then-hold",
    "answer-fast",
    "renew-on-expiry",
    "id-takeover",
    "session-flood",
)
SCRIPT_ADDRESSES = [f"127.0.2.{n}" for n in range(1, 6)]
PARTICIPANT = "127.0.3.1"
OTHERS = [f"127.0.4.{n}" for n in range(1, 100)]
PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"


def prepare(name: str, pairs: int, quota: int) -> None:
    """A fresh database with one live ref-vs-test-like study per strategy."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    code = f"""
import hashlib
from annotation.models import Image, Pair, Scene, Study
for slug in {list(STRATEGIES)!r}:
    study = Study.objects.create(slug=slug, design="pairwise", votes_per_pair=3,
        status="live", practice_trials=0, trials_per_session={quota}, min_response_ms=400,
        lease_seconds=10 if slug == "renew-on-expiry" else 600, gold_rate=0)
    scene = Scene.objects.create(study=study, name="s")
    images = Image.objects.bulk_create([
        Image(scene=scene, name=f"s/m{{i}}.png", role="test", condition=f"m{{i}}",
              sha256=hashlib.sha256(f"{{slug}}-{{i}}".encode()).hexdigest(),
              file=f"images/00/00/{{slug}}-{{i}}.png", width=64, height=48, format="PNG",
              size_bytes=1)
        for i in range({pairs} * 2)])
    Pair.objects.bulk_create([Pair(study=study, scene=scene, image_a=images[2 * i],
        image_b=images[2 * i + 1], target_votes=3) for i in range({pairs})])
"""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip


def forget_throttle_counts(cache_url: str) -> None:
    import redis

    client = redis.Redis.from_url(cache_url)
    for key in client.scan_iter(match="*throttle:*"):
        client.delete(key)


# --- the scripts ------------------------------------------------------------------------


@dataclass
class ScriptLog:
    statuses: Counter = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, status: int) -> None:
        with self.lock:
            self.statuses[(kind, status)] += 1


def script(strategy: str, port: int, address: str, stop: threading.Event, log: ScriptLog):
    """One address's script until ``stop``: a strategy of the module's docstring."""
    client = Client(port, source=address)
    slug = strategy
    held: list[str] = []
    renewing = False
    rng = random.Random(address)

    def call(kind: str, method: str, path: str, body=None):
        try:
            status, data, _ = client.call(method, path, body)
        except OSError:
            log.count(kind, 0)
            return 0, None
        log.count(kind, status)
        return status, data

    while not stop.is_set():
        if strategy == "id-takeover":
            body = {
                "participant_id": PROLIFIC_ID,
                "source": "prolific",
                "external_ids": {"SESSION_ID": f"guess-{rng.random()}"},
            }
            status, session = call("session", "POST", f"/api/v1/studies/{slug}/sessions", body)
            if status in (200, 201):
                with log.lock:
                    log.tokens.append(session["token"])
            stop.wait(0.5)
            continue
        if renewing:
            stop.wait(10.5)  # the lease: ask again once it lapsed
            for token in held:
                call("next-trial", "GET", f"/api/v1/sessions/{token}/next-trial?ahead=1")
            continue
        status, session = call("session", "POST", f"/api/v1/studies/{slug}/sessions", {})
        if status == 429:
            # Throttled: renew-on-expiry keeps what it has from now on; the others wait.
            renewing = strategy == "renew-on-expiry" and bool(held)
            stop.wait(min(float(client.headers.get("retry-after", "1")), 5))
            continue
        if status != 201:
            continue
        token = session["token"]
        with log.lock:
            log.tokens.append(token)
        status, trial = call("next-trial", "GET", f"/api/v1/sessions/{token}/next-trial?ahead=1")
        if status != 200:
            continue
        if strategy == "answer-once-then-hold":
            vote = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 250}
            call("vote", "POST", f"/api/v1/sessions/{token}/votes", vote)
            call("next-trial", "GET", f"/api/v1/sessions/{token}/next-trial?ahead=1")
        elif strategy == "answer-fast":
            while status == 200 and not stop.is_set():
                vote = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 50}
                call("vote", "POST", f"/api/v1/sessions/{token}/votes", vote)
                status, trial = call("next-trial", "GET", f"/api/v1/sessions/{token}/next-trial")
        elif strategy == "renew-on-expiry":
            held.append(token)


# --- the people -------------------------------------------------------------------------


@dataclass
class Person:
    counted: int = 0
    waited: float = 0.0  # seconds told to wait (409 trials_held) or refused (429)
    latencies: list[float] = field(default_factory=list)
    code: str | None = None
    outcome: str | None = None
    errors: int = 0


def person(port: int, address: str, slug: str, pace: tuple[float, float], deadline: float,
           participant_id: str, submission: str) -> Person:  # fmt: skip
    """A paced person: answers 1.5-2.5 s (``pace``) after each trial arrives, waits as
    long as Retry-After says when told to, until 204 or ``deadline``."""
    client = Client(port, source=address)
    me = Person()
    rng = random.Random(address)

    def call(method: str, path: str, body=None):
        while time.monotonic() < deadline:
            try:
                status, data, seconds = client.call(method, path, body)
            except OSError:
                me.errors += 1
                time.sleep(0.5)
                continue
            me.latencies.append(seconds)
            if status in (409, 429) and (
                status == 429 or (data or {}).get("error", {}).get("code") == "trials_held"
            ):
                wait = float(client.headers.get("retry-after", "1"))
                me.waited += wait
                time.sleep(wait)
                continue
            return status, data
        return 0, None

    body = {
        "participant_id": participant_id,
        "source": "prolific",
        "external_ids": {"STUDY_ID": "bench", "SESSION_ID": submission},
    }
    status, session = call("POST", f"/api/v1/studies/{slug}/sessions", body)
    if status != 201:
        me.errors += 1
        return me
    token = session["token"]
    while time.monotonic() < deadline:
        status, trial = call("GET", f"/api/v1/sessions/{token}/next-trial")
        if status != 200:
            break
        time.sleep(rng.uniform(*pace))
        vote = {"trial_id": trial["trial_id"], "choice": "right", "response_ms": 1800}
        status, result = call("POST", f"/api/v1/sessions/{token}/votes", vote)
        if status != 201:
            me.errors += 1
            break
        me.counted += not result["too_fast"]
    status, session = call("GET", f"/api/v1/sessions/{token}")
    if status == 200:
        me.code, me.outcome = session["completion_code"], session["outcome"]
    return me


def codes_below_quota(port: int, tokens: list[str], quota: int) -> tuple[int, int]:
    """Of the scripts' sessions: how many got a completion code, and how many of those
    had fewer counted trials than the quota (read through the API, as a script would)."""
    client = Client(port, source="127.0.5.1")
    codes = below = 0
    for token in tokens:
        status, session, _ = client.call("GET", f"/api/v1/sessions/{token}")
        if status == 200 and session["completion_code"]:
            codes += 1
            below += session["progress"]["done"] < quota
    return codes, below


def run_strategy(strategy: str, port: int, args) -> dict:
    stop = threading.Event()
    log = ScriptLog()
    threads = [
        threading.Thread(target=script, args=(strategy, port, address, stop, log))
        for address in SCRIPT_ADDRESSES
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(args.head_start)  # the scripts first, so that they hold what they can
    deadline = started + args.duration + args.head_start
    results: dict[str, Person] = {}

    def run(address: str, index: int) -> None:
        results[address] = person(
            port, address, strategy, args.pace, deadline,
            PROLIFIC_ID if index == 0 else f"{index:024x}", f"real-{index}",
        )  # fmt: skip

    everyone = [PARTICIPANT, *OTHERS[: args.others]]
    people = [threading.Thread(target=run, args=(a, i)) for i, a in enumerate(everyone)]
    for thread in people:
        thread.start()
    for thread in people:
        thread.join()
    stop.set()
    for thread in threads:
        thread.join()
    codes, below = codes_below_quota(port, log.tokens, args.quota)
    return {
        "participant": results[PARTICIPANT],
        "others": [results[a] for a in OTHERS[: args.others]],
        "scripts": log,
        "codes": codes,
        "below": below,
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="all")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at most a run")
    parser.add_argument("--head-start", type=float, default=5.0, help="the scripts' seconds")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--quota", type=int, default=10)
    parser.add_argument("--others", type=int, default=3, help="paced people besides")
    parser.add_argument("--database", default="iqa_abuse")
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--smoke", action="store_true", help="seconds per strategy, quota 2")
    args = parser.parse_args()
    args.pace = (1.5, 2.5)
    if args.smoke:
        args.duration, args.head_start, args.quota, args.pairs = 8.0, 1.0, 2, 12
        args.pace = (0.5, 0.6)
    strategies = STRATEGIES if args.strategies == "all" else tuple(args.strategies.split(","))
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        sys.exit(f"unknown strategies: {', '.join(sorted(unknown))}")

    prepare(args.database, args.pairs, args.quota)
    forget_throttle_counts(args.cache_url)
    print(
        f"per strategy: a study of {args.pairs} pairs x 3 votes, {args.quota} trials per "
        f"session, min_response_ms 400; scripts from {len(SCRIPT_ADDRESSES)} addresses "
        f"({args.head_start:.0f} s ahead), the participant and {args.others} others paced "
        f"{args.pace[0]}-{args.pace[1]} s; gunicorn 2 workers; default throttles"
    )
    failures = 0
    with tempfile.TemporaryDirectory(prefix="iqa-abuse-") as tmp:
        port = 19000 + os.getpid() % 1000
        server = start_server(
            args.database, port, 2, 4, Path(tmp), settings={"IQA_CACHE_URL": args.cache_url}
        )
        try:
            for strategy in strategies:
                forget_throttle_counts(args.cache_url)
                report = run_strategy(strategy, port, args)
                me = report["participant"]
                full = me.counted == args.quota and me.code is not None
                failures += (not full) + report["below"]
                latencies = [s for p in [me, *report["others"]] for s in p.latencies]
                statuses = report["scripts"].statuses
                did = ", ".join(
                    f"{kind} {status}: {n}" for (kind, status), n in sorted(statuses.items())
                )
                print(f"\n{strategy} ({report['seconds']:.0f} s)")
                print(
                    f"  participant   {me.counted} / {args.quota} counted trials "
                    f"({'full session, code' if full else 'NOT a full session'}; outcome "
                    f"{me.outcome}), {me.waited:.0f} s told to wait or refused"
                )
                others = [p.counted for p in report["others"]]
                print(f"  others        counted {others}")
                print(
                    f"  scripts       {len(report['scripts'].tokens)} sessions; codes "
                    f"{report['codes']}, below the quota {report['below']}"
                )
                print(f"  requests      {did}")
                print(latency_line("people", latencies))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{'every' if failures == 0 else 'NOT every'} strategy left the participant a "
          "full session, and no script got a code below the quota")  # fmt: skip
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
