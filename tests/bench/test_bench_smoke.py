"""Every benchmark's smoke run (``--smoke``: tiny sizes, seconds), so that a change that
breaks a bench fails the suite instead of waiting for the next person who runs it. Each
test checks that the bench ran to the end and printed its figures; the figures' sizes are
the bench's business (docs/benchmarks.md gives the full runs)."""

import re
import subprocess
import sys

import pytest

from tests.bench.run import bench_run
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow


def ran(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def plain(script: str) -> str:
    """A bench that needs no database, run with ``--smoke``."""
    return ran(
        subprocess.run(
            [sys.executable, f"bench/{script}", "--smoke"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
    )


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return float(found[1].replace(",", ""))


def test_agreement_speed():
    out = plain("agreement_speed.py")
    assert "the loops' accuracies equal the platform's for all 3 metrics" in out
    assert number(r"ratio: ([\d.]+)x", out) > 0


def test_tie_coverage():
    out = plain("tie_coverage.py")
    rows = re.findall(r"^\| (0|10)% \| ([\d.]+)% .*\| ([\d.]+)% .*\|$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["0", "10"], out
    assert all(50 < float(row[2]) <= 100 for row in rows), out  # a coverage, in percent


def test_annotate_load():
    out = ran(bench_run("annotate_load.py", "iqa_bench_smoke_load"))
    # Both flows, paced and saturated: trials answered, no request failed.
    assert len(re.findall(r"^    trials/s\s+([1-9][\d.]*)", out, re.MULTILINE)) == 4, out
    assert len(re.findall(r"^    errors\s+0\b", out, re.MULTILINE)) == 4, out
    assert number(r"one request / two requests per trial: ([\d.]+)x", out) > 0
    assert number(r"ratio\s+([\d.]+)% of the ceiling", out) > 0
    assert re.search(r"^  errors\s+0\b", out, re.MULTILINE), out
    assert "server errors logged" not in out, out
    assert "STUDY FULL" not in out, out


def test_dashboard():
    out = ran(bench_run("dashboard.py", "iqa_bench_smoke_dashboard", "--redis-db", "11"))
    for path in ("/studies/bench-dashboard/", "/api/v1/studies/bench-dashboard/progress"):
        assert number(rf"{re.escape(path)}\s+cold\s+\d+ ms\s+p50\s+([\d.]+) ms", out) > 0


def test_export_bundle():
    out = ran(bench_run("export_bundle.py", "iqa_bench_smoke_export"))
    assert number(r"import_votes long-csv\s+(\d+) rows", out) > 0
    assert number(r"export_study --bundle\s+\d+ votes\s+([\d.]+) s", out) > 0


def test_report_live():
    out = ran(bench_run("report_live.py", "iqa_bench_smoke_live", "--redis-db", "12"))
    assert "votes in the database" in out
    # (A smoke run's few seconds may end before a poll counts a vote.)
    assert re.search(r"staleness: (p95 [\d.]+ s|no vote counted by a poll)", out), out


def test_score_throughput():
    out = ran(
        bench_run(
            "score_throughput.py", "iqa_bench_smoke_score", "--broker", "redis://127.0.0.1:6379/12"
        )
    )
    assert "metrics: psnr" in out
    assert number(r"ratio:\s+([\d.]+)x", out) > 0


def test_score_progress():
    out = ran(
        bench_run(
            "score_progress.py", "iqa_bench_smoke_progress", "--broker", "redis://127.0.0.1:6379/10"
        )
    )
    assert "metric psnr on the demo study" in out
    assert number(r"(\d+) items scored", out) > 0
    assert number(r"worker peak resident memory: (\d+) MB", out) > 0
    assert number(r"longest progress stood still between scores: ([\d.]+) s", out) < 60


def test_upload():
    out = ran(bench_run("upload.py", "iqa_bench_smoke_upload", "--port", str(free_port())))
    assert number(r"total\s+[\d.]+ s\s+([\d,]+) images/s", out) > 0
    assert "study: 4 scenes, 40 images" in out


def test_trial_latency():
    """The page's own CSP refuses string evaluation: the bench drives it with functions."""
    out = ran(bench_run("trial_latency.py", "iqa_bench_smoke_page", "--port", str(free_port())))
    assert number(r"(\d+) timed answers", out) >= 5
    assert number(r"p95 ([\d.]+) ms", out) > 0
