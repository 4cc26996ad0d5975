"""Imports that share a new image file, serialised per file.

The image store is content-addressed, so two imports of the same image share one file.
Rows go in after the files, in one short transaction, and a refused import removes the
files it added: without care, import A could remove a file that import B, still running,
found in the store and is about to reference.

On PostgreSQL each import holds, from the moment it stores or finds a file until it has
committed or cleaned up, a shared session advisory lock keyed by the file's SHA256.
Removing a file needs the exclusive lock, taken without waiting: a file another import
holds is left to it, and one no import holds is removed only if no committed row
references it. An import that finds a file and then gets its lock checks the file is
still there (a refused import may have removed it just before) and stores it again if
not. SQLite (the laptop) has one writer and no advisory locks: there only the reference
check applies.

The locks belong to the import that runs in this thread (``claims_begin`` ... ``release``);
``study_import`` begins and ends it, and ``_store`` calls :func:`store_file`.
"""

import contextvars
import dataclasses
from pathlib import Path

from django.db import connection

from annotation import storage
from annotation.models import Image

# A namespace for these locks (the high bits), apart from the lease sweep's key.
_NAMESPACE = 0x1F5


@dataclasses.dataclass
class _Claims:
    keys: list[int] = dataclasses.field(default_factory=list)
    # Files found in the store (not added by this import), by relative path.
    found: list[str] = dataclasses.field(default_factory=list)


_current: contextvars.ContextVar[_Claims | None] = contextvars.ContextVar(
    "iqa_import_file_claims", default=None
)


def _locking() -> bool:
    return connection.vendor == "postgresql"


def _key(sha256: str) -> int:
    """A signed 64-bit advisory lock key: the namespace, then 52 bits of the SHA256."""
    value = (_NAMESPACE << 52) | int(sha256[:13], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _sha(relative_path: str) -> str:
    return Path(relative_path).stem


def claims_begin() -> None:
    """Start holding the files this thread's import stores or finds."""
    _current.set(_Claims())


def store_file(source: Path, image_format: str) -> storage.StoredFile:
    """``storage.store_file``, then held against removal until the import ends."""
    stored = storage.store_file(source, image_format)
    claims = _current.get()
    if claims is None or not _locking():
        return stored
    key = _key(stored.sha256)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock_shared(%s)", [key])
    claims.keys.append(key)
    if not (storage.media_root() / stored.relative_path).is_file():
        # Removed by a refused import between the store and the lock: store it again.
        again = storage.store_file(source, image_format)
        stored = dataclasses.replace(again, created_dirs=stored.created_dirs + again.created_dirs)
    if not stored.created:
        claims.found.append(stored.relative_path)
    return stored


def release() -> None:
    """Let go of this import's files (after its rows are committed, or it cleaned up)."""
    claims = _current.get()
    if claims is None:
        return
    _current.set(None)
    if claims.keys and _locking():
        with connection.cursor() as cursor:
            for key in claims.keys:
                cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [key])


def discard(relative_paths: list[str]) -> None:
    """Undo a refused import's writes (``relative_paths``: its files and folders, in
    creation order): remove each file no other import holds and no committed row
    references, also files it found that are left unreferenced by a refused import that
    added them, then the folders it created if empty."""
    claims = _current.get()
    found = list(claims.found) if claims else []
    release()
    paths = [*relative_paths, *(path for path in found if path not in relative_paths)]
    files = [path for path in paths if (storage.media_root() / path).is_file()]
    held: list[int] = []
    kept: set[str] = set()
    try:
        if _locking():
            with connection.cursor() as cursor:
                for path in files:
                    key = _key(_sha(path))
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                    if cursor.fetchone()[0]:
                        held.append(key)
                    else:
                        kept.add(path)  # another import holds it: its to keep or remove
        kept |= set(Image.objects.filter(file__in=files).values_list("file", flat=True))
        kept |= set(
            Image.objects.filter(display_file__in=files).values_list("display_file", flat=True)
        )
        # Files found in the store that were there before this import are not its own:
        # remove them only when nothing references them (a refused import left them).
        storage.remove_paths([path for path in paths if path not in kept])
    finally:
        if held:
            with connection.cursor() as cursor:
                for key in held:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
