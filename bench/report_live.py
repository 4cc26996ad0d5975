"""The live agreement report at scale: full recomputation, incremental update, and the
page's data request and the snapshot's staleness while paced annotators vote.

The synthetic study of ``bench/agreement_speed.py`` (``--votes`` votes on ``--pairs``
pairs, 5,000 sessions) and ``--metrics`` NR metrics' scores are written to the scratch
database ``iqa_bench_live`` (dropped and recreated) with ``COPY`` (``bench/_synthetic.py``);
each pair asks for one vote more than it has, so annotators are still offered pairs. Then:

1. in this process, timed by phase: the exact refresh (``agreement_snapshot_refresh(mode=
   "exact")``: ``agreement_report``'s read and computation) split into the database read,
   the computation and the save; a first live refresh (builds the kept counts); 1,000 new
   votes (100 new sessions, written as the vote statement writes them); a live refresh
   (the incremental update). Its ratio to the full recomputation, side by side.
2. gunicorn, a real celery worker (the refreshes), ``--annotators`` paced annotators
   voting through the API (think time uniform in ``--think``), and a reader polling the
   agreement JSON every ``--poll`` seconds with ``If-None-Match`` (what the page does,
   more often; after each new snapshot, the shown scene's images, as the page), for
   ``--duration`` seconds. Prints the data request's p50/p95/p99 (200s
   and 304s), the staleness p95: seconds from a vote's acknowledgement to the first
   answer whose ``votes`` counts it, and votes acknowledged but not yet counted at each
   poll; then how long the exact snapshot takes to follow once the votes stop.

Needs PostgreSQL and Redis on 127.0.0.1 (``make services``).

    .venv/bin/python bench/report_live.py [--votes 1000000] [--pairs 100000] [--metrics 30]
        [--duration 120] [--annotators 100]
    .venv/bin/python bench/report_live.py --smoke   # seconds: what the suite runs
"""

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
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

from _synthetic import database_url, recreate, start_server, write_scores, write_study  # noqa: E402
from annotate_load import RAISED_THROTTLES, Client  # noqa: E402
from dashboard import Browser  # noqa: E402

SLUG = "synthetic"


def new_votes(study, n: int, sessions: int = 100, seed: int = 9) -> None:
    """``n`` votes from ``sessions`` new sessions, each vote as the vote statement writes
    it (trial, vote and the session's counter)."""
    from datetime import timedelta

    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from annotation.models import AnnotatorSession, Pair, Trial, Vote

    rng = np.random.default_rng(seed)
    pair_ids = np.array(Pair.objects.filter(study=study).values_list("id", flat=True))
    now = timezone.now()
    people = [
        AnnotatorSession.objects.create(study=study, created_at=now,
                                        participant_id=f"live{seed}-{i}")
        for i in range(sessions)
    ]  # fmt: skip
    chosen = rng.choice(pair_ids, size=n, replace=False)
    with transaction.atomic():
        trials = Trial.objects.bulk_create(
            Trial(session=people[i % sessions], pair_id=int(p), kind="label", ordinal=i,
                  a_on_left=True, issued_at=now, answered_at=now,
                  lease_expires_at=now + timedelta(seconds=60))
            for i, p in enumerate(chosen)
        )  # fmt: skip
        Vote.objects.bulk_create(
            Vote(trial=t, session=t.session, pair_id=t.pair_id, kind="label",
                 choice=str(c), preferred={"left": "a", "similar": "similar", "right": "b"}[c],
                 response_ms=900, created_at=now)
            for t, c in zip(trials, rng.choice(["left", "similar", "right"], size=n), strict=True)
        )  # fmt: skip
        for i, person in enumerate(people):
            AnnotatorSession.objects.filter(pk=person.pk).update(
                n_done=F("n_done") + len(range(i, n, sessions))
            )


