"""The fusion metric through the platform: ``agreement_report --fusion``, the live
snapshot's row (equal to the command's), ``fusion_train``'s model file, and that file as
a plug-in metric scoring a new study from its components' stored scores."""

import json
import re
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from analysis import fusion
from analysis.models import AgreementSnapshot
from analysis.report import labelled_study_pairs, study_fusion_data
from analysis.selectors import study_data
from analysis.services import agreement_snapshot_refresh
from analysis.tables import headline_csv, headline_latex
from analysis.tally import tally_frame
from annotation.models import Image
from core.errors import DomainError
from scoring import services as scoring_services
from scoring.errors import MetricUnavailable, UnknownMetric
from scoring.models import Score, ScoreBatch
from scoring.registry import metric_get, registry
from tests.annotation.sessions import post_vote
from tests.factories import ImageFactory, LiveStudyFactory, SceneFactory, make_pairs

pytestmark = pytest.mark.django_db

# People see 0.7 qa + 0.3 qb; the metrics "sharp" and "clean" measure qa and qb.
MIX = {"sharp": 0.7, "clean": 0.3}


def build(slug: str, *, pairs: int = 200, scenes: int = 10, seed: int = 0, owner=None):
    """A live NR study whose images have qualities qa and qb, scored by "sharp" (qa)
    and "clean" (qb, lower is better: its score is -qb), one vote per pair through the
    API by a person who sees the mixture with logistic noise."""
    study = LiveStudyFactory(slug=slug, gold_rate=0.0, owner=owner)
    make_pairs(study, pairs, votes=1, scenes=scenes)
    rng = np.random.default_rng(seed)
    images = list(Image.objects.filter(scene__study=study))
    quality = {image.id: rng.standard_normal(2) for image in images}
    Score.objects.bulk_create(
        [Score(metric="sharp", version="v1", image=i, lower_better=False,
               value=float(quality[i.id][0])) for i in images]
        + [Score(metric="clean", version="v1", image=i, lower_better=True,
                 value=float(-quality[i.id][1])) for i in images]
    )  # fmt: skip
    seen = {f"/media/{i.file}": 3.0 * (0.7 * quality[i.id][0] + 0.3 * quality[i.id][1])
            for i in images}  # fmt: skip
    api = APIClient()
    for person in range(100):  # 40 answers each: under the per-session vote rate
        url = f"/api/v1/studies/{study.slug}/sessions"
        token = api.post(url, {"participant_id": f"p{person}"}, format="json").json()["token"]
        for _ in range(40):
            trial = api.get(f"/api/v1/sessions/{token}/next-trial")
            if trial.status_code == 204:
                return study
            shown = trial.json()["images"]
            gap = seen[shown["left"]] - seen[shown["right"]] + rng.logistic()
            choice = "similar" if abs(gap) < 0.3 else "left" if gap > 0 else "right"
            body = {"trial_id": trial.json()["trial_id"], "choice": choice, "response_ms": 1500}
            assert post_vote(api, token, body).status_code == 201
    raise AssertionError("the study never ran out of trials")


def report_json(*slugs: str, extra=()) -> list[dict]:
    out = StringIO()
    call_command("agreement_report", *slugs, "--fusion", "--json", *extra, stdout=out)
    return json.loads(out.getvalue())


def test_agreement_report_fusion_reports_out_of_sample_figures_and_the_weights():
    study = build("mix")
    (report,) = report_json(study.slug)
    fused = report["fusion"]
    assert fused["status"] == "ok"
    assert fused["name"] == "fusion (cross-validated)"
    assert fused["n_pairs"] + fused["dropped_pairs"] == report["counts"]["labelled_pairs"]
    assert fused["n_scenes"] == 10
    assert fused["folds"] == 5
    (whole,) = [row for row in fused["rows"] if row["subset"] == "all"]
    assert whole["n_pairs"] == fused["n_pairs"]
    assert 0.5 < whole["ci_low"] <= whole["accuracy"] <= whole["ci_high"]
    # The weights per unit of each metric's oriented difference mix as people do.
    unit = {c["metric"]: c["weight"] / c["scale"] for c in fused["coefficients"]}
    assert unit["sharp"] > unit["clean"] > 0
    assert unit["sharp"] / (unit["sharp"] + unit["clean"]) == pytest.approx(0.7, abs=0.15)
    assert {c["metric"]: c["lower_better"] for c in fused["coefficients"]} == {
        "sharp": False, "clean": True}  # fmt: skip
    # Single metrics judged on the same pairs as the fusion, the best named.
    assert fused["best_single"]["metric"] == "sharp"
    assert fused["best_single"]["n_pairs"] == fused["n_pairs"]
    text = StringIO()
    call_command("agreement_report", study.slug, "--fusion", "--samples", "100", stdout=text)
    assert "Fusion of the metrics (fusion (cross-validated)):" in text.getvalue()
    assert "against the best single metric on the same pairs, sharp" in text.getvalue()
    # Without --fusion, the report is as before: no fusion key.
    out = StringIO()
    call_command("agreement_report", study.slug, "--json", stdout=out)
    assert "fusion" not in json.loads(out.getvalue())[0]


