"""One validator for study settings: its bounds, and the import, ``configure_study`` and the
admin all refusing the same value with the same message, writing nothing."""

import math

import pytest
from django import forms
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.urls import reverse

from annotation.errors import InvalidSetting
from annotation.models import Study
from annotation.services import study_import
from annotation.services.studies import study_configure
from annotation.study_settings import SETTINGS, study_settings_validate
from tests.factories import StudyFactory
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db

NEW = {"slug": "s", "design": "pairwise"}
URL = "https://example.org/done?cc=X"

# (setting, a value at its bound: accepted, a value just past it: refused, the message,
# whether the database refuses it too). Each bound is pinned here once.
BOUNDS = [
    ("slug", "a" * 64, "a" * 65, f"slug '{'a' * 65}' is not valid", False),
    ("slug", "ok-slug_2", "Not A Slug", "slug 'Not A Slug' is not valid (lower-case", False),
    ("slug", "news", "new", "slug 'new' is reserved by the researcher pages", False),
    ("design", "nr-pairwise", "pairs", "unknown design 'pairs' (expected one of ref-vs-test, "
     "pairwise, nr-pairwise)", True),
    ("show_reference", True, "yes", "show_reference must be true or false, not 'yes'", False),
    ("reference_is_candidate", False, 0, "reference_is_candidate must be true or false", False),
    ("votes_per_pair", 1, 0, "votes_per_pair must be at least 1, not 0", True),
    ("votes_per_pair", 1000, 1001, "votes_per_pair must be at most 1000, not 1001", True),
    ("title", "t" * 200, "t" * 201, "title must be at most 200 characters, not 201", False),
    ("instructions", "Look closely.", 3, "instructions must be text, not 3", False),
    ("status", "closed", "open", "unknown status 'open' (expected one of draft, live, closed)",
     True),
    ("gold_rate", 0.0, -0.01, "gold_rate must be in [0, 1), not -0.01", True),
    ("gold_rate", 0.99, 1.0, "gold_rate must be in [0, 1), not 1.0", True),
    ("trials_per_session", 1, 0, "trials_per_session must be at least 1, not 0", True),
    ("trials_per_session", 100_000, 100_001, "trials_per_session must be at most 100000",
     True),
    ("practice_trials", 0, -1, "practice_trials must be at least 0, not -1", True),
    ("practice_trials", 50, 51, "practice_trials must be at most 50, not 51", True),
    ("completion_url", URL, "ftp://example.org/x",
     "completion_url 'ftp://example.org/x' is not an http(s) URL", False),
    ("completion_url", "", "x" * 501, "completion_url must be at most 500 characters", False),
    ("completion_url", "http://localhost:8000/done", "http://example.org/done",
     "completion_url 'http://example.org/done' must use https (plain http only for localhost, "
     "127.0.0.1 or [::1])", False),
    ("require_participant_id", True, "on", "require_participant_id must be true or false",
     False),
    ("lease_seconds", 10, 9, "lease_seconds must be at least 10, not 9", True),
    ("lease_seconds", 86_400, 86_401, "lease_seconds must be at most 86400, not 86401", True),
    ("hold_seconds", 10, 9, "hold_seconds must be at least 10, not 9", True),
    ("hold_seconds", 86_400, 86_401, "hold_seconds must be at most 86400, not 86401", True),
    ("min_response_ms", 0, -1, "min_response_ms must be at least 0, not -1", True),
    ("min_response_ms", 600_000, 600_001, "min_response_ms must be at most 600000", True),
    ("min_counted_trials", 1, 0, "min_counted_trials must be at least 1, not 0", True),
    ("min_counted_trials", None, "many", "min_counted_trials must be a whole number", False),
    ("break_every", 0, -1, "break_every must be at least 0, not -1", True),
    ("break_every", 100_000, 100_001, "break_every must be at most 100000", True),
    ("consent", "You agree.", None, "consent must be text, not None", False),
    ("qc_min_gold_accuracy", 1.0, 1.01, "qc_min_gold_accuracy must be between 0 and 1", True),
    ("qc_min_gold_accuracy", 0.0, -0.01, "qc_min_gold_accuracy must be between 0 and 1", True),
    ("qc_min_median_response_ms", 0.0, -1.0,
     "qc_min_median_response_ms must be between 0 and 600000, not -1.0", True),
    ("qc_min_median_response_ms", 600_000.0, 600_001.0,
     "qc_min_median_response_ms must be between 0 and 600000", True),
    ("qc_side_bias_alpha", 1.0, 1.5, "qc_side_bias_alpha must be between 0 and 1", True),
    ("qc_side_bias_alpha", 0.0, -0.5, "qc_side_bias_alpha must be between 0 and 1", True),
    ("qc_min_majority_agreement", 1.0, 2.0, "qc_min_majority_agreement must be between 0", True),
    ("qc_min_majority_agreement", 0.0, -1.0, "qc_min_majority_agreement must be between 0", True),
    ("qc_max_similar_share", 1.0, 1.1, "qc_max_similar_share must be between 0 and 1", True),
    ("qc_max_similar_share", 0.0, -0.1, "qc_max_similar_share must be between 0 and 1", True),
    ("qc_fast_response_ms", 0.0, -1.0,
     "qc_fast_response_ms must be between 0 and 600000, not -1.0", True),
    ("qc_fast_response_ms", 600_000.0, 600_001.0,
     "qc_fast_response_ms must be between 0 and 600000", True),
    ("qc_test", "threshold", "strict", "unknown qc_test 'strict'", True),
    ("qc_correction", "bh", "sidak", "unknown qc_correction 'sidak'", True),
    ("qc_alpha", 0.0, 1.0, "qc_alpha must be in [0, 1)", True),
    ("qc_min_answers", 0, -1, "qc_min_answers must be at least 0", True),
    ("qc_min_answers", 100_000, 100_001, "qc_min_answers must be at most 100000", True),
    ("qc_min_gold", 0, -1, "qc_min_gold must be at least 0", True),
    ("qc_min_gold", 100_000, 100_001, "qc_min_gold must be at most 100000", True),
    ("stop_when_decided", False, "yes", "stop_when_decided must be true or false", False),
    ("sampling", "uniform", "adaptive", "unknown sampling 'adaptive' (expected one of uniform, "
     "active)", True),
    ("sampling_every", 1, 0, "sampling_every must be at least 1, not 0", True),
    ("sampling_every", 10_000, 10_001, "sampling_every must be at most 10000", True),
    ("metric_deltas", {"psnr": 0.5}, {"psnr": -0.1},
     "metric_deltas must map metric names to numbers >= 0", False),
    ("metric_deltas", {}, {"psnr": "wide"}, "metric_deltas must map metric names", False),
]  # fmt: skip


