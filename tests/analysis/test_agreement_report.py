"""``agreement_report`` end to end: votes through the API, a real scoring run on a real
worker, and the report checked against an independent computation from the raw rows."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient
from scipy import optimize, stats
from scipy.stats import norm

from annotation.models import Image, Pair, Study, Vote
from scoring.models import Score
from tests.annotation.sessions import post_vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# How good each demo condition looks to the simulated annotators (reference 0).
QUALITY = {
    "original": 1.5, "sharpen-a0.8": 0.8, "contrast-1.2": 0.4, "": 0.0, "noise-s6": -0.3,
    "blur-s1.0": -0.6, "jpeg-q30": -0.8, "contrast-0.6": -1.0, "sharpen-a4.0": -1.2,
    "noise-s20": -1.8, "blur-s2.5": -2.2, "jpeg-q8": -2.5, "gold-decoy": -9.0,
    "worked-example": -9.0,  # the instructions' example decoy (in no pair)
}  # fmt: skip


def annotate(study: Study, rng: np.random.Generator) -> int:
    """Honest annotators (Thurstone noise on QUALITY) answer until the study is done;
    returns how many counted and gold trials they answered."""
    quality = {
        f"/media/{image.file}": QUALITY["" if image.role == "reference" else image.condition]
        for image in Image.objects.filter(scene__study=study)
    }
    api, answered = APIClient(), 0
    for n in range(200):
        token = api.post(
            f"/api/v1/studies/{study.slug}/sessions", {"participant_id": f"p{n}"}, format="json"
        ).json()["token"]
        before = answered
        while (trial := api.get(f"/api/v1/sessions/{token}/next-trial")).status_code == 200:
            images = trial.json()["images"]
            perceived = quality[images["left"]] - quality[images["right"]] + rng.normal()
            choice = "similar" if abs(perceived) < 0.2 else "left" if perceived > 0 else "right"
            body = {"trial_id": trial.json()["trial_id"], "choice": choice, "response_ms": 1500}
            assert post_vote(api, token, body).status_code == 201
            answered += not trial.json()["practice"]
        if answered == before:
            return answered
    raise AssertionError("the study never ran out of trials")


def independent_agreement(study: Study, metric: str) -> dict:
    """Accuracy (delta 0), 2AFC and mean per-scene SRCC of one higher-is-better FR metric,
    from the raw votes and scores, written without the platform's analysis code."""
    references = {
        image.scene_id: image.id
        for image in Image.objects.filter(scene__study=study, role="reference")
    }
    values = {
        score.image_id: score.value
        for score in Score.objects.filter(metric=metric, image__scene__study=study)
        if score.reference_id == references[score.image.scene_id]
    }
    right, right_2afc, scenes = [], [], {}
    for pair in Pair.objects.filter(study=study, gold_answer=""):
        counts = Counter(
            Vote.objects.filter(pair=pair, kind="label").values_list("preferred", flat=True)
        )
        ranked = counts.most_common()
        scene = scenes.setdefault(pair.scene_id, {"pairs": [], "images": set()})
        scene["pairs"].append((pair.image_a_id, pair.image_b_id, counts))
        scene["images"] |= {pair.image_a_id, pair.image_b_id}
        if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            continue  # no majority
        label = ranked[0][0]
        difference = values[pair.image_a_id] - values[pair.image_b_id]
        right.append(
            difference > 0 if label == "a" else difference < 0 if label == "b" else difference == 0
        )
        if label != "similar":
            right_2afc.append(difference > 0 if label == "a" else difference < 0)
    srccs = []
    for scene in scenes.values():
        images = sorted(scene["images"])
        index = {image: i for i, image in enumerate(images)}
        wins = np.zeros((len(images), len(images)))
        for a, b, counts in scene["pairs"]:
            wins[index[a], index[b]] += counts["a"] + counts["similar"]
            wins[index[b], index[a]] += counts["b"] + counts["similar"]

        def negative(s, wins=wins):
            d = s[:, None] - s[None, :]
            return -(np.sum(wins * norm.logcdf(d)) - 0.5 * np.sum(s**2))

        def slope(s, wins=wins):
            d = s[:, None] - s[None, :]
            weighted = wins * np.exp(norm.logpdf(d) - norm.logcdf(d))
            return -(weighted.sum(axis=1) - weighted.sum(axis=0) - s)

        fitted = optimize.minimize(
            negative, np.zeros(len(images)), jac=slope, method="BFGS", options={"gtol": 1e-9}
        ).x
        # Images with the same votes tie exactly; the optimiser's last digits do not, so
        # scores closer than its precision share one rank.
        order = np.argsort(fitted)
        tied = np.concatenate([[0], np.cumsum(np.diff(fitted[order]) > 1e-6)])
        fitted[order] = tied
        srccs.append(stats.spearmanr([values[i] for i in images], fitted).statistic)
    return {
        "n_pairs": len(right),
        "accuracy": float(np.mean(right)),
        "accuracy_2afc": float(np.mean(right_2afc)),
        "srcc": float(np.mean(srccs)),
    }


