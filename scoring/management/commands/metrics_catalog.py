"""``python manage.py metrics_catalog``: which weight files each pyiqa metric loads.

Creates every metric with downloads and weight loads intercepted (nothing is fetched,
networks keep random weights), each in a forked child with a time limit, and writes
``scoring/weights_catalog.json``. Run it after upgrading pyiqa; the result is committed.
"""

import json
import multiprocessing
import time

from django.core.management.base import BaseCommand, CommandParser

from scoring import weights

# Multi-billion-parameter language models: too large to create for a probe.
TOO_LARGE = ("qalign", "qalign_8bit", "qalign_4bit", "compare2score")


def _probe(name: str, queue: multiprocessing.Queue) -> None:
    queue.put(weights.probe_files(name))


class Command(BaseCommand):
    help = "Record the weight files of every pyiqa metric in scoring/weights_catalog.json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", nargs="*", help="probe these metrics only (merged in)")
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: object, **options: object) -> None:
        weights.use_weights_dir()
        from scoring.registry import pyiqa_specs

        names = options["only"] or sorted(pyiqa_specs())
        result = dict(weights.catalog()) if options["only"] else {}
        context = multiprocessing.get_context("fork")
        for name in names:
            started = time.monotonic()
            if name in TOO_LARGE:
                files, error = [], "not probed: a multi-billion-parameter model"
            else:
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
        weights.CATALOG.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        self.stdout.write(f"wrote {weights.CATALOG}")
