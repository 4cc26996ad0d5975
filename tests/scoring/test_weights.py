"""Offline weights: files in one folder, loaded with no network; missing ones named."""

import pytest
from django.conf import settings
from django.test import override_settings

from annotation.models import Study
from scoring import services
from scoring.models import Score, ScoreBatch
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

    # Scoring with the files missing stores no score: after its retries (one here, 1 s
    # later) each batch fails to run with the reason; the worker lives on.
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]}, size=(64, 64))
    manage("import_study", str(source), "--slug", "m", "--design", "ref-vs-test")
    worker = start_worker(
        name="noweights",
        broker_url=settings.CELERY_BROKER_URL,
        media=media_root,
        extra_env={
            "IQA_WEIGHTS_DIR": str(weights),
            "IQA_SCORE_MAX_RETRIES": "1",
            "IQA_SCORE_RETRY_BACKOFF": "1",
            **NO_NETWORK,
        },
    )
    # clipscore loads OpenAI CLIP's checkpoint with CLIP's own downloader.
    specs = [metric_get("dists"), metric_get("clipscore")]
    failed = ScoreBatch.objects.filter(state=ScoreBatch.State.FAILED)
    try:
        with override_settings(IQA_WEIGHTS_DIR=weights, IQA_SCORING_QUEUE=worker.queue):
            services.study_score(study=Study.objects.get(slug="m"), specs=specs)
        wait_until(lambda: failed.count() == 2, timeout=120, what="both batches to fail")
        assert worker.process.poll() is None  # the worker lives on
    finally:
        stop_worker(worker)
    assert not Score.objects.exists()
    reason = failed.get(metric="dists").reason
    assert "missing weight files vgg16-397923af.pth" in reason
    assert str(weights / "hub" / "checkpoints") in reason
    reason = failed.get(metric="clipscore").reason
    assert "missing weight files ViT-B-32.pt" in reason
    assert str(weights / "clip") in reason


def test_availability_follows_the_catalog_and_the_folder(tmp_path, settings, monkeypatch):
    from scoring import weights
    from scoring.registry import MetricSpec

    settings.IQA_WEIGHTS_DIR = tmp_path
    (tmp_path / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "hub" / "pyiqa" / "here.pth").write_bytes(b"h")
    catalog = {
        "complete": {"files": ["hub/pyiqa/here.pth"], "error": ""},
        "missing": {"files": ["hub/pyiqa/here.pth", "clip/RN50.pt"], "error": ""},
        "stopped": {"files": ["hub/pyiqa/here.pth"], "error": "OSError: no config.json"},
        "never_created": {"files": [], "error": "ModuleNotFoundError: No module named 'x'"},
    }
    monkeypatch.setattr(weights, "catalog", lambda: catalog)

    def state(name: str) -> services.Availability:
        return services.metric_availability(MetricSpec(name=name, kind="NR", lower_better=False))

    assert state("complete") == services.Availability(True, [])
    assert state("missing") == services.Availability(
        False, ["clip/RN50.pt"], "missing weight files"
    )
    assert state("stopped").available
    assert "probe stopped at: OSError: no config.json" in state("stopped").reason
    assert not state("never_created").available
    assert "No module named 'x'" in state("never_created").reason
    assert not state("not_in_catalog").available
    assert "not in the weights catalog" in state("not_in_catalog").reason


def test_install_weights_places_files_by_name_from_a_folder_or_an_archive(tmp_path, manage):
    import tarfile

    source = tmp_path / "operator"
    source.mkdir()
    (source / "DISTS_weights-f5e65c96.pth").write_bytes(b"d")
    (source / "vgg16-397923af.pth").write_bytes(b"v")
    (source / "notes.txt").write_text("x")
    # Saved from pyiqa's URL by a browser, which decodes %2B: placed under pyiqa's name.
    (source / "CLIP-IQA+_learned_prompts-603f3273.pth").write_bytes(b"c")
    archive = tmp_path / "weights.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(source, arcname="bundle")
    for given, folder in ((source, tmp_path / "w1"), (archive, tmp_path / "w2")):
        done = manage("install_weights", str(given), env_extra={"IQA_WEIGHTS_DIR": str(folder)})
        assert done.returncode == 0, done.stderr
        assert (folder / DISTS_FILES[1]).read_bytes() == b"d"
        assert (folder / DISTS_FILES[0]).read_bytes() == b"v"
        clipiqa = folder / "hub" / "pyiqa" / "CLIP-IQA%2B_learned_prompts-603f3273.pth"
        assert clipiqa.read_bytes() == b"c"
        assert "skipped" in done.stdout
        assert "notes.txt" in done.stdout
    refused = manage("install_weights", str(tmp_path / "nope.zip"))
    assert refused.returncode != 0
    assert "no such file or folder" in refused.stderr


