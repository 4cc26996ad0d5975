"""``python manage.py install_weights``: put weight files where the loaders look.

``install_weights --fetch METRIC[,METRIC...]|all|recommended [--mirror URL] [--dry-run]``
downloads the files the metrics need from where they are published (the weights
catalog's sources), or from a lab's mirror, checked and moved into place
(:mod:`scoring.fetch`); ``install_weights --export-mirror DIR`` writes such a mirror from
this weights folder.

``install_weights SOURCE``: SOURCE is a folder or an archive (.zip, .tar, .tar.gz, ...)
that the operator provides.
A file is placed by its name, as the weights catalog knows it (``hub/pyiqa/...`` for
pyiqa's files, ``hub/checkpoints/...`` for torchvision's, ``clip/...`` for CLIP's), or by
its own path when the source already has the folder's layout (``hub/...``, ``clip/...``,
or a Hugging Face cache as ``huggingface/hub/models--...``). Each file is copied beside its
final name and then moved there, so a loader never sees half a file.
"""

import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring import fetch, weights


def _known_places() -> dict[str, str]:
    """File name -> place, for pyiqa's names and their decoded form: pyiqa keeps a URL's
    name as it is (``CLIP-IQA%2B_...pth``), a browser saves it decoded (``CLIP-IQA+_...``)."""
    places = {}
    for entry in weights.catalog().values():
        for relative in entry["files"]:
            if relative.startswith(weights.HF_PREFIX):
                continue  # installed as a Hugging Face cache (huggingface/hub/...)
            name = Path(relative).name
            places.setdefault(name, relative)
            places.setdefault(unquote(name), relative)
    return places


