"""The report as a pure function of a study's data: labels, exclusions, scores, table."""

import numpy as np
import pandas as pd
import pytest

from analysis import scaling
from analysis.quality import Rules
from analysis.render import report_dict, report_text
from analysis.report import study_report
from analysis.selectors import StudyData

# One ref-vs-test scene: reference r (id 1), tests t1..t3 (ids 2..4), a gold decoy (5).
IMAGES = pd.DataFrame(
    [
        (1, "s/r.png", "s", "", "reference", ""),
        (2, "s/t1.png", "s", "blur", "test", ""),
        (3, "s/t2.png", "s", "jpeg", "test", ""),
        (4, "s/t3.png", "s", "noise", "test", ""),
        (5, "s/gold.png", "s", "gold-decoy", "test", "worse"),
    ],
    columns=["image_id", "name", "scene", "condition", "role", "gold"],
)
PAIRS = pd.DataFrame(
    [(10, "s", 2, 1, ""), (11, "s", 3, 1, ""), (12, "s", 4, 1, ""), (13, "s", 5, 1, "b")],
    columns=["pair_id", "scene", "image_a", "image_b", "gold_answer"],
)


def votes_frame(rows: list[tuple]) -> pd.DataFrame:
    sides = {"a": "left", "b": "right", "similar": "similar"}
    return pd.DataFrame(
        [
            {"vote_id": n, "annotator": who, "pair_id": pair, "kind": kind,
             "choice": sides[pref], "preferred": pref, "late": late, "response_ms": 1500,
             "gold_answer": "b" if pair == 13 else ""}
            for n, (who, pair, pref, kind, late) in enumerate(rows)
        ]
    )  # fmt: skip


def study(votes: pd.DataFrame, scores: pd.DataFrame | None = None, **deltas) -> StudyData:
    return StudyData(
        slug="s",
        design="ref-vs-test",
        # The older rules (a rate against its threshold, on any evidence): the default
        # tests need 20 answers, and these annotators give four.
        rules=Rules(test="threshold", correction="none", min_answers=0, min_gold=0),
        deltas=deltas,
        images=IMAGES,
        pairs=PAIRS,
        votes=votes,
        scores=scores if scores is not None else pd.DataFrame(
            columns=["metric", "image_id", "value", "lower_better"]
        ),
    )  # fmt: skip


VOTES = votes_frame(
    [
        # pair 10: a, a, b -> a. u3's answer is late and counts.
        ("u1", 10, "a", "label", False), ("u2", 10, "a", "label", False),
        ("u3", 10, "b", "label", True),
        # pair 11: a, similar, b -> all three differ: no label.
        ("u1", 11, "a", "label", False), ("u2", 11, "similar", "label", False),
        ("u3", 11, "b", "label", False),
        # pair 12: similar, similar, a, plus a practice answer that never counts.
        ("u1", 12, "similar", "label", False), ("u2", 12, "similar", "label", False),
        ("u3", 12, "a", "label", False), ("u1", 12, "b", "practice", False),
        # gold pair: u1, u2 right, "cheat" wrong twice -> excluded; cheat's label vote on
        # pair 10 is then left out.
        ("u1", 13, "b", "gold", False), ("u2", 13, "b", "gold", False),
        ("cheat", 13, "a", "gold", False), ("cheat", 13, "a", "gold", False),
        ("cheat", 10, "b", "label", False),
    ]
)  # fmt: skip


def test_labels_follow_the_protocol_and_the_exclusions():
    report = study_report(study(VOTES), samples=50)
    pairs = report.pairs.set_index("pair_id")
    assert report.excluded["annotator"].tolist() == ["cheat"]
    assert report.excluded["reasons"].iloc[0] == "gold accuracy 0.00 < 0.7 (0/2 gold trials right)"
    assert pairs.loc[10, ["n_votes", "n_a", "n_similar", "n_b"]].tolist() == [3, 2, 0, 1]
    assert pairs.loc[10, "majority"] == "a"
    assert pairs.loc[10, "p_a"] == pytest.approx(2 / 3)
    assert pairs.loc[11, "majority"] == "none"
    assert pairs.loc[11, "p_a"] == pytest.approx(0.5)
    assert pairs.loc[12, ["n_votes", "n_similar"]].tolist() == [3, 2]
    assert pairs.loc[12, "majority"] == "similar"
    assert pairs.loc[12, "p_a"] == pytest.approx((1 + 0.5 * 2) / 3)
    # The gold pair counts its gold answers (excluded annotators' too are left out).
    assert pairs.loc[13, ["is_gold", "n_votes", "n_b"]].tolist() == [True, 2, 2]
    assert report.counts["counted_votes"] == 9
    assert report.counts["labelled_pairs"] == 2


