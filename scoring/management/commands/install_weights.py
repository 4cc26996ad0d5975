"""``python manage.py install_weights SOURCE``: put weight files where the loaders look.

SOURCE is a folder or an archive (.zip, .tar, .tar.gz, ...) that the operator provides.
A file is placed by its name, as the weights catalog knows it (``hub/pyiqa/...`` for
pyiqa's files, ``hub/checkpoints/...`` for torchvision's, ``clip/...`` for CLIP's), or by
its own path when the source already has the folder's layout (``hub/...``, ``clip/...``,
or a Hugging Face cache as ``huggingface/hub/models--...``). Each file is copied beside its
final name and then moved there, so a loader never sees half a file.
"""

import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring import weights


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
    help = "Install weight files from a folder or archive into the weights folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path)

    def handle(self, *args: object, **options: object) -> None:
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
