"""Fewer votes for the same result: active sampling against uniform on SRIQA-Bench-shaped
scenes, and stopping when decided on DiffIQA-like crowds, through the real assignment
code (``services.trial_next`` / ``services.vote_submit`` on PostgreSQL, the plans run by
the real task, eagerly in this process).

    .venv/bin/python bench/active_sampling.py [--seeds 20] [--scenes 5] [--part both]
        [--smoke]

Scaled designs: each seed draws ``--scenes`` of SRIQA-Bench's 100 scenes (latent values
from its published per-image scores, ``tests/data/sriqa_mos.txt``, score / 100 x 3 as
``tests/analysis/coverage_simulation.py``), all 55 pairs, a budget of 10 votes per pair.
Simulated observers answer by the Thurstone model with a tie threshold (about 10%
"similar"), one after another, each session 50 trials (a crowd: no one sees every
pair). After every 11 votes per scene the tie model is fitted to each scene's votes
(``scaling.fit_ties``): the median within-scene SRCC and the mean RMSE against the
latent values. Printed: for each policy the votes per scene at which the median SRCC
first reaches 0.95, and at which active sampling reaches the RMSE uniform ends with
(linear between checkpoints), with the ratio and a bootstrap interval over seeds; the
accuracy at the full budget; the Laplace intervals' coverage under active sampling.

Majority labels: pairs whose first two of three votes agree about 60% of the time (a
latent difference and the same observers, about 16% "similar"); each pair's answers are
drawn once and given in order to both runs, with and without ``stop_when_decided``:
votes saved and the share of pairs whose labels agree (must be 100%).

It needs PostgreSQL on 127.0.0.1:5432 (``make services``); a scratch database
``--database`` (``iqa_bench_active``) is dropped and created.
"""

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._synthetic import database_url, recreate  # noqa: E402

TAU = 0.18  # about 10% "similar" at SRIQA-Bench's differences
SESSION_TRIALS = 50  # a crowd worker's session: many people, each a part of the pairs
TARGET_SRCC = 0.95