def test_every_setting_has_its_bounds_pinned_here():
    assert {case[0] for case in BOUNDS} == set(SETTINGS)


@pytest.mark.parametrize(
    ("name", "ok", "bad", "message", "in_db"), BOUNDS, ids=lambda v: str(v)[:24]
)
def test_a_value_at_its_bound_is_accepted_and_one_past_it_refused(name, ok, bad, message, in_db):
    assert study_settings_validate({**NEW, name: ok}, partial=False)[name] == ok
    with pytest.raises(InvalidSetting) as caught:
        study_settings_validate({**NEW, name: bad}, partial=False)
    assert str(caught.value).startswith(message)
    assert (caught.value.field, caught.value.code) == (name, "invalid_setting")


@pytest.mark.parametrize(
    ("name", "ok", "bad"), [(n, ok, bad) for n, ok, bad, _, in_db in BOUNDS if in_db]
)
def test_the_database_holds_the_same_bounds(name, ok, bad):
    """Whatever skips the validator (a script, a raw update) meets the same bounds."""
    StudyFactory(**{name: ok})
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyFactory(**{name: bad})


def test_values_are_cleaned():
    """Numbers typed as text become numbers, 'off' turns a rule off, zero deltas are dropped."""
    cleaned = study_settings_validate(
        {"gold_rate": "0.2", "trials_per_session": "30", "qc_side_bias_alpha": "off",
         "qc_min_gold_accuracy": None, "metric_deltas": {"psnr": 1, "lpips": 0}},
        partial=True,
    )  # fmt: skip
    assert cleaned == {
        "gold_rate": 0.2,
        "trials_per_session": 30,
        "qc_side_bias_alpha": None,
        "qc_min_gold_accuracy": None,
        "metric_deltas": {"psnr": 1.0},
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qc_fast_response_ms": "off"}, "qc_fast_response_ms must be a number, not 'off'"),
        ({"qc_side_bias_alpha": "often"}, "qc_side_bias_alpha must be a number or 'off'"),
        ({"qc_min_median_response_ms": math.inf}, "qc_min_median_response_ms must be a finite"),
        ({"metric_deltas": {"psnr": math.nan}}, "metric_deltas must map metric names"),
        ({"metric_deltas": {"": 1.0}}, "metric_deltas must map metric names"),
        ({"metric_deltas": [1.0]}, "metric_deltas must map metric names"),
        ({"trials_per_session": 2.5}, "trials_per_session must be a whole number, not 2.5"),
        ({"trials_per_session": True}, "trials_per_session must be a whole number, not True"),
        ({"design": "pairwise"}, "cannot change design after import"),
        ({"votes_per_pair": 5, "slug": "x"}, "cannot change slug, votes_per_pair after import"),
        ({"completion_code": "X"}, "cannot change completion_code after import"),
    ],
)
def test_a_change_is_refused(values, message):
    with pytest.raises(InvalidSetting, match=message):
        study_settings_validate(values, partial=True)


def test_a_new_study_needs_a_slug_and_design_and_shows_the_reference_only_when_pairwise():
    with pytest.raises(InvalidSetting, match="design is required"):
        study_settings_validate({"slug": "s"}, partial=False)
    with pytest.raises(InvalidSetting, match="show_reference applies to the pairwise design"):
        study_settings_validate(
            {**NEW, "design": "ref-vs-test", "show_reference": True}, partial=False
        )
    assert study_settings_validate({**NEW, "show_reference": True}, partial=False)


