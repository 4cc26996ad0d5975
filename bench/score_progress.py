"""Scoring memory and progress: a worker's peak memory, and how long progress stands still.

``score_study demo --metrics mad`` (the demo's ref-vs-test study, 384 x 288 images; mad
is the costliest of the weight-free metrics on a CPU, about 6 s and 0.5 GB an item here)
with a real worker started for the run, while this script samples, every 0.2 s, the
worker's resident memory and the scores stored (what the CLI bar and the dashboard
show). Prints the worker's peak resident memory (all of it: Python, PyTorch, the model
and the passes; sampled, as the most of VmRSS and VmHWM, which the engine resets before
each pass), the longest time the stored count stood still while items
were left, and the forward-pass settings. Targets: peak under 2 GB, progress never still
for more than 10 s.

    .venv/bin/python bench/score_progress.py [--metric mad]
    .venv/bin/python bench/score_progress.py --unbounded   # passes of 16, as before
    .venv/bin/python bench/score_progress.py --smoke       # psnr: seconds

It needs PostgreSQL and Redis on 127.0.0.1 (``make services``); it drops and recreates
the scratch database ``iqa_bench_progress`` and empties Redis database 10 (its broker).
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _synthetic import demo_scoring, start_scoring_worker  # noqa: E402


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stored(database: str, metric: str) -> int:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atc",
         f"SELECT count(*) FROM scoring_score WHERE metric = '{metric}'"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="iqa_bench_progress")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--metric", default="mad")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="no memory or time bound on a forward pass (16 items a pass): the sizing before",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, at most")
    parser.add_argument("--smoke", action="store_true", help="psnr: seconds")
    args = parser.parse_args()
    metric = "psnr" if args.smoke else args.metric
    if not re.fullmatch(r"[a-z0-9_+-]+", metric):  # it goes into the SQL below
        sys.exit(f"not a metric name: {metric!r}")
    passes = (
        {"IQA_SCORE_PASS_MEMORY_MB": "1000000", "IQA_SCORE_PASS_SECONDS": "1000000"}
        if args.unbounded
        else {}
    )
    with tempfile.TemporaryDirectory(prefix="iqa-bench-progress-") as tmp:
        env = demo_scoring(args.database, args.broker, tmp, "bench-progress", **passes)
        manage = [sys.executable, "manage.py"]
        code = (
            "from django.conf import settings as s; "
            "print('passes:', s.IQA_SCORE_FORWARD_BATCH, s.IQA_SCORE_PASS_MEMORY_MB, "
            "s.IQA_SCORE_PASS_SECONDS)"
        )
        batch, memory, seconds = subprocess.run(
            [*manage, "shell", "-c", code], cwd=REPO, env=env, check=True,
            capture_output=True, text=True,
        ).stdout.split("passes:")[-1].split()  # fmt: skip
        print(
            f"metric {metric} on the demo study; forward passes of {batch} items at most, "
            f"{memory} MB, {seconds} s"
        )
        worker = start_scoring_worker(env, "bench-progress")
        try:
            sent = subprocess.run(
                [*manage, "score_study", "demo", "--metrics", metric],
                cwd=REPO, env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            total = int(sent.stdout.split(" items")[0].rsplit(" ", 1)[-1])
            started = time.monotonic()
            last_count, last_change, longest, peak_rss, first = 0, started, 0.0, 0.0, None
            while True:
                time.sleep(0.2)
                now = time.monotonic()
                # The engine resets VmHWM before each forward pass (it measures passes with
                # it), so the peak is the most of both, sampled.
                peak_rss = max(
                    peak_rss, status_mb(worker.pid, "VmRSS"), status_mb(worker.pid, "VmHWM")
                )
                count = stored(args.database, metric)
                if count != last_count:
                    if first is None:  # the worker's start and the model's load before it
                        first = now - started
                    else:
                        longest = max(longest, now - last_change)
                    last_count, last_change = count, now
                if count >= total:
                    break
                if now - started > args.timeout:
                    sys.exit(f"not done in {args.timeout} s: {count}/{total} stored")
                if worker.poll() is not None:
                    sys.exit(f"the worker exited ({worker.returncode}) at {count}/{total}")
            elapsed = time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    print(f"{total} items scored in {elapsed:.1f} s ({elapsed / total:.2f} s an item)")
    print(
        f"worker peak resident memory: {peak_rss:.0f} MB (the most of VmRSS and VmHWM, "
        "sampled every 0.2 s)"
    )
    print(f"first score stored {first or 0.0:.1f} s after the request (worker start, model load)")
    print(f"longest progress stood still between scores: {longest:.1f} s")
    print(
        f"targets: peak < 2048 MB {'met' if peak_rss < 2048 else 'NOT met'}; "
        f"still <= 10 s {'met' if longest <= 10 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
