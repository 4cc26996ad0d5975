"""``python manage.py metrics_catalog``: which weight files each pyiqa metric loads.

Creates every metric with downloads and weight loads intercepted (nothing is fetched,
networks keep random weights; see ``scoring/catalog/probe.py``), each in a forked child
with a time limit, in an empty temporary weights folder, and writes
``scoring/weights_catalog.json``: per metric its files, and where each is published (the
URL the loader asked for, the publisher's checksum: ``scoring/catalog/sources.py``), which
``install_weights --fetch`` reads. Run it after upgrading pyiqa; the result is committed.
``--sources-only`` recomputes the sources of the files already listed, without probing.

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


def _share_sources(result: dict) -> None:
    """Give every metric the source another metric's probe found for the same file (a
    loader downloads only a file the folder lacks, so only the first probe to need a file
    sees its URL)."""
    known: dict[str, dict] = {}
    for entry in result.values():
        for file, source in entry.get("sources", {}).items():
            known.setdefault(file, source)
    for entry in result.values():
        sources = entry.setdefault("sources", {})
        for file in entry["files"]:
            if file not in sources and file in known:
                sources[file] = known[file]
        entry["sources"] = dict(sorted(sources.items()))


class Command(BaseCommand):
    help = "Record the weight files of every pyiqa metric in scoring/weights_catalog.json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", nargs="*", help="probe these metrics only (merged in)")
        parser.add_argument("--timeout", type=float, default=120.0)
        parser.add_argument(
            "--sources-only",
            action="store_true",
            help="only fill in where each listed file is published (no probing)",
        )
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

    def sources_only(self, options: dict) -> None:
        from scoring.catalog.sources import catalog_sources

        result = {
            name: {**entry, "sources": catalog_sources(entry["files"], {}, entry.get("sources"))}
            for name, entry in weights.catalog().items()
        }
        self.write(result, options)

    def write(self, result: dict, options: dict) -> None:
        _share_sources(result)
        for name, entry in sorted(result.items()):
            unknown = [f for f in entry["files"] if f not in entry["sources"]]
            if unknown:
                self.stdout.write(f"{name}: no published source known for {', '.join(unknown)}")
        options["output"].write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        self.stdout.write(f"wrote {options['output']}")

    def probe_all(self, options: dict) -> None:
        if options["sources_only"]:
            return self.sources_only(options)
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
                files, error, sources = [], f"probe timed out after {options['timeout']:.0f} s", {}
            elif child.exitcode != 0 or queue.empty():
                files, error, sources = [], f"probe crashed (exit {child.exitcode})", {}
            else:
                files, error, sources = queue.get()
            result[name] = {"files": files, "error": error, "sources": sources}
            self.stdout.write(
                f"{name}: {len(files)} files, {time.monotonic() - started:.1f} s"
                + (f" ({error})" if error else "")
            )
        self.write(result, options)
