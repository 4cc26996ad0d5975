"""A worker's images, read through the platform's storage (``STORAGES["default"]``).

On the file system the stored file is read where it is. From a bucket, an image is
fetched once into a bounded local cache, ``IQA_WORKER_CACHE_DIR`` (at most
``IQA_WORKER_CACHE_MB``; the least recently used files are evicted), so that a worker on
another host needs no shared disk and a scene's reference, scored against each of its
images and by each metric, is fetched once. A cached file is named by the sha256 of its
bytes, which the store's names carry (``images/ab/cd/<sha256>.png``): a download whose
bytes do not hash to it is refused, never cached. Several worker processes of a host may
share the folder: files arrive by rename, and one evicted under a reader is fetched again.
"""

import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from annotation.storage import CHUNK

SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


class StoreUnreadable(OSError):
    """The storage could not give a file's bytes (the store's fault, not the image's: a
    bucket that does not answer, a file that is not there, a download that is corrupt)."""


def read_bytes(name: str) -> bytes:
    """The bytes of the stored file ``name`` (a name in the platform's storage)."""
    local = _local_path(name)
    if local is not None:
        return local.read_bytes()
    for _ in range(3):
        path = _cached(name)
        with contextlib.suppress(FileNotFoundError):  # evicted meanwhile: fetch it again
            return path.read_bytes()
    raise StoreUnreadable(f"{name} was evicted from the worker's cache three times in a row")


def _local_path(name: str) -> Path | None:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # a bucket: no local path
        return None


def cache_folder() -> Path:
    return Path(settings.IQA_WORKER_CACHE_DIR)


def _key(name: str) -> str:
    stem = Path(name).stem
    if SHA256_NAME.match(stem):
        return stem
    # Not a content address: cached under its name's hash, without a content check.
    return "n-" + hashlib.sha256(name.encode()).hexdigest()


def _cached(name: str) -> Path:
    key = _key(name)
    path = cache_folder() / key[-2:] / key
    try:
        _touch(path)  # a hit: most recently used now
        return path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with default_storage.open(name, "rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except OSError:
                raise
            except Exception as exc:  # the bucket's client errors: the store's fault
                raise StoreUnreadable(f"{name}: {type(exc).__name__}: {exc}") from exc
        if not key.startswith("n-") and digest.hexdigest() != key:
            raise StoreUnreadable(f"{name}: the bytes fetched do not hash to its name")
        _touch(part)
        os.replace(part, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    evict(keep=path)
    return path


def _touch(path: Path | str) -> None:
    """Mark a file used now, to the nanosecond: the file system's own stamps move in
    ticks of milliseconds, too coarse to order reads that follow each other."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def evict(keep: Path | None = None) -> int:
    """Remove the least recently used files until the cache holds at most
    IQA_WORKER_CACHE_MB (never ``keep``, the file just fetched); bytes removed."""
    limit = settings.IQA_WORKER_CACHE_MB * 2**20
    files = []
    for entry in _files():
        with contextlib.suppress(FileNotFoundError):
            stat = entry.stat()
            files.append((stat.st_mtime_ns, stat.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in sorted(files):
        if total <= limit:
            break
        if path == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            total -= size
            removed += size
    return removed


def _files():
    root = cache_folder()
    if not root.is_dir():
        return
    for folder in os.scandir(root):
        if folder.is_dir():
            for entry in os.scandir(folder.path):
                if entry.is_file() and not entry.name.endswith(".part"):
                    yield entry
