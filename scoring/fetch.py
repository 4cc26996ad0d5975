"""Fetching weight files from where they are published, or from a lab's mirror.

Over 400 lines: one download workflow (sources, streaming with resume, checksums, the
Hugging Face hub, the mirror and its export) whose steps share their failure handling.

``manage.py install_weights --fetch`` is the only code that downloads a weight file; a
worker never does (see :mod:`scoring.weights`). For each file the weights catalog names,
its source (:func:`scoring.weights.file_source`) says where it is published:

- a URL (pyiqa's files on the Hugging Face hub, torchvision's and OpenAI CLIP's
  checkpoints, GitHub release assets), saved under the catalog's name
  (``hub/pyiqa/...``, ``hub/checkpoints/...``, ``clip/...``); a URL on
  ``huggingface.co`` goes to ``HF_ENDPOINT`` instead when that is set;
- a Hugging Face file or repository, fetched with ``huggingface_hub`` (its endpoint,
  ``HF_ENDPOINT``) into the Hugging Face cache ``huggingface/hub/`` that workers read
  offline.

With a mirror (``--mirror URL``) every file comes from the mirror instead, by its place
in the weights folder: ``<mirror>/hub/pyiqa/<name>``, ``<mirror>/clip/<name>``, and for
Hugging Face ``<mirror>/huggingface/hub/models--<owner>--<name>/refs/<revision>`` (the
commit) and ``.../snapshots/<commit>/<path>``. :func:`export_mirror` writes such a folder
from an installed weights folder, with ``index.json``: every file's size and SHA256 (and
a Hugging Face file's blob name), which gives sizes up front, a checksum for every file,
and the files of a whole repository.

A URL file streams into ``.<name>.partial`` beside its place, with a progress bar per
file and in total; a dropped connection is resumed with an HTTP Range request (when the
server answers with the rest, else the file starts over); the file is checked against
its publisher's checksum (and the mirror's) and then renamed into place, so a loader
never sees part of a file. Hugging Face downloads go to a staging cache
(``.fetching/``) and are moved into ``huggingface/hub/`` once complete and checked (the
SHA256 a Hugging Face large file's ETag carries). A download that fails leaves nothing
behind and is named with the reason; one interrupted with Ctrl-C keeps its partial file,
which the next run resumes. A file already in place (and matching its checksum where one
is known) is not fetched again. Each fetched file's size and SHA256 are recorded in
``.fetched.json`` in the weights folder (``--dry-run`` shows that size when the server
cannot be asked).
"""

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from scoring import weights

CHUNK = 1 << 20
RECORD = ".fetched.json"
STAGING = ".fetching"
INDEX = "index.json"
# Tries after a dropped connection, and the wait before the n-th (BACKOFF * n seconds).
RETRIES = 5
BACKOFF = 1.0
HUB = "https://huggingface.co"
USER_AGENT = "iqa-platform install_weights"


