"""The scoring engine in this process: decoding, batching, failures, and CUDA."""

import numpy as np
import PIL.Image
import pytest

from scoring.registry import metric_get
from tests.images import write_png


def test_same_size_images_are_batched_and_a_failing_item_fails_alone(tmp_path, settings):
    from scoring import engine

    settings.IQA_SCORE_FORWARD_BATCH = 4
    reference = write_png(tmp_path / "r.png", size=(64, 48), seed=1)
    images = [write_png(tmp_path / f"{i}.png", size=(64, 48), seed=10 + i) for i in range(5)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    items = [(p, reference) for p in images] + [(broken, reference), (reference, reference)]
    outcomes = engine.score_items(metric_get("psnr"), items)
    assert [bool(o.error) for o in outcomes] == [False] * 5 + [True, False]
    assert "cannot read the image" in outcomes[5].error
    assert outcomes[6].value > 60  # an image against itself: psnr at its cap

    # The same values as one image at a time (what pyiqa gives for a single image).
    settings.IQA_SCORE_FORWARD_BATCH = 1
    single = engine.score_items(metric_get("psnr"), items)
    assert [o.value for o in single[:5]] == pytest.approx([o.value for o in outcomes[:5]])


def test_images_are_decoded_as_pyiqa_decodes_them(tmp_path):
    from scoring import engine

    path = write_png(tmp_path / "a.png", size=(7, 5), seed=3)
    tensor = engine.decode(path)
    assert tuple(tensor.shape) == (3, 5, 7)
    with PIL.Image.open(path) as image:
        expected = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    assert np.array_equal(tensor.permute(1, 2, 0).numpy(), expected)


@pytest.mark.gpu
def test_scores_on_cuda_equal_scores_on_the_cpu(tmp_path, settings, monkeypatch):
    import torch

    from scoring import engine

    reference = write_png(tmp_path / "r.png", size=(96, 64), seed=1)
    items = [(write_png(tmp_path / f"{i}.png", size=(96, 64), seed=i), reference) for i in range(8)]
    assert engine.device().type == "cuda"
    on_gpu = engine.score_items(metric_get("ssim"), items)
    monkeypatch.setattr(engine, "device", lambda: torch.device("cpu"))
    on_cpu = engine.score_items(metric_get("ssim"), items)
    assert [o.value for o in on_gpu] == pytest.approx([o.value for o in on_cpu], rel=1e-4)