def test_image_scores_are_the_scene_fit():
    """The scene's Thurstone and Bradley-Terry scores equal the fit of its count matrix
    (similar adding to both directions); the gold decoy is not scaled."""
    report = study_report(study(VOTES), samples=200)
    scores = report.image_scores.set_index("image")
    assert sorted(scores.index) == ["s/r.png", "s/t1.png", "s/t2.png", "s/t3.png"]
    # Local order: image ids 1 (r), 2, 3, 4. Pairs (t, r) with counts from the test above.
    counts = np.zeros((4, 4))
    counts[1, 0], counts[0, 1] = 2, 1  # pair 10: t1 preferred twice, r once
    counts[2, 0], counts[0, 2] = 1 + 1, 1 + 1  # pair 11: a, similar, b
    counts[3, 0], counts[0, 3] = 1 + 2, 0 + 2  # pair 12: a once, similar twice
    names = ["s/r.png", "s/t1.png", "s/t2.png", "s/t3.png"]
    for model, column in (("thurstone", "thurstone"), ("bradley-terry", "bradley_terry")):
        assert scores.loc[names, column].to_numpy() == pytest.approx(scaling.fit(counts, model))
    assert scores.loc[names, "thurstone_0_100"].to_numpy() == pytest.approx(
        scaling.scaled_0_100(scaling.fit(counts))
    )
    assert (scores["ci_low"] <= scores["thurstone"]).all()
    assert (scores["thurstone"] <= scores["ci_high"]).all()
    assert scores.loc["s/r.png", "n_votes"] == 9


def test_agreement_table_by_hand():
    """psnr (higher better) and a distance (lower better) on pair 10 (label a: t1 better
    than r) and pair 12 (label similar); pair 11 has no label."""
    scores = pd.DataFrame(
        [("psnr", 1, 50.0, False), ("psnr", 2, 30.0, False), ("psnr", 3, 28.0, False),
         ("psnr", 4, 49.9, False),
         ("dist", 1, 0.0, True), ("dist", 2, -0.2, True), ("dist", 3, 0.4, True),
         ("dist", 4, 0.0, True)],
        columns=["metric", "image_id", "value", "lower_better"],
    )  # fmt: skip
    report = study_report(study(VOTES, scores, psnr=0.5), samples=100)
    table = report.agreement.set_index(["metric", "subset", "delta"])
    # psnr: pair 10 prefers r (30 < 50): wrong; pair 12 differs by 0.1: wrong at delta 0,
    # right within delta 0.5. dist: pair 10 prefers t1 (-0.2 < 0): right; pair 12 ties.
    assert table.loc[("psnr", "all", 0.0), "accuracy"] == 0.0
    assert table.loc[("psnr", "all", 0.5), "accuracy"] == 0.5
    assert table.loc[("dist", "all", 0.0), "accuracy"] == 1.0
    assert table.loc[("dist", "all", 0.0), "n_pairs"] == 2
    assert table.loc[("dist", "all", 0.0), "n_2afc"] == 1
    assert table.loc[("dist", "ref<test", 0.0), ["n_pairs", "accuracy"]].tolist() == [1, 1.0]
    assert table.loc[("dist", "ref=test", 0.0), ["n_pairs", "accuracy"]].tolist() == [1, 1.0]
    assert table.loc[("dist", "ref>test", 0.0), "n_pairs"] == 0
    assert table.loc[("psnr", "condition:blur", 0.0), "n_pairs"] == 1
    assert ("dist", "all", 0.5) not in table.index  # no delta of its own
    # The best metric first, and the paired comparison between the two.
    assert report.agreement["metric"].iloc[0] == "dist"
    comparison = report.comparisons.iloc[0]
    assert (comparison["metric_a"], comparison["metric_b"]) == ("dist", "psnr")
    assert comparison["difference"] == 1.0
    text = report_text(report)
    assert "Excluded annotators (1):\n  cheat: gold accuracy 0.00 < 0.7" in text
    assert "psnr (delta 0.5): 0.500" in text
    data = report_dict(report)
    assert data["exclusions"] == [
        {"annotator": "cheat", "reasons": "gold accuracy 0.00 < 0.7 (0/2 gold trials right)"}
    ]
    assert data["settings"]["metric_deltas"] == {"psnr": 0.5}
    # Counts beside every number, and rows on fewer than 30 pairs marked (all of these).
    assert "psnr (delta 0.5): 0.500 [0.00,1.00] (n=2)!" in text
    assert "0.000 (n=1)!" in text  # psnr's 2AFC, on one pair
    assert data["min_pairs"] == 30
    assert all(row["few_pairs"] for row in data["agreement"] + data["comparisons"])
    assert "-0.400 (n=1 scenes)" in text  # psnr's SRCC, over one scene