def test_agreement_of_psnr_and_ssim_on_the_demo_equals_an_independent_computation(
    manage, celery_worker, tmp_path
):
    assert manage("build_demo").returncode == 0
    rng = np.random.default_rng(11)
    for slug in ("demo", "demo-pairwise"):
        assert annotate(Study.objects.get(slug=slug), rng) > 0
    scored = manage(
        "score_study", "demo*", "--metrics", "psnr,ssim", "--wait", "--timeout", "300",
        env_extra={"IQA_SCORING_QUEUE": celery_worker.queue}, timeout=400,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr

    # A glob selects both demo studies; a bare slug is one study (below).
    done = manage("agreement_report", "demo*", "--json")
    assert done.returncode == 0, done.stderr
    reports = {report["study"]: report for report in json.loads(done.stdout)}
    assert set(reports) == {"demo", "demo-pairwise"}
    for slug, report in reports.items():
        study = Study.objects.get(slug=slug)
        assert report["exclusions"] == []
        rows = {(r["metric"], r["subset"]): r for r in report["agreement"] if r["delta"] == 0}
        for metric in ("psnr", "ssim"):
            expected = independent_agreement(study, metric)
            whole = rows[(metric, "all")]
            assert whole["n_pairs"] == expected["n_pairs"] > 0
            assert whole["accuracy"] == pytest.approx(expected["accuracy"])
            assert whole["accuracy_2afc"] == pytest.approx(expected["accuracy_2afc"])
            assert whole["srcc"] == pytest.approx(expected["srcc"], abs=1e-6)
            assert whole["ci_low"] <= whole["accuracy"] <= whole["ci_high"]
        if slug == "demo":
            n_outcomes = sum(
                rows[("psnr", s)]["n_pairs"] for s in ("ref<test", "ref=test", "ref>test")
            )
            assert n_outcomes == rows[("psnr", "all")]["n_pairs"]

    # The export carries the same agreement and the scaled images.
    exported = manage("export_study", "demo", "--out", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    table = pd.read_csv(tmp_path / "out" / "agreement.csv")
    whole = table[(table["subset"] == "all") & (table["delta"] == 0)].set_index("metric")
    rows = {r["metric"]: r for r in reports["demo"]["agreement"] if r["subset"] == "all"}
    for metric in ("psnr", "ssim"):
        assert whole.at[metric, "accuracy"] == pytest.approx(rows[metric]["accuracy"])
        assert whole.at[metric, "ci_low"] == pytest.approx(rows[metric]["ci_low"])
    images = pd.read_csv(tmp_path / "out" / "image_scores.csv")
    assert len(images) == 4 * 12  # every compared image of the four scenes
    assert images.groupby("scene")["thurstone"].sum().abs().max() < 1e-6
    assert (
        images.groupby("scene")["thurstone_0_100"].agg(["min", "max"]).values.tolist()
        == [[0.0, 100.0]] * 4
    )
    assert (images["ci_low"] <= images["thurstone"]).all()

    text = manage("agreement_report", "demo", "demo-pairwise")
    assert text.returncode == 0, text.stderr
    for slug in ("demo", "demo-pairwise"):
        assert f"Study {slug} (" in text.stdout
    one = manage("agreement_report", "demo", "--json")
    assert [report["study"] for report in json.loads(one.stdout)] == ["demo"]
    assert "ref<test (n=" in text.stdout
    assert "Paired bootstrap test against the best metric" in text.stdout
    # Issue 18: the tie bands chosen from the demo's data, saved to its settings.
    calibrated = manage("agreement_report", "demo", "--calibrate-delta", "--save", "--json")
    assert calibrated.returncode == 0, calibrated.stderr
    (report,) = json.loads(calibrated.stdout)
    chosen = {row["metric"]: row["delta"] for row in report["delta_calibration"]}
    assert set(chosen) == {"psnr", "ssim"}
    assert set(report["delta_curves"]) == {"psnr", "ssim"}
    assert Study.objects.get(slug="demo").metric_deltas == pytest.approx(chosen)
    missing = manage("agreement_report", "nope")
    assert missing.returncode == 1
    assert "no study 'nope'" in missing.stderr
