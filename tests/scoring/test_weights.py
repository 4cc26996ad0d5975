"""Offline weights: files in one folder, loaded with no network; missing ones named."""

import pytest
from django.conf import settings
from django.test import override_settings

from annotation.models import Study
from scoring import services
from scoring.models import Score
from scoring.registry import metric_get
from tests.conftest import start_worker, stop_worker, wait_until
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db(transaction=True)

# What the catalog says lpips and dists load, relative to the weights folder.
LPIPS_FILES = ["hub/checkpoints/alexnet-owt-7be5be79.pth", "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"]
DISTS_FILES = ["hub/checkpoints/vgg16-397923af.pth", "hub/pyiqa/DISTS_weights-f5e65c96.pth"]
# Any attempt at the network fails at once (nothing listens on port 9).
NO_NETWORK = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HF_HUB_OFFLINE": "1",
}


def write_random_weights(folder) -> None:
    """Randomly initialised weight files, named and shaped as the loaders expect."""
    import torch
    import torchvision

    def save(state: dict, relative: str) -> None:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    torch.manual_seed(0)
    save(torchvision.models.alexnet().state_dict(), LPIPS_FILES[0])
    # LPIPS's linear heads on AlexNet's five stages: lin<i>.model.1 is a 1x1 convolution.
    alex_channels = [64, 192, 384, 256, 256]
    save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(alex_channels)},
        LPIPS_FILES[1],
    )
    save(torchvision.models.vgg16().state_dict(), DISTS_FILES[0])
    channels = 3 + 64 + 128 + 256 + 512 + 512
    save(
        {"alpha": torch.rand(1, channels, 1, 1) * 0.1, "beta": torch.rand(1, channels, 1, 1) * 0.1},
        DISTS_FILES[1],
    )


@pytest.mark.slow
def test_lpips_and_dists_score_from_the_weights_folder_without_network(
    tmp_path, media_root, manage
):
    weights = tmp_path / "weights"
    write_random_weights(weights)
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]}, size=(64, 64))
    manage("import_study", str(source), "--slug", "w", "--design", "ref-vs-test")
    with override_settings(IQA_WEIGHTS_DIR=weights):
        for name in ("lpips", "dists"):
            state = services.metric_availability(metric_get(name))
            assert state.available, state
        worker = start_worker(
            name="weights",
            broker_url=settings.CELERY_BROKER_URL,
            media=media_root,
            extra_env={"IQA_WEIGHTS_DIR": str(weights), **NO_NETWORK},
        )
        try:
            done = manage(
                "score_study", "w", "--metrics", "lpips,dists", "--wait", "--timeout", "300",
                env_extra={"IQA_WEIGHTS_DIR": str(weights), "IQA_SCORING_QUEUE": worker.queue},
            )  # fmt: skip
        finally:
            stop_worker(worker)
    assert done.returncode == 0, done.stderr
    assert "w lpips: done" in done.stdout
    assert "w dists: done" in done.stdout
    scores = Score.objects.filter(metric__in=["lpips", "dists"])
    assert scores.count() == 6  # 2 metrics x 3 images (the reference against itself too)
    assert not scores.exclude(error="").exists()
    assert all(s.value is not None for s in scores)
    # The versions carry the weights' hash.
    assert {s.version.split("+w")[0] for s in scores} == {"pyiqa-0.1.16"}
    assert all("+w" in s.version for s in scores)
    # A reference against itself is at distance zero, whatever the weights.
    self_scores = scores.filter(image=scores.first().reference)
    assert [s.value for s in self_scores] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_missing_files_are_reported_by_name_and_folder_and_nothing_crashes(
    tmp_path, media_root, manage
):
    weights = tmp_path / "empty-weights"
    status = manage("metrics_status", env_extra={"IQA_WEIGHTS_DIR": str(weights)})
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    lpips = next(i for i, line in enumerate(lines) if line.startswith("lpips "))
    assert "FR" in lines[lpips]
    assert "UNAVAILABLE" in lines[lpips]
    assert lines[lpips + 1].strip() == (
        f"missing alexnet-owt-7be5be79.pth  ->  put it in {weights}/hub/checkpoints/"
    )
    assert lines[lpips + 2].strip() == (
        f"missing LPIPS_v0.1_alex-df73285e.pth  ->  put it in {weights}/hub/pyiqa/"
    )
    psnr = next(line for line in lines if line.startswith("psnr "))
    assert "ready" in psnr
    assert "higher better" in psnr

    # Scoring with the files missing stores the reason for each item; the worker lives on.
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]}, size=(64, 64))
    manage("import_study", str(source), "--slug", "m", "--design", "ref-vs-test")
    worker = start_worker(
        name="noweights",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={"IQA_WEIGHTS_DIR": str(weights), **NO_NETWORK},
    )
    try:
        with override_settings(IQA_WEIGHTS_DIR=weights, IQA_SCORING_QUEUE=worker.queue):
            services.study_score(study=Study.objects.get(slug="m"), specs=[metric_get("dists")])
        wait_until(lambda: Score.objects.filter(metric="dists").count() == 2, timeout=120)
        assert worker.process.poll() is None  # the worker lives on
    finally:
        stop_worker(worker)
    errors = set(Score.objects.filter(metric="dists").values_list("error", flat=True))
    assert len(errors) == 1
    (error,) = errors
    assert "missing weight files vgg16-397923af.pth" in error
    assert str(weights / "hub" / "checkpoints") in error


