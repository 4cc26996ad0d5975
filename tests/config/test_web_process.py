"""The web process never imports torch (metric code runs in workers only) nor
scikit-learn (the fusion metric's fits run in workers and commands only)."""

import json
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import json, sys
import config.wsgi
from django.urls import get_resolver
get_resolver().url_patterns  # import every view module
import annotation.services, annotation.selectors, annotation.tasks
import analysis.services, analysis.report, analysis.fusion
print(json.dumps(sorted(m for m in ("torch", "torchvision", "pyiqa", "sklearn")
                        if m in sys.modules)))
"""


def test_loading_the_web_application_imports_no_torch_and_no_sklearn():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
