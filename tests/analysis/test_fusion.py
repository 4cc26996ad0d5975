"""The fusion metric (``analysis/fusion.py``) on simulated people whose rule is known:
it finds a mixture of two metrics, it beats every single metric out of sample when
people mix them, and it does not beat the one metric people follow (no leakage)."""

import numpy as np
import pytest

from analysis import agreement, fusion
from annotation import aggregation


def simulate(
    weights: list[float],
    *,
    noise_metrics: int = 1,
    scenes: int = 120,
    per_scene: int = 6,
    votes: int = 5,
    sharpness: float = 3.0,
    band: float = 0.6,
    seed: int = 0,
) -> fusion.FusionData:
    """Every pair of ``per_scene`` images in each scene, ``votes`` votes each. Each
    image has independent standard normal scores on ``len(weights) + noise_metrics``
    metrics. People see utility u = weights . scores and answer by the symmetric
    ordinal logit: P(a) = sigmoid(s (u_a - u_b) - band), P(b) = sigmoid(s (u_b - u_a)
    - band), and "similar" otherwise."""
    rng = np.random.default_rng(seed)
    n_metrics = len(weights) + noise_metrics
    values = rng.standard_normal((scenes * per_scene, n_metrics))
    utility = values[:, : len(weights)] @ np.asarray(weights)
    first, second = np.triu_indices(per_scene, 1)
    offsets = np.arange(scenes)[:, None] * per_scene
    a, b = (offsets + first).ravel(), (offsets + second).ravel()
    groups = np.repeat(np.arange(scenes), len(first))
    logit = sharpness * (utility[a] - utility[b])
    p_a = 1 / (1 + np.exp(band - logit))
    p_b = 1 / (1 + np.exp(band + logit))
    p = np.column_stack([p_a, 1 - p_a - p_b, p_b])
    counts = np.array([rng.multinomial(votes, row) for row in p])
    majority = aggregation.majority(counts[:, 0], counts[:, 1], counts[:, 2])
    return fusion.FusionData(
        metrics=[f"m{j}" for j in range(n_metrics)],
        difference=values[a] - values[b],
        counts=counts.astype(np.float64),
        label=agreement.label_codes(np.asarray(majority, dtype=object)),
        groups=groups,
        lower_better={},
    )


def unit_weights(result: dict) -> dict[str, float]:
    """The fitted weights per unit of each metric's difference, summing to 1 in size."""
    unit = {row["metric"]: row["weight"] / row["scale"] for row in result["coefficients"]}
    total = sum(abs(v) for v in unit.values())
    return {metric: value / total for metric, value in unit.items()}


def evaluate(data: fusion.FusionData) -> dict:
    return fusion.evaluate(data, samples=1000, rng=np.random.default_rng(0))


def test_people_who_mix_two_metrics_are_matched_by_the_mixture_and_it_beats_each_metric():
    result = evaluate(simulate([0.7, 0.3], noise_metrics=1))
    assert result["status"] == "ok"
    weights = unit_weights(result)
    # The mixture's weights, within 0.05 of each; the unused metric near 0.
    assert weights["m0"] == pytest.approx(0.7, abs=0.05)
    assert weights["m1"] == pytest.approx(0.3, abs=0.05)
    assert abs(weights["m2"]) < 0.05
    fused = result["rows"][0]
    for metric, accuracy in result["single_accuracy"].items():
        assert fused["accuracy"] > accuracy, metric
    best = result["best_single"]
    assert best["metric"] == "m0"
    assert best["n_pairs"] == fused["n_pairs"] == result["n_pairs"]
    # Better than the best single metric on the same pairs, beyond the paired interval.
    assert best["difference"] > 0.03
    assert best["ci_low"] > 0
    assert best["p_value"] < 0.01
    # The weights are stable over the folds: every fold gives m0 and m1 their signs.
    by_metric = {row["metric"]: row for row in result["coefficients"]}
    assert by_metric["m0"]["same_sign"] == by_metric["m1"]["same_sign"] == 1.0
    assert by_metric["m0"]["fold_min"] > 0
    assert by_metric["m1"]["fold_min"] > 0


@pytest.mark.parametrize("noise_metrics", [2, 20])
def test_people_who_follow_one_metric_are_not_matched_better_than_by_that_metric(noise_metrics):
    """No leakage: with 20 metrics of pure noise beside it, a model that saw its test
    scenes would fit their noise; out of sample it cannot beat the metric people follow
    by more than its interval."""
    result = evaluate(simulate([1.0], noise_metrics=noise_metrics, seed=noise_metrics))
    fused, best = result["rows"][0], result["best_single"]
    assert best["metric"] == "m0"
    half_width = (fused["ci_high"] - fused["ci_low"]) / 2
    assert fused["accuracy"] - best["accuracy"] <= half_width
    assert best["ci_low"] <= 0  # not significantly better
    assert unit_weights(result)["m0"] > 0.85


def test_people_who_follow_no_metric_are_predicted_at_chance_out_of_sample():
    """Labels independent of 31 noise metrics on 600 pairs: fitted on all pairs, the model
    gets 63% of the clear pairs right (it fits the noise); judged out of sample, its 2AFC
    interval holds 50%. A fold that leaked its test scenes would not."""
    data = simulate([0.0], noise_metrics=30, scenes=40, sharpness=0.0, seed=3)
    result = evaluate(data)
    whole = result["rows"][0]
    assert whole["ci_2afc_low"] <= 0.5 <= whole["ci_2afc_high"]
    enter, _, rows = fusion.usable(data)
    x = data.difference[np.ix_(rows, enter)]
    fitted = fusion.fit(x, data.counts[rows], data.groups[rows])
    in_sample = agreement.correct_2afc_codes(fitted["train_z"], data.label[rows])
    assert np.nanmean(in_sample) > whole["ci_2afc_high"]  # what a leak would report


