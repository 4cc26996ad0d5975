"""``python -m scoring.worker [CELERY WORKER OPTIONS]``: start a scoring worker.

Runs ``celery -A config worker`` with the options given, in the environment of
:func:`scoring.weights.worker_environment` for ``IQA_WEIGHTS_DIR``: PyTorch, pyiqa, CLIP
and the Hugging Face libraries find the weights folder, offline, from the process's own
environment, which is set before the interpreter that imports them starts (they read it
at import), rather than by changing ``os.environ`` or the libraries from inside.

The launcher replaces itself with Celery (``exec``): the worker keeps its process id, so
whoever started it (``make run``, Docker, the tests) signals the worker itself.
"""

import os
import sys
from pathlib import Path


def celery_command(options: list[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config", "worker", *options]


def main(options: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    from scoring import weights

    environment = {**os.environ, **weights.worker_environment(Path(settings.IQA_WEIGHTS_DIR))}
    command = celery_command(options)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