class FetchFailed(Exception):
    """A file could not be fetched; ``reason`` says why, for the operator."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


class WriteFailed(OSError):
    """Writing the download to disk failed (a full disk, a size limit, no permission)."""


@dataclass
class Item:
    """One file (or Hugging Face repository) to fetch, and the metrics that need it."""

    file: str
    source: dict
    metrics: list[str] = field(default_factory=list)

    @property
    def is_hf(self) -> bool:
        return self.file.startswith(weights.HF_PREFIX)


# Which metrics to plan for.


def metric_names(spec: str) -> tuple[list[str], bool]:
    """``all``, ``recommended`` or ``a,b,c`` -> (catalogued metric names, whether they
    were named one by one). An unknown name raises ValueError naming it."""
    catalog = weights.catalog()
    if spec == "all":
        return sorted(catalog), False
    if spec == "recommended":
        return list(weights.RECOMMENDED), False
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in catalog]
    if unknown or not names:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, catalog, n=3)
            hints.append(f"{name}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            "not in the weights catalog: "
            + ("; ".join(hints) or "no metric named")
            + " (`manage.py metrics_status` lists the metrics)"
        )
    return names, True


def plan(names: list[str]) -> tuple[list[Item], list[str]]:
    """The files ``names`` need, each once, in catalog order; and the files with no known
    source (to be named, never guessed)."""
    items: dict[str, Item] = {}
    unknown: list[str] = []
    for name in names:
        for file in weights.needed_files(name) or []:
            source = weights.file_source(name, file)
            if source is None:
                if file not in unknown:
                    unknown.append(file)
                continue
            items.setdefault(file, Item(file, source)).metrics.append(name)
    return list(items.values()), unknown


# Where a file comes from.


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def origin_url(source: dict) -> str:
    """A URL file's address: its published URL, on ``HF_ENDPOINT`` for the hub's files."""
    url = source["url"]
    endpoint = hub_endpoint()
    if endpoint != HUB and url.startswith(HUB + "/"):
        return endpoint + url[len(HUB) :]
    return url


def mirror_url(mirror: str, relative: str) -> str:
    """``relative`` (a place in the weights folder) on the mirror; each part is quoted,
    so ``CLIP-IQA%2B_...pth`` is asked for by its name as it lies in the mirror folder."""
    return mirror.rstrip("/") + "/" + "/".join(quote(part, safe="") for part in relative.split("/"))


def hf_repo_folder(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


def hf_cache() -> Path:
    return weights.weights_dir() / "huggingface" / "hub"


# Checks.


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_problem(found: str, *expected: tuple[str, str]) -> str:
    """ "" when ``found`` (a SHA256) matches every (checksum or its first digits, whose)."""
    for value, whose in expected:
        if value and not found.startswith(value.lower()):
            return f"checksum mismatch: its SHA256 is {found[:16]}..., {whose} is {value[:16]}"
    return ""


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


# The record of fetched files.


def read_record() -> dict[str, dict]:
    path = weights.weights_dir() / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_record(file: str, entry: dict) -> None:
    folder = weights.weights_dir()
    record = read_record()
    record[file] = entry
    partial = folder / f"{RECORD}.partial"
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    partial.replace(folder / RECORD)


# HTTP.


def _open(url: str, *, method: str = "GET", start: int = 0, timeout: float = 60):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urlopen(Request(url, headers=headers, method=method), timeout=timeout)


def head_size(url: str, timeout: float = 10) -> int | None:
    """The server's size for ``url`` (a HEAD request), or None; raises OSError when the
    server cannot be reached."""
    try:
        with _open(url, method="HEAD", timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except HTTPError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        return f"cannot reach the server: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, WriteFailed):
        return exc.strerror
    if isinstance(exc, OSError | http.client.HTTPException) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Progress:
    """A progress bar per file and one in total (tqdm, on stderr; off where stderr is
    not a terminal)."""

    def __init__(self, total: int | None, count: int, stream: IO[str]) -> None:
        from tqdm import tqdm

        self.tqdm, self.stream = tqdm, stream
        self.bar = tqdm(
            total=total, desc=f"{count} files", unit="B", unit_scale=True, unit_divisor=1024,
            position=0, file=stream, disable=None, dynamic_ncols=True,
        )  # fmt: skip

    def file(self, name: str, total: int | None, initial: int = 0):
        return self.tqdm(
            total=total, initial=initial, desc=name[-40:], unit="B", unit_scale=True,
            unit_divisor=1024, position=1, leave=False, file=self.stream, disable=None,
            dynamic_ncols=True,
        )  # fmt: skip

    def advance(self, amount: int) -> None:
        self.bar.update(amount)

    def close(self) -> None:
        self.bar.close()


def download(
    url: str,
    target: Path,
    *,
    size: int | None,
    progress: Progress,
    label: str,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
) -> Path:
    """Stream ``url`` into ``.<name>.partial`` beside ``target``, resuming with a Range
    request after a dropped connection; returns the complete partial file (the caller
    checks it and renames it into place). Raises FetchFailed (the partial file is then
    removed) or KeyboardInterrupt (the partial file is kept for the next run)."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchFailed(label, f"cannot create {target.parent}: {exc.strerror}") from exc
    failures = 0
    try:
        while True:
            have = partial.stat().st_size if partial.exists() else 0
            try:
                expected = _receive(url, partial, have, size, progress, label, timeout)
                if expected is None or partial.stat().st_size == expected:
                    return partial
                got = partial.stat().st_size
                problem: BaseException = ConnectionError(
                    f"the connection closed after {got} of {expected} bytes"
                )
            except HTTPError as exc:
                if exc.code == 416 and have:  # the partial file is not a prefix of it
                    partial.unlink()
                    continue
                raise FetchFailed(label, f"{_reason(exc)} from {url}") from exc
            except WriteFailed as exc:
                raise FetchFailed(label, str(exc)) from exc
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                problem = exc
            failures += 1
            if failures > retries:
                raise FetchFailed(
                    label, f"{_reason(problem)} from {url} (gave up after {retries} retries)"
                )
            progress.tqdm.write(
                f"  {label}: {_reason(problem)}; resuming (try {failures + 1})",
                file=progress.stream,
            )
            time.sleep(backoff * failures)
    except FetchFailed:
        partial.unlink(missing_ok=True)
        raise


