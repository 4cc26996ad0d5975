"""Planning what to score: only what is missing is sent, and nothing twice."""

import pytest

from scoring import selectors, services
from scoring.errors import UnknownStudy
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


def test_a_batch_that_failed_to_run_is_sent_again_only_with_retry_failed(
    django_capture_on_commit_callbacks,
):
    """No score is stored for a batch the workers could not run; the next plan does not
    send its items again (they are counted as failed to run, with the reason) until
    retry_failed sends the same batch again."""
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study)
    ImageFactory(scene=scene, role="reference")
    ImageFactory.create_batch(2, scene=scene)
    niqe = metric_get("niqe")
    with django_capture_on_commit_callbacks(execute=False):
        services.study_score(study=study, specs=[niqe])
    (batch,) = ScoreBatch.objects.all()
    reason = "niqe failed to run: OutOfMemoryError: CUDA out of memory"
    assert services.batch_fail(batch_id=batch.pk, reason=reason)
    assert not services.batch_fail(batch_id=batch.pk, reason="twice")  # pending ones only

    (progress,) = selectors.study_scoring_progress(study=study, specs=[niqe])
    assert (progress.done, progress.failed, progress.pending_batches) == (0, 0, 0)
    assert (progress.failed_batches, progress.failed_to_run, progress.reasons) == (1, 3, (reason,))
    (status,) = selectors.study_scoring_requested(study=study)
    assert (status.failed_to_run, status.pending, status.reason) == (3, 0, reason)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        (plan,) = services.study_score(study=study, specs=[niqe])
    assert (plan.queued, plan.failed_to_run, plan.reasons, len(sent)) == (0, 3, [reason], 0)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        (plan,) = services.study_score(study=study, specs=[niqe], retry_failed=True)
    assert (plan.queued, plan.failed_to_run, len(sent)) == (3, 0, 1)
    (again,) = ScoreBatch.objects.all()
    assert (again.pk, again.state, again.reason, again.attempts) == (batch.pk, "pending", "", 2)
    assert not Score.objects.exists()


def test_retry_failed_sends_again_items_whose_stored_error_was_the_stores(
    django_capture_on_commit_callbacks,
):
    """Issue 31, item 3: before the store's I/O errors were retried, a missing volume was
    stored as the item's own error ("cannot read the image: FileNotFoundError ..."), and
    such rows count as scored. --retry-failed removes them and sends the items again; an
    item whose bytes were no image keeps its error."""
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study)
    reference = ImageFactory(scene=scene, role="reference")
    lost, flaky, bad, fine = ImageFactory.create_batch(4, scene=scene)
    niqe = metric_get("niqe")
    version = services.metric_version(niqe)
    errors = {
        lost: "cannot read the image: FileNotFoundError: [Errno 2] No such file or directory",
        flaky: "cannot read the image: OSError: [Errno 5] Input/output error",
        bad: "cannot read the image: UnidentifiedImageError: cannot identify image file",
    }
    for image in (reference, lost, flaky, bad, fine):
        Score.objects.create(
            metric="niqe", version=version, image=image, value=None if image in errors else 4.0,
            lower_better=True, error=errors.get(image, ""),
        )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as sent:
        (plan,) = services.study_score(study=study, specs=[niqe])
    assert (plan.queued, len(sent)) == (0, 0)  # without --retry-failed, as stored
    with django_capture_on_commit_callbacks(execute=False) as sent:
        (plan,) = services.study_score(study=study, specs=[niqe], retry_failed=True)
    assert (plan.queued, len(sent)) == (2, 1)
    (batch,) = ScoreBatch.objects.all()
    assert sorted(image for image, _ in batch.items) == sorted([lost.pk, flaky.pk])
    assert Score.objects.get(image=bad).error.startswith("cannot read the image: Unidentified")


def test_metric_versions_are_computed_before_the_plans_transaction(
    monkeypatch, django_capture_on_commit_callbacks
):
    """Issue 31, item 8: a metric's version hashes its weight files (gigabytes on a first
    call); study_score computes every version before it opens the transaction that locks
    failed batch rows, never inside it."""
    from django.db import connection

    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study)
    ImageFactory(scene=scene, role="reference")
    ImageFactory(scene=scene)
    outer = len(connection.atomic_blocks)
    depths = []
    real = services.metric_version

    def version(spec):
        depths.append(len(connection.atomic_blocks))
        return real(spec)

    monkeypatch.setattr(services, "metric_version", version)
    with django_capture_on_commit_callbacks(execute=False):
        services.study_score(study=study, specs=[metric_get("psnr"), metric_get("niqe")])
    assert depths == [outer, outer]


def test_studies_are_selected_by_exact_slugs_or_quoted_globs():
    """A bare slug is that study only (``pilot`` never scores ``pilot-2``); a glob selects
    what it matches; a slug or glob that matches nothing is named."""
    for slug in ("pilot", "pilot-2", "demo", "demo-pairwise"):
        StudyFactory(slug=slug)

    def slugs(*patterns):
        return [study.slug for study in selectors.studies_select(patterns)]

    assert slugs("pilot") == ["pilot"]
    assert slugs("pilot-2", "demo") == ["demo", "pilot-2"]
    assert slugs("demo*") == ["demo", "demo-pairwise"]
    assert slugs("demo*", "demo") == ["demo", "demo-pairwise"]
    assert slugs("*-?") == ["pilot-2"]
    with pytest.raises(UnknownStudy, match="no study 'pilo', 'x\\*'"):
        selectors.studies_select(["pilot", "pilo", "x*"])


@pytest.mark.usefixtures("worker_environment")
def test_a_batch_stores_every_item_its_passes_scored_and_its_undecodable_ones(media_root, settings):
    """In the worker's process: each pass is stored as it ends, and an item whose file is
    no image is stored with its error, so the batch is done with a row for every item."""
    from tests.images import write_png

    settings.IQA_SCORE_FORWARD_BATCH = 2
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study)
    reference = ImageFactory(scene=scene, role="reference", width=16, height=16)
    tests = [ImageFactory(scene=scene, width=16, height=16) for _ in range(4)]
    for n, image in enumerate([reference, *tests]):
        (media_root / image.file).parent.mkdir(parents=True, exist_ok=True)
        write_png(media_root / image.file, size=(16, 16), seed=n)
    (media_root / tests[-1].file).write_bytes(b"not an image")
    psnr = metric_get("psnr")
    services.study_score(study=study, specs=[psnr])
    (batch,) = ScoreBatch.objects.filter(metric="psnr")
    assert services.batch_score(batch_id=batch.pk) == 5  # 4 tests + the reference itself
    batch.refresh_from_db()
    assert batch.state == "done"
    rows = {s.image_id: s for s in Score.objects.filter(metric="psnr")}
    assert set(rows) == {reference.pk, *(t.pk for t in tests)}
    assert rows[tests[-1].pk].error.startswith("cannot decode the image")
    assert all(rows[t.pk].value is not None for t in tests[:-1])