def test_install_weights_places_files_by_name_from_a_folder_or_an_archive(tmp_path, manage):
    import tarfile

    source = tmp_path / "operator"
    source.mkdir()
    (source / "DISTS_weights-f5e65c96.pth").write_bytes(b"d")
    (source / "vgg16-397923af.pth").write_bytes(b"v")
    (source / "notes.txt").write_text("x")
    archive = tmp_path / "weights.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(source, arcname="bundle")
    for given, folder in ((source, tmp_path / "w1"), (archive, tmp_path / "w2")):
        done = manage("install_weights", str(given), env_extra={"IQA_WEIGHTS_DIR": str(folder)})
        assert done.returncode == 0, done.stderr
        assert (folder / DISTS_FILES[1]).read_bytes() == b"d"
        assert (folder / DISTS_FILES[0]).read_bytes() == b"v"
        assert "skipped" in done.stdout
        assert "notes.txt" in done.stdout
    refused = manage("install_weights", str(tmp_path / "nope.zip"))
    assert refused.returncode != 0
    assert "no such file or folder" in refused.stderr


def test_hugging_face_and_clip_files_are_looked_up_in_the_weights_folder(tmp_path, settings):
    """timm backbones come from a Hugging Face cache under <weights>/huggingface/hub, and
    CLIP's files from <weights>/clip; both are named exactly while missing."""
    from scoring import weights

    settings.IQA_WEIGHTS_DIR = tmp_path
    hf = "huggingface:timm/resnet50.a1_in1k/model.safetensors"
    clip = "clip/ViT-B-32.pt"
    assert weights.missing_files([hf, clip]) == [hf, clip]
    assert hf in weights.needed_files("topiq_fr")
    assert clip in weights.needed_files("afine_fr")

    # The layout `huggingface-cli download timm/resnet50.a1_in1k` leaves in a cache.
    repo = tmp_path / "huggingface" / "hub" / "models--timm--resnet50.a1_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"w")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(b"c")
    assert weights.missing_files([hf, clip]) == []


def test_metrics_status_names_hugging_face_and_clip_files(tmp_path, manage):
    status = manage("metrics_status", env_extra={"IQA_WEIGHTS_DIR": str(tmp_path)})
    lines = status.stdout.splitlines()
    topiq = lines.index(next(line for line in lines if line.startswith("topiq_fr ")))
    assert lines[topiq + 1].strip() == (
        "missing Hugging Face file timm/resnet50.a1_in1k/model.safetensors  ->  put a "
        f"Hugging Face cache holding it in {tmp_path}/huggingface/hub/"
    )
    afine = lines.index(next(line for line in lines if line.startswith("afine_fr ")))
    assert lines[afine + 1].strip() == f"missing ViT-B-32.pt  ->  put it in {tmp_path}/clip/"
