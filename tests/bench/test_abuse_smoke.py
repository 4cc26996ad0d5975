"""bench/abuse.py's smoke run (every strategy for a few seconds), so that a change cannot
break the benchmark unseen: it runs to the end and finds the property it measures."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_abuse_benchmark_runs_every_strategy_and_the_participant_gets_a_full_session():
    database = f"iqa_abuse_smoke_{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "IQA_CACHE_URL")}
    try:
        done = subprocess.run(
            [sys.executable, "bench/abuse.py", "--smoke", "--database", database,
             "--cache-url", "redis://127.0.0.1:6379/13"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database],
            check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for strategy in ("never-answer", "answer-once-then-hold", "answer-fast",
                     "renew-on-expiry", "id-takeover", "session-flood"):  # fmt: skip
        assert f"\n{strategy} (" in done.stdout
    assert done.stdout.count("(full session, code;") == 6
    assert "codes 0, below the quota 0" in done.stdout or "below the quota 0" in done.stdout
    assert "every strategy left the participant a full session" in done.stdout
