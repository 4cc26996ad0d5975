"""``python manage.py metrics_catalog``: which weight files each pyiqa metric loads.

Creates every metric with downloads and weight loads intercepted (nothing is fetched,
networks keep random weights; see ``scoring/catalog/probe.py``), each in a forked child
with a time limit, in an empty temporary weights folder, and writes
``scoring/weights_catalog.json``. Run it after upgrading pyiqa; the result is committed.

The probe points the libraries at the temporary folder through the workers' own
environment (``weights.worker_environment``), set in this command's process before it
imports pyiqa and restored afterwards.
"""

import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser
from django.test import override_settings

from scoring import weights


def _probe(name: str, queue: multiprocessing.Queue) -> None:
    from scoring.catalog.probe import probe_files

    queue.put(probe_files(name))


class Command(BaseCommand):
    help = "Record the weight files of every pyiqa metric in scoring/weights_catalog.json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", nargs="*", help="probe these metrics only (merged in)")
        parser.add_argument("--timeout", type=float, default=120.0)
        parser.add_argument(
            "--output", type=Path, default=weights.CATALOG, help="where to write the catalog"
        )

    def handle(self, *args: object, **options: object) -> None:
        # The probe leaves placeholder files where the real ones would go: not in the
        # operator's folder.
        with tempfile.TemporaryDirectory() as folder, override_settings(IQA_WEIGHTS_DIR=folder):
            saved = dict(os.environ)
            os.environ.update(weights.worker_environment(Path(folder)))
            try:
                self.probe_all(options)
            finally:
                os.environ.clear()
                os.environ.update(saved)

    def probe_all(self, options: dict) -> None:
        from scoring.registry import pyiqa_specs

        names = options["only"] or sorted(pyiqa_specs())
        result = dict(weights.catalog()) if options["only"] else {}
        context = multiprocessing.get_context("fork")
        for name in names:
            started = time.monotonic()
            queue = context.Queue()
            child = context.Process(target=_probe, args=(name, queue))
            child.start()
            child.join(options["timeout"])
            if child.is_alive():
                child.kill()
                files, error = [], f"probe timed out after {options['timeout']:.0f} s"
            elif child.exitcode != 0 or queue.empty():
                files, error = [], f"probe crashed (exit {child.exitcode})"
            else:
                files, error = queue.get()
            result[name] = {"files": files, "error": error}
            self.stdout.write(
                f"{name}: {len(files)} files, {time.monotonic() - started:.1f} s"
                + (f" ({error})" if error else "")
            )
        options["output"].write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        self.stdout.write(f"wrote {options['output']}")
