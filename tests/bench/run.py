"""Running a bench/ script's smoke run as its own process on a scratch database, which is
dropped afterwards whatever happened."""

import subprocess
import sys

from tests.conftest import REPO


def bench_run(
    script: str, database: str, *args: str, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``bench/<script> --smoke --database DATABASE ARGS``; its completed process."""
    try:
        return subprocess.run(
            [sys.executable, f"bench/{script}", "--smoke", "--database", database, *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database],
            check=False,
        )