def test_a_study_too_small_to_fuse_says_so_instead_of_a_number():
    study = build("small", pairs=60, scenes=3)
    (report,) = report_json(study.slug)
    fused = report["fusion"]
    assert fused["status"] == "not enough labelled pairs"
    assert "at least 100 pairs in 5 scenes" in fused["message"]
    assert "rows" not in fused
    text = StringIO()
    call_command("agreement_report", study.slug, "--fusion", "--samples", "50", stdout=text)
    assert "not enough labelled pairs" in text.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_live_row_equals_agreement_report_fusion_json():
    study = build("live-mix")
    (expected,) = report_json(study.slug)
    # The live refresh (from the kept counts) computes the row with its first intervals:
    # the same labels and scores, so the same out-of-sample figures.
    live = agreement_snapshot_refresh(study=study, mode="live")
    assert live.exact is False
    assert live.report["fusion"] == expected["fusion"]
    computed = live.report["live"]["fusion"]
    assert computed["seconds"] > 0
    # A live refresh whose intervals are not due carries the row, as it carries them.
    carried = agreement_snapshot_refresh(study=study, mode="live")
    assert carried.report["live"]["fusion"] == computed
    assert carried.report["fusion"] == expected["fusion"]
    # The exact refresh, as the worker stores it once votes stop: the whole object.
    exact = agreement_snapshot_refresh(study=study, mode="exact")
    assert exact.report["fusion"] == expected["fusion"]
    # And the API serves it as stored.
    from django.contrib.auth import get_user_model

    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("ada", is_staff=True))
    body = api.get(f"/api/v1/studies/{study.slug}/agreement").json()
    assert body["fusion"] == expected["fusion"]
    # The downloads' headline table ends with its row, in its own group.
    whole = expected["fusion"]["rows"][0]
    latex = headline_latex(body).splitlines()
    (line,) = [line for line in latex if line.startswith("fusion (cross-validated)")]
    assert f" & {whole['accuracy']:.3f} & {whole['accuracy_2afc']:.3f} & " in line
    assert latex[latex.index(line) - 1] == r"\midrule"
    assert headline_csv(body).splitlines()[-1].startswith("fusion (cross-validated),fusion,,")
    assert AgreementSnapshot.objects.get(study=study, variant="counted").exact is True


def train(tmp_path, *slugs: str, name: str = "fusion_lab") -> dict:
    out = tmp_path / "fusion_lab.json"
    text = StringIO()
    call_command("fusion_train", *slugs, "--out", str(out), "--name", name, "--samples", "200",
                 stdout=text)  # fmt: skip
    assert f"Wrote {out}: metric {name} (NR)" in text.getvalue()
    return json.loads(out.read_text())


