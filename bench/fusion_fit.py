"""The fusion metric's fit time: nested cross-validation at 100,000 labelled pairs x 30
metrics.

The synthetic pairwise study of ``bench/agreement_speed.py``, made larger: 1,915 scenes of
11 images and one of 5, so 105,335 pairs with 10 votes each, of which about 100,300 have a
majority label. It has 30 metrics that are noisy views of the latent quality, half of
them lower-is-better. Not timed: the labels and the metrics' oriented
differences (``report.study_fusion_data``). Timed: ``fusion.evaluate``, the whole
``agreement_report --fusion`` computation. That is 5 outer folds grouped by scene; in each,
C chosen from 6 values by 4 inner grouped folds, then the fit; then 1,000-resample
bootstrap intervals, the paired test against the best single metric, the final fit on
every pair and the weights' spread over the folds. Goal: under 30 s on this machine.

    .venv/bin/python bench/fusion_fit.py            # the figure in docs/benchmarks.md
    .venv/bin/python bench/fusion_fit.py --smoke    # seconds: what the suite runs
"""

import argparse
import time

import numpy as np
from agreement_speed import synthetic_study  # (bench/ is the script's folder)

from analysis import fusion
from analysis.report import study_fusion_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1915, help="scenes of 11 images")
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--smoke", action="store_true", help="20 scenes, 5 metrics")
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.metrics, args.samples = 20, 5, 100

    data, _ = synthetic_study(
        scenes=args.scenes, metrics=args.metrics, votes_per_pair=10, annotators=5000, seed=1
    )
    started = time.perf_counter()
    inputs = study_fusion_data(data)
    prepared = time.perf_counter() - started
    labelled = int((inputs.label >= 0).sum())
    print(f"study: {len(data.pairs):,} pairs ({labelled:,} labelled) in "
          f"{data.pairs['scene'].nunique():,} scenes, {len(inputs.metrics)} metrics; "
          f"labels and differences in {prepared:.1f} s (not timed)")  # fmt: skip
    started = time.perf_counter()
    result = fusion.evaluate(inputs, samples=args.samples, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - started
    assert result["status"] == "ok", result["message"]
    whole, best = result["rows"][0], result["best_single"]
    print(
        f"fusion: {result['folds']} outer x {result['inner_folds']} inner folds x "
        f"{len(result['c_grid'])} C on {result['n_pairs']:,} pairs x {len(result['metrics'])} "
        f"metrics in {seconds:.1f} s (goal < 30 s)"
    )
    print(
        f"out of sample: accuracy {whole['accuracy']:.4f} [{whole['ci_low']:.4f}, "
        f"{whole['ci_high']:.4f}]; best single metric {best['metric']} "
        f"{best['accuracy']:.4f}; difference {best['difference']:+.4f} "
        f"[{best['ci_low']:+.4f}, {best['ci_high']:+.4f}]; C {result['C']:g}"
    )


if __name__ == "__main__":
    main()