@contextlib.contextmanager
def phases():
    """Time the refresh's database read (``study_data``) and its saves (the snapshot and
    its scene rows) apart: yields a dict of seconds filled in as they run."""
    from analysis import services

    spent = {"read": 0.0, "save": 0.0}
    read, save = services.study_data, services.AgreementSnapshot.save
    scenes = services.scene_images_save

    def timed_scenes(*args, **kwargs):
        started = time.perf_counter()
        try:
            return scenes(*args, **kwargs)
        finally:
            spent["save"] += time.perf_counter() - started

    def timed_read(*args, **kwargs):
        started = time.perf_counter()
        try:
            return read(*args, **kwargs)
        finally:
            spent["read"] += time.perf_counter() - started

    def timed_save(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return save(self, *args, **kwargs)
        finally:
            spent["save"] += time.perf_counter() - started

    services.study_data, services.AgreementSnapshot.save = timed_read, timed_save
    services.scene_images_save = timed_scenes
    try:
        yield spent
    finally:
        services.study_data, services.AgreementSnapshot.save = read, save
        services.scene_images_save = scenes


def in_process(study, new: int) -> float:
    """Phase 1; returns the votes counted by the last snapshot."""
    from analysis.services import agreement_snapshot_refresh

    with phases() as spent:
        started = time.perf_counter()
        exact = agreement_snapshot_refresh(study=study, mode="exact")
        full = time.perf_counter() - started
    compute = full - spent["read"] - spent["save"]
    print(f"full recomputation (exact): {full:.2f} s = database read {spent['read']:.2f} s "
          f"+ computation {compute:.2f} s + save {spent['save']:.2f} s")  # fmt: skip
    started = time.perf_counter()
    agreement_snapshot_refresh(study=study, mode="live")
    print(f"first live refresh (reads every vote once): {time.perf_counter() - started:.2f} s")
    from annotation.models import AnnotatorSession

    # (a seed of its own per run, so that --reuse adds new participants)
    new_votes(study, new, seed=AnnotatorSession.objects.filter(study=study).count())
    with phases() as spent:
        started = time.perf_counter()
        snapshot = agreement_snapshot_refresh(study=study, mode="live")
        incremental = time.perf_counter() - started
    assert snapshot.votes == exact.votes + new, (snapshot.votes, exact.votes)
    info = snapshot.report["live"]
    drawn = "redrawn" if info["intervals"]["votes"] == snapshot.votes else "carried"
    print(
        f"incremental update after {new:,} new votes: {incremental:.2f} s (save "
        f"{spent['save']:.2f} s; {info['refitted_scenes']} scenes refitted, intervals "
        f"{drawn}); ratio {full / incremental:.1f}x (goal >= 10x)"
    )
    return snapshot.votes


def annotator(port: int, stop_at: float, think: tuple, acks: list, lock) -> None:
    time.sleep(random.uniform(0, think[1]))  # arrivals spread over one think time
    client = Client(port)
    status, session, _ = client.call("POST", f"/api/v1/studies/{SLUG}/sessions", {})
    assert status == 201, session
    token = session["token"]
    mine = []
    while time.monotonic() < stop_at:
        try:
            status, trial, _ = client.call("GET", f"/api/v1/sessions/{token}/next-trial")
            if status == 204:
                break
            if status != 200:
                continue
            time.sleep(random.uniform(*think))
            body = {"trial_id": trial["trial_id"], "choice": random.choice(["left", "right"]),
                    "response_ms": 1200}  # fmt: skip
            status, _, _ = client.call("POST", f"/api/v1/sessions/{token}/votes", body)
            if status == 201:
                mine.append(time.time())
        except (http.client.HTTPException, OSError):
            pass
    with lock:
        acks.extend(mine)


def annotators(port: int, n: int, start_at: float, duration: float, think, queue) -> None:
    """``n`` paced annotators in threads of this process; puts their acknowledgement
    times (epoch seconds) on ``queue``."""
    acks, lock = [], threading.Lock()
    while time.monotonic() < start_at:
        time.sleep(0.01)
    threads = [
        threading.Thread(target=annotator, args=(port, start_at + duration, think, acks, lock))
        for _ in range(n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(acks)


def read_json(browser: Browser, path: str, etag: str | None):
    headers = {"If-None-Match": etag} if etag else {}
    started = time.perf_counter()
    status, content, _ = browser.request("GET", path, headers=headers)
    elapsed = time.perf_counter() - started
    return status, content, elapsed, time.time()


def under_load(args, base_votes: int) -> None:
    """Phase 2."""
    path = f"/api/v1/studies/{SLUG}/agreement"
    settings = {
        **RAISED_THROTTLES,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
        "CELERY_TASK_DEFAULT_QUEUE": "bench-report-live",
    }
    with tempfile.TemporaryDirectory(prefix="iqa-bench-") as tmp:
        port = 19500 + os.getpid() % 400
        env = {**os.environ, "DATABASE_URL": database_url(args.database),
               "IQA_DATA_DIR": tmp, **settings}  # fmt: skip
        log = open(Path(tmp) / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "scoring.worker", "--pool", "solo", "--queues",
             settings["CELERY_TASK_DEFAULT_QUEUE"], "--without-gossip", "--without-mingle",
             "--loglevel", "WARNING"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        server = start_server(args.database, port, Path(tmp), workers=args.workers,
                              settings=settings)  # fmt: skip
        try:
            browser = Browser(port)
            browser.log_in()
            queue = multiprocessing.Queue()
            start_at = time.monotonic() + 2.0
            clients = multiprocessing.Process(
                target=annotators,
                args=(port, args.annotators, start_at, args.duration, args.think, queue),
            )
            clients.start()
            polls = []  # (time, status, seconds, votes counted)
            scene_reads = []  # (status, seconds) of the shown scene's images
            refreshes = {}  # computed_at: (seconds, live info) of each snapshot seen
            etag, counted, scene, scene_etag = None, base_votes, None, None
            while time.monotonic() < start_at:
                time.sleep(0.01)
            stop_at = start_at + args.duration
            while time.monotonic() < stop_at:
                began = time.monotonic()
                status, content, seconds, at = read_json(browser, path, etag)
                if status == 200:
                    body = json.loads(content)
                    counted = body["votes"]
                    info = body.get("live") or {}
                    drawn = {} if info.get("exact") else info.get("intervals") or {}
                    drawn_at = drawn.get("as_of")
                    refreshes[body["computed_at"]] = (
                        body["computed_in_s"],
                        same_time(drawn_at, body["as_of"]),
                    )
                    etag = browser.headers.get("etag")
                    # As the page: then the shown scene's images, If-None-Match.
                    scene = scene or body["scenes"][0]
                    got, _, took, _ = read_json(browser, f"{path}/images?scene={scene}", scene_etag)
                    scene_etag = browser.headers.get("etag") if got == 200 else scene_etag
                    scene_reads.append((got, took))
                polls.append((at, status, seconds, counted))
                time.sleep(max(0.0, args.poll - (time.monotonic() - began)))
            acks = np.sort(np.asarray(queue.get(), dtype=float))
            clients.join()
            report_load(args, polls, acks, base_votes)
            report_refreshes(refreshes)
            if scene_reads:
                ms = np.array([s for _, s in scene_reads]) * 1000
                p50, p95 = np.percentile(ms, [50, 95])
                print(f"  a scene's images after each 200: {len(ms)} requests "
                      f"({sum(g == 304 for g, _ in scene_reads)} 304), p50 {p50:.0f} ms  "
                      f"p95 {p95:.0f} ms")  # fmt: skip
            # Once the votes stop, the next refresh computes the exact report.
            started, exact = time.monotonic(), None
            while time.monotonic() - started < 600 and not exact:
                status, content, _, _ = read_json(browser, path, None)
                body = json.loads(content)
                exact = body.get("live", {}).get("exact") and body["votes"] == base_votes + len(
                    acks
                )
                time.sleep(0.5)
            print(
                f"exact snapshot of all {base_votes + len(acks):,} votes "
                f"{time.monotonic() - started:.1f} s after the votes stopped"
                if exact
                else "the exact snapshot did not follow within 600 s"
            )
        finally:
            server.terminate()
            worker.terminate()
            server.wait(timeout=30)
            worker.wait(timeout=60)


def same_time(a: str | None, b: str | None) -> bool:
    from datetime import datetime

    return bool(a and b) and datetime.fromisoformat(a) == datetime.fromisoformat(b)


def report_refreshes(refreshes: dict) -> None:
    """The worker's refreshes the reader saw: how long each took (those that redrew
    the bootstrap intervals apart), and the time between consecutive ones."""
    if not refreshes:
        return
    from datetime import datetime

    at = np.array(sorted(datetime.fromisoformat(k).timestamp() for k in refreshes))
    took = np.array([s for s, _ in refreshes.values()])
    drew = np.array([d for _, d in refreshes.values()])
    gaps = np.diff(at)

    def line(values):
        p50, p95 = np.percentile(values, [50, 95])
        return f"p50 {p50:.2f} s  p95 {p95:.2f} s  max {values.max():.2f} s"

    print(f"  refreshes seen: {len(took)}; took {line(took)}")
    if drew.any() and (~drew).any():
        print(f"    with intervals redrawn ({drew.sum()}): {line(took[drew])}; "
              f"carried ({(~drew).sum()}): {line(took[~drew])}")  # fmt: skip
    if gaps.size:
        print(f"  between consecutive snapshots: {line(gaps)}")


def report_load(args, polls, acks, base_votes: int) -> None:
    at = np.array([p[0] for p in polls])
    status = np.array([p[1] for p in polls])
    ms = np.array([p[2] for p in polls]) * 1000
    counted = np.array([p[3] for p in polls]) - base_votes
    print(
        f"under load: {args.annotators} annotators (think {args.think[0]:g}-{args.think[1]:g} s), "
        f"{len(acks):,} votes in {args.duration:.0f} s ({len(acks) / args.duration:.0f}/s); "
        f"reader every {args.poll:g} s, {len(polls)} requests ({(status == 200).sum()} 200, "
        f"{(status == 304).sum()} 304, {((status != 200) & (status != 304)).sum()} other)"
    )
    for name, keep in (("all", status > 0), ("200", status == 200), ("304", status == 304)):
        if keep.any():
            p50, p95, p99 = np.percentile(ms[keep], [50, 95, 99])
            print(f"  data request {name:>3}: p50 {p50:6.0f} ms  p95 {p95:6.0f} ms  "
                  f"p99 {p99:6.0f} ms  max {ms[keep].max():6.0f} ms")  # fmt: skip
    # A vote is seen by the first poll whose count includes it (counts only grow).
    k = np.arange(1, len(acks) + 1)
    first = np.searchsorted(np.maximum.accumulate(counted), k)  # index of the first poll
    seen = first < len(polls)
    lag_s = at[first[seen]] - acks[seen]
    behind = np.searchsorted(acks, at) - counted  # acknowledged, not counted, at each poll
    if lag_s.size:
        print(
            f"  staleness: p95 {np.percentile(lag_s, 95):.1f} s (max {lag_s.max():.1f} s) from "
            f"a vote's acknowledgement to the first answer counting it ({(~seen).sum()} votes "
            f"of the last seconds not seen before the end); p95 "
            f"{np.percentile(behind, 95):.0f} votes behind (max {behind.max()})"
        )
    else:  # a short run (--smoke): no poll came after a vote before the end
        print(f"  staleness: no vote counted by a poll before the end ({len(acks)} votes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=100_000, help="55 a scene of 11 images")
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--new-votes", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of voting")
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--think", type=float, nargs=2, default=[1.0, 2.0], help="seconds")
    parser.add_argument("--poll", type=float, default=0.5, help="the reader's period, s")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (4 threads)")
    parser.add_argument("--database", default="iqa_bench_live")
    parser.add_argument("--redis-db", type=int, default=10, help="the broker's Redis database")
    parser.add_argument("--reuse", action="store_true", help="keep the database of a last run")
    parser.add_argument(
        "--smoke", action="store_true", help="5,500 votes, 3 metrics, 5 s of voting: seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.votes, args.pairs, args.metrics, args.new_votes = 5500, 560, 3, 50
        args.duration, args.annotators, args.workers = 5.0, 4, 1
    scenes = max(1, (args.pairs - 10) // 55)
    per_pair = max(1, round(args.votes / (scenes * 55 + 10)))
    os.environ["DATABASE_URL"] = database_url(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not args.reuse:
        recreate(args.database)
    import django

    django.setup()
    from annotation.models import Study, Vote

    if not args.reuse:
        started = time.perf_counter()
        sizes = write_study(slug=SLUG, scenes=scenes, votes_per_pair=per_pair,
                            target_votes=per_pair + 1)  # fmt: skip
        images = write_scores(SLUG, args.metrics)
        took = time.perf_counter() - started
        print(f"study: {sizes['votes']:,} votes, {sizes['pairs']:,} pairs, {images:,} images, "
              f"{args.metrics} metrics; written in {took:.0f} s")  # fmt: skip
    study = Study.objects.get(slug=SLUG)
    print(f"{Vote.objects.filter(session__study=study).count():,} votes in the database")
    counted = in_process(study, args.new_votes)
    from django.db import connections

    connections.close_all()
    if args.duration > 0:
        under_load(args, counted)


if __name__ == "__main__":
    main()
