"""Trial latency on the annotator page: from an answer to the next trial on screen.

Headless Chromium (Debian's package, driven by Playwright) works through the demo study
(``demo``, ref-vs-test, 384 x 288 images) on gunicorn and PostgreSQL, answering with the
keyboard like an annotator, 500 ms after each trial appears (a fast person; an answer
sooner than the study's ``min_response_ms``, 400 ms after the trial's issue, counts for
nothing, and until a session's first counted answer the page gets no counted trial ahead,
assignment rule 10, so a bench answering faster than people measured that rule, not the
page). For each answer the page
records the time from the key event to the frame after the next trial is in place with
all its images decoded (a requestAnimationFrame callback, then a task after it). The
benchmark prints p50 and p95 (and max) over ``--trials`` answers, and how many of the
next trials were already loaded when the answer came.

Target: p95 under one frame (16 ms) on localhost.

    .venv/bin/python bench/trial_latency.py [--trials 200]
    .venv/bin/python bench/trial_latency.py --smoke   # seconds: what the suite runs

It needs PostgreSQL on 127.0.0.1:5432 (``make services``) and /usr/bin/chromium; it drops
and recreates the scratch database ``iqa_bench_page`` (``--database``). The demo's pairs
get 10 votes each there (3 in the demo), so that 200 trials fit in the study; sessions
(40 trials each, after 2 practice trials) follow one another until enough are answered.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from annotate_load import database_url, start_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
READY = "#answer-left:not([disabled])"


def prepare_database(name: str, data_dir: Path) -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name), "IQA_DATA_DIR": str(data_dir)}
    for command in (["migrate", "-v0"], ["build_demo"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, env=env, check=True)
    code = "from annotation.models import Pair; Pair.objects.update(target_votes=10)"
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True
    )


def run_sessions(url: str, trials: int, think_ms: int) -> tuple[list[float], int, int, int]:
    """Answer until ``trials`` latencies are recorded; returns the latencies (ms), the
    answers given, how many of them found the next trial loaded, and the sessions."""
    from playwright.sync_api import sync_playwright

    latencies: list[float] = []
    preloaded = sessions = answers = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        while len(latencies) < trials:
            sessions += 1
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{url}/annotate/demo/")
            page.wait_for_selector("[data-screen=consent]:not([hidden])")
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-screen=instructions]:not([hidden])")
            page.keyboard.press("Enter")
            answered = 0
            while len(latencies) + answered < trials:
                try:
                    # "full": the session saw every pair without enough counted answers
                    # (answers faster than min_response_ms count for nothing).
                    page.wait_for_selector(
                        f"{READY}, [data-screen=done]:not([hidden]), "
                        "[data-screen=break]:not([hidden]), [data-screen=full]:not([hidden])"
                    )
                except Exception:
                    state = page.evaluate(
                        "() => [iqaAnnotator.screen, iqaAnnotator.paused,"
                        " document.getElementById('stage-message').textContent,"
                        " iqaAnnotator.pendingAnswers]"
                    )
                    sys.exit(f"the page is stuck after {answered} answers: {state}")
                screen = page.evaluate("iqaAnnotator.screen")
                if screen == "break":  # (the page records no latency across a break)
                    page.keyboard.press("Enter")
                    continue
                if screen != "trial":
                    break
                page.wait_for_timeout(think_ms)
                queued = page.evaluate("iqaAnnotator.queued")
                preloaded += int(len(queued) > 1 and queued[1]["decoded"])
                shown = page.evaluate("iqaAnnotator.shown.length")
                page.keyboard.press(str(1 + answered % 3))
                answered += 1
                # (a function and its argument: the page's CSP refuses an expression string,
                # which Playwright would evaluate with eval)
                page.wait_for_function(
                    "shown => iqaAnnotator.shown.length > shown || iqaAnnotator.screen !== 'trial'",
                    arg=shown,
                )
            answers += answered
            page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
            # The last answer of a session ends it (no next trial, no latency).
            latencies += page.evaluate("iqaAnnotator.latencies")
            context.close()
            if sessions > 20:
                sys.exit("the demo study ran out of trials before enough were answered")
        browser.close()
    return latencies[:trials], answers, preloaded, sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--think-ms", type=int, default=500, help="wait before each answer")
    parser.add_argument("--database", default="iqa_bench_page")
    parser.add_argument("--port", type=int, default=8772)
    parser.add_argument("--smoke", action="store_true", help="10 trials: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.trials = 10
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install -y chromium)")

    with tempfile.TemporaryDirectory(prefix="iqa-bench-page-") as tmp:
        data_dir = Path(tmp)
        print("preparing the demo study ...", flush=True)
        prepare_database(args.database, data_dir)
        server = start_server(args.database, args.port, workers=2, threads=4, data_dir=data_dir)
        try:
            started = time.monotonic()
            latencies, answers, preloaded, sessions = run_sessions(
                f"http://127.0.0.1:{args.port}", args.trials, args.think_ms
            )
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=30)

    ms = np.asarray(latencies)
    print(
        f"{len(ms)} timed answers, {sessions} sessions, {elapsed:.0f} s, {args.think_ms} ms think"
    )
    print(
        f"next trial loaded before the answer: {preloaded} of {answers} answers "
        "(a session's last trial has no next one)"
    )
    print(
        "answer -> next trial displayed (images decoded): "
        f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
        f"max {ms.max():.1f} ms"
    )
    verdict = "met" if np.percentile(ms, 95) < 16 else "NOT met"
    print(f"target p95 < 16 ms (one frame): {verdict}")


if __name__ == "__main__":
    main()
