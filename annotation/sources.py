"""Reading an import source into scenes of entries, with every structural check.

A source is a folder with one sub-folder per scene, or a manifest CSV with columns
``scene,path,role,condition`` (paths relative to the CSV) and an optional ``gold``
column: ``worse`` or ``better`` marks a test image made to be clearly worse (or better)
than its scene's reference, for gold pairs only. Reading a source touches
no image data and writes nothing; every problem raises ``StudyImportError`` with a
message that names the file (and the manifest line).
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from annotation.errors import StudyImportError

MANIFEST_COLUMNS = ("scene", "path", "role", "condition")
ROLES = ("reference", "test")
GOLD_VALUES = ("worse", "better")


@dataclass(frozen=True)
class Entry:
    scene: str
    path: Path  # resolved, inside the source
    role: str
    condition: str
    name: str  # stable name in the study: ``scene/file``
    origin: str  # where it came from, for messages: ``manifest.csv line 4`` or a path
    gold: str = ""  # "worse" / "better": a gold image, compared only in its gold pair


def _inside(path: Path, root: Path, origin: str, what: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise StudyImportError(f"{origin}: {what} points outside the source folder ({resolved})")
    return resolved


def read_source(source: Path, *, reference_name: str = "reference") -> dict[str, list[Entry]]:
    """Scenes in source order, each a list of entries; raises on any structural problem."""
    if not source.exists():
        raise StudyImportError(f"{source}: no such file or folder")
    if source.is_dir():
        scenes = _group(_read_folder(source, reference_name))
    elif source.suffix.lower() == ".csv":
        scenes = _group(_read_manifest(source))
    else:
        raise StudyImportError(f"{source}: not a folder or a .csv manifest")
    return scenes


def _group(entries: Iterator[Entry]) -> dict[str, list[Entry]]:
    scenes: dict[str, list[Entry]] = {}
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.name in seen:
            raise StudyImportError(
                f"{entry.origin}: duplicate of {seen[entry.name]} (both are {entry.name})"
            )
        seen[entry.name] = entry.origin
        scenes.setdefault(entry.scene, []).append(entry)
    return scenes


def _read_folder(source: Path, reference_name: str) -> Iterator[Entry]:
    root = source.resolve()
    children = sorted(source.iterdir(), key=lambda p: p.name)
    if not any(child.is_dir() for child in children if not child.name.startswith(".")):
        raise StudyImportError(f"{source}: no scene sub-folders (expected SOURCE/<scene>/<image>)")
    for child in children:
        if child.name.startswith("."):
            continue
        rel = child.relative_to(source)
        if not child.is_dir():
            raise StudyImportError(
                f"{rel}: a file outside any scene folder (images go in SOURCE/<scene>/)"
            )
        _inside(child, root, str(rel), "scene folder")
        files = sorted(
            (f for f in child.iterdir() if not f.name.startswith(".")), key=lambda p: p.name
        )
        if not files:
            raise StudyImportError(f"{rel}: empty scene (no images)")
        for file in files:
            file_rel = str(file.relative_to(source))
            if file.is_dir():
                raise StudyImportError(f"{file_rel}: a folder inside a scene (scenes are flat)")
            if file.is_symlink():
                _inside(file, root, file_rel, "symlink")
            role = "reference" if file.stem == reference_name else "test"
            yield Entry(
                scene=child.name,
                path=file.resolve() if file.exists() else file,
                role=role,
                condition="reference" if role == "reference" else file.stem,
                name=f"{child.name}/{file.name}",
                origin=file_rel,
            )


def _read_manifest(manifest: Path) -> Iterator[Entry]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            yield from _manifest_rows(handle, manifest.name, manifest.parent.resolve())
    except UnicodeDecodeError as exc:
        raise StudyImportError(f"{manifest.name}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise StudyImportError(f"{manifest}: cannot read ({exc.strerror})") from exc


def _manifest_rows(handle: TextIO, label: str, root: Path) -> Iterator[Entry]:
    reader = csv.DictReader(handle)
    header = [column.strip() for column in (reader.fieldnames or [])]
    missing = [column for column in MANIFEST_COLUMNS if column not in header]
    if missing:
        raise StudyImportError(
            f"{label} line 1: missing column(s) {', '.join(missing)} "
            f"(expected {','.join(MANIFEST_COLUMNS)})"
        )
    reader.fieldnames = header
    rows = 0
    seen_paths: dict[tuple[str, Path], int] = {}
    try:
        for row in reader:
            line = reader.line_num
            origin = f"{label} line {line}"
            scene = (row.get("scene") or "").strip()
            raw_path = (row.get("path") or "").strip()
            role = (row.get("role") or "").strip().lower()
            condition = (row.get("condition") or "").strip()
            gold = (row.get("gold") or "").strip().lower()
            if not scene:
                raise StudyImportError(f"{origin}: empty scene")
            if "/" in scene or "\\" in scene:
                raise StudyImportError(f"{origin}: scene name {scene!r} contains a slash")
            if not raw_path:
                raise StudyImportError(f"{origin}: empty path")
            if role not in ROLES:
                raise StudyImportError(f"{origin}: role {role!r} is not one of {', '.join(ROLES)}")
            if gold and gold not in GOLD_VALUES:
                raise StudyImportError(
                    f"{origin}: gold {gold!r} is not one of {', '.join(GOLD_VALUES)} (or empty)"
                )
            if gold and role != "test":
                raise StudyImportError(f"{origin}: a gold image must have role test, not {role}")
            pure = PurePosixPath(raw_path.replace("\\", "/"))
            if pure.is_absolute() or raw_path.startswith(("/", "\\")) or ":" in pure.parts[0]:
                raise StudyImportError(
                    f"{origin}: {raw_path}: absolute path (paths are relative to the manifest)"
                )
            if ".." in pure.parts:
                raise StudyImportError(
                    f"{origin}: {raw_path}: path escapes the manifest's folder ('..')"
                )
            path = _inside(root / Path(*pure.parts), root, f"{origin}: {raw_path}", "path")
            if (scene, path) in seen_paths:
                raise StudyImportError(
                    f"{origin}: {raw_path}: duplicate row "
                    f"(same scene and file as line {seen_paths[(scene, path)]})"
                )
            seen_paths[(scene, path)] = line
            rows += 1
            yield Entry(
                scene=scene,
                path=path,
                role=role,
                condition=condition or ("reference" if role == "reference" else pure.stem),
                name=f"{scene}/{pure.name}",
                origin=f"{origin} ({raw_path})",
                gold=gold,
            )
    except csv.Error as exc:
        raise StudyImportError(f"{label} line {reader.line_num}: malformed CSV ({exc})") from exc
    if rows == 0:
        raise StudyImportError(f"{label}: the manifest has no rows")
