"""Coverage of the per-image 95% intervals with "similar" votes: the A-FINE-compatible
Thurstone scale (a similar vote a win both ways) against the tie models, on SRIQA-Bench's
100 scenes (latent = score / 100 x 3, all 55 pairs per scene, 10 votes per pair), over
several seeds; prints the table of docs/statistics.md. The in-suite version (one seed) is
``tests/analysis/test_tie_coverage.py``; the simulation is
``tests/analysis/coverage_simulation.py``.

    .venv/bin/python bench/tie_coverage.py --seeds 20 [--generator threshold] [--samples 200]
        [--tie-bootstrap]
    .venv/bin/python bench/tie_coverage.py --smoke   # seconds: what the suite runs

The A-FINE scale's intervals are its percentile bootstrap, the tie model's the Laplace
intervals the report gives it (``scaling.tie_intervals``); ``--tie-bootstrap`` adds the
tie model's percentile bootstrap, the method the Laplace intervals replaced.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.analysis.coverage_simulation import GENERATORS, simulate


def _cell(values: np.ndarray) -> str:
    return f"{values.mean():.1%} ({values.min():.1%}-{values.max():.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--generator", choices=GENERATORS, default="threshold")
    parser.add_argument("--rates", default="0,0.05,0.1,0.2")
    parser.add_argument(
        "--tie-bootstrap",
        action="store_true",
        help="also the tie model's percentile bootstrap (slow: a refit per resample)",
    )
    parser.add_argument("--smoke", action="store_true", help="one seed, 20 resamples: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.samples, args.rates = 1, 20, "0,0.1"
    model = "davidson" if args.generator == "davidson" else "thurstone-ties"
    print(
        f"generator {args.generator}, fitted tie model {model}, seeds 0-{args.seeds - 1}, "
        f"{args.samples} resamples; mean (range over seeds) of the share of the 1,100 "
        "images whose 95% interval covers the latent value"
    )
    head = f"| similar | A-FINE `thurstone` (percentile bootstrap) | `{model}` (Laplace) |"
    if args.tie_bootstrap:
        head += f" `{model}` (percentile bootstrap) |"
    print(head)
    print("| --- " * head.count(" | ") + "| --- |")
    for rate in (float(r) for r in args.rates.split(",")):
        runs = [
            simulate(rate=rate, seed=seed, generator=args.generator, model=model,
                     samples=args.samples, tie_bootstrap=args.tie_bootstrap)
            for seed in range(args.seeds)
        ]  # fmt: skip
        row = f"| {rate:.0%} | {_cell(np.array([r.afine for r in runs]))} "
        row += f"| {_cell(np.array([r.tie_model for r in runs]))} |"
        if args.tie_bootstrap:
            row += f" {_cell(np.array([r.tie_bootstrap for r in runs]))} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
