"""Scoring throughput: the platform against the loop a researcher would write.

The demo studies' pairs (``demo``: 44 ref-vs-test pairs; ``demo-pairwise``: 110 pairs
with the reference shown) scored with the weight-free FR metrics psnr, ssim, ms_ssim,
fsim, vsi, gmsd and vif (mad is too slow on a CPU to time here):

- the platform: ``score_study 'demo*' --metrics ... --wait`` with a real Celery worker
  started for the run (its start, pyiqa's import and the models' creation included);
- the loop, in this process: ``pyiqa.create_metric`` once per metric, then
  ``metric(test_path, ref_path)`` for each pair, for both images of a pairwise pair
  (what the agreement needs: m(a, r) and m(b, r)).

Prints pairs per second for both and the ratio. Target: at least 2x on a 2-core CPU
machine, 5x on a GPU. With a GPU (CUDA and ``nvidia-smi``), both run on it, and the GPU's
utilisation, sampled by ``nvidia-smi`` every 200 ms, is printed for each.

    .venv/bin/python bench/score_throughput.py
    .venv/bin/python bench/score_throughput.py --smoke   # seconds: what the suite runs

It needs PostgreSQL and Redis on 127.0.0.1 (``make services``); it drops and recreates
the scratch database ``iqa_bench_score``.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _synthetic import demo_scoring, start_scoring_worker  # noqa: E402

METRICS = ["psnr", "ssim", "ms_ssim", "fsim", "vsi", "gmsd", "vif"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="iqa_bench_score")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated")
    parser.add_argument("--smoke", action="store_true", help="psnr only: seconds")
    args = parser.parse_args()
    metrics = ["psnr"] if args.smoke else args.metrics.split(",")
    with tempfile.TemporaryDirectory(prefix="iqa-bench-score-") as tmp:
        env = demo_scoring(args.database, args.broker, tmp, "bench-score")
        manage = [sys.executable, "manage.py"]
        pairs = _pairs(env)
        print(f"{len(pairs)} pairs (demo and demo-pairwise), metrics: {', '.join(metrics)}")

        gpu = _gpu()
        print(f"device: {gpu or 'cpu (no CUDA)'}")
        started = time.perf_counter()
        platform_gpu = GpuUtilisation(gpu)
        worker = start_scoring_worker(env, "bench-score")
        try:
            with platform_gpu:
                subprocess.run(
                    [*manage, "score_study", "demo*", "--metrics", ",".join(metrics), "--wait"],
                    cwd=REPO, env=env, check=True, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            platform = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait(timeout=60)

        started = time.perf_counter()
        with GpuUtilisation(gpu) as loop_gpu:
            loop_calls = _researcher_loop(pairs, metrics, "cuda" if gpu else "cpu")
        loop = time.perf_counter() - started

    n = len(pairs) * len(metrics)
    print(
        f"platform: {platform:7.1f} s  {n / platform:7.1f} pair-scores/s  (worker start included)"
    )
    print(f"loop:     {loop:7.1f} s  {n / loop:7.1f} pair-scores/s  ({loop_calls} metric calls)")
    print(f"ratio:    {loop / platform:.2f}x (target {'5x on a GPU' if gpu else '2x on CPU'})")
    if gpu:
        print(f"GPU use, platform: {platform_gpu.summary()}")
        print(f"GPU use, loop:     {loop_gpu.summary()}")


def _gpu() -> str:
    """The GPU both sides run on ("" without one): what nvidia-smi calls it."""
    if shutil.which("nvidia-smi") is None:
        return ""
    import torch

    if not torch.cuda.is_available():
        return ""
    return torch.cuda.get_device_name(0)


class GpuUtilisation:
    """The first visible GPU's utilisation (the share of time a kernel ran), sampled by
    nvidia-smi every 200 ms while the block runs."""

    def __init__(self, gpu: str) -> None:
        self.gpu = gpu
        self.samples: list[float] = []
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "GpuUtilisation":
        if self.gpu:
            index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
            self.process = subprocess.Popen(
                ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            out, _ = self.process.communicate(timeout=30)
            self.samples = [float(v) for v in out.split() if v.strip().isdigit()]

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        return (
            f"mean {statistics.fmean(self.samples):.0f}%, median "
            f"{statistics.median(self.samples):.0f}% of the time a kernel ran "
            f"({len(self.samples)} samples)"
        )


def _pairs(env: dict) -> list[tuple[str, str, str]]:
    """(image a, image b, reference) file paths of every non-gold pair of both demos."""
    code = """
import json
from django.conf import settings
from annotation.models import Pair
root = str(settings.MEDIA_ROOT)
rows = []
for p in Pair.objects.filter(gold_answer="").select_related("image_a", "image_b", "scene"):
    ref = p.scene.images.get(role="reference")
    rows.append([f"{root}/{i.file}" for i in (p.image_a, p.image_b, ref)])
print(json.dumps(rows))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env,
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    import json

    return [tuple(row) for row in json.loads(out.stdout.strip().splitlines()[-1])]


def _researcher_loop(pairs, metrics: list[str], device: str) -> int:
    import pyiqa

    calls = 0
    for name in metrics:
        metric = pyiqa.create_metric(name, device=device)
        for a, b, reference in pairs:
            metric(a, reference)
            calls += 1
            if b != reference:
                metric(b, reference)
                calls += 1
    return calls


if __name__ == "__main__":
    main()