class Command(BaseCommand):
    help = (
        "Install weight files: fetch them (--fetch METRICS|all|recommended, from where they "
        "are published or --mirror URL), or copy them from a folder or archive; "
        "--export-mirror DIR writes a mirror of this weights folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, nargs="?", help="a folder or archive")
        parser.add_argument(
            "--fetch",
            metavar="METRICS",
            help="comma-separated metric names, `all` or `recommended` "
            f"({', '.join(weights.RECOMMENDED)})",
        )
        parser.add_argument(
            "--mirror", metavar="URL", help="fetch every file from this mirror instead"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list each file, its source and its size; fetch nothing",
        )
        parser.add_argument(
            "--export-mirror",
            metavar="DIR",
            type=Path,
            help="write this weights folder's files to DIR, laid out for --mirror",
        )

    def say(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(message, file=self.stdout._out)

    def handle(self, *args: object, **options: object) -> None:
        chosen = [o for o in ("source", "fetch", "export_mirror") if options[o] not in (None, "")]
        if len(chosen) != 1:
            raise CommandError("give one of: SOURCE, --fetch METRICS, --export-mirror DIR")
        if (options["mirror"] or options["dry_run"]) and not options["fetch"]:
            raise CommandError("--mirror and --dry-run go with --fetch")
        if options["fetch"]:
            return self.fetch(options)
        if options["export_mirror"]:
            return self.export(options["export_mirror"])
        source: Path = options["source"]
        if not source.exists():
            raise CommandError(f"{source}: no such file or folder")
        with tempfile.TemporaryDirectory(prefix="iqa-weights-") as tmp:
            root = source if source.is_dir() else self._unpack(source, Path(tmp))
            installed, unknown = self._install(root)
        for relative in installed:
            self.stdout.write(f"installed {relative}")
        for name in unknown:
            self.stdout.write(f"skipped {name}: no metric loads a file of this name")
        self.stdout.write(
            f"{len(installed)} files installed in {weights.weights_dir()}; "
            "see `manage.py metrics_status`"
        )

    def _unpack(self, archive: Path, into: Path) -> Path:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as handle:
                    handle.extractall(into)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive) as handle:
                    handle.extractall(into, filter="data")
            else:
                raise CommandError(f"{archive}: neither a folder nor a zip or tar archive")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise CommandError(f"{archive}: cannot unpack: {exc}") from exc
        return into

    def _install(self, root: Path) -> tuple[list[str], list[str]]:
        places = _known_places()
        folder = weights.weights_dir()
        installed, unknown = [], []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            inside = path.relative_to(root)
            if inside.parts[0] in ("hub", "clip", "huggingface"):
                relative = str(inside)
            elif path.name in places:
                relative = places[path.name]
            else:
                unknown.append(str(inside))
                continue
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(path, partial)
            partial.replace(target)
            installed.append(relative)
        return installed, unknown

    def export(self, destination: Path) -> None:
        if destination.resolve().is_relative_to(weights.weights_dir().resolve()):
            raise CommandError(f"{destination} is inside the weights folder")
        index = fetch.export_mirror(destination, self.say)
        size = sum(entry["size"] for entry in index.values())
        self.stdout.write(
            f"{len(index)} files ({fetch.human_size(size)}) exported to {destination}, with "
            f"{fetch.INDEX}; serve the folder over HTTP and run `install_weights --fetch "
            "all --mirror URL` where it is to be installed"
        )

    def fetch(self, options: dict) -> None:
        try:
            names, named = fetch.metric_names(options["fetch"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        mirror = options["mirror"]
        if mirror and not mirror.startswith(("http://", "https://")):
            raise CommandError(f"--mirror {mirror}: give an http:// or https:// URL")
        try:
            fetcher = fetch.Fetcher(mirror=mirror, say=self.say, stream=sys.stderr)
        except fetch.FetchFailed as exc:
            raise CommandError(str(exc)) from exc
        items, unknown = fetch.plan(names)
        folder = weights.weights_dir()
        self.stdout.write(
            f"weights folder: {folder} (IQA_WEIGHTS_DIR); "
            + (f"mirror: {mirror}" if mirror else "from where each file is published")
        )
        failures = [
            fetch.FetchFailed(file, "the weights catalog knows no source for it")
            for file in unknown
        ]
        todo, present, absent = [], [], []
        for item in items:
            ok, problem = fetcher.present(item)
            if ok:
                present.append(item)
            elif mirror and not fetcher.in_mirror(item):
                if named:
                    failures.append(fetch.FetchFailed(item.file, f"not in the mirror {mirror}"))
                else:
                    absent.append(item)
            else:
                if problem:
                    self.say(f"{item.file} is in place but {problem}: fetched again")
                todo.append(item)
        if options["dry_run"]:
            return self.dry_run(fetcher, todo, present, absent, failures)
        sizes = [fetcher.size(item, ask=True)[0] for item in todo]
        total = None if None in sizes else sum(sizes)
        for item in present:
            self.say(f"present  {item.file}")
        for item in absent:
            self.say(f"skipped  {item.file}: not in the mirror")
        progress = fetch.Progress(total, len(todo), sys.stderr)
        fetched = []
        try:
            for item, size in zip(todo, sizes, strict=True):
                try:
                    fetcher.fetch(item, progress)
                except fetch.FetchFailed as exc:
                    failures.append(exc)
                    self.say(f"FAILED   {exc.file}: {exc.reason}")
                    continue
                fetched.append(item)
                self.say(f"fetched  {item.file} ({fetch.human_size(size)})")
        except KeyboardInterrupt:
            progress.close()
            raise CommandError(
                "interrupted: the file being fetched is kept as a .partial file beside its "
                "place (or under .fetching/); run the same command again to resume"
            ) from None
        progress.close()
        self.summary(names, fetched, present, absent, failures)

    def dry_run(self, fetcher, todo, present, absent, failures) -> None:
        known, unknown_sizes = 0, 0
        for item in todo:
            size, whence = fetcher.size(item, ask=True)
            if size is None:
                unknown_sizes += 1
            else:
                known += size
            checksum = item.source.get("sha256")
            self.stdout.write(
                f"fetch    {item.file}  "
                + (f"{fetch.human_size(size)} ({whence})" if size is not None else "size unknown")
                + f"  for {', '.join(item.metrics)}"
            )
            self.stdout.write(
                f"         from {fetcher.source_text(item)}"
                + (f"  (SHA256 {checksum[:16]})" if checksum else "")
            )
        for item in present:
            self.stdout.write(f"present  {item.file}")
        for item in absent:
            self.stdout.write(f"absent   {item.file}: not in the mirror")
        for failure in failures:
            self.stdout.write(f"cannot   {failure.file}: {failure.reason}")
        if unknown_sizes == len(todo) and todo:
            sizes = "sizes unknown"
        else:
            sizes = fetch.human_size(known) + (
                f" known, {unknown_sizes} of unknown size" if unknown_sizes else ""
            )
        reach = (
            "" if fetcher.reachable else " (the servers could not be reached: sizes as recorded)"
        )
        self.stdout.write(
            f"dry run: {len(todo)} files to fetch ({sizes}), {len(present)} present; "
            f"nothing fetched{reach}"
        )

    def summary(self, names, fetched, present, absent, failures) -> None:
        ready = [n for n in names if not weights.missing_files(weights.needed_files(n) or [])]
        lacking = [n for n in names if n not in ready]
        self.stdout.write(
            f"{len(fetched)} files fetched, {len(present)} already present"
            + (f", {len(absent)} not in the mirror" if absent else "")
            + (f", {len(failures)} failed" if failures else "")
        )
        self.stdout.write(f"ready: {', '.join(ready) or 'none'}")
        if lacking:
            self.stdout.write(f"still missing files: {', '.join(lacking)}")
        self.stdout.write("see `manage.py metrics_status`")
        if failures:
            raise CommandError(
                "not fetched: " + "; ".join(f"{f.file}: {f.reason}" for f in failures)
            )
