"""Content-addressed image store under MEDIA_ROOT.

A file is stored once, at ``images/<sha[:2]>/<sha[2:4]>/<sha>.<ext>``, whatever its
name and however often it is imported. Writes go to a temporary file that is renamed
into place, so a half-written file never carries a content address.
"""

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

CHUNK = 1 << 20

EXTENSIONS = {
    "PNG": "png",
    "JPEG": "jpg",
    "BMP": "bmp",
    "WEBP": "webp",
    "TIFF": "tif",
    "GIF": "gif",
    "PPM": "ppm",
}


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relative_path: str
    size_bytes: int
    created: bool
    # Folders this call created, parents first, so an undo can remove exactly those.
    created_dirs: tuple[str, ...] = ()


def _make_dirs(folder: Path, root: Path) -> list[str]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(str(path.relative_to(root)))
        except FileExistsError:
            pass  # made meanwhile by a concurrent import; not ours to remove
    return created


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def relative_path_for(sha256: str, image_format: str) -> str:
    ext = EXTENSIONS.get(image_format.upper(), image_format.lower() or "bin")
    return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def store_file(source: Path, image_format: str) -> StoredFile:
    """Copy ``source`` into the store, hashing as it streams; reuse an existing copy."""
    root = media_root()
    incoming = root / "images" / ".incoming"
    created_dirs = _make_dirs(incoming, root)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=incoming, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        relative = relative_path_for(sha, image_format)
        final = root / relative
        if final.exists():
            return StoredFile(sha, relative, size, False, tuple(created_dirs))
        created_dirs += _make_dirs(final.parent, root)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, final)
        return StoredFile(sha, relative, size, True, tuple(created_dirs))
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def remove_paths(relative_paths: list[str]) -> None:
    """Undo an import's writes: delete its files, then the folders it created if empty.

    ``relative_paths`` lists files and folders in creation order; walking it backwards
    removes children before parents, so a refused import leaves the tree as it was.
    """
    root = media_root()
    for relative in reversed(relative_paths):
        path = root / relative
        if path.is_dir():
            with contextlib.suppress(OSError):  # not empty: something else lives there now
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