def test_fusion_train_writes_a_plug_in_that_scores_a_new_study_from_its_components(
    tmp_path, settings, django_capture_on_commit_callbacks
):
    build("train-a")
    model = train(tmp_path, "train-a")
    assert model["format"] == "iqa-platform-fusion/1"
    assert model["kind"] == "NR"
    assert model["lower_better"] is False
    components = {c["metric"]: c for c in model["components"]}
    assert set(components) == set(MIX)
    assert {c["version"] for c in components.values()} == {"v1"}
    assert model["training"]["studies"] == ["train-a"]
    assert model["training"]["evaluation"]["status"] == "ok"
    assert model["training"]["cross_study"] == []
    mode = (tmp_path / "fusion_lab.json").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044  # readable by workers running as another user

    settings.IQA_METRIC_PLUGINS = [str(tmp_path / "fusion_lab.json")]
    spec = metric_get("fusion_lab")
    assert spec.derived
    assert spec.kind == "NR"
    assert not spec.lower_better
    new = build("new-study", pairs=30, scenes=3, seed=4)
    images = list(Image.objects.filter(scene__study=new).order_by("pk"))
    # One image's "clean" score failed; another image has no "clean" score yet.
    failed, waiting = images[0], images[1]
    Score.objects.filter(image=failed, metric="clean").update(value=None, error="undecodable")
    Score.objects.filter(image=waiting, metric="clean").delete()
    (plan,) = scoring_services.study_score(study=new, specs=[spec])
    assert plan.queued == len(images)
    batches = ScoreBatch.objects.filter(study=new, metric="fusion_lab")
    for batch_id in batches.values_list("pk", flat=True):
        scoring_services.batch_score(batch_id=batch_id)
    # The batch holding the image without a component score waits, saying why.
    (stuck,) = batches.filter(state=ScoreBatch.State.PENDING)
    assert stuck.reason == (
        "fusion_lab waits for its components' scores: clean (v1) on 1 items; score them first"
    )
    fused = {s.image_id: s for s in Score.objects.filter(metric="fusion_lab")}
    assert set(fused) == {image.pk for image in images} - {waiting.pk}
    assert fused[failed.pk].value is None
    assert fused[failed.pk].error == "component clean failed: undecodable"
    values = {(s.metric, s.image_id): s.value for s in Score.objects.filter(metric__in=MIX)}
    for image in images[2:]:
        expected = sum(
            c["weight"] * (-1 if c["lower_better"] else 1) * values[(m, image.pk)] / c["scale"]
            for m, c in components.items()
        )
        assert fused[image.pk].value == pytest.approx(expected, rel=1e-12)
        assert fused[image.pk].version == "plugin-" + spec.plugin.version
    # A component's batch that finishes sends the waiting batch again (after commit).
    component = ScoreBatch.objects.create(study=new, metric="psnr", version="p", items=[],
                                          enqueued_at=stuck.enqueued_at)  # fmt: skip
    with django_capture_on_commit_callbacks() as callbacks:
        scoring_services._store(component, metric_get("psnr"), [])
    assert len(callbacks) == 1
    assert scoring_services._derived_wake(new.pk) == 1
    # Once the component is scored, the batch that waited completes.
    Score.objects.create(metric="clean", version="v1", image=waiting, value=0.25,
                         lower_better=True)  # fmt: skip
    scoring_services.batch_score(batch_id=stuck.pk)
    stuck.refresh_from_db()
    assert stuck.state == ScoreBatch.State.DONE
    assert Score.objects.filter(metric="fusion_lab", image=waiting).exists()
    # Each pair's fused difference is what the training side's model predicts for it.
    data = study_fusion_data(study_data(new))
    predicted = fusion.apply(model, data)
    scores = {s.image_id: s.value for s in Score.objects.filter(metric="fusion_lab")}
    pairs = labelled_pairs(new)
    for (a, b), z in zip(pairs, predicted, strict=True):
        if scores[a] is not None and scores[b] is not None:
            assert scores[a] - scores[b] == pytest.approx(z, rel=1e-9, abs=1e-12)
    # The fused metric is then in the new study's report like any other metric, and
    # never among a new fusion's features (it was fitted to labels).
    (report,) = report_json("new-study", extra=("--samples", "50"))
    assert "fusion_lab" in {row["metric"] for row in report["agreement"]}
    assert "fusion_lab" not in report["fusion"]["metrics"] + [
        m["metric"] for m in report["fusion"]["left_out"]]  # fmt: skip
    # The component failed once; --retry-failed computes that item again.
    Score.objects.filter(image=failed, metric="clean").update(value=1.5, error="")
    (again,) = scoring_services.study_score(study=new, specs=[spec], retry_failed=True)
    assert again.queued == 1
    (retry,) = batches.filter(state=ScoreBatch.State.PENDING)
    scoring_services.batch_score(batch_id=retry.pk)
    assert Score.objects.get(metric="fusion_lab", image=failed).value is not None


def labelled_pairs(study) -> list[tuple[int, int]]:
    """(image_a, image_b) of the study's labelled pairs, in ``study_fusion_data``'s order."""
    data = study_data(study)
    pairs = labelled_study_pairs(data.pairs, tally_frame(data).labels)
    return list(zip(pairs["image_a"], pairs["image_b"], strict=True))


