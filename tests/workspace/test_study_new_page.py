"""The "New study" page and the import's progress page (Django's test client; the browser
journey with a real worker is in test_upload_worker.py)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotation.models import Study
from tests.factories import StudyFactory
from tests.workspace.test_upload import left_in, run_job, uploads  # noqa: F401 (fixture)
from tests.workspace.uploads import study_zip, zip_members
from workspace.models import ImportJob

pytestmark = pytest.mark.django_db

User = get_user_model()
NEW = "/studies/new/"


@pytest.fixture
def researcher():
    return User.objects.create_user("ada", password="a good secret 1")


@pytest.fixture
def browser(researcher) -> Client:
    """A logged-in researcher whose POSTs must carry the CSRF token, as a browser's do."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    return client


def form_post(client: Client, zip_bytes: bytes | None, **fields):
    page = client.get(NEW)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    body = {
        "csrfmiddlewaretoken": token,
        "slug": "fresh",
        "design": "pairwise",
        "votes_per_pair": "3",
        "gold_rate": "0",
        "trials_per_session": "100",
        "practice_trials": "2",
        **fields,
    }
    if zip_bytes is not None:
        body["file"] = io.BytesIO(zip_bytes)
        body["file"].name = "study.zip"
    return client.post(NEW, body)


def test_the_studies_list_links_to_the_form(browser):
    page = browser.get("/studies/").content.decode()
    assert f'href="{NEW}"' in page
    assert ">New study<" in page


def test_the_form_explains_each_design_and_labels_every_field(browser):
    page = browser.get(NEW)
    assert page.status_code == 200
    html = page.content.decode()
    for design in ("ref-vs-test", "pairwise", "nr-pairwise"):
        assert f'value="{design}"' in html
    for name in ("slug", "title", "votes_per_pair", "show_reference", "gold_rate",
                 "trials_per_session", "practice_trials", "instructions", "file"):  # fmt: skip
        assert f'<label for="id_{name}"' in html, name
    assert "server_folder" not in html  # no IQA_IMPORT_ROOT, and not staff
    assert '<script type="module"' in html
    assert "<script>" not in html


def test_a_zip_from_the_form_is_imported_and_its_summary_shown(browser, researcher, tmp_path):
    response = form_post(browser, study_zip(tmp_path, scenes=2), show_reference="on", title="T")
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("workspace:import-detail", args=[job.pk])
    waiting = browser.get(response["Location"]).content.decode()
    assert "<progress" in waiting
    assert 'aria-live="polite"' in waiting
    assert "import.js" in waiting

    assert run_job(job.pk).status == "done"

    done = browser.get(response["Location"]).content.decode()
    assert '<th scope="row">s0</th><td class="num">3</td><td class="num">3</td>' in done
    assert 'href="/studies/fresh/"' in done  # the study's dashboard
    assert "import.js" not in done
    study = Study.objects.get(slug="fresh")
    assert (study.owner, study.show_reference, study.title) == (researcher, True, "T")


def test_several_bad_settings_are_shown_at_once_next_to_their_fields(browser, tmp_path, uploads):  # noqa: F811
    response = form_post(
        browser, study_zip(tmp_path), votes_per_pair="0", gold_rate="1.5", practice_trials="99"
    )
    assert response.status_code == 400
    html = response.content.decode()
    for field, message in (
        ("votes_per_pair", "Votes per pair must be at least 1, not 0"),
        ("gold_rate", "Gold rate must be in [0, 1), not 1.5"),
        ("practice_trials", "Practice trials must be at most 50, not 99"),
    ):
        assert re.search(rf'id="id_{field}_error"><li>{re.escape(message)}</li>', html), field
    assert "choose it again" in html
    assert ImportJob.objects.count() == 0
    assert left_in(uploads) == []


def test_a_slug_that_exists_is_shown_on_the_slug_field(browser, tmp_path, uploads, snapshot):  # noqa: F811
    StudyFactory(slug="fresh")
    before = snapshot()
    response = form_post(browser, study_zip(tmp_path))
    assert response.status_code == 400
    assert re.search(
        r'id="id_slug_error"><li>a study with slug &#x27;fresh&#x27; already exists</li>',
        response.content.decode(),
    )
    assert snapshot() == before
    assert left_in(uploads) == []


def test_no_file_is_an_error_on_the_file_field(browser):
    response = form_post(browser, None)
    assert response.status_code == 400
    assert "Choose the study&#x27;s .zip file." in response.content.decode()


def test_an_upload_over_the_limit_gets_a_413_page(browser, tmp_path, uploads, settings):  # noqa: F811
    settings.IQA_UPLOAD_MAX_BYTES = 10_000
    response = form_post(browser, zip_members({"s/x.bin": bytes(range(256)) * 100}, method=0))
    assert response.status_code == 413
    html = response.content.decode()
    assert "larger than the limit of 9.8" in html
    assert "IQA_UPLOAD_MAX_BYTES" in html
    assert ImportJob.objects.count() == 0
    assert left_in(uploads) == []


def test_the_form_needs_its_csrf_token(browser, tmp_path, uploads):  # noqa: F811
    """The upload handler goes in before the CSRF check, which still runs (and refuses)."""
    body = {"slug": "fresh", "design": "pairwise", "file": io.BytesIO(study_zip(tmp_path))}
    assert browser.post(NEW, body).status_code == 403
    assert left_in(uploads) == []


def test_a_failed_import_shows_its_error_and_the_form_keeps_its_values(browser, tmp_path):
    form_post(browser, b"not a zip", title="Kept", votes_per_pair="7")
    job = ImportJob.objects.get()
    run_job(job.pk)
    page = browser.get(reverse("workspace:import-detail", args=[job.pk])).content.decode()
    assert 'role="alert">the upload is not a zip file' in page
    back = f"{NEW}?from={job.pk}"
    assert back in page
    again = browser.get(back).content.decode()
    assert 'value="Kept"' in again
    assert 'name="votes_per_pair" value="7"' in again
    assert re.search(r'value="pairwise"[^>]*checked', again)
    assert not re.search(r'value="ref-vs-test"[^>]*checked', again)


def test_another_researchers_import_is_not_found(browser, tmp_path):
    form_post(browser, study_zip(tmp_path))
    job = ImportJob.objects.get()
    other = Client()
    other.force_login(User.objects.create_user("bob", password="x"))
    assert other.get(reverse("workspace:import-detail", args=[job.pk])).status_code == 404
    assert "Kept" not in other.get(f"{NEW}?from={job.pk}").content.decode()
    anonymous = Client().get(reverse("workspace:import-detail", args=[job.pk]))
    assert anonymous.status_code == 302
