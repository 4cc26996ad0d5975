"""bench/import_study.py's smoke run (300 images while two annotators vote), so that a
change cannot break the benchmark unseen: it runs to the end, the annotators meet no
error, and the import never holds more advisory locks than there are file buckets."""

import re

import pytest

from annotation.services import file_claims
from tests.bench.run import bench_run

pytestmark = pytest.mark.slow


def test_the_import_benchmark_runs_with_annotators_and_bounded_locks():
    done = bench_run("import_study.py", "iqa_bench_import_smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^\s+(\d+)\s+[\d.]+\s+\d+\s+\d+\s+(\d+)$", done.stdout, re.MULTILINE)
    assert [int(images) for images, _ in rows] == [30, 300], done.stdout
    assert all(int(locks) <= file_claims.BUCKETS for _, locks in rows)
    match = re.search(r"annotators: (\d+) requests, (\d+) errors", done.stdout)
    assert match, done.stdout
    assert int(match[1]) > 0, done.stdout
    assert int(match[2]) == 0, done.stdout
