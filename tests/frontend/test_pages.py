"""The study index and the admin pages for every model."""

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote
from tests.factories import PairFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_study_index_lists_studies_with_counts_in_one_query(
    admin_client, django_assert_num_queries
):
    for _ in range(3):
        PairFactory()
    StudyFactory(slug="empty")
    admin_client.get("/")  # warm the session
    # The session and the user, then one query for the studies with their counts.
    with django_assert_num_queries(3):
        response = admin_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "empty" in html
    studies = list(response.context["studies"])
    assert [(s.n_scenes, s.n_images, s.n_pairs) for s in studies if s.slug != "empty"] == [
        (1, 2, 1)
    ] * 3


def test_the_study_index_is_for_researchers_only(client):
    StudyFactory(slug="secret-study")
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_imported_study_settings_are_read_only_in_the_admin(admin_client):
    study = StudyFactory(slug="fixed", design="pairwise")
    response = admin_client.post(
        reverse("admin:annotation_study_change", args=[study.pk]),
        {"slug": "changed", "design": "ref-vs-test", "title": "New title", "votes_per_pair": 5,
         "gold_rate": 0.1, "status": "live", "completion_code": "ABC", "instructions": "",
         "trials_per_session": 40, "practice_trials": 1, "lease_seconds": 300},
    )  # fmt: skip
    assert response.status_code == 302
    study.refresh_from_db()
    assert (study.slug, study.design, study.votes_per_pair) == ("fixed", "pairwise", 3)
    assert (study.title, study.status, study.trials_per_session) == ("New title", "live", 40)


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