def test_no_scene_is_in_both_a_training_part_and_its_test_part(monkeypatch):
    data = simulate([0.7, 0.3], scenes=40)
    fits, splits = [], []
    real_fit, real_folds = fusion.fit, fusion._group_folds

    def spying_fit(x, counts, groups):
        fits.append(set(np.unique(groups).tolist()))
        return real_fit(x, counts, groups)

    def spying_folds(k, x, groups):
        for train, test in real_folds(k, x, groups):
            splits.append((set(groups[train].tolist()), set(groups[test].tolist())))
            yield train, test

    monkeypatch.setattr(fusion, "fit", spying_fit)
    monkeypatch.setattr(fusion, "_group_folds", spying_folds)
    result = fusion.evaluate(data, samples=100, rng=np.random.default_rng(0))
    assert result["folds"] == 5
    outer = fits[:5]
    every = set(range(40))
    # Each outer training part leaves out a set of whole scenes, and each scene is left
    # out exactly once: it is predicted by the one model that never saw it.
    left_out = [every - trained for trained in outer]
    assert sorted(s for part in left_out for s in part) == sorted(every)
    # Every split, outer and inner (C chosen inside), keeps scenes whole.
    assert splits
    assert all(not (train & test) for train, test in splits)
    assert fits[5] == every  # the final model, on all pairs


def test_swapping_every_pair_s_sides_changes_nothing():
    data = simulate([0.6, 0.4], scenes=40)
    turned = fusion.FusionData(
        metrics=data.metrics,
        difference=-data.difference,
        counts=data.counts[:, ::-1].copy(),
        label=np.where(data.label == 0, 2, np.where(data.label == 2, 0, data.label)).astype(
            np.int8
        ),
        groups=data.groups,
        lower_better={},
    )
    one, other = evaluate(data), evaluate(turned)
    assert one["rows"][0]["accuracy"] == other["rows"][0]["accuracy"]
    for mine, theirs in zip(one["coefficients"], other["coefficients"], strict=True):
        assert mine["weight"] == pytest.approx(theirs["weight"], rel=1e-4, abs=1e-6)


def test_too_few_labelled_pairs_give_no_number():
    data = simulate([0.7, 0.3], scenes=4)  # 60 pairs in 4 scenes, some without a majority
    result = evaluate(data)
    labelled = int((data.label >= 0).sum())
    assert result["status"] == fusion.NOT_ENOUGH
    assert result["message"].startswith(f"not enough labelled pairs: {labelled} pairs in 4 ")
    assert "rows" not in result
    assert "coefficients" not in result


def test_one_metric_is_nothing_to_fuse():
    data = simulate([1.0], noise_metrics=0)
    assert evaluate(data)["status"] == fusion.TOO_FEW_METRICS


def test_missing_scores_leave_a_sparse_metric_out_and_drop_the_pairs_that_lack_one():
    data = simulate([0.7, 0.3], noise_metrics=1)
    difference = data.difference.copy()
    rng = np.random.default_rng(1)
    difference[rng.random(len(difference)) < 0.5, 2] = np.nan  # m2 on half the pairs
    difference[:7, 1] = np.nan  # m1 misses 7 pairs
    result = evaluate(
        fusion.FusionData(metrics=data.metrics, difference=difference, counts=data.counts,
                          label=data.label, groups=data.groups, lower_better={})
    )  # fmt: skip
    (left,) = result["left_out"]
    assert left["metric"] == "m2"
    assert left["coverage"] == pytest.approx(0.5, abs=0.05)
    assert result["metrics"] == ["m0", "m1"]
    labelled = int((data.label >= 0).sum())
    dropped = int((data.label[:7] >= 0).sum())
    assert result["dropped_pairs"] == dropped
    assert result["n_pairs"] == labelled - dropped
    assert result["best_single"]["n_pairs"] == result["n_pairs"]


def test_the_model_file_predicts_what_the_final_fit_predicts():
    data = simulate([0.7, 0.3], noise_metrics=1, scenes=40)
    result = evaluate(data)
    model = fusion.model_file(
        data, result, name="fusion_test", kinds={"m0": "FR", "m1": "NR", "m2": "NR"},
        versions={"m0": "v0", "m1": "v1", "m2": "v2"}, studies=["s"],
    )  # fmt: skip
    assert model["format"] == fusion.FORMAT
    assert model["kind"] == "FR"
    assert [c["metric"] for c in model["components"]] == ["m0", "m1", "m2"]
    # The file's prediction w . d for each pair is the final fit's, made on every pair.
    _, _, rows = fusion.usable(data)
    fitted = fusion.fit(data.difference[rows], data.counts[rows], data.groups[rows])
    np.testing.assert_allclose(fusion.apply(model, data)[rows], fitted["train_z"], rtol=1e-9)
    # Judged on another simulated study of the same people: a transfer row.
    other = fusion.transfer(model, simulate([0.7, 0.3], seed=9, scenes=40), samples=200,
                            rng=np.random.default_rng(0))  # fmt: skip
    assert other["status"] == "ok"
    assert other["accuracy"] > other["best_single"]["accuracy"]
