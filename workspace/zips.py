"""Unpacking an uploaded study zip safely, and finding the import source inside it.

Nothing in the zip is trusted: each member's name, type and size are checked, and the
bytes written are counted as they are decompressed (a header may lie about sizes). Any
problem raises ``UploadRefused`` with one line naming the member; the caller removes the
folder it gave.
"""

import stat
import zipfile
from pathlib import Path, PurePosixPath

from workspace.errors import UploadRefused

CHUNK = 1 << 20
# What macOS's Finder adds to a zip it makes (resource forks); never part of a study.
IGNORED_TOP = "__MACOSX"


def zip_extract(archive: Path, target: Path, *, max_bytes: int, max_members: int) -> None:
    """Extract ``archive`` into the empty folder ``target``, all members checked first.

    Refused: not a zip; more than ``max_members`` members; a member with an absolute path,
    a drive letter or ``..``; a symbolic link or other special file; an encrypted member;
    two members with one name; more than ``max_bytes`` bytes uncompressed (the headers'
    sizes are checked first, then the bytes really written); a corrupt member (every
    member is read in full, so a CRC mismatch is found).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UploadRefused(f"the upload is not a zip file ({exc})") from exc
    except OSError as exc:
        raise UploadRefused(f"the upload cannot be read ({exc.strerror or exc})") from exc
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UploadRefused(
                f"the zip has {len(members):,} members, more than the maximum of "
                f"{max_members:,} (IQA_UPLOAD_MAX_MEMBERS)"
            )
        wanted = [(info, _member_path(info)) for info in members]
        wanted = [(info, parts) for info, parts in wanted if parts and parts[0] != IGNORED_TOP]
        declared = sum(info.file_size for info, _ in wanted if not info.is_dir())
        if declared > max_bytes:
            raise UploadRefused(_too_big(declared, max_bytes))
        seen: set[tuple[str, ...]] = set()
        written = 0
        for info, parts in wanted:
            if parts in seen:
                raise UploadRefused(f"{info.filename}: the zip holds this name twice")
            seen.add(parts)
            path = target.joinpath(*parts)
            try:
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file and a folder of one name, a name too long
                raise UploadRefused(
                    f"{info.filename}: cannot be unpacked ({exc.strerror or exc})"
                ) from None
            written = _write_member(zf, info, path, written, max_bytes)


def _member_path(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's relative path as parts, or a refusal for a dangerous name or type."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UploadRefused(f"{name}: a symbolic link (zips may hold only files and folders)")
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UploadRefused(f"{name}: a special file (zips may hold only files and folders)")
    if info.flag_bits & 0x1:
        raise UploadRefused(f"{name}: an encrypted member (encrypted zips are not supported)")
    normal = name.replace("\\", "/")
    pure = PurePosixPath(normal)
    if normal.startswith("/") or pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise UploadRefused(f"{name}: an absolute path (zip members must be relative)")
    if ".." in pure.parts:
        raise UploadRefused(f"{name}: a path with '..' (it would leave the zip's folder)")
    if "\x00" in name:
        raise UploadRefused(f"{name!r}: a name with a NUL character")
    return tuple(part for part in pure.parts if part not in ("", "."))


def _write_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, written: int, max_bytes: int
) -> int:
    try:
        with zf.open(info) as source, open(path, "xb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadRefused(_too_big(written, max_bytes, counted=True))
                out.write(chunk)
    except FileExistsError as exc:
        raise UploadRefused(f"{info.filename}: the zip holds this name twice") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise UploadRefused(f"{info.filename}: corrupt zip member ({exc})") from exc
    except NotImplementedError as exc:  # an unsupported compression method
        raise UploadRefused(f"{info.filename}: cannot be unpacked ({exc})") from exc
    except OSError as exc:
        raise UploadRefused(f"{info.filename}: cannot be unpacked ({exc})") from exc
    return written


def _too_big(size: int, limit: int, *, counted: bool = False) -> str:
    # Counted while writing, ``size`` is where the count stopped, not the zip's total.
    amount = "" if counted else f"{size:,} bytes, "
    return (
        f"the zip unpacks to {amount}more than the maximum of {limit:,} bytes "
        "(IQA_UPLOAD_MAX_UNCOMPRESSED, and at most IQA_UPLOAD_MAX_RATIO times the zip's size)"
    )


def _visible(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".") and p.name != IGNORED_TOP),
        key=lambda p: p.name,
    )


def source_find(root: Path) -> Path:
    """The import source in an unpacked zip: a manifest CSV at its top, or the folder
    layout (one sub-folder per scene) at its top; either may sit inside one top folder
    that holds nothing else. A single top folder holding only files is itself a scene."""
    folder = root
    entries = _visible(folder)
    if len(entries) == 1 and entries[0].is_dir():
        inner = _visible(entries[0])
        if any(p.is_dir() or p.suffix.lower() == ".csv" for p in inner):
            folder = entries[0]
            entries = inner
    if not entries:
        raise UploadRefused("the zip is empty")
    manifests = [p for p in entries if p.is_file() and p.suffix.lower() == ".csv"]
    if len(manifests) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in manifests)
        raise UploadRefused(f"the zip holds several manifests ({names}); keep one")
    return manifests[0] if manifests else folder
