"""The one-way architecture holds: import-linter's contracts in pyproject.toml.

Layers ``frontend > dataset > analysis > scoring > annotation > core`` import only
rightwards, ``config`` imports no app, and only scoring's worker side imports PyTorch or
pyiqa. Function-level imports count: a lazy import is still a dependency.
"""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["id"] for c in CONTRACTS])
def test_contract_is_kept(contract):
    """Each contract is kept; a broken one names the offending imports (module -> module,
    with the line) in the failure."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--contract", contract["id"]],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"},
        check=False,
    )
    output = done.stdout + done.stderr
    broken = output[output.find("Broken contracts") :] if "Broken contracts" in output else output
    assert done.returncode == 0, f"import contract broken: {contract['name']}\n{broken}"
