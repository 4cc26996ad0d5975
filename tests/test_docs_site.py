"""The documentation site builds offline with ``mkdocs build --strict`` (a broken link,
anchor or missing image fails it), every page of the navigation is there with content,
and the API reference page carries the schema the code generates and the vendored
Swagger UI; the README stays short and refers to nothing outside the repository."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [
    "index", "getting-started", "studies", "accounts", "recruiting", "metrics",
    "live-report", "formats", "annotator", "statistics", "api", "deployment", "security",
    "benchmarks", "design", "architecture", "contributing",
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return target


def test_the_site_builds_strictly_with_every_page(site):
    for name in PAGES:
        page = site / f"{name}.html"
        assert page.exists(), name
        text = re.sub(r"<[^>]+>", " ", page.read_text())
        assert len(text.split()) > 150, f"{name} has little content"


def test_the_api_reference_page_carries_the_schema_and_swagger_ui(site):
    reference = site / "api-reference"
    schema = json.loads((reference / "openapi.json").read_text())
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/sessions/{token}/next-trial" in schema["paths"]
    assert "/api/v1/studies/{slug}/agreement" in schema["paths"]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "api_docs.js"):
        assert (reference / name).stat().st_size > 0, name
    assert 'data-schema-url="openapi.json"' in (reference / "index.html").read_text()


def test_the_readme_is_short_and_the_repository_stands_alone():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = []
    for name in tracked:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".yml", ".toml", ".sh", ".txt", ".cfg", ".ini"):
            continue
        if name == "tests/test_docs_site.py" or not path.exists():
            continue
        text = path.read_text(errors="replace")
        if "../shared" in text or "DESIGN.md" in text:
            outside.append(name)
    assert outside == []
