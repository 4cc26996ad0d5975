"""bench/active_sampling.py's smoke run (one seed, two SRIQA-Bench scenes, three votes a
pair), so that a change cannot break the benchmark unseen: both policies run through the
real assignment code to the end of their budget, and stopping when decided leaves every
label as the full collection gives it."""

import re

import pytest

from tests.bench.run import bench_run

pytestmark = pytest.mark.slow


def test_the_active_sampling_benchmark_runs_and_stopping_keeps_every_label():
    done = bench_run("active_sampling.py", "iqa_bench_active_smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for policy in ("uniform", "active"):
        match = re.search(rf"at the full budget, {policy}: median SRCC ([\d.]+)", done.stdout)
        assert match, done.stdout
        assert float(match[1]) > 0.5, done.stdout  # 3 votes a pair order 11 images well
    labels = re.search(
        r"(\d+) votes uniform, (\d+) stopping when decided .*identical on ([\d.]+)% of pairs",
        done.stdout,
    )
    assert labels, done.stdout
    assert int(labels[2]) < int(labels[1]) == 60, done.stdout  # 20 pairs x 3 votes
    assert float(labels[3]) == 100.0, done.stdout
