"""Real image files for tests: small, distinct, deterministic."""

from pathlib import Path

import numpy as np
import PIL.Image


def write_png(path: Path, *, size: tuple[int, int] = (48, 32), seed: int = 0) -> Path:
    """A noise PNG of ``size`` (width, height); different seeds give different content."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(pixels).save(path)
    return path


def write_scene_folder(
    root: Path,
    scenes: dict[str, list[str]],
    *,
    size: tuple[int, int] = (48, 32),
    seed: int = 0,
) -> Path:
    """``root/<scene>/<stem>.png`` for every stem; returns ``root``."""
    for s, (scene, stems) in enumerate(scenes.items()):
        for i, stem in enumerate(stems):
            write_png(root / scene / f"{stem}.png", size=size, seed=seed + 1000 * s + i)
    return root


def write_manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["scene,path,role,condition", *(",".join(row) for row in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