def _receive(
    url: str,
    partial: Path,
    have: int,
    size: int | None,
    progress: Progress,
    label: str,
    timeout: float,
) -> int | None:
    """One request: append the rest of ``url`` to ``partial`` (or start it over when the
    server ignores the range). Returns the size the file should have, if known."""
    with _open(url, start=have, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and response.status == 206:
            first = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if first != str(have):
                raise http.client.HTTPException(f"the server resumed at byte {first}, not {have}")
            mode, expected = "ab", (have + length if length is not None else size)
        else:
            if have:
                progress.advance(-have)  # starting over
            have, mode, expected = 0, "wb", length if length is not None else size
        bar = progress.file(label, expected, initial=have)
        try:
            try:
                handle = open(partial, mode)  # noqa: SIM115
            except OSError as exc:
                raise WriteFailed(f"cannot write {partial}: {exc.strerror}") from exc
            with handle:
                while chunk := response.read(CHUNK):
                    try:
                        handle.write(chunk)
                    except OSError as exc:
                        raise WriteFailed(
                            f"cannot write {partial}: {exc.strerror or exc} "
                            f"({handle.tell()} bytes written)"
                        ) from exc
                    bar.update(len(chunk))
                    progress.advance(len(chunk))
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError as exc:
                    raise WriteFailed(f"cannot write {partial}: {exc.strerror}") from exc
        finally:
            bar.close()
    return expected


# The mirror's index.


def read_index(mirror: str) -> dict[str, dict] | None:
    """The mirror's ``index.json`` (relative path -> size, sha256, blob), or None."""
    try:
        with _open(mirror_url(mirror, INDEX), timeout=30) as response:
            return json.loads(response.read())["files"]
    except HTTPError:
        return None
    except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        raise FetchFailed(INDEX, f"cannot read the mirror's index: {_reason(exc)}") from exc


class Fetcher:
    """Fetches planned items into the weights folder; says what it does with ``say``."""

    def __init__(
        self,
        *,
        mirror: str | None,
        say: Callable[[str], None],
        stream: IO[str] = sys.stderr,
        retries: int | None = None,
        backoff: float | None = None,
    ) -> None:
        self.mirror = mirror.rstrip("/") if mirror else None
        self.say, self.stream = say, stream
        self.retries = RETRIES if retries is None else retries
        self.backoff = BACKOFF if backoff is None else backoff
        self.index = read_index(self.mirror) if self.mirror else None
        self.record = read_record()
        self.reachable = True  # for --dry-run: stop asking servers after the first fails

    # Where and how big.

    def url_of(self, item: Item) -> str:
        if self.mirror:
            return mirror_url(self.mirror, item.file)
        return origin_url(item.source)

    def hf_place(self, item: Item) -> str:
        repo, path = weights.hf_parts(item.file)
        return f"huggingface/hub/{hf_repo_folder(repo)}" + (f"/…/{path}" if path else "")

    def mirror_files(self, item: Item) -> dict[str, dict] | None:
        """The index's entries for ``item`` (None without an index)."""
        if self.index is None:
            return None
        if not item.is_hf:
            return {item.file: self.index[item.file]} if item.file in self.index else {}
        repo, path = weights.hf_parts(item.file)
        root = f"huggingface/hub/{hf_repo_folder(repo)}/"
        refs = self.index.get(f"{root}refs/{item.source.get('revision', 'main')}")
        if refs is None:
            return {}
        found = {}
        for name, entry in self.index.items():
            if name.startswith(f"{root}snapshots/"):
                inside = name.split("/", 5)[5] if name.count("/") >= 5 else ""
                if not path or inside == path:
                    found[name] = entry
        return found

    def in_mirror(self, item: Item) -> bool:
        files = self.mirror_files(item)
        return files is None or bool(files)

    def size(self, item: Item, *, ask: bool) -> tuple[int | None, str]:
        """(size, where it is from): the mirror's index, the server (when ``ask``), the
        record of the last install, else unknown."""
        files = self.mirror_files(item)
        if files:
            return sum(e["size"] for e in files.values()), "mirror index"
        if ask and self.reachable:
            try:
                found = self.server_size(item)
                if found is not None:
                    return found, "server"
            except Exception:  # unreachable: the recorded sizes from here on
                self.reachable = False
        recorded = self.record.get(item.file, {}).get("size") or item.source.get("size")
        if recorded:
            return recorded, "recorded"
        return None, ""

    def server_size(self, item: Item) -> int | None:
        if not item.is_hf:
            return head_size(self.url_of(item), timeout=10)
        if self.mirror:
            return None
        from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

        repo, path = weights.hf_parts(item.file)
        revision = item.source.get("revision", "main")
        if not path:
            info = HfApi(endpoint=hub_endpoint()).model_info(
                repo, revision=revision, files_metadata=True, timeout=10
            )
            sizes = [sibling.size for sibling in info.siblings or []]
            return sum(sizes) if sizes and None not in sizes else None
        url = hf_hub_url(repo, path, revision=revision, endpoint=hub_endpoint())
        return get_hf_file_metadata(url, timeout=10).size

    def source_text(self, item: Item) -> str:
        if self.mirror:
            if item.is_hf:
                return f"{self.mirror}/{self.hf_place(item)}"
            return self.url_of(item)
        if item.is_hf:
            repo, path = weights.hf_parts(item.file)
            revision = item.source.get("revision", "main")
            where = f"{hub_endpoint()}/{repo}"
            if path:
                return f"{where}/resolve/{revision}/{quote(path)} (huggingface_hub)"
            return f"{where} (the whole repository at {revision}, huggingface_hub)"
        return self.url_of(item)

    # Present already?

    def present(self, item: Item) -> tuple[bool, str]:
        """(in place and, where a checksum is known, matching; what is wrong if not)."""
        if item.is_hf:
            return not weights.missing_files([item.file]), ""
        target = weights.weights_dir() / item.file
        if not target.is_file():
            return False, ""
        expected = [(item.source.get("sha256", ""), "the publisher's")]
        mirrored = (self.mirror_files(item) or {}).get(item.file)
        if mirrored:
            expected.append((mirrored.get("sha256", ""), "the mirror's"))
        if not any(value for value, _ in expected):
            return True, ""
        stat = target.stat()
        found = weights._file_digest(str(target), stat.st_size, stat.st_mtime)
        problem = checksum_problem(found, *expected)
        return not problem, problem

    # Fetching.

    def fetch(self, item: Item, progress: Progress) -> None:
        if item.is_hf:
            self.fetch_hf(item, progress)
        else:
            self.fetch_url(item, progress)

    def fetch_url(self, item: Item, progress: Progress) -> None:
        target = weights.weights_dir() / item.file
        url = self.url_of(item)
        size = self.size(item, ask=False)[0]
        partial = download(
            url, target, size=size, progress=progress, label=item.file,
            retries=self.retries, backoff=self.backoff,
        )  # fmt: skip
        found = sha256_of(partial)
        mirrored = (self.mirror_files(item) or {}).get(item.file) or {}
        problem = checksum_problem(
            found,
            (item.source.get("sha256", ""), "the publisher's"),
            (mirrored.get("sha256", ""), "the mirror's"),
        )
        if problem:
            partial.unlink(missing_ok=True)
            raise FetchFailed(item.file, f"{problem} (from {url}); nothing installed")
        partial.replace(target)
        write_record(item.file, self._entry(target.stat().st_size, found, url))

    def _entry(self, size: int, sha256: str, url: str) -> dict:
        return {
            "size": size,
            "sha256": sha256,
            "from": url,
            "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def fetch_hf(self, item: Item, progress: Progress) -> None:
        repo = weights.hf_parts(item.file)[0]
        staging = weights.weights_dir() / STAGING / hf_repo_folder(repo)
        try:
            if self.mirror:
                snapshot, blobs = self._hf_from_mirror(item, staging, progress)
            else:
                snapshot, blobs = self._hf_from_hub(item, staging, progress)
            size = _merge_hf(staging, hf_cache() / hf_repo_folder(repo), snapshot, blobs)
        except FetchFailed:
            _remove(staging)
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            _remove(staging)
            raise FetchFailed(item.file, f"{_reason(exc)} (from {self.source_text(item)})") from exc
        _remove(staging)
        write_record(item.file, self._entry(size, "", self.source_text(item)))

    def _hf_from_hub(self, item: Item, staging: Path, progress: Progress) -> tuple[Path, dict]:
        """Download with huggingface_hub into the staging cache; check each large file
        against the SHA256 its ETag carries. Returns (the snapshot, file -> blob name)."""
        from huggingface_hub import hf_hub_download, snapshot_download

        repo, path = weights.hf_parts(item.file)
        revision = item.source.get("revision", "main")
        cache = staging.parent / "hub"
        if path:
            found = Path(
                hf_hub_download(
                    repo, path, revision=revision, cache_dir=cache, endpoint=hub_endpoint()
                )
            )
            snapshot = found.parents[len(Path(path).parts) - 1]
        else:
            snapshot = Path(
                snapshot_download(repo, revision=revision, cache_dir=cache, endpoint=hub_endpoint())
            )
        # The staging cache is its own folder: move its repository into ``staging``.
        _remove(staging)
        staging.parent.mkdir(parents=True, exist_ok=True)
        (cache / hf_repo_folder(repo)).rename(staging)
        _remove(cache)
        snapshot = staging / "snapshots" / snapshot.name
        blobs = {}
        for link in _files_under(snapshot):
            blob = Path(os.path.realpath(link))
            blobs[str(link.relative_to(snapshot))] = blob.name
            if len(blob.name) == 64 and all(c in "0123456789abcdef" for c in blob.name):
                found_digest = sha256_of(blob)
                if found_digest != blob.name:
                    raise FetchFailed(
                        item.file,
                        f"checksum mismatch: {link.relative_to(snapshot)} has SHA256 "
                        f"{found_digest[:16]}..., the hub's ETag says {blob.name[:16]}",
                    )
            progress.advance(blob.stat().st_size)
        return snapshot, blobs

    def _hf_from_mirror(self, item: Item, staging: Path, progress: Progress) -> tuple[Path, dict]:
        """Download a Hugging Face file or repository from a mirror laid out as a
        Hugging Face cache; returns (the snapshot in ``staging``, file -> blob name)."""
        repo, path = weights.hf_parts(item.file)
        root = f"huggingface/hub/{hf_repo_folder(repo)}"
        revision = item.source.get("revision", "main")
        ref = f"{root}/refs/{revision}"
        try:
            with _open(mirror_url(self.mirror, ref), timeout=30) as response:
                commit = response.read().decode().strip()
        except HTTPError as exc:
            raise FetchFailed(
                item.file, f"{_reason(exc)} from {mirror_url(self.mirror, ref)}"
            ) from exc
        if not _is_plain_name(commit):
            raise FetchFailed(item.file, f"the mirror's {ref} names no commit: {commit[:80]!r}")
        files = self.mirror_files(item)
        if files is None:
            if not path:
                raise FetchFailed(
                    item.file,
                    f"the mirror has no {INDEX}, so the files of repository {repo} are "
                    "unknown (build the mirror with `install_weights --export-mirror`)",
                )
            files = {f"{root}/snapshots/{commit}/{path}": {}}
        snapshot = staging / "snapshots" / commit
        (staging / "refs").mkdir(parents=True, exist_ok=True)
        (staging / "refs" / revision).write_text(commit)
        wanted = {}
        for name, entry in sorted(files.items()):  # every entry checked before any download
            parts = name.split("/", 5)
            blob_name = entry.get("blob")
            if (
                len(parts) < 6
                or not _is_relative_inside(parts[5])
                or (blob_name and not _is_plain_name(blob_name))
            ):
                raise FetchFailed(
                    item.file, f"the mirror's index names a path outside the snapshot: {name!r}"
                )
            if parts[4] == commit:  # else another snapshot of the repository in the mirror
                wanted[name] = (parts[5], entry, blob_name)
        blobs = {}
        for name, (inside, entry, blob_name) in wanted.items():
            target = snapshot / inside
            partial = download(
                mirror_url(self.mirror, name), target, size=entry.get("size"),
                progress=progress, label=f"{repo}/{inside}",
                retries=self.retries, backoff=self.backoff,
            )  # fmt: skip
            found = sha256_of(partial)
            problem = checksum_problem(found, (entry.get("sha256", ""), "the mirror's"))
            if problem:
                raise FetchFailed(item.file, f"{problem} ({inside}, from {self.mirror})")
            partial.replace(target)
            blobs[inside] = blob_name or found
        return snapshot, blobs


def _is_plain_name(name: str) -> bool:
    """One path component, nothing a path could climb or hide with."""
    return bool(name) and name not in (".", "..") and not set(name) & set("/\\\0")


def _is_relative_inside(path: str) -> bool:
    """A relative path of plain components (``a/b.bin``): never absolute, never ``..``."""
    return bool(path) and all(_is_plain_name(part) for part in path.split("/"))


def _files_under(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    parent = path.parent
    if parent.name == STAGING:
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty


def _merge_hf(staging: Path, cache_repo: Path, snapshot: Path, blobs: dict[str, str]) -> int:
    """Move a complete staged repository into the Hugging Face cache: each blob to
    ``blobs/`` (kept if there already), each file of the snapshot as the relative link
    Hugging Face makes, then the refs. Returns the bytes of the snapshot's files."""
    total = 0
    target_snapshot = cache_repo / "snapshots" / snapshot.name
    (cache_repo / "blobs").mkdir(parents=True, exist_ok=True)
    for inside, blob_name in sorted(blobs.items()):
        staged = snapshot / inside
        data = Path(os.path.realpath(staged))
        blob = cache_repo / "blobs" / blob_name
        total += data.stat().st_size
        if not blob.exists():
            data.replace(blob)
        link = target_snapshot / inside
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            continue
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks here: a copy, as huggingface_hub makes then
            shutil.copyfile(blob, link)
    refs = staging / "refs"
    if refs.is_dir():
        for ref in _files_under(refs):
            place = cache_repo / "refs" / ref.relative_to(refs)
            place.parent.mkdir(parents=True, exist_ok=True)
            ref.replace(place)
    return total


# The mirror folder.


def export_mirror(destination: Path, say: Callable[[str], None]) -> dict[str, dict]:
    """Copy the weights folder's files into ``destination`` laid out for ``--mirror``:
    ``hub/``, ``clip/`` by their places, Hugging Face repositories as their refs and
    snapshots (the files themselves, not links), and ``index.json``. Returns the index."""
    folder = weights.weights_dir()
    index: dict[str, dict] = {}
    sources: list[tuple[str, Path, str]] = []  # (place in the mirror, file, blob name)
    for top in ("hub", "clip"):
        base = folder / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(folder)
            hidden = any(part.startswith(".") for part in relative.parts)
            # hub/clip is the worker's link to clip/.
            linked = any(
                (folder / Path(*relative.parts[:i])).is_symlink()
                for i in range(1, len(relative.parts) + 1)
            )
            if path.is_file() and not hidden and not linked:
                sources.append((str(relative), path, ""))
    cache = folder / "huggingface" / "hub"
    for repo in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        for ref in _files_under(repo / "refs"):
            sources.append((str(ref.relative_to(folder)), ref, ""))
        for snapshot in sorted((repo / "snapshots").glob("*")):
            for path in _files_under(snapshot):
                blob = Path(os.path.realpath(path)).name if path.is_symlink() else ""
                sources.append((str(path.relative_to(folder)), path, blob))
    for relative, path, blob in sources:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(path, partial)
        partial.replace(target)
        entry = {"size": target.stat().st_size, "sha256": sha256_of(target)}
        if blob:
            entry["blob"] = blob
        index[relative] = entry
        say(f"exported {relative}")
    partial = destination / f".{INDEX}.partial"
    partial.write_text(json.dumps({"files": index}, indent=1, sort_keys=True) + "\n")
    partial.replace(destination / INDEX)
    return index
