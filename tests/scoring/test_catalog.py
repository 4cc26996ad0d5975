"""The weights catalog: which files each pyiqa metric loads, found by the probe."""

import json

import pytest

from scoring import weights

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_committed_catalog_lists_every_pyiqa_metric_completely():
    """Every metric was created by the probe, so its list of files is the whole list;
    and every file is named under a folder the loaders read."""
    catalog = weights.catalog()
    assert len(catalog) == 101
    not_created = {name: entry["error"] for name, entry in catalog.items() if entry["error"]}
    assert not_created == {}
    for name, entry in catalog.items():
        for file in entry["files"]:
            assert file.startswith(("hub/pyiqa/", "hub/checkpoints/", "clip/", "huggingface:")), (
                name,
                file,
            )
    # The kinds of loads the probe goes past, in metrics that have more files after them.
    assert catalog["afine_fr"]["files"] == ["clip/ViT-B-32.pt", "hub/pyiqa/afine.pth"]
    assert catalog["pi"]["files"] == [
        "hub/pyiqa/NRQM_model.mat",
        "hub/pyiqa/niqe_modelparameters.mat",
    ]
    assert catalog["fgresq"]["files"] == [
        "huggingface:openai/clip-vit-base-patch16",
        "hub/pyiqa/FGResQ_Degradation.pth",
        "hub/pyiqa/FGResQ.pth",
    ]
    assert catalog["clipscore"]["files"] == ["clip/ViT-B-32.pt"]
    assert catalog["qalign"]["files"] == ["huggingface:q-future/one-align"]


@pytest.mark.slow
def test_metrics_catalog_probes_metrics_past_direct_reads_into_a_file_of_its_own(tmp_path, manage):
    """Re-probing gives what is committed: a CLIP checkpoint, a MATLAB parameter file, a
    checkpoint holding a pair, a TorchScript file, a Hugging Face repository and a face
    detector's download each stand in for themselves and creation goes on. The probe's
    placeholders never land in the operator's weights folder."""
    output = tmp_path / "catalog.json"
    operator_folder = tmp_path / "weights"
    names = ["afine_fr", "pi", "brisque", "arniqa", "fgresq", "topiq_nr-face", "lpips"]
    done = manage(
        "metrics_catalog", "--only", *names, "--output", str(output),
        timeout=600, env_extra={"IQA_WEIGHTS_DIR": str(operator_folder)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probed = json.loads(output.read_text())
    for name in names:
        assert probed[name] == weights.catalog()[name], name
        assert probed[name]["error"] == ""
    assert probed["arniqa"]["files"][-1] == "hub/pyiqa/regressor_koniq10k.pth"  # TorchScript
    assert "hub/pyiqa/brisque_svm_weights.pth" in probed["brisque"]["files"]
    assert probed["topiq_nr-face"]["files"][-2:] == [
        "hub/pyiqa/detection_Resnet50_Final.pth",
        "hub/pyiqa/parsing_parsenet.pth",
    ]
    # --only merges into the rest of the catalog.
    assert probed.keys() == weights.catalog().keys()
    assert not operator_folder.exists()