def test_a_fusion_model_does_not_score_the_studies_it_was_trained_on(tmp_path, settings):
    study = build("trained-here")
    train(tmp_path, "trained-here")
    settings.IQA_METRIC_PLUGINS = [str(tmp_path / "fusion_lab.json")]
    spec = metric_get("fusion_lab")
    with pytest.raises(DomainError, match="fusion_lab was trained on trained-here's labels"):
        scoring_services.study_score(study=study, specs=[spec])
    kept, refused = scoring_services.specs_for_study([metric_get("psnr"), spec], study)
    assert [s.name for s in kept] == ["psnr"]
    assert len(refused) == 1
    with pytest.raises(CommandError, match="was trained on trained-here's labels"):
        call_command("score_study", "trained-here", "--metrics", "fusion_lab")
    assert not ScoreBatch.objects.filter(metric="fusion_lab").exists()


def test_a_replaced_model_file_is_never_applied_to_batches_sent_for_the_old_one(tmp_path, settings):
    build("train-b")
    train(tmp_path, "train-b")
    path = tmp_path / "fusion_lab.json"
    settings.IQA_METRIC_PLUGINS = [str(path)]
    spec = metric_get("fusion_lab")
    new = build("new-b", pairs=20, scenes=2, seed=5)
    scoring_services.study_score(study=new, specs=[spec])
    (batch,) = ScoreBatch.objects.filter(study=new, metric="fusion_lab")
    model = json.loads(path.read_text())
    model["components"][0]["weight"] *= 2
    path.write_text(json.dumps(model))  # while the worker's registry holds the old one
    with pytest.raises(MetricUnavailable, match="the model file was replaced"):
        scoring_services.batch_score(batch_id=batch.pk)
    assert not Score.objects.filter(metric="fusion_lab").exists()


def test_a_fusion_of_fr_and_nr_metrics_reads_each_component_as_it_was_scored(tmp_path, settings):
    """An FR component against the scene's reference (the reference against itself
    too), an NR component of the image alone."""
    study = LiveStudyFactory(slug="fr-nr", design="ref-vs-test")
    scene = SceneFactory(study=study)
    reference = ImageFactory(scene=scene, role=Image.Role.REFERENCE, condition="")
    tests = [ImageFactory(scene=scene) for _ in range(3)]
    rows, fr, nr = [], {}, {}
    for n, image in enumerate([reference, *tests]):
        fr[image.pk], nr[image.pk] = 30.0 - n, 0.1 * n
        rows.append(Score(metric="psnr", version="p1", image=image, reference=reference,
                          value=fr[image.pk], lower_better=False))  # fmt: skip
        rows.append(Score(metric="niqe", version="n1", image=image, value=nr[image.pk],
                          lower_better=True))  # fmt: skip
    Score.objects.bulk_create(rows)
    path = tmp_path / "fr_nr.json"
    path.write_text(json.dumps({
        "format": "iqa-platform-fusion/1", "name": "fusion_fr_nr",
        "components": [
            {"metric": "psnr", "version": "p1", "kind": "FR", "lower_better": False,
             "scale": 2.0, "weight": 1.5},
            {"metric": "niqe", "version": "n1", "kind": "NR", "lower_better": True,
             "scale": 0.5, "weight": 0.5},
        ],
    }))  # fmt: skip
    settings.IQA_METRIC_PLUGINS = [str(path)]
    spec = metric_get("fusion_fr_nr")
    assert spec.kind == "FR"
    (plan,) = scoring_services.study_score(study=study, specs=[spec])
    assert plan.queued == 4  # three tests and the reference, against the reference
    for batch_id in ScoreBatch.objects.filter(study=study).values_list("pk", flat=True):
        scoring_services.batch_score(batch_id=batch_id)
    fused = Score.objects.filter(metric="fusion_fr_nr")
    assert {(s.image_id, s.reference_id) for s in fused} == {
        (image.pk, reference.pk) for image in [reference, *tests]}  # fmt: skip
    for score in fused:
        expected = 1.5 * fr[score.image_id] / 2.0 - 0.5 * nr[score.image_id] / 0.5
        assert score.value == pytest.approx(expected)


