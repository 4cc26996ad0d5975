"""What the report reuses from one computation to the next (the live refresh computes
it every few seconds on the same pairs and scores): the same numbers as computed afresh."""

from itertools import combinations

import numpy as np
import pandas as pd

from analysis import report as report_module
from analysis.quality import Rules
from analysis.report import agreement_tables, labelled_study_pairs, pair_differences, study_report
from analysis.selectors import StudyData


def synthetic(seed: int = 5) -> StudyData:
    """6 scenes of 5 images (two conditions), every pair voted 6 times, 3 metrics with a
    missing score."""
    rng = np.random.default_rng(seed)
    images, pairs, votes = [], [], []
    for s in range(6):
        ids = [s * 10 + i for i in range(5)]
        images += [(i, f"s{s}/{i}.png", f"s{s}", f"c{i % 2}", "test", "") for i in ids]
        for a, b in combinations(ids, 2):
            pairs.append((len(pairs), f"s{s}", a, b, ""))
    quality = {row[0]: rng.normal() for row in images}
    for pair_id, _, a, b, _ in pairs:
        for voter in range(6):
            seen = quality[a] - quality[b] + rng.normal()
            preferred = "a" if seen > 0.3 else "b" if seen < -0.3 else "similar"
            choice = {"a": "left", "b": "right", "similar": "similar"}[preferred]
            votes.append((len(votes), f"u{voter}", pair_id, "label", choice, preferred, False,
                          1500, ""))  # fmt: skip
    scores = [(f"m{m}", i, quality[i] + rng.normal() * (m + 1) * 0.5, m == 2)
              for m in range(3) for i, *_ in images]  # fmt: skip
    return StudyData(
        slug="r", design="pairwise", rules=Rules(), deltas={"m1": 0.4},
        images=pd.DataFrame(images, columns=["image_id", "name", "scene", "condition", "role",
                                             "gold"]),
        pairs=pd.DataFrame(pairs, columns=["pair_id", "scene", "image_a", "image_b",
                                           "gold_answer"]),
        votes=pd.DataFrame(votes, columns=["vote_id", "annotator", "pair_id", "kind", "choice",
                                           "preferred", "late", "response_ms", "gold_answer"]),
        scores=pd.DataFrame(scores[:-1], columns=["metric", "image_id", "value",
                                                  "lower_better"]),
    )  # fmt: skip


def forget() -> None:
    report_module._METRIC_TABLE[:] = [None, None]
    report_module._DIFFERENCES[:] = [None] * 4
    report_module._CORRELATIONS[:] = [None] * 5


def tables(data: StudyData, study_pairs: pd.DataFrame, scaled: pd.DataFrame):
    return agreement_tables(
        study_pairs, data.images, data.scores, scaled, design=data.design, deltas=data.deltas,
        samples=200, rng=np.random.default_rng([0, 1]),
    )  # fmt: skip


def test_tables_after_some_scenes_moved_equal_the_tables_computed_afresh():
    """The scene correlations of the scenes whose human scores did not move are reused;
    the tables equal those of a computation that reuses nothing."""
    data = synthetic()
    forget()
    report = study_report(data, samples=200, image_intervals=False)
    study_pairs = labelled_study_pairs(data.pairs, report.pairs)
    moved = report.image_scores.copy()
    in_s2 = moved["scene"] == "s2"
    moved.loc[in_s2, "thurstone"] = moved.loc[in_s2, "thurstone"].to_numpy()[::-1]
    reused = tables(data, study_pairs, moved)
    forget()
    afresh = tables(data, study_pairs, moved)
    for got, expected in zip(reused, afresh, strict=True):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # (the move shows: the correlations are not the report's)
    before = report.agreement.set_index(["metric", "subset", "delta"])["srcc"]
    after = afresh[0].set_index(["metric", "subset", "delta"])["srcc"]
    assert not np.allclose(before.dropna(), after.reindex(before.index).dropna())


def test_the_shared_differences_are_read_only_and_follow_the_pairs():
    data = synthetic()
    forget()
    metrics, first = pair_differences(data.pairs, data.scores)
    assert metrics == ["m0", "m1", "m2"]
    assert not first.flags.writeable
    assert np.isnan(first).any()  # the missing score
    _, again = pair_differences(data.pairs.copy(), data.scores)
    assert again is first
    swapped = data.pairs.rename(columns={"image_a": "image_b", "image_b": "image_a"})
    _, other = pair_differences(swapped, data.scores)
    np.testing.assert_array_equal(other, -first)
