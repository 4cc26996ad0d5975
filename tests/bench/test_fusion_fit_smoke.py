"""bench/fusion_fit.py's smoke run (20 scenes, 5 metrics), so that a change cannot break
the benchmark unseen: it prints the fit time and an out-of-sample accuracy."""

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_fusion_fit_benchmark_runs_and_prints_its_figures():
    done = subprocess.run(
        [sys.executable, "bench/fusion_fit.py", "--smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    timed = re.search(r"on ([\d,]+) pairs x 5 metrics in ([\d.]+) s", done.stdout)
    assert timed, done.stdout
    assert int(timed[1].replace(",", "")) > 1000, done.stdout
    accuracy = re.search(r"out of sample: accuracy ([\d.]+)", done.stdout)
    assert accuracy, done.stdout
    assert float(accuracy[1]) > 0.8, done.stdout  # the metrics are views of the quality
