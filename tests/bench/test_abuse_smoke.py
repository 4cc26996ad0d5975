"""bench/abuse.py's smoke run (every strategy for a few seconds), so that a change cannot
break the benchmark unseen: it runs to the end and finds the property it measures."""

import os

import pytest

from tests.bench.run import bench_run

pytestmark = pytest.mark.slow


def test_the_abuse_benchmark_runs_every_strategy_and_the_participant_gets_a_full_session():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "IQA_CACHE_URL")}
    done = bench_run(
        "abuse.py", f"iqa_abuse_smoke_{os.getpid()}",
        "--cache-url", "redis://127.0.0.1:6379/13", env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for strategy in ("never-answer", "answer-once-then-hold", "answer-fast",
                     "renew-on-expiry", "id-takeover", "session-flood"):  # fmt: skip
        assert f"\n{strategy} (" in done.stdout
    assert done.stdout.count("(full session, code;") == 6
    assert "codes 0, below the quota 0" in done.stdout or "below the quota 0" in done.stdout
    assert "every strategy left the participant a full session" in done.stdout
