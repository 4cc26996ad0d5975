"""Planning what to score: only what is missing is sent, and nothing twice."""

import pytest

from scoring import services
from scoring.models import Score, ScoreBatch
from scoring.registry import metric_get
from tests.factories import ImageFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db


def _score_everything_sent() -> None:
    """What a worker does, without computing: a row per item of each pending batch."""
    for batch in ScoreBatch.objects.filter(state="pending"):
        Score.objects.bulk_create(
            [
                Score(metric=batch.metric, version=batch.version, image_id=i, reference_id=r,
                      value=1.0, lower_better=False)
                for i, r in batch.items
            ]
        )  # fmt: skip
        batch.state = "done"
        batch.save()


def test_images_added_later_are_scored_without_redoing_the_rest(
    django_capture_on_commit_callbacks,
):
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study)
    reference = ImageFactory(scene=scene, role="reference")
    ImageFactory(scene=scene)
    ImageFactory(scene=scene)
    ImageFactory(scene=scene, gold="worse")  # a gold decoy: never scored
    psnr, niqe = metric_get("psnr"), metric_get("niqe")

    with django_capture_on_commit_callbacks(execute=False) as sent:
        plans = services.study_score(study=study, specs=[psnr, niqe])
    assert {p.metric: (p.total, p.queued) for p in plans} == {"psnr": (3, 3), "niqe": (3, 3)}
    assert len(sent) == 2  # one batch per metric, published after commit
    psnr_items = ScoreBatch.objects.get(metric="psnr").items
    assert sorted(psnr_items) == sorted(
        [[i.pk, reference.pk] for i in scene.images.filter(gold="")]
    )

    # Sent but not yet scored: not sent again.
    with django_capture_on_commit_callbacks(execute=False) as sent:
        plans = services.study_score(study=study, specs=[psnr])
    assert (plans[0].queued, len(sent)) == (0, 0)

    _score_everything_sent()
    added = ImageFactory(scene=scene)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        plans = services.study_score(study=study, specs=[psnr, niqe])
    assert {p.metric: (p.total, p.done, p.queued) for p in plans} == {
        "psnr": (4, 3, 1),
        "niqe": (4, 3, 1),
    }
    new = ScoreBatch.objects.filter(state="pending")
    assert {(b.metric, tuple(map(tuple, b.items))) for b in new} == {
        ("niqe", ((added.pk, None),)),
        ("psnr", ((added.pk, reference.pk),)),
    }
