"""The field's file formats, written from the export's tables. Pure functions of frames.

- ``Triplet.txt`` (A-FINE training triplets, ref-vs-test studies): from each test image's
  DiffIQA majority label against its scene's reference.
- ``mos/<scene>.txt`` (SRIQA-Bench layout, pairwise studies): ``file.png,score`` with the
  Thurstone 0..100 score, best first.
"""

from collections.abc import Iterator
from itertools import combinations

import pandas as pd

from annotation.models import Design

TRIPLET_FILE = "Triplet.txt"
MOS_FOLDER = "mos"

# The pair (test, reference)'s majority in DiffIQA's words: test better, similar, worse.
DIFFIQA_LABELS = {"a": "Positive", "similar": "Similar", "b": "Negative"}
_RANK = {"Positive": 2, "Similar": 1, "Negative": 0}
_VERSUS_REFERENCE = {"Positive": "1", "Similar": "0.5", "Negative": "0"}


def has_triplets(design: str) -> bool:
    return design == Design.REF_VS_TEST


def has_mos(design: str) -> bool:
    return design == Design.PAIRWISE


def labelled_test_images(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each labelled test image of a ref-vs-test study: scene, image, reference, label
    (Positive, Similar or Negative); images whose votes give no majority are left out.
    ``pairs`` is the export's pairs table (image_a the test image, image_b the reference)."""
    study = pairs[~pairs["is_gold"].astype(bool)]
    labelled = study[study["majority"].isin(list(DIFFIQA_LABELS))]
    return (
        pd.DataFrame(
            {
                "scene": labelled["scene"].to_numpy(),
                "image": labelled["image_a"].to_numpy(),
                "reference": labelled["image_b"].to_numpy(),
                "label": labelled["majority"].map(DIFFIQA_LABELS).to_numpy(),
            }
        )
        .sort_values(["scene", "image"], kind="stable")
        .reset_index(drop=True)
    )


def _above(label_1: str, label_2: str) -> str:
    if label_1 == label_2:
        return "0.5"  # both Similar: the only equal couple written
    return "1" if _RANK[label_1] > _RANK[label_2] else "0"


def triplet_lines(pairs: pd.DataFrame) -> Iterator[str]:
    """The lines of ``Triplet.txt``, scene by scene (scenes and images by name): first
    every couple of labelled test images whose labels differ or are both Similar
    (``img1,img2,reference,gt12,gt1ref,gt2ref``), then every labelled test image against
    the reference (``img,reference,reference,gt,gt,0.5``)."""
    labels = labelled_test_images(pairs)
    for _, scene in labels.groupby("scene", sort=True):
        rows = list(scene.itertuples(index=False))
        for one, two in combinations(rows, 2):
            if one.label == two.label and one.label != "Similar":
                continue
            yield ",".join(
                (
                    one.image, two.image, one.reference, _above(one.label, two.label),
                    _VERSUS_REFERENCE[one.label], _VERSUS_REFERENCE[two.label],
                )
            )  # fmt: skip
        for row in rows:
            gt = _VERSUS_REFERENCE[row.label]
            yield f"{row.image},{row.reference},{row.reference},{gt},{gt},0.5"


def mos_files(image_scores: pd.DataFrame) -> dict[str, list[str]]:
    """Scene -> the lines of ``mos/<scene>.txt``: ``file.png,score`` (the image's file name
    within its scene, its Thurstone 0..100 score written exactly), best first, ties by
    name."""
    files = {}
    for scene, rows in image_scores.groupby("scene", sort=True):
        rows = rows.assign(file=[name.removeprefix(f"{scene}/") for name in rows["image"]])
        rows = rows.sort_values(["thurstone_0_100", "file"], ascending=[False, True])
        files[str(scene)] = [
            f"{file},{float(score)!r}"
            for file, score in zip(rows["file"], rows["thurstone_0_100"], strict=True)
        ]
    return files


def scene_file_name(scene: str) -> str:
    """``mos/<scene>.txt``'s file name: the scene's name, with path separators replaced."""
    return scene.replace("/", "_").replace("\\", "_") + ".txt"
