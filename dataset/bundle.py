"""``export_study SLUG --bundle FILE.zip``: one deterministic archive a paper can cite.

Every table (CSV), the field's formats the design has, with ``--with-images`` every image
under its stable name (``images/<scene>/<file>``), and the datasheet ``README.md``, which
lists every other member with its size and sha256. Members are sorted by name and carry a
fixed time and mode, and a closed study's datasheet has no timestamp, so building the
bundle of a closed study twice gives the same bytes. Files are streamed into the archive
in chunks (hashed as they go), so images never sit in memory; the archive is written
beside its final name and moved into place.
"""

import hashlib
import json
import os
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import pandas as pd
from django.conf import settings

from annotation.models import Image, Study
from annotation.storage import media_root
from core.spreadsheet import restore_frame
from dataset.export import EXPORT_STEPS, ExportError, study_export

CHUNK = 1 << 20
# Zip's earliest time: members carry it, not the time they were written.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
DATASHEET = "README.md"
IMAGES = "images"
# The Hugging Face configurations' folders (``--with-images``); ``images`` is the folder of
# the images under their stable names, with ``metadata.jsonl`` beside them.
HF_IMAGES = IMAGES
HF_PAIRS = "pairs"


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Bundle:
    path: Path
    members: list[Member]


def platform_version() -> str:
    with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    return f"{project['name']} {project['version']}"


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, whatever machine builds it
    info.external_attr = 0o644 << 16
    return info


def _add_file(archive: zipfile.ZipFile, name: str, source: Path) -> Member:
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as handle, archive.open(_info(name), "w", force_zip64=True) as out:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return Member(name=name, size=size, sha256=digest.hexdigest())


def _exported_files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in folder.rglob("*"):
        if path.is_file() and path.name != DATASHEET:
            yield path.relative_to(folder).as_posix(), path


def _image_files(
    study: Study, folder: str, only: set[str] | None = None
) -> Iterator[tuple[str, Path]]:
    """The study's image files (those named in ``only``, if given) by name, as
    ``<folder>/<stable name>``."""
    root = media_root()
    rows = (
        Image.objects.filter(scene__study=study)
        .order_by("name")
        .values_list("name", "file")
        .iterator(chunk_size=2000)
    )
    for name, file in rows:
        if only is not None and name not in only:
            continue
        path = root / file
        if not path.is_file():
            raise ExportError(f"{name}: image file {file} is missing from the store")
        yield f"{folder}/{name}", path


def _write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_json(path, orient="records", lines=True, force_ascii=False, double_precision=15)


def _read_csv(path: Path) -> pd.DataFrame:
    """A table of the export as written (its spreadsheet-safe quotes taken off)."""
    return restore_frame(pd.read_csv(path, keep_default_na=False, na_values=[""]))


def hf_metadata(folder: Path, out: Path) -> tuple[set[str], int]:
    """The Hugging Face ImageFolder metadata of the export in ``folder``, written under
    ``out``: ``images/metadata.jsonl`` (one row per scored image: its human scores) and
    ``pairs/metadata.jsonl`` (one row per study pair: its label); returns the names of the
    images the pairs show (their copies go under ``pairs/``) and the number of pairs."""
    scores = _read_csv(folder / "image_scores.csv")
    images = scores.rename(columns={"image": "file_name"})
    images.insert(1, "image_name", images["file_name"])
    _write_jsonl(images, out / HF_IMAGES / "metadata.jsonl")
    pairs = _read_csv(folder / "pairs.csv")
    pairs = pairs[~pairs["is_gold"].astype(bool)].drop(
        columns=["is_gold", "gold_answer", "shown_reference"]
    )
    shown = set(pairs["image_a"]) | set(pairs["image_b"])
    # ImageFolder loads ``<x>_file_name`` as the image column ``x``.
    pairs = pairs.rename(columns={"image_a": "image_a_name", "image_b": "image_b_name"})
    pairs.insert(0, "image_a_file_name", pairs["image_a_name"])
    pairs.insert(1, "image_b_file_name", pairs["image_b_name"])
    _write_jsonl(pairs.reset_index(drop=True), out / HF_PAIRS / "metadata.jsonl")
    return shown, len(pairs)


SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"))
SIZES += ((1_000_000, "100K<n<1M"), (float("inf"), "n>1M"))


def hf_card(study: Study, n_pairs: int) -> str:
    """The dataset card's YAML front matter, the licence left for the researcher."""
    size = next(label for limit, label in SIZES if n_pairs < limit)
    front = [
        "---",
        "license:  # the researcher's choice before publishing, e.g. cc-by-4.0",
        f"pretty_name: {json.dumps(study.title or study.slug)}",
        "task_categories:",
        "- image-classification",
        "tags:",
        "- image-quality-assessment",
        "- pairwise-comparison",
        f"- {study.design}",
        "size_categories:",
        f"- {size}",
        "configs:",
        "- config_name: pairs",
        f"  data_dir: {HF_PAIRS}",
        "- config_name: images",
        f"  data_dir: {HF_IMAGES}",
        "---",
        "",
    ]
    return "\n".join(front)


HF_SECTION = """
## Hugging Face dataset

Two ImageFolder configurations, each loading on its own, offline:
`datasets.load_dataset("imagefolder", data_dir="pairs")` and `data_dir="images"`.

- `pairs`: one row per study pair (gold pairs left out): `image_a` and `image_b` (the
  images), then the columns of `pairs.csv` with the names as `image_a_name` and
  `image_b_name` (`pair_id`, `scene`, `reference`, conditions, `target_votes`, `n_votes`,
  `n_a`, `n_similar`, `n_b`, `p_a`, `majority`: a, similar, b or none).
- `images`: one row per scored image: `image` (the image), `image_name`, `scene`,
  `condition`, `n_votes`, `thurstone`, `thurstone_0_100`, intervals and Bradley-Terry, as in
  `image_scores.csv`.
"""


def _files_section(members: list[Member], with_images: bool) -> str:
    lines = [
        "",
        "## Files",
        "",
        f"Bundle of {platform_version()}; every member but this datasheet, with its size in "
        "bytes and sha256"
        + (f" (images under `{IMAGES}/` by their stable names)." if with_images else "."),
        "",
        "| file | bytes | sha256 |",
        "| --- | ---: | --- |",
        *(f"| `{m.name}` | {m.size} | `{m.sha256}` |" for m in members),
        "",
    ]
    return "\n".join(lines)


def study_bundle(
    *,
    study: Study,
    path: Path,
    with_images: bool = False,
    samples: int = 1000,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Bundle:
    """Write the study's bundle to ``path`` (a zip); returns its members (the datasheet
    last). Refuses a missing image file (with ``with_images``), naming it.
    ``on_progress(done, total)`` follows the export's steps (``EXPORT_STEPS``), then, with
    ``with_images``, each image file added."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ExportError(f"{path}: is a folder, not a zip file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = on_progress or (lambda done, total: None)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".bundle-") as scratch:
        folder = Path(scratch) / "export"
        study_export(
            study=study, out=folder, fmt="csv", samples=samples, seed=seed, formats=True,
            on_progress=report,
        )  # fmt: skip
        sources = sorted(_exported_files(folder))
        shown: set[str] = set()
        card = ""
        if with_images:
            hf = Path(scratch) / "hf"
            shown, n_pairs = hf_metadata(folder, hf)
            sources = sorted([*sources, *_exported_files(hf)])
            card = hf_card(study, n_pairs)
        staged = Path(scratch) / "bundle.zip"
        members = []
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, source in sources:
                members.append(_add_file(archive, name, source))
            if with_images:
                total = EXPORT_STEPS + Image.objects.filter(scene__study=study).count()
                total += len(shown)
                done = EXPORT_STEPS
                for name, source in chain(
                    _image_files(study, IMAGES), _image_files(study, HF_PAIRS, only=shown)
                ):
                    members.append(_add_file(archive, name, source))
                    done += 1
                    report(done, total)
            sheet = card + (folder / DATASHEET).read_text(encoding="utf-8")
            if with_images:
                sheet += HF_SECTION
            sheet += _files_section(members, with_images)
            data = sheet.encode("utf-8")
            archive.writestr(_info(DATASHEET), data)
            members.append(
                Member(name=DATASHEET, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            )
        os.replace(staged, path)
    return Bundle(path=path, members=members)
