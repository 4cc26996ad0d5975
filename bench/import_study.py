"""Import throughput and memory: ``import_study`` on 1,000 then 10,000 generated images.

Runs ``manage.py import_study`` as a real process (SQLite and a temporary data folder
unless DATABASE_URL is set) and prints, for each size, the wall time, images per second
and the process's peak resident memory. Streaming shows as a peak that does not grow
with the number of images.

    .venv/bin/python bench/import_study.py [--images 10000] [--size 64x48]

With DATABASE_URL set, point it at a scratch database: the studies it imports stay there.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parent.parent
PER_SCENE = 10  # a reference and 9 test images


def generate(folder: Path, n_images: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for index in range(n_images):
        scene, position = divmod(index, PER_SCENE)
        stem = "reference" if position == 0 else f"method-{position}"
        path = folder / f"scene-{scene:05d}" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(path, compress_level=1)


def run_import(source: Path, data_dir: Path, slug: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``import_study`` process."""
    env = {**os.environ, "IQA_DATA_DIR": str(data_dir), "IQA_IMPORT_PROGRESS_MIN": str(10**9)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    command = [sys.executable, "manage.py", "import_study", str(source), "--slug", slug,
               "--design", "ref-vs-test"]  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            sys.exit(err.read().decode())
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", default="64x48", help="WIDTHxHEIGHT of each image")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(f"import_study, ref-vs-test, {size[0]}x{size[1]} PNG, {PER_SCENE} per scene, {backend}")
    print(f"{'images':>8} {'pairs':>7} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory(prefix="iqa-bench-") as tmp:
        for n_images in (args.images // 10, args.images):
            source = Path(tmp) / f"src-{n_images}"
            generate(source, n_images, size, seed=n_images)
            data_dir = Path(tmp) / f"data-{n_images}"
            seconds, peak = run_import(source, data_dir, slug=f"bench-{n_images}")
            pairs = n_images - n_images // PER_SCENE
            print(
                f"{n_images:>8} {pairs:>7} {seconds:>8.1f} {n_images / seconds:>9.0f} {peak:>13.0f}"
            )


if __name__ == "__main__":
    main()