def hugging_face_cache(folder, repo: str, files: dict[str, bytes], commit: str = "0" * 40):
    """The layout `huggingface-cli download REPO` leaves in a cache."""
    owner, name = repo.split("/")
    root = folder / "huggingface" / "hub" / f"models--{owner}--{name}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file, content in files.items():
        (snapshot / file).write_bytes(content)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_hugging_face_and_clip_files_are_looked_up_in_the_weights_folder(tmp_path, settings):
    """timm backbones (a file) and transformers models (a whole repository) come from a
    Hugging Face cache under <weights>/huggingface/hub, and CLIP's files from
    <weights>/clip; all are named exactly while missing."""
    from scoring import weights

    settings.IQA_WEIGHTS_DIR = tmp_path
    hf = "huggingface:timm/resnet50.a1_in1k/model.safetensors"
    repository = "huggingface:q-future/one-align"
    clip = "clip/ViT-B-32.pt"
    assert weights.missing_files([hf, repository, clip]) == [hf, repository, clip]
    assert hf in weights.needed_files("topiq_fr")
    assert clip in weights.needed_files("afine_fr")
    assert weights.needed_files("qalign") == [repository]

    hugging_face_cache(tmp_path, "timm/resnet50.a1_in1k", {"model.safetensors": b"w"})
    hugging_face_cache(tmp_path, "q-future/one-align", {"config.json": b"{}"})
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(b"c")
    assert weights.missing_files([hf, repository, clip]) == []
    # A version names the repository's snapshot, not the folder it was installed in.
    digest = weights.files_digest([repository])
    settings.IQA_WEIGHTS_DIR = tmp_path / "elsewhere"
    assert weights.missing_files([repository]) == [repository]
    hugging_face_cache(tmp_path / "elsewhere", "q-future/one-align", {"config.json": b"{}"})
    assert weights.files_digest([repository]) == digest
    settings.IQA_WEIGHTS_DIR = tmp_path / "newer"
    hugging_face_cache(tmp_path / "newer", "q-future/one-align", {"config.json": b"{}"}, "1" * 40)
    assert weights.files_digest([repository]) != digest


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
    assert lines[afine + 2].strip() == f"missing afine.pth  ->  put it in {tmp_path}/hub/pyiqa/"
    qalign = lines.index(next(line for line in lines if line.startswith("qalign ")))
    assert lines[qalign + 1].strip() == (
        "missing Hugging Face repository q-future/one-align  ->  put a Hugging Face cache "
        f"holding it in {tmp_path}/huggingface/hub/"
    )


def test_clip_checkpoints_are_read_from_the_folder_and_checked_never_downloaded(tmp_path, settings):
    """OpenAI CLIP's loaders download when a file is missing or its SHA256 (named in its
    URL) differs; in a worker they read <weights>/clip/ and say what is wrong instead."""
    import hashlib

    from scoring import weights
    from scoring.errors import MissingWeights, WrongWeights

    settings.IQA_WEIGHTS_DIR = tmp_path
    content = b"a CLIP checkpoint"
    digest = hashlib.sha256(content).hexdigest()
    url = f"https://openaipublic.azureedge.net/clip/models/{digest}/ViT-B-32.pt"
    with pytest.raises(MissingWeights, match=f"ViT-B-32.pt \\(put them in {tmp_path}/clip\\)"):
        weights.clip_file(url, "/root/.cache/clip")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(b"something else")
    with pytest.raises(
        WrongWeights, match=f"ViT-B-32.pt is not the published file .*{digest[:12]}"
    ):
        weights.clip_file(url, "/root/.cache/clip")
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(content)
    assert weights.clip_file(url, "/root/.cache/clip") == str(tmp_path / "clip" / "ViT-B-32.pt")
