"""Coverage of the 95% intervals as the share of "similar" votes grows (issue 18): the
A-FINE-compatible Thurstone scale (a similar vote a win both ways, percentile bootstrap)
against the Thurstone model with a tie threshold (Laplace intervals), on SRIQA-Bench's
100 scenes (one seed; the larger run is ``bench/tie_coverage.py``)."""

import pytest

from tests.analysis.coverage_simulation import simulate

pytestmark = pytest.mark.slow

RATES = (0.0, 0.05, 0.10, 0.20)


@pytest.fixture(scope="module")
def runs():
    # 100 resamples for the A-FINE scale's bootstrap (the documented table has 200): its
    # coverage only has to fall here, and its refits are the test's running time.
    return {rate: simulate(rate=rate, seed=0, samples=100) for rate in RATES}


def test_the_tie_model_keeps_its_coverage_as_similar_votes_grow(runs):
    """The tie model's intervals cover the latent value 93-97% of the time at every
    rate (this seed: 95.7, 95.3, 95.5, 94.5%; over 30 seeds 93.1-96.8%, mean 94.8-95.0%
    at each rate, docs/statistics.md); the A-FINE scale's coverage falls as "similar" grows."""
    for rate, run in runs.items():
        print(run)
        assert run.observed_rate == pytest.approx(rate, abs=0.01)
        assert 0.93 <= run.tie_model <= 0.97, run
    afine = [runs[rate].afine for rate in RATES]
    assert afine[3] < afine[2] < afine[1], afine
    assert afine[2] < afine[0] - 0.03, afine
    assert afine[3] < 0.75, afine
