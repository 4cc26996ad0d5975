"""Imports that share a new image file, serialised per group of files.

The image store is content-addressed, so two imports of the same image share one file.
Rows go in after the files, in one short transaction, and a refused import removes the
files it added: without care, import A could remove a file that import B, still running,
found in the store and is about to reference.

On PostgreSQL each import holds, from the moment it stores or finds a file until it has
committed or cleaned up, a shared session advisory lock on the file's *bucket*: the
SHA256 hashed into one of ``BUCKETS`` keys. An import holds each bucket once, however many
of its files fall in it, so it never holds more than ``BUCKETS`` locks (one lock per file
filled PostgreSQL's shared lock table at about 12,800 files with the default
``max_locks_per_transaction``, and took other requests down with it). Removing a file
needs its bucket's exclusive lock, taken without waiting and one bucket at a time: a
bucket another import holds is left, and its files wait in ``StoreLeftover`` until the
beat's sweep finds the bucket free; a file is removed only if no committed row references
it. An import that finds a file and then gets its bucket checks the file is still there (a
refused import may have removed it just before) and stores it again if not. SQLite (the
laptop) has one writer and no advisory locks: there only the reference check applies.

The locks belong to the import that runs in this thread (``claims_begin`` ... ``release``);
``study_import`` begins and ends it, and ``_store`` calls :func:`store_file`.
"""

import contextvars
import dataclasses
import hashlib
from collections import defaultdict
from pathlib import Path

from django.db import connection

from annotation import storage
from annotation.models import Image, StoreLeftover

# A namespace for these locks (the high bits), apart from the lease sweep's key.
_NAMESPACE = 0x1F5
# How many advisory lock keys the store's files share: the most one import holds.
BUCKETS = 256


@dataclasses.dataclass
class _Claims:
    buckets: set[int] = dataclasses.field(default_factory=set)
    # Files found in the store (not added by this import), by relative path.
    found: list[str] = dataclasses.field(default_factory=list)


_current: contextvars.ContextVar[_Claims | None] = contextvars.ContextVar(
    "iqa_import_file_claims", default=None
)


def _locking() -> bool:
    return connection.vendor == "postgresql"


def bucket(sha256: str) -> int:
    """The file's bucket: its SHA256 (already uniform) taken modulo ``BUCKETS``."""
    return int(sha256[:8], 16) % BUCKETS


def _key(bucket_number: int) -> int:
    """A signed 64-bit advisory lock key: the namespace, then the bucket."""
    return (_NAMESPACE << 52) | bucket_number


def _sha(relative_path: str) -> str:
    stem = Path(relative_path).stem
    if len(stem) == 64:
        return stem
    # Not a content-addressed name (none is): a stable bucket all the same.
    return hashlib.sha256(relative_path.encode()).hexdigest()


def claims_begin() -> None:
    """Start holding the files this thread's import stores or finds."""
    _current.set(_Claims())


def store_file(source: Path, image_format: str) -> storage.StoredFile:
    """``storage.store_file``, then held against removal until the import ends."""
    stored = storage.store_file(source, image_format)
    claims = _current.get()
    if claims is None or not _locking():
        return stored
    number = bucket(stored.sha256)
    if number not in claims.buckets:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock_shared(%s)", [_key(number)])
        claims.buckets.add(number)
        if not (storage.media_root() / stored.relative_path).is_file():
            # Removed by a refused import between the store and the lock: store it again.
            again = storage.store_file(source, image_format)
            stored = dataclasses.replace(
                again, created_dirs=stored.created_dirs + again.created_dirs
            )
    if not stored.created:
        claims.found.append(stored.relative_path)
    return stored


def held_buckets() -> int:
    """How many bucket locks this thread's import holds (at most ``BUCKETS``)."""
    claims = _current.get()
    return len(claims.buckets) if claims is not None else 0


def release() -> None:
    """Let go of this import's files (after its rows are committed, or it cleaned up)."""
    claims = _current.get()
    if claims is None:
        return
    _current.set(None)
    if claims.buckets and _locking():
        with connection.cursor() as cursor:
            for number in claims.buckets:
                cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [_key(number)])


def discard(relative_paths: list[str]) -> None:
    """Undo a refused import's writes (``relative_paths``: its files and folders, in
    creation order): remove each file no other import holds and no committed row
    references, also files it found that are left unreferenced by a refused import that
    added them, then the folders it created if empty. Files in a bucket another import
    holds wait in ``StoreLeftover`` for :func:`leftovers_sweep`."""
    claims = _current.get()
    found = list(claims.found) if claims else []
    release()
    paths = [*relative_paths, *(path for path in found if path not in relative_paths)]
    files = [path for path in paths if (storage.media_root() / path).is_file()]
    folders = [path for path in paths if path not in files]
    remove_unreferenced(files)
    storage.remove_paths(folders)  # only the empty ones go


def remove_unreferenced(files: list[str]) -> None:
    """Remove each of these stored files that no image row references and no import
    holds (a deleted study's, a refused import's); those an import holds wait in
    ``StoreLeftover`` for :func:`leftovers_sweep`. Never another study's file."""
    left = _remove_unheld([path for path in files if (storage.media_root() / path).is_file()])
    if left:
        StoreLeftover.objects.bulk_create(
            [StoreLeftover(path=path) for path in left], ignore_conflicts=True
        )


def leftovers_sweep() -> int:
    """Remove the files refused imports left while another import held their bucket,
    once the bucket is free and no row references them; how many were settled."""
    paths = list(StoreLeftover.objects.values_list("path", flat=True)[:10_000])
    if not paths:
        return 0
    existing = [path for path in paths if (storage.media_root() / path).is_file()]
    left = set(_remove_unheld(existing))
    settled = [path for path in paths if path not in left]
    StoreLeftover.objects.filter(path__in=settled).delete()
    return len(settled)


def _remove_unheld(files: list[str]) -> list[str]:
    """Remove, bucket by bucket (one lock held at a time), the files whose bucket no
    import holds and that no row references; the files of held buckets are returned."""
    by_bucket: dict[int, list[str]] = defaultdict(list)
    for path in files:
        by_bucket[bucket(_sha(path))].append(path)
    left: list[str] = []
    for number, paths in by_bucket.items():
        locked = False
        if _locking():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [_key(number)])
                locked = cursor.fetchone()[0]
            if not locked:
                left.extend(paths)  # another import holds the bucket: later
                continue
        try:
            kept = set(Image.objects.filter(file__in=paths).values_list("file", flat=True))
            kept |= set(
                Image.objects.filter(display_file__in=paths).values_list("display_file", flat=True)
            )
            storage.remove_paths([path for path in paths if path not in kept])
        finally:
            if locked:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [_key(number)])
    return left
