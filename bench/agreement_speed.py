"""Agreement report speed: the platform's array code against per-pair Python loops.

A synthetic pairwise study of 1,000,000 votes on 100,000 pairs (1,818 scenes of 11
images and one of 5; 10 votes per pair from 5,000 simulated annotators answering by a
Thurstone model) with 30 metrics (noisy views of the latent quality, half of them
lower-is-better):

- the platform: ``analysis.report.study_report`` on the study's data frames, the whole
  report (quality control, labels, Thurstone and Bradley-Terry per scene, agreement with
  1,000-resample bootstrap intervals for every metric and subset, correlations, paired
  tests); loading the frames from the database is not timed;
- the baseline, in the same run, on a sample of scenes: straightforward per-pair Python
  loops (group the votes, count, take the DiffIQA majority, apply the A-FINE accuracy
  rule per metric) and ``scipy.optimize.minimize`` of the Thurstone objective per scene,
  timed and scaled to the whole study by pairs and scenes.

Both give the same numbers on the sample (checked: accuracies exactly, scores to 1e-4),
then the times and the ratio are printed. Target: at least 20x, and the full report in
under 10 s on this machine.

    .venv/bin/python bench/agreement_speed.py
    .venv/bin/python bench/agreement_speed.py --smoke   # seconds: what the suite runs
"""

import argparse
import dataclasses
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import log_ndtr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from analysis.quality import Rules  # noqa: E402
from analysis.report import study_report  # noqa: E402
from analysis.selectors import StudyData  # noqa: E402

SIMILAR_BAND = 0.05


def synthetic_study(
    *, scenes: int, metrics: int, votes_per_pair: int, annotators: int, seed: int
) -> tuple[StudyData, np.ndarray]:
    """The study's frames and each image's latent quality."""
    rng = np.random.default_rng(seed)
    sizes = [11] * scenes + [5]
    image_scene = np.repeat(np.arange(len(sizes)), sizes)
    latent = rng.normal(size=len(image_scene))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pair_a, pair_b = [], []
    for start, k in zip(starts, sizes, strict=True):
        first, second = np.triu_indices(k, 1)
        pair_a.append(start + first)
        pair_b.append(start + second)
    pair_a, pair_b = np.concatenate(pair_a), np.concatenate(pair_b)
    n_pairs = len(pair_a)
    images = pd.DataFrame(
        {
            "image_id": np.arange(len(image_scene)),
            "name": [f"s{s}/{i}.png" for i, s in enumerate(image_scene)],
            "scene": [f"s{s}" for s in image_scene],
            "condition": [f"method-{i % 11}" for i in range(len(image_scene))],
            "role": "test",
            "gold": "",
        }
    )
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(n_pairs),
            "scene": images["scene"].to_numpy()[pair_a],
            "image_a": pair_a,
            "image_b": pair_b,
            "gold_answer": "",
        }
    )
    vote_pair = np.repeat(np.arange(n_pairs), votes_per_pair)
    perceived = (
        latent[pair_a[vote_pair]] - latent[pair_b[vote_pair]] + rng.normal(size=len(vote_pair))
    )
    preferred = np.where(
        perceived > SIMILAR_BAND, "a", np.where(perceived < -SIMILAR_BAND, "b", "similar")
    )
    a_on_left = rng.random(len(vote_pair)) < 0.5
    choice = np.where(
        preferred == "similar",
        "similar",
        np.where((preferred == "a") == a_on_left, "left", "right"),
    )
    votes = pd.DataFrame(
        {
            "vote_id": np.arange(len(vote_pair)),
            "annotator": np.char.add("u", rng.integers(0, annotators, len(vote_pair)).astype(str)),
            "pair_id": vote_pair,
            "kind": "label",
            "choice": choice,
            "preferred": preferred,
            "late": False,
            "response_ms": rng.lognormal(np.log(1500), 0.4, len(vote_pair)).astype(int),
            "gold_answer": "",
        }
    )
    noise = np.linspace(0.1, 3.0, metrics)
    lower = np.arange(metrics) % 2 == 1
    values = latent[None, :] + rng.normal(size=(metrics, len(latent))) * noise[:, None]
    values[lower] *= -1
    scores = pd.DataFrame(
        {
            "metric": np.repeat([f"metric{m:02d}" for m in range(metrics)], len(latent)),
            "image_id": np.tile(np.arange(len(latent)), metrics),
            "value": values.ravel(),
            "lower_better": np.repeat(lower, len(latent)),
        }
    )
    data = StudyData(
        slug="synthetic", design="pairwise", rules=Rules(), deltas={}, images=images,
        pairs=pairs, votes=votes, scores=scores,
    )  # fmt: skip
    return data, latent


def sample(data: StudyData, scene_names: list[str]) -> StudyData:
    """The study cut down to some scenes (and the votes and scores on them)."""
    pairs = data.pairs[data.pairs["scene"].isin(scene_names)]
    images = data.images[data.images["scene"].isin(scene_names)]
    return StudyData(
        slug="sample", design=data.design, rules=data.rules, deltas={}, images=images,
        pairs=pairs, votes=data.votes[data.votes["pair_id"].isin(pairs["pair_id"])],
        scores=data.scores[data.scores["image_id"].isin(images["image_id"])],
    )  # fmt: skip


