"""The researchers' study list: each researcher's own and member studies, staff every
study, nobody logged out."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import PairFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


def study_with_pairs(owner, slug: str, n_pairs: int = 1):
    study = StudyFactory(slug=slug, title=f"Title of {slug}", owner=owner)
    scene = SceneFactory(study=study)
    for _ in range(n_pairs):
        PairFactory(scene=scene)
    return study


def listed(response) -> list[str]:
    return [study.slug for study in response.context["studies"]]


def test_a_researcher_sees_their_own_and_member_studies_with_counts_in_bounded_queries(
    client,
):
    """Owned and member studies, with their counts, in a number of queries that does not
    grow with the studies; nothing of another researcher's study is in the page."""
    ada, bob = User.objects.create_user("ada"), User.objects.create_user("bob")
    study_with_pairs(ada, "ada-one", n_pairs=2)
    shared = study_with_pairs(bob, "bob-shared")
    shared.members.add(ada)
    study_with_pairs(bob, "bob-private")
    StudyFactory(slug="empty", owner=ada)
    client.force_login(ada)
    client.get("/studies/")  # warm the session

    def page():
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/studies/")
        assert response.status_code == 200
        return response, len(queries)

    response, n_queries = page()
    assert listed(response) == ["ada-one", "bob-shared", "empty"]
    counts = {s.slug: (s.n_scenes, s.n_images, s.n_pairs) for s in response.context["studies"]}
    assert counts == {"ada-one": (1, 4, 2), "bob-shared": (1, 2, 1), "empty": (0, 0, 0)}
    html = response.content.decode()
    assert "bob-private" not in html
    assert "Title of bob-private" not in html
    # The session and the user, then one query for the studies with their counts.
    assert n_queries <= 4
    for i in range(4):
        study_with_pairs(ada, f"ada-more-{i}", n_pairs=3)
    response, more_queries = page()
    assert len(listed(response)) == 7
    assert more_queries == n_queries


def test_staff_see_every_study(client):
    ada = User.objects.create_user("ada")
    staff = User.objects.create_user("boss", is_staff=True)
    study_with_pairs(ada, "ada-one")
    StudyFactory(slug="ownerless")
    client.force_login(staff)
    assert listed(client.get("/studies/")) == ["ada-one", "ownerless"]


def test_a_researcher_with_no_studies_sees_an_empty_list(client):
    study_with_pairs(User.objects.create_user("ada"), "ada-one")
    client.force_login(User.objects.create_user("bob"))
    response = client.get("/studies/")
    assert listed(response) == []
    assert "ada-one" not in response.content.decode()


def test_logged_out_visitors_are_sent_to_the_login_page(client):
    """``/`` leads to the study list, which sends a logged-out visitor to the login page
    (and back after it)."""
    StudyFactory(slug="secret-study")
    home = client.get("/")
    assert home.status_code == 302
    assert home["Location"] == "/studies/"
    response = client.get("/studies/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/studies/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "secret-study" not in page.content.decode()