def setup(database: str) -> None:
    recreate(database)
    os.environ["DATABASE_URL"] = database_url(database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import logging

    import analysis.tasks  # noqa: F401  (registers analysis.sampling_plan here)

    logging.getLogger("celery").setLevel(logging.WARNING)
    from config.celery import app

    app.conf.task_always_eager = True  # the plans run in this process, as a worker runs them


def make_images(scene, prefix: str, n: int) -> list:
    """``n`` image rows of ``scene`` (no files: the services never read them)."""
    import hashlib

    from annotation.models import Image

    return Image.objects.bulk_create([
        Image(scene=scene, name=f"{prefix}/m{i}.png", role="test", condition=f"m{i}",
              sha256=hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest(),
              file=f"images/00/00/{prefix}-{i}.png", width=64, height=48, format="PNG",
              size_bytes=1)
        for i in range(n)
    ])  # fmt: skip


def crowd(study, preferred_for) -> int:
    """Sessions one after another, each answering its trials until it gets none, until a
    new session gets none: ``preferred_for(trial row)`` gives each answer ("a", "similar"
    or "b"; the row has ``a_on_left``, ``pair_id``, ``pair__image_a``, ``pair__image_b``).
    Returns the votes given."""
    from annotation import services
    from annotation.models import Trial

    given = 0
    while True:
        token = services.session_open(study_slug=study.slug).session.token
        trial = services.trial_next(token=token)
        if trial is None:
            return given
        while trial is not None:
            row = Trial.objects.filter(pk=trial.trial_id).values(
                "a_on_left", "pair_id", "pair__image_a", "pair__image_b"
            )[0]
            choice = choice_for(preferred_for(row), row["a_on_left"])
            services.vote_submit(token=token, trial_id=trial.trial_id, choice=choice)
            given += 1
            trial = services.trial_next(token=token)


def make_study(slug: str, latent: np.ndarray, *, sampling: str, every: int, votes: int):
    """A live pairwise study: one scene per row of ``latent``; returns (study, the latent
    value of each image id)."""
    from annotation.models import Pair, Scene, Study
    from annotation.services import sampling as policy

    study = Study.objects.create(
        slug=slug, design="pairwise", votes_per_pair=votes, status="live", practice_trials=0,
        trials_per_session=SESSION_TRIALS, min_response_ms=0, sampling=sampling,
        sampling_every=every, hold_seconds=86_400, lease_seconds=86_400,
    )  # fmt: skip
    value = {}
    for s, row in enumerate(latent):
        scene = Scene.objects.create(study=study, name=f"s{s}")
        images = make_images(scene, f"{slug}-s{s}", len(row))
        value.update({image.pk: float(v) for image, v in zip(images, row, strict=True)})
        Pair.objects.bulk_create([
            Pair(study=study, scene=scene, image_a=a, image_b=b,
                 target_votes=policy.initial_target(study))
            for k, a in enumerate(images) for b in images[k + 1:]
        ])  # fmt: skip
    return study, value


def answer(rng, d: float, tau: float = TAU) -> str:
    """ "a", "similar" or "b" for a latent difference a - b (Thurstone with ties)."""
    perceived = d + rng.standard_normal()
    return "a" if perceived > tau else "b" if perceived < -tau else "similar"


def choice_for(preferred: str, a_on_left: bool) -> str:
    if preferred == "similar":
        return "similar"
    return "left" if (preferred == "a") == a_on_left else "right"


def scene_fit(study, value: dict) -> tuple[float, float, float]:
    """Median within-scene SRCC and RMSE of the tie model against the latent values, and
    the Laplace 95% intervals' coverage."""
    from scipy.stats import spearmanr

    from analysis import scaling
    from analysis.selectors import scene_pair_counts

    srcc, rmse, covered, total = [], [], 0, 0
    for scene_id in study.scenes.values_list("pk", flat=True):
        pairs = scene_pair_counts(scene_id)
        ids = np.unique(np.concatenate([pairs["image_a"], pairs["image_b"]]))
        i, j = np.searchsorted(ids, pairs["image_a"]), np.searchsorted(ids, pairs["image_b"])
        wins, ties = scaling.tie_count_matrices(
            np.zeros(len(pairs), dtype=int), i, j, pairs["n_a"].to_numpy(),
            pairs["n_similar"].to_numpy(), pairs["n_b"].to_numpy(), 1, len(ids),
        )  # fmt: skip
        scores, tau = scaling.fit_ties(wins[0], ties[0], "thurstone-ties")
        low, high = scaling.tie_intervals(wins[0], ties[0], "thurstone-ties", scores, tau)
        truth = np.array([value[k] for k in ids])
        truth = truth - truth.mean()
        srcc.append(spearmanr(scores, truth).statistic)
        rmse.append(float(np.sqrt(np.mean((scores - truth) ** 2))))
        covered += int(((low <= truth) & (truth <= high)).sum())
        total += len(truth)
    return float(np.median(srcc)), float(np.mean(rmse)), covered / total


def run_scaled(seed: int, latent: np.ndarray, sampling: str, every: int, votes: int):
    """Checkpoints (votes per scene, median SRCC, RMSE), the final coverage, and each
    pair's (latent difference, votes)."""
    rng = np.random.default_rng(seed)
    study, value = make_study(f"{sampling}-{seed}", latent, sampling=sampling, every=every,
                              votes=votes)  # fmt: skip
    n_scenes, step = len(latent), 11
    checkpoints, given = [], 0

    def preferred_for(row) -> str:
        nonlocal given
        if given and given % (step * n_scenes) == 0:  # the votes so far, before this one
            checkpoints.append((given / n_scenes, *scene_fit(study, value)[:2]))
        given += 1
        return answer(rng, value[row["pair__image_a"]] - value[row["pair__image_b"]])

    crowd(study, preferred_for)
    checkpoints.append((given / n_scenes, *scene_fit(study, value)[:2]))
    coverage = scene_fit(study, value)[2]
    from annotation.models import Vote

    per_pair = Counter(Vote.objects.filter(pair__study=study).values_list("pair_id", flat=True))
    spread = [
        (abs(value[a] - value[b]), per_pair[pk])
        for pk, a, b in study.pairs.values_list("pk", "image_a", "image_b")
    ]
    return checkpoints, coverage, spread


BANDS = ((0.0, 0.3), (0.3, 1.0), (1.0, 2.0), (2.0, 3.1))


def spread_line(spread: list[tuple[float, int]]) -> str:
    """Mean votes a pair got, by the latent difference of its images."""
    d, n = np.array(spread, dtype=float).T
    cells = [
        f"{low:g}-{high:g}: {n[(d >= low) & (d < high)].mean():.1f}"
        for low, high in BANDS
        if ((d >= low) & (d < high)).any()
    ]
    return "votes a pair got by the latent difference of its images, " + ", ".join(cells)


def votes_to_reach(checkpoints, column: int, target: float, *, below: bool = False) -> float:
    """Votes per scene at which checkpoint ``column`` (1: median SRCC, 2: RMSE) first
    reaches ``target`` (from below, or with ``below`` from above), linear between
    checkpoints; NaN if it never does."""
    previous = None
    for row in checkpoints:
        votes, value = row[0], row[column]
        if (value <= target) if below else (value >= target):
            if previous is None or value == previous[1]:
                return votes
            v0, x0 = previous
            return v0 + (target - x0) / (value - x0) * (votes - v0)
        previous = (votes, value)
    return float("nan")


def ratio_line(name: str, active: np.ndarray, uniform: np.ndarray) -> str:
    """Active's votes over uniform's at equal accuracy, over the seeds where both reach
    it, with a 95% percentile bootstrap over seeds."""
    both = np.isfinite(active) & np.isfinite(uniform)
    if not both.any():
        return f"{name}: not reached by both policies"
    a, u = active[both], uniform[both]
    draws = np.random.default_rng(0).integers(0, len(a), size=(2000, len(a)))
    boot = a[draws].mean(axis=1) / u[draws].mean(axis=1)
    ratio = a.mean() / u.mean()
    return (
        f"{name}: uniform {u.mean():.0f}, active {a.mean():.0f} votes/scene (mean over "
        f"{both.sum()} seeds reaching it); active / uniform {ratio:.2f} (95% bootstrap "
        f"{np.percentile(boot, 2.5):.2f}-{np.percentile(boot, 97.5):.2f}): "
        f"{1 - ratio:.0%} fewer votes"
    )


def run_labels(seed: int, n_pairs: int, stop: bool) -> tuple[int, dict]:
    """Votes given and each pair's label, three votes a pair, with or without stopping."""
    from annotation.aggregation import majority
    from annotation.models import Pair, Scene, Study, Vote

    rng = np.random.default_rng(1000 + seed)
    study = Study.objects.create(
        slug=f"labels-{seed}-{int(stop)}", design="ref-vs-test", votes_per_pair=3,
        status="live", practice_trials=0, trials_per_session=100_000, min_response_ms=0,
        stop_when_decided=stop, hold_seconds=86_400, lease_seconds=86_400,
    )  # fmt: skip
    scene = Scene.objects.create(study=study, name="s")
    images = make_images(scene, study.slug, 2 * n_pairs)
    pairs = Pair.objects.bulk_create([
        Pair(study=study, scene=scene, image_a=images[2 * k], image_b=images[2 * k + 1],
             target_votes=3)
        for k in range(n_pairs)
    ])  # fmt: skip
    # Each pair's answers, drawn once (same seed both runs): a latent difference from
    # N(0, 1.4^2) and a tie band of 0.35 give about 60% first-two agreement (DiffIQA's).
    planned = {}
    for k in range(len(pairs)):
        d = rng.normal(0.0, 1.4)
        planned[k] = [answer(rng, d, 0.35) for _ in range(3)]
    index = {pair.pk: k for k, pair in enumerate(pairs)}

    def preferred_for(row) -> str:
        done = Vote.objects.filter(pair_id=row["pair_id"]).count()
        return planned[index[row["pair_id"]]][done]

    given = crowd(study, preferred_for)
    labels = {}
    for pair in pairs:
        got = list(Vote.objects.filter(pair=pair).values_list("preferred", flat=True))
        n = [np.array([got.count(answer)]) for answer in ("a", "similar", "b")]
        labels[index[pair.pk]] = majority(*n)[0]
    agree = np.mean([p[0] == p[1] for p in planned.values()])
    return given, labels, agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--scenes", type=int, default=5, help="SRIQA-Bench scenes per seed")
    parser.add_argument("--votes-per-pair", type=int, default=10, help="the budget per pair")
    parser.add_argument("--every", type=int, default=10, help="sampling_every")
    parser.add_argument("--label-pairs", type=int, default=300)
    parser.add_argument("--database", default="iqa_bench_active")
    parser.add_argument("--part", choices=["scaled", "labels", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 scenes, 3 votes/pair")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.scenes, args.votes_per_pair, args.label_pairs = 1, 2, 3, 20
    setup(args.database)
    from tests.analysis.coverage_simulation import sriqa_latent

    latent_all = sriqa_latent()
    started = time.perf_counter()
    if args.part != "labels":
        scaled(args, latent_all)
    if args.part != "scaled":
        labels(args)
    print(f"({time.perf_counter() - started:.0f} s)")


def scaled(args, latent_all: np.ndarray) -> None:
    """The scaled designs' part: uniform against active on SRIQA-Bench scenes."""
    curves = {"uniform": [], "active": []}
    coverage, spread = [], []
    print(
        f"scaled designs: {args.seeds} seeds x {args.scenes} SRIQA-Bench scenes (11 images, "
        f"55 pairs), budget {args.votes_per_pair} votes/pair, sampling_every {args.every}"
    )
    for seed in range(args.seeds):
        scenes = np.random.default_rng(seed).choice(len(latent_all), args.scenes, replace=False)
        row = []
        for policy in ("uniform", "active"):
            checkpoints, covered, pairs = run_scaled(
                seed, latent_all[scenes], policy, args.every, args.votes_per_pair
            )
            curves[policy].append(checkpoints)
            if policy == "active":
                coverage.append(covered)
                spread.extend(pairs)
            votes, srcc, rmse = checkpoints[-1]
            row.append(f"{policy} median SRCC {srcc:.3f} RMSE {rmse:.3f}")
        print(f"  seed {seed}, at {votes:.0f} votes/scene: " + "; ".join(row), flush=True)
    reach = {
        policy: np.array([votes_to_reach(c, 1, TARGET_SRCC) for c in curves[policy]])
        for policy in curves
    }
    print(ratio_line(f"median SRCC {TARGET_SRCC}", reach["active"], reach["uniform"]))
    # Equal RMSE: what uniform reaches with the whole budget, and when active reaches it.
    budget = np.array([c[-1][0] for c in curves["uniform"]])
    goal = [c[-1][2] for c in curves["uniform"]]
    active_rmse = np.array(
        [votes_to_reach(c, 2, g, below=True) for c, g in zip(curves["active"], goal, strict=True)]
    )
    print(ratio_line("uniform's final RMSE", active_rmse, budget))
    for policy in ("uniform", "active"):
        last = np.array([c[-1][1:] for c in curves[policy]], dtype=float)
        print(
            f"at the full budget, {policy}: median SRCC {np.median(last[:, 0]):.3f}, "
            f"RMSE {last[:, 1].mean():.3f} (means over seeds)"
        )
    print(f"active, {spread_line(spread)}")
    low, high = np.min(coverage), np.max(coverage)
    print(
        "Laplace 95% intervals under active sampling cover the latent value "
        f"{np.mean(coverage):.1%} (seeds {low:.1%}-{high:.1%})"
    )


def labels(args) -> None:
    """The majority labels' part: stopping when decided against every vote."""
    full, stopped, same, agreement = 0, 0, 0, []
    for seed in range(args.seeds):
        n_full, labels_full, agree = run_labels(seed, args.label_pairs, stop=False)
        n_stop, labels_stop, _ = run_labels(seed, args.label_pairs, stop=True)
        full, stopped = full + n_full, stopped + n_stop
        same += sum(labels_full[k] == labels_stop[k] for k in labels_full)
        agreement.append(agree)
    pairs = args.seeds * args.label_pairs
    print(
        f"majority labels: {pairs} pairs, 3 votes, first two agree on "
        f"{np.mean(agreement):.0%}: {full} votes uniform, {stopped} stopping when decided "
        f"({1 - stopped / full:.1%} saved); labels identical on {same / pairs:.1%} of pairs"
    )


if __name__ == "__main__":
    main()
