"""The commands the README and ``docs/`` show in their shell blocks work as written on a
clone after ``make install``: one way to run a management command
(``.venv/bin/python manage.py``; inside the compose containers, their ``python``), each
command named exists and answers ``--help`` with status 0, and each ``make`` target
exists in the Makefile."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?:sh|bash|console|shell)\n(.*?)^```", re.M | re.S)
# A code span in the text (not a block) that names a management command.
SPAN = re.compile(r"(?<!`)`([^`]*manage\.py\s+[a-z_][^`]*)`(?!`)")
MANAGE = re.compile(r"(\S*)\s*manage\.py\s+([a-z_]+)")
MAKE = re.compile(r"(?:^|&&|;|\|\|)\s*make\s+([a-z][\w-]*)")
PYTHON = ".venv/bin/python"


def shell_lines() -> list[tuple[str, str]]:
    """(page, command line) for every line of every shell block (continuations joined,
    prompts and comments dropped) and every code span in the text naming a management
    command."""
    lines = []
    for page in PAGES:
        text = page.read_text()
        prose = FENCE.sub("", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
        for span in SPAN.findall(prose):
            lines.append((str(page.relative_to(ROOT)), " ".join(span.split())))
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    lines.append((str(page.relative_to(ROOT)), line))
    return lines


def in_container(line: str) -> bool:
    return line.startswith("docker ")


LINES = shell_lines()
COMMANDS = sorted(
    {name for _, line in LINES if not in_container(line) for _, name in MANAGE.findall(line)}
)
TARGETS = sorted({target for _, line in LINES for target in MAKE.findall(line)})


def test_the_pages_show_commands_to_check():
    assert len(LINES) > 20
    assert {"import_study", "create_researcher", "export_study"} <= set(COMMANDS)
    assert {"run", "test"} <= set(TARGETS)


def test_management_commands_are_written_one_way():
    """``python manage.py`` alone fails on a fresh clone (Django is in the venv); a
    command named without a Python (``manage.py export_study``) is a reference, not a
    line to run."""
    wrong = [
        (page, line)
        for page, line in LINES
        if not in_container(line)
        for python, _ in MANAGE.findall(line)
        if "python" in python and python != PYTHON
    ]
    assert not wrong, wrong


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_each_management_command_shown_answers_help(command):
    python = ROOT / PYTHON
    done = subprocess.run(
        [str(python if python.exists() else sys.executable), "manage.py", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"manage.py {command}" in done.stdout


def test_each_make_target_shown_exists():
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][\w-]*)\s*:", makefile, re.M))
    missing = sorted(set(TARGETS) - defined)
    assert not missing, f"make targets shown but not in the Makefile: {missing}"