def test_fusion_train_on_two_studies_gives_the_cross_study_table(tmp_path):
    build("study-x", seed=1)
    build("study-y", seed=2)
    model = train(tmp_path, "study-x", "study-y", name="fusion_xy")
    rows = {(r["trained_on"], r["evaluated_on"]): r for r in model["training"]["cross_study"]}
    assert set(rows) == {(x, y) for x in ("study-x", "study-y") for y in ("study-x", "study-y")}
    assert rows[("study-x", "study-x")]["cross_validated"] is True
    across = rows[("study-x", "study-y")]
    assert across["cross_validated"] is False
    assert across["status"] == "ok"
    assert across["n_pairs"] > 150
    assert across["best_single"]["metric"] == "sharp"
    assert model["training"]["evaluation"]["n_scenes"] == 20  # the two studies' scenes


def test_fusion_train_refuses_what_it_cannot_train(tmp_path):
    build("tiny", pairs=40, scenes=2)
    with pytest.raises(CommandError, match="--name 'x y': 1 to 64 letters"):
        call_command("fusion_train", "tiny", "--out", str(tmp_path / "m.json"), "--name", "x y")
    with pytest.raises(CommandError, match="1 to 64 letters"):
        call_command("fusion_train", "tiny", "--out", str(tmp_path / "m.json"), "--name", "f" * 65)
    with pytest.raises(CommandError, match="no fusion model: not enough labelled pairs"):
        call_command("fusion_train", "tiny", "--out", str(tmp_path / "m.json"))
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(CommandError, match=r"must end in \.json"):
        call_command("fusion_train", "tiny", "--out", str(tmp_path / "m.txt"))
    with pytest.raises(CommandError, match="no study 'nope'"):
        call_command("fusion_train", "nope", "--out", str(tmp_path / "m.json"))


def test_fusion_train_refuses_studies_whose_metrics_have_different_versions(tmp_path):
    build("versions-a", seed=1)
    build("versions-b", seed=2)
    Score.objects.filter(image__scene__study__slug="versions-b", metric="sharp").update(
        version="v2"
    )
    with pytest.raises(CommandError, match="sharp: v1 in versions-a, v2 in versions-b"):
        call_command("fusion_train", "versions-*", "--out", str(tmp_path / "m.json"))
    assert not (tmp_path / "m.json").exists()


COMPONENT = {"metric": "psnr", "version": "v", "kind": "FR", "lower_better": False,
             "scale": 1.0, "weight": 1.0}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"components": [{"metric": "psnr"}]}, "component 0 lacks version, kind"),
        ({"components": [{**COMPONENT, "lower_better": "false"}]}, "lower_better must be true"),
        ({"components": [{**COMPONENT, "version": None}]}, "metric and version must be text"),
        ({"components": [{**COMPONENT, "metric": ["a"]}]}, "metric and version must be text"),
        ({"components": [{**COMPONENT, "scale": 0}]}, "scale must be a number above 0"),
        ({"components": [{**COMPONENT, "weight": True}]}, "weight is not a finite number"),
        ({"components": [COMPONENT, COMPONENT]}, "a component metric is named twice"),
        ({"name": "psnr"}, "the name 'psnr' is one of its components"),
        ({"name": "a b"}, "name must be 1 to 64 letters"),
        ({"format": "other"}, "is not a fusion model"),
        ({"name": "ssim", "components": [{**COMPONENT, "metric": "lpips"}]},
         "'ssim' is a pyiqa metric's name"),
    ],
)  # fmt: skip
def test_a_fusion_model_file_with_a_fault_is_refused_naming_it(tmp_path, settings, change, message):
    model = {"format": "iqa-platform-fusion/1", "name": "fusion_x", "components": [COMPONENT]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**model, **change}))
    settings.IQA_METRIC_PLUGINS = [str(bad)]
    with pytest.raises(UnknownMetric, match=re.escape(message)):
        registry()


def test_a_plug_in_file_that_is_not_a_fusion_model_is_refused_by_name(tmp_path, settings):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "iqa-platform-fusion/1", "name": "x",
                               "components": [{"metric": "psnr"}]}))  # fmt: skip
    settings.IQA_METRIC_PLUGINS = [str(bad)]
    with pytest.raises(UnknownMetric, match=r"bad.json: component 0 lacks version, kind"):
        registry()
    settings.IQA_METRIC_PLUGINS = [str(tmp_path / "missing.json")]
    with pytest.raises(UnknownMetric, match=r"missing\.json cannot be read"):
        registry()
