"""The admin pages for every model, the API schema page and the annotator page."""

import json
import re

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote
from tests.factories import (
    ImageFactory,
    LiveStudyFactory,
    PairFactory,
    StudyFactory,
    make_gold_pair,
)

pytestmark = pytest.mark.django_db


def test_imported_study_settings_are_read_only_in_the_admin(admin_client):
    study = StudyFactory(slug="fixed", design="pairwise")
    response = admin_client.post(
        reverse("admin:annotation_study_change", args=[study.pk]),
        {"slug": "changed", "design": "ref-vs-test", "title": "New title", "votes_per_pair": 5,
         "gold_rate": 0.1, "status": "live", "completion_code": "ABC", "instructions": "",
         "trials_per_session": 40, "practice_trials": 1, "lease_seconds": 300,
         "hold_seconds": 60, "min_response_ms": 400, "min_counted_trials": "",
         "break_every": 20, "qc_min_gold_accuracy": 0.8, "qc_min_median_response_ms": "",
         "qc_side_bias_alpha": 0.001, "qc_max_similar_share": 0.9, "qc_fast_response_ms": 300,
         "qc_test": "binomial", "qc_correction": "holm", "qc_alpha": 0.05,
         "qc_min_answers": 20, "qc_min_gold": 5, "metric_deltas": '{"psnr": 0.5}'},
    )  # fmt: skip
    assert response.status_code == 302
    study.refresh_from_db()
    assert (study.slug, study.design, study.votes_per_pair) == ("fixed", "pairwise", 3)
    assert (study.title, study.status, study.trials_per_session) == ("New title", "live", 40)
    # Quality-control rules are settings: editable, a blank threshold turns a rule off.
    assert (study.qc_min_gold_accuracy, study.qc_min_median_response_ms) == (0.8, None)
    assert study.metric_deltas == {"psnr": 0.5}


@pytest.mark.parametrize("model", [Study, Scene, Image, Pair, AnnotatorSession, Trial, Vote])
def test_every_model_has_an_admin_list_and_change_page(admin_client, model):
    pair = PairFactory(scene__study__status="live")
    token = services.session_open(study_slug=pair.study.slug).session.token
    trial = services.trial_next(token=token)
    services.vote_submit(token=token, trial_id=trial.trial_id, choice="left", response_ms=5)
    meta = model._meta
    listing = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    assert listing.status_code == 200
    obj = model.objects.first()
    change = admin_client.get(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    )
    assert change.status_code == 200


def test_the_openapi_schema_is_published(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi" in response.content


def page_config(response) -> dict:
    match = re.search(
        r'<script id="annotate-config" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    return json.loads(match.group(1))


def test_the_annotator_page_carries_the_study_settings(client):
    study = LiveStudyFactory(design="ref-vs-test", break_every=25, instructions="Look.")
    gold = make_gold_pair(study)  # decoy is image a, reference image b: "b" is better
    # The worked example: the example decoy made for it beside the anchor, not the gold pair.
    example_decoy = ImageFactory(scene=gold.scene, gold=Image.Gold.EXAMPLE)
    response = client.get(f"/annotate/{study.slug}/")
    assert response.status_code == 200
    config = page_config(response)
    assert config["slug"] == study.slug
    assert config["api"] == "/api/v1/"
    assert (config["design"], config["break_every"], config["open"]) == ("ref-vs-test", 25, True)
    assert config["instructions"] == "Look."
    assert "voluntary" in config["consent"]  # the generic consent text
    example = config["example"]
    assert example["images"]["left"] == f"/media/{example_decoy.file}"
    assert example["images"]["right"] == f"/media/{gold.image_b.file}"
    assert example["images"]["reference"] is None
    assert example["answer"] == "right"
    assert example["sizes"]["left"] == {"width": 48, "height": 32}
    assert 'type="module"' in response.content.decode()


def test_the_annotator_page_shows_a_studys_own_consent_and_says_when_it_is_not_open(client):
    study = StudyFactory(consent="Our own consent text.", status="closed")
    config = page_config(client.get(f"/annotate/{study.slug}/"))
    assert config["consent"] == "Our own consent text."
    assert config["open"] is False
    assert "closed" in config["closed_message"]
    assert config["example"] is None


def test_the_studys_title_is_never_shown_to_annotators(client):
    """Issue 25: the title (a researcher's "JPEG vs our method") was the heading of the
    annotator's consent page. It is the researchers' only: neither the annotator page nor
    the annotator API carries it."""
    study = LiveStudyFactory(title="JPEG vs our method")
    page = client.get(f"/annotate/{study.slug}/").content.decode()
    assert "JPEG vs our method" not in page
    assert page_config(client.get(f"/annotate/{study.slug}/"))["title"] == "Image comparison study"
    session = client.post(
        f"/api/v1/studies/{study.slug}/sessions", {}, content_type="application/json"
    ).json()
    assert "JPEG vs our method" not in json.dumps(session)
    assert "title" not in session


def test_a_draft_is_an_unknown_slug_to_all_but_its_researchers(client, django_user_model):
    """Drafts are private: anyone who is not its owner, a member or staff gets exactly the
    page an unknown slug gets (its title, instructions and consent stay unseen); the owner
    sees the page, saying it is not open yet."""
    owner = django_user_model.objects.create_user("owner", password="x")
    other = django_user_model.objects.create_user("other", password="x")
    study = StudyFactory(
        slug="secret-draft", title="JPEG vs our method", consent="Secret consent.", owner=owner
    )
    unknown = client.get("/annotate/secret-drafz/")
    for user in (None, other):
        if user is not None:
            client.force_login(user)
        response = client.get(f"/annotate/{study.slug}/")
        assert response.status_code == 404
        body = response.content.decode()
        assert body == unknown.content.decode().replace("secret-drafz", "secret-draft")
        assert "JPEG vs our method" not in body
        assert "Secret consent" not in body
    client.force_login(owner)
    config = page_config(client.get(f"/annotate/{study.slug}/"))
    assert config["open"] is False
    assert "not opened yet" in config["closed_message"]


def test_an_unknown_study_gets_a_404_page(client):
    response = client.get("/annotate/no-such-study/")
    assert response.status_code == 404
    assert "No such study" in response.content.decode()


def test_the_page_assets_are_served_without_collectstatic(client):
    for name in ("main.js", "api.js", "viewer.js", "annotate.css"):
        response = client.get(f"/static/frontend/annotate/{name}")
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content)
        assert body
    assert "javascript" in client.get("/static/frontend/annotate/main.js")["Content-Type"]
