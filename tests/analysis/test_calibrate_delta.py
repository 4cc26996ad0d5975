"""Issue 18: tie bands chosen from data (``agreement.calibrate_delta``), k-fold over pairs."""

import numpy as np
import pytest

from analysis import agreement

BAND = 0.3  # people say "similar" below this difference of latent quality


def synthetic_pairs(rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """A metric that is the latent quality plus noise (sd 0.02 per image) and people who
    say "similar" when the perceived difference (noise sd 0.05) is below BAND."""
    quality_a, quality_b = rng.uniform(0, 3, n), rng.uniform(0, 3, n)
    metric = (quality_a + rng.normal(0, 0.02, n)) - (quality_b + rng.normal(0, 0.02, n))
    perceived = quality_a - quality_b + rng.normal(0, 0.05, n)
    label = np.where(np.abs(perceived) < BAND, "similar", np.where(perceived > 0, "a", "b"))
    return metric, label.astype(object)


def test_accuracy_by_delta_equals_correct_at_every_delta():
    rng = np.random.default_rng(1)
    difference = np.round(rng.normal(0, 1, 300), 1)  # many ties at the candidates
    difference[:5] = np.nan
    label = rng.choice(["a", "similar", "b", "none"], 300).astype(object)
    deltas = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 3.0])
    counts, right = agreement.accuracy_by_delta(difference, label, deltas)
    for delta, c, r in zip(deltas, counts, right, strict=True):
        judged = agreement.correct(difference, label, delta)
        assert c == np.isfinite(judged).sum()
        assert r == np.nansum(judged)


def test_the_calibrated_delta_recovers_the_band_people_use():
    """Within 10% of the known band, and the held-out accuracy beats delta 0 (where no
    "similar" pair can be right)."""
    difference, label = synthetic_pairs(np.random.default_rng(18))
    result = agreement.calibrate_delta(
        difference, label, folds=5, samples=200, rng=np.random.default_rng(0)
    )
    assert result["delta"] == pytest.approx(BAND, rel=0.1)
    assert all(d == pytest.approx(BAND, rel=0.1) for d in result["fold_deltas"])
    zero = np.nanmean(agreement.correct(difference, label, 0.0))
    assert result["accuracy"] > zero + 0.1
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
    curve = result["curve"]
    assert curve[0]["delta"] == 0
    assert curve[0]["accuracy"] == pytest.approx(zero)
    best = max(curve, key=lambda point: point["accuracy"])
    assert best["delta"] == pytest.approx(BAND, abs=0.1)


def test_held_out_accuracy_never_uses_the_pairs_that_chose_delta():
    """Each pair is held out exactly once, and a fold's delta does not move when the labels
    of its own held-out pairs are changed (it is chosen on the other folds only); the
    held-out accuracy is the judgement of each pair by its fold's delta."""
    difference, label = synthetic_pairs(np.random.default_rng(5), n=600)
    result = agreement.calibrate_delta(
        difference, label, folds=4, samples=50, rng=np.random.default_rng(3)
    )
    held_out = np.concatenate(result["test_index"])
    assert sorted(held_out) == list(range(600))
    for fold, part in enumerate(result["test_index"]):
        scrambled = label.copy()
        scrambled[part] = "similar"  # the held-out pairs' labels, all changed
        again = agreement.calibrate_delta(
            difference, scrambled, folds=4, samples=50, rng=np.random.default_rng(3)
        )
        assert again["fold_deltas"][fold] == result["fold_deltas"][fold]
        assert again["fold_deltas"][fold] == agreement.best_delta(
            np.delete(difference, part), np.delete(label, part)
        )
    right = sum(
        np.nansum(agreement.correct(difference[part], label[part], delta))
        for part, delta in zip(result["test_index"], result["fold_deltas"], strict=True)
    )
    assert result["accuracy"] == pytest.approx(right / 600)


def test_too_few_pairs_give_no_calibration():
    result = agreement.calibrate_delta(
        np.array([0.1]), np.array(["a"], dtype=object), samples=10, rng=np.random.default_rng(0)
    )
    assert np.isnan(result["delta"])
    assert result["folds"] == 0
