"""Coverage of the per-image 95% intervals on SRIQA-Bench's 100 scenes.

Shared by ``tests/analysis/test_tie_coverage.py`` (one seed, in the suite) and
``bench/tie_coverage.py`` (more seeds, the table in docs/statistics.md). Each scene's 11 images are
compared in all 55 pairs, ``votes`` votes per pair, by simulated annotators:

- ``threshold`` (the Thurstone model with a tie threshold, as ``test_crowd.py``'s
  annotators): the perceived difference is latent_a - latent_b + N(0, 1), and "similar"
  when it is within +-tau; tau is set so that ``rate`` of all votes are "similar";
- ``mixed-threshold``: the same, each vote with its own threshold drawn uniformly from
  0 to 2 tau (annotators differ in how readily they say "similar"), a generator no model
  here fits exactly;
- ``davidson``: Davidson's model with pi = exp(latent) and nu set for ``rate``.

The latent value of an image is SRIQA-Bench's score / 100 x 3 (``test_crowd.py``),
centred per scene, because every fitted scale sums to zero per scene (and the tie model's
intervals are for S less its scene's mean). An interval covers when the latent value lies
within it: the 2.5th and 97.5th percentiles of the bootstrap for the A-FINE scale, the
Laplace interval (S +- 1.96 sd) for the tie model.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.stats import norm

from analysis import scaling

# SRIQA-Bench's published per-image scores (tests/data/README.md names their source).
MOS = Path(__file__).resolve().parents[1] / "data" / "sriqa_mos.txt"
LATENT_RANGE = 3.0
GENERATORS = ("threshold", "mixed-threshold", "davidson")


def sriqa_latent() -> np.ndarray:
    """(scenes, 11) latent values, centred per scene, scenes in file order."""
    mos = pd.read_csv(MOS, header=None, names=["image", "reference", "score"])
    mos["scene"] = mos["image"].str.split("_").str[0]
    latent = mos["score"].to_numpy() / 100.0 * LATENT_RANGE
    sizes = mos.groupby("scene", sort=False).size()
    if sizes.nunique() != 1:
        raise ValueError(f"{MOS}: scenes of different sizes {sorted(set(sizes))}")
    latent = latent.reshape(len(sizes), int(sizes.iloc[0]))
    return latent - latent.mean(axis=1, keepdims=True)


def _probabilities(generator: str, d: np.ndarray, tie: float) -> np.ndarray:
    """(..., 3) probabilities of a, similar, b at latent differences d = a - b."""
    if generator == "threshold":
        win, lose = norm.cdf(d - tie), norm.cdf(-d - tie)
    elif generator == "mixed-threshold":
        # The average over thresholds uniform on [0, 2 tau] (midpoint rule, 64 nodes).
        nodes = (np.arange(64) + 0.5) / 64 * 2 * tie
        win = norm.cdf(d[..., None] - nodes).mean(axis=-1)
        lose = norm.cdf(-d[..., None] - nodes).mean(axis=-1)
    elif generator == "davidson":
        den = np.exp(d / 2) + np.exp(-d / 2) + tie
        win, lose = np.exp(d / 2) / den, np.exp(-d / 2) / den
    else:
        raise ValueError(f"unknown generator {generator!r} (expected one of {GENERATORS})")
    return np.stack([win, np.clip(1.0 - win - lose, 0.0, 1.0), lose], axis=-1)


def tie_for_rate(generator: str, d: np.ndarray, rate: float) -> float:
    """The generator's tie parameter at which ``rate`` of the votes are similar."""
    if rate == 0:
        return 0.0
    share = lambda tie: _probabilities(generator, d, tie)[..., 1].mean() - rate  # noqa: E731
    return optimize.brentq(share, 1e-9, 50.0, xtol=1e-12)