# --- the same refusal everywhere -----------------------------------------------------------

# (setting, its configure_study flag, the bad value as typed, as Python, the message)
EVERYWHERE = [
    ("gold_rate", "--gold-rate", "1.0", 1.0, "gold_rate must be in [0, 1), not 1.0"),
    ("trials_per_session", "--trials-per-session", "0", 0,
     "trials_per_session must be at least 1, not 0"),
    ("practice_trials", "--practice-trials", "51", 51,
     "practice_trials must be at most 50, not 51"),
    ("completion_url", "--completion-url", "ftp://example.org/x", "ftp://example.org/x",
     "completion_url 'ftp://example.org/x' is not an http(s) URL"),
    ("completion_url", "--completion-url", "http://example.org/x", "http://example.org/x",
     "completion_url 'http://example.org/x' must use https (plain http only for localhost, "
     "127.0.0.1 or [::1])"),
]  # fmt: skip
ids = [f"{case[0]}-{case[2][:12]}" for case in EVERYWHERE]


@pytest.mark.parametrize(("name", "flag", "typed", "value", "message"), EVERYWHERE, ids=ids)
def test_import_refuses_it(tmp_path, snapshot, name, flag, typed, value, message):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]})
    before = snapshot()
    with pytest.raises(InvalidSetting) as caught:
        study_import(source=source, slug="fresh", design="ref-vs-test", **{name: value})
    assert (str(caught.value), caught.value.field) == (message, name)
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_study", str(source), "--slug", "fresh", "--design", "ref-vs-test", flag, typed
        )
    assert str(refused.value) == f"import refused, nothing written: {message}"
    assert snapshot() == before


@pytest.mark.parametrize(("name", "flag", "typed", "value", "message"), EVERYWHERE, ids=ids)
def test_configure_study_refuses_it(name, flag, typed, value, message):
    study = StudyFactory()
    before = model_to_dict(Study.objects.get(pk=study.pk))
    with pytest.raises(CommandError) as refused:
        call_command("configure_study", study.slug, "--status", "live", flag, typed)
    assert str(refused.value) == message
    with pytest.raises(InvalidSetting) as caught:
        study_configure(study=Study.objects.get(pk=study.pk), **{name: value})
    assert (str(caught.value), caught.value.field) == (message, name)
    assert model_to_dict(Study.objects.get(pk=study.pk)) == before


def change_form_data(client, study: Study, **changes: str) -> dict:
    """The admin change form's current values, as a browser would post them, with changes."""
    form = client.get(admin_url(study)).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            value = "on" if value else None
        if value is not None:
            data[name] = value
    return {**data, **changes}


def admin_url(study: Study) -> str:
    return reverse("admin:annotation_study_change", args=[study.pk])


@pytest.mark.parametrize(("name", "flag", "typed", "value", "message"), EVERYWHERE, ids=ids)
def test_the_admin_refuses_it_on_the_field(admin_client, name, flag, typed, value, message):
    study = StudyFactory()
    before = model_to_dict(Study.objects.get(pk=study.pk))
    response = admin_client.post(
        admin_url(study), change_form_data(admin_client, study, **{name: typed})
    )
    assert response.status_code == 200  # the form again, with its error
    assert response.context["adminform"].form.errors == {name: [message]}
    assert model_to_dict(Study.objects.get(pk=study.pk)) == before


def test_the_admin_refuses_a_metric_delta_that_would_break_the_report(admin_client):
    study = StudyFactory(metric_deltas={"psnr": 0.5})
    response = admin_client.post(
        admin_url(study),
        change_form_data(admin_client, study, metric_deltas='{"psnr": "wide"}'),
    )
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["metric_deltas"]
    assert errors["metric_deltas"][0].startswith("metric_deltas must map metric names")
    assert Study.objects.get(pk=study.pk).metric_deltas == {"psnr": 0.5}


def test_the_admin_stores_a_valid_change_cleaned(admin_client):
    study = StudyFactory(metric_deltas={"psnr": 0.5})
    data = change_form_data(
        admin_client, study, metric_deltas='{"psnr": 0, "lpips": 1}', qc_side_bias_alpha=""
    )
    response = admin_client.post(admin_url(study), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert study.metric_deltas == {"lpips": 1.0}
    assert study.qc_side_bias_alpha is None


def test_the_admin_adds_a_study_through_the_same_checks(admin_client):
    """A new study is checked whole: here the reference shown in a design that has none."""
    url = reverse("admin:annotation_study_add")
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data = {key: value for key, value in data.items() if not isinstance(value, bool)}
    data.update(slug="added", design="nr-pairwise", show_reference="on")
    response = admin_client.post(url, data)
    assert response.context["adminform"].form.errors == {
        "show_reference": [
            "show_reference applies to the pairwise design only, not nr-pairwise "
            "(ref-vs-test always shows the reference; nr-pairwise never does)"
        ]
    }
    assert not Study.objects.exists()
    data.update(design="pairwise")
    assert admin_client.post(url, data).status_code == 302
    assert Study.objects.get().show_reference