def baseline_accuracy(data: StudyData) -> dict[str, float]:
    """Per-pair loops: group votes, count, DiffIQA majority, the A-FINE rule at delta 0."""
    by_pair = defaultdict(list)
    for pair_id, preferred in zip(data.votes["pair_id"], data.votes["preferred"], strict=True):
        by_pair[pair_id].append(preferred)
    values = defaultdict(dict)
    lower = {}
    for metric, image, value, lower_better in data.scores.itertuples(index=False):
        values[metric][image] = value
        lower[metric] = lower_better
    right = defaultdict(int)
    counted = 0
    for pair_id, a, b in zip(
        data.pairs["pair_id"], data.pairs["image_a"], data.pairs["image_b"], strict=True
    ):
        counts = {"a": 0, "similar": 0, "b": 0}
        for answer in by_pair[pair_id]:
            counts[answer] += 1
        ranked = sorted(counts.values(), reverse=True)
        if ranked[0] == 0 or ranked[0] == ranked[1]:
            continue
        label = max(counts, key=counts.get)
        counted += 1
        for metric in values:
            difference = values[metric][a] - values[metric][b]
            if lower[metric]:
                difference = -difference
            if (
                (label == "a" and difference > 0)
                or (label == "b" and difference < 0)
                or (label == "similar" and difference == 0)
            ):
                right[metric] += 1
    return {metric: right[metric] / counted for metric in values}


def baseline_thurstone(data: StudyData) -> dict[int, float]:
    """Per scene: the count matrix by a loop over its pairs, then ``scipy.optimize.minimize``
    of the negative objective (BFGS, scipy's own gradient), as one would write it."""
    out = {}
    by_pair = defaultdict(lambda: [0, 0, 0])
    for pair_id, preferred in zip(data.votes["pair_id"], data.votes["preferred"], strict=True):
        by_pair[pair_id][("a", "similar", "b").index(preferred)] += 1
    for _, scene_pairs in data.pairs.groupby("scene"):
        images = sorted(set(scene_pairs["image_a"]) | set(scene_pairs["image_b"]))
        index = {image: i for i, image in enumerate(images)}
        wins = np.zeros((len(images), len(images)))
        rows = zip(
            scene_pairs["pair_id"], scene_pairs["image_a"], scene_pairs["image_b"], strict=True
        )
        for pair_id, a, b in rows:
            n_a, n_s, n_b = by_pair[pair_id]
            wins[index[a], index[b]] += n_a + n_s
            wins[index[b], index[a]] += n_b + n_s

        def negative(s, wins=wins):
            d = s[:, None] - s[None, :]
            return -(np.sum(wins * log_ndtr(d)) - 0.5 * np.sum(s**2))

        found = optimize.minimize(negative, np.zeros(len(images)), method="BFGS",
                                  options={"gtol": 1e-8})  # fmt: skip
        out.update(zip(images, found.x, strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1818, help="scenes of 11 images")
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--sample-scenes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--smoke", action="store_true", help="20 scenes, 3 metrics: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.metrics, args.sample_scenes, args.samples = 20, 3, 5, 50

    data, _ = synthetic_study(
        scenes=args.scenes, metrics=args.metrics, votes_per_pair=10, annotators=5000, seed=1
    )
    n_pairs, n_votes, n_scenes = len(data.pairs), len(data.votes), data.pairs["scene"].nunique()
    print(f"study: {n_votes:,} votes, {n_pairs:,} pairs, {n_scenes:,} scenes, "
          f"{args.metrics} metrics")  # fmt: skip

    started = time.perf_counter()
    report = study_report(data, samples=args.samples, seed=0, image_intervals=False)
    platform = time.perf_counter() - started
    print(f"platform: full report in {platform:.2f} s ({len(report.agreement)} agreement rows, "
          f"{len(report.comparisons)} paired tests, {report.counts['excluded_annotators']} "
          "annotators excluded)")  # fmt: skip

    # The baseline on a sample of scenes, with the platform's exclusions applied (the
    # baseline implements the counting and the accuracy rule, not quality control).
    names = sorted(data.pairs["scene"].unique())[: args.sample_scenes]
    part = sample(data, names)
    kept = part.votes[~part.votes["annotator"].isin(set(report.excluded["annotator"]))]
    part = dataclasses.replace(part, votes=kept, rules=Rules(None, None, None, None, None))
    started = time.perf_counter()
    accuracy = baseline_accuracy(part)
    loops_pairs = time.perf_counter() - started
    started = time.perf_counter()
    scores = baseline_thurstone(part)
    loops_scenes = time.perf_counter() - started

    checked = study_report(part, samples=10, seed=0, image_intervals=False)
    mine = checked.agreement.query("subset == 'all' and delta == 0").set_index("metric")
    for metric, value in accuracy.items():
        assert mine.at[metric, "accuracy"] == value, (metric, mine.at[metric, "accuracy"], value)
    fitted = checked.image_scores.set_index("image_id")["thurstone"]
    worst = max(abs(fitted[image] - value) for image, value in scores.items())
    assert worst < 1e-4, worst
    n_part = len(part.pairs)
    print(
        f"check: on {len(names)} scenes ({n_part:,} pairs) the loops' accuracies equal the "
        f"platform's for all {len(accuracy)} metrics; Thurstone scores agree to {worst:.1e}"
    )

    baseline = loops_pairs * n_pairs / n_part + loops_scenes * n_scenes / len(names)
    print(
        f"baseline: per-pair loops {loops_pairs:.2f} s and per-scene scipy "
        f"{loops_scenes:.2f} s on the sample; scaled to the study {baseline:.1f} s"
    )
    print(
        f"ratio: {baseline / platform:.1f}x (target >= 20x); full report "
        f"{platform:.2f} s (target < 10 s)"
    )


if __name__ == "__main__":
    main()