@dataclass(frozen=True)
class Coverage:
    generator: str
    rate: float  # the similar share asked for
    observed_rate: float
    afine: float  # coverage of the A-FINE-compatible Thurstone Case V intervals
    tie_model: float  # coverage of the tie model's intervals (Laplace, as the report's)
    tie_parameter: float
    tie_bootstrap: float = np.nan  # the tie model's percentile bootstrap (``tie_bootstrap``)


def _resampled_counts(
    cells: np.ndarray, i: np.ndarray, j: np.ndarray, k: int, samples: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Every scene's ``samples`` resamples of its votes at once, as ``scaling.bootstrap``
    draws one scene's (the cells' counts from a multinomial with the observed shares):
    wins and ties stacks of (scenes x samples, k, k), a scene's resamples together."""
    n_scenes, m = cells.shape[0], len(i)
    shares = cells.transpose(0, 2, 1).reshape(n_scenes, 3 * m).astype(np.float64)
    draws = np.stack(
        [rng.multinomial(int(c.sum()), c / c.sum(), size=samples) for c in shares]
    ).reshape(n_scenes * samples, 3 * m)
    wins, ties = np.zeros((len(draws), k, k)), np.zeros((len(draws), k, k))
    wins[:, i, j], ties[:, i, j], wins[:, j, i] = (
        draws[:, :m],
        draws[:, m : 2 * m],
        draws[:, 2 * m :],
    )
    return wins, ties


def simulate(
    *,
    rate: float,
    seed: int,
    generator: str = "threshold",
    model: str = "thurstone-ties",
    votes: int = 10,
    samples: int = 200,
    tie_bootstrap: bool = False,
    latent: np.ndarray | None = None,
) -> Coverage:
    """One simulated study over every scene of ``latent`` and both models' coverage, each
    with the intervals the report gives it: the A-FINE scale's percentile bootstrap
    (``samples`` resamples of each scene's votes) and the tie model's Laplace intervals
    (``scaling.tie_intervals``). ``tie_bootstrap`` adds the tie model's percentile
    bootstrap (its tie parameter held), for comparison."""
    latent = sriqa_latent() if latent is None else latent
    n_scenes, k = latent.shape
    i, j = np.triu_indices(k, 1)
    d = latent[:, i] - latent[:, j]
    tie = tie_for_rate(generator, d, rate)
    rng = np.random.default_rng(seed)
    p = _probabilities(generator, d, tie)
    cells = rng.multinomial(votes, p / p.sum(axis=-1, keepdims=True))  # (scenes, pairs, 3)
    wins, ties = np.zeros((n_scenes, k, k)), np.zeros((n_scenes, k, k))
    wins[:, i, j], ties[:, i, j], wins[:, j, i] = cells[..., 0], cells[..., 1], cells[..., 2]
    point, tie_fitted = scaling.fit_ties(wins, ties, model)
    low, high = scaling.tie_intervals(wins, ties, model, point, tie_fitted)

    def covered(low: np.ndarray, high: np.ndarray) -> float:
        return float(((low <= latent) & (latent <= high)).mean())

    def percentile(boot: np.ndarray) -> float:
        return covered(*np.percentile(boot.reshape(n_scenes, samples, k), [2.5, 97.5], axis=1))

    d_wins, d_ties = _resampled_counts(cells, i, j, k, samples, rng)
    augmented = d_wins + d_ties + np.swapaxes(d_ties, 1, 2)
    afine_point = scaling.fit(wins + ties + np.swapaxes(ties, 1, 2), "thurstone")
    afine = scaling.fit(augmented, "thurstone", initial=np.repeat(afine_point, samples, axis=0))
    tied = np.nan
    if tie_bootstrap:
        start = np.repeat(point, samples, axis=0)
        tied = percentile(scaling.fit_ties(d_wins, d_ties, model, tie=tie_fitted, start=start)[0])
    return Coverage(
        generator=generator,
        rate=rate,
        observed_rate=float(cells[..., 1].sum() / cells.sum()),
        afine=percentile(afine),
        tie_model=covered(low, high),
        tie_parameter=tie_fitted,
        tie_bootstrap=tied,
    )