def test_the_same_data_give_the_same_report():
    first = study_report(study(VOTES), samples=100, seed=3)
    second = study_report(study(VOTES), samples=100, seed=3)
    pd.testing.assert_frame_equal(first.image_scores, second.image_scores)


def test_the_agreement_intervals_do_not_depend_on_the_image_intervals():
    """agreement_report skips the image intervals and the export draws them: both give
    the same agreement table (two random streams, not one shared)."""
    rng = np.random.default_rng(5)
    images, pairs, rows, scores = [], [], [], []
    for scene in range(4):
        ids = [100 * scene + i for i in range(7)]  # the reference, then six tests
        for i, image in enumerate(ids):
            role = "reference" if i == 0 else "test"
            images.append((image, f"{scene}/{i}.png", str(scene), "", role, ""))
            for metric in ("m1", "m2"):
                scores.append((metric, image, float(rng.normal()), False))
        for image in ids[1:]:
            pairs.append((image, str(scene), image, ids[0], ""))
            for who in range(5):
                rows.append((f"u{who}", image, str(rng.choice(["a", "b", "similar"])), "label"))
    data = StudyData(
        slug="s", design="ref-vs-test", rules=Rules(), deltas={},
        images=pd.DataFrame(images, columns=IMAGES.columns),
        pairs=pd.DataFrame(pairs, columns=PAIRS.columns),
        votes=votes_frame([(*row, False) for row in rows]),
        scores=pd.DataFrame(scores, columns=["metric", "image_id", "value", "lower_better"]),
    )  # fmt: skip
    with_images = study_report(data, samples=200, seed=3)
    without = study_report(data, samples=200, seed=3, image_intervals=False)
    assert with_images.image_scores["ci_low"].notna().all()
    pd.testing.assert_frame_equal(with_images.agreement, without.agreement)
    pd.testing.assert_frame_equal(with_images.comparisons, without.comparisons)


def test_ref_vs_test_subsets_name_the_test_images_conditions_only():
    """Issue 25: every ref-vs-test pair shows the reference, whose condition ("reference")
    made a subset equal to "all" in the report's table, heat map and subset list. The
    conditions are the test images'; in pairwise designs the reference's stays (pairs with
    the original are a subset of their own there)."""
    from analysis.report import pair_subsets

    images = IMAGES.assign(condition=IMAGES["condition"].replace("", "reference"))
    pairs = PAIRS.assign(majority=["a", "none", "similar", "b"])
    subsets = pair_subsets(pairs, images, "ref-vs-test")
    assert "condition:reference" not in subsets.columns
    assert subsets["condition:blur"].tolist() == [True, False, False, False]
    pairwise = pair_subsets(pairs, images, "pairwise")
    assert pairwise["condition:reference"].all()
