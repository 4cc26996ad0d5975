"""A study's management on the researcher pages: members and roles, archive and restore,
delete, preview (pilot data), adding scenes, the bundle as an export job, and accounts a
lab can run (password reset by e-mail, invitation links). Who may reach each URL is
``test_access.py``'s; here, what each does."""

import io
import re
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation import services
from annotation.models import AnnotatorSession, Role, Study, StudyMember, Vote
from tests.annotation.sessions import open_session, run_session, vote_after
from tests.images import write_scene_folder
from tests.workspace.uploads import zip_folder
from workspace import export_jobs, import_jobs
from workspace.models import ExportJob, ImportJob

pytestmark = pytest.mark.django_db

User = get_user_model()
STEMS = ["reference", "a", "b"]


@pytest.fixture
def ada():
    return User.objects.create_user("ada", password="a long password 1")


@pytest.fixture
def study(tmp_path, ada) -> Study:
    source = write_scene_folder(tmp_path / "src", {"s1": STEMS, "s2": STEMS})
    return services.study_import(
        source=source,
        slug="shared",
        title="Shared study",
        design="ref-vs-test",
        owner=ada,
        live=True,
        trials_per_session=4,
        practice_trials=0,
        votes_per_pair=2,
    ).study


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- members and roles ------------------------------------------------------------------


def test_the_owner_adds_changes_and_removes_members_by_username(study, ada):
    bob = User.objects.create_user("bob")
    client = browser(ada)
    url = f"/studies/{study.slug}/members/"
    added = client.post(url, {"username": "bob", "role": "viewer"}, follow=True)
    assert "bob is now viewer of this study." in messages_of(added)
    assert StudyMember.objects.get(study=study, user=bob).role == Role.VIEWER
    assert '<tr data-member="bob">' in added.content.decode()
    # A viewer sees the study but may not change it.
    assert browser(bob).get(f"/studies/{study.slug}/").status_code == 200
    assert (
        browser(bob).post(f"/studies/{study.slug}/status/", {"status": "closed"}).status_code == 403
    )

    client.post(url, {"username": "bob", "role": "editor"})
    assert StudyMember.objects.get(study=study, user=bob).role == Role.EDITOR
    assert (
        browser(bob).post(f"/studies/{study.slug}/status/", {"status": "closed"}).status_code == 302
    )
    # An editor does not manage people.
    assert browser(bob).post(url, {"username": "bob", "role": "owner"}).status_code == 403

    removed = client.post(url, {"username": "bob", "remove": "1"}, follow=True)
    assert "bob is no longer a member of this study." in messages_of(removed)
    assert browser(bob).get(f"/studies/{study.slug}/").status_code == 404


@pytest.mark.parametrize(
    ("username", "role", "message"),
    [
        ("nobody", "viewer", "no researcher named 'nobody'"),
        ("ada", "editor", "ada made this study and is always its owner"),
        ("bob", "admin", "unknown role 'admin'"),
    ],
)
def test_a_member_refused_is_named_and_nothing_changes(study, ada, username, role, message):
    User.objects.create_user("bob")
    response = browser(ada).post(
        f"/studies/{study.slug}/members/", {"username": username, "role": role}, follow=True
    )
    shown = " ".join(messages_of(response))
    assert message in shown, shown
    assert not StudyMember.objects.filter(study=study).exists()


def test_an_owner_member_manages_people_and_archives(study, ada):
    olga = User.objects.create_user("olga")
    StudyMember.objects.create(study=study, user=olga, role=Role.OWNER)
    User.objects.create_user("vic")
    client = browser(olga)
    client.post(f"/studies/{study.slug}/members/", {"username": "vic", "role": "viewer"})
    assert StudyMember.objects.filter(study=study, user__username="vic").exists()
    client.post(f"/studies/{study.slug}/status/", {"status": "closed"})
    assert client.post(f"/studies/{study.slug}/archive/").status_code == 302
    study.refresh_from_db()
    assert study.archived_at is not None


# --- archive and restore ----------------------------------------------------------------


def test_an_archived_study_leaves_the_list_and_is_read_only_until_restored(study, ada):
    client = browser(ada)
    refused = client.post(f"/studies/{study.slug}/archive/", follow=True)
    assert any("live" in m for m in messages_of(refused))  # close it first
    client.post(f"/studies/{study.slug}/status/", {"status": "closed"})
    client.post(f"/studies/{study.slug}/archive/")

    listed = client.get("/studies/").content.decode()
    assert "Shared study" not in listed
    assert "Archived (1)" in listed
    assert "Shared study" in client.get("/studies/?archived=1").content.decode()
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert "Archived <time" in page
    assert '<fieldset class="fieldsets" disabled>' in page
    assert "Score now: every available metric" not in page

    api = APIClient()
    api.force_authenticate(ada)
    patched = api.patch(f"/api/v1/studies/{study.slug}", {"title": "x"}, format="json")
    assert patched.status_code == 409
    assert patched.json()["error"]["code"] == "study_archived"

    client.post(f"/studies/{study.slug}/restore/")
    assert "Shared study" in client.get("/studies/").content.decode()
    assert (
        api.patch(f"/api/v1/studies/{study.slug}", {"title": "x"}, format="json").status_code == 200
    )


# --- delete ------------------------------------------------------------------------------


def test_delete_asks_for_the_slug_then_removes_the_study_and_its_exports(
    study, ada, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    run_session(open_session(study, "p1"))
    job = export_jobs.export_job_start(study=study, owner=ada, format="csv")
    export_jobs.export_job_run(job_id=job.pk)
    zip_path = export_jobs.export_path(ExportJob.objects.get(pk=job.pk))
    assert zip_path.exists()
    client = browser(ada)
    services.study_configure(study=study, status="closed")

    page = client.get(f"/studies/{study.slug}/delete/").content.decode()
    assert "1 session and 4 votes" in page
    wrong = client.post(f"/studies/{study.slug}/delete/", {"confirm": "Shared"})
    assert wrong.status_code == 400
    assert "type the study&#x27;s slug, shared, to delete it" in wrong.content.decode()
    assert Study.objects.filter(slug="shared").exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(f"/studies/{study.slug}/delete/", {"confirm": "shared"}, follow=True)
    assert "Study shared deleted: 1 session, 4 votes and 6 images" in " ".join(messages_of(done))
    assert not Study.objects.filter(slug="shared").exists()
    assert not ExportJob.objects.filter(pk=job.pk).exists()
    assert not zip_path.exists()


# --- preview and pilot data -------------------------------------------------------------


def test_preview_opens_the_annotator_page_on_a_pilot_session(study, ada):
    client = browser(ada)
    response = client.post(f"/studies/{study.slug}/preview/")
    assert response.status_code == 302
    match = re.fullmatch(rf"/annotate/{study.slug}/\?preview=1#pilot=(\S+)", response["Location"])
    assert match, response["Location"]
    session = AnnotatorSession.objects.get(token=match[1])
    assert (session.pilot, session.piloted_by, session.study) == (True, ada, study)

    page = client.get(f"/annotate/{study.slug}/?preview=1")
    assert page.context["config"]["preview"] is True
    assert "Preview: your answers are stored as pilot data" in page.content.decode()
    # The flag is the page's only for those who see the study.
    assert Client().get(f"/annotate/{study.slug}/?preview=1").context["config"]["preview"] is False


def test_preview_of_a_draft_opens_it_for_the_pilot_only(study, ada):
    services.study_configure(study=study, status="draft")
    page = browser(ada).get(f"/annotate/{study.slug}/?preview=1")
    assert page.context["config"]["open"] is True
    assert browser(ada).get(f"/annotate/{study.slug}/").context["config"]["open"] is False
    assert Client().get(f"/annotate/{study.slug}/?preview=1").status_code == 404


def test_the_dashboard_shows_pilot_data_apart_and_deletes_it(study, ada):
    run_session(open_session(study, "p1"))
    pilot = services.pilot_session_open(study=study, user=ada)
    trial = services.trial_next(token=pilot.token)
    vote_after(pilot.token, trial.trial_id, "left", 900)
    client = browser(ada)
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert "1 preview session, 1 pilot vote." in page
    counted = re.search(r'data-field="counted_votes">(\d+)<', page)[1]
    assert counted == "4"  # the annotator's only
    done = client.post(f"/studies/{study.slug}/pilot/delete/", follow=True)
    assert "Pilot data deleted: 1 preview session and 1 vote;" in " ".join(messages_of(done))
    assert Vote.objects.filter(pair__study=study).count() == 4


# --- adding scenes ----------------------------------------------------------------------


def test_scenes_added_from_a_zip_on_the_page_join_the_study(study, ada, tmp_path, settings):
    settings.IQA_UPLOAD_DIR = tmp_path / "uploads"
    settings.IQA_SCRATCH_DIR = tmp_path / "scratch"
    folder = write_scene_folder(tmp_path / "more", {"s3": STEMS}, seed=40)
    upload = io.BytesIO(zip_folder(folder))
    upload.name = "more.zip"
    client = browser(ada)
    response = client.post(f"/studies/{study.slug}/scenes/add/", {"file": upload})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ImportJob.objects.get()
    assert (job.adds_scenes, job.study, job.slug) == (True, study, study.slug)
    import_jobs.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done", job.error
    page = client.get(response["Location"]).content.decode()
    assert "were added to" in page
    assert sorted(study.scenes.values_list("name", flat=True)) == ["s1", "s2", "s3"]

    # The same scene again: refused by the job, the study as it was.
    upload = io.BytesIO(zip_folder(folder))
    upload.name = "again.zip"
    again = client.post(f"/studies/{study.slug}/scenes/add/", {"file": upload})
    failed = import_jobs.import_job_run(job_id=ImportJob.objects.exclude(pk=job.pk).get().pk)
    assert failed.status == "failed"
    assert "'s3'" in failed.error
    assert "Nothing was added" in client.get(again["Location"]).content.decode()
    assert study.scenes.count() == 3


def test_the_scenes_form_without_a_file_says_so(study, ada):
    response = browser(ada).post(f"/studies/{study.slug}/scenes/add/", {})
    assert response.status_code == 400
    assert "Choose the .zip file of the new scenes." in response.content.decode()


# --- the bundle as an export job --------------------------------------------------------


def test_the_bundle_with_images_is_an_export_job(study, ada, tmp_path, settings):
    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    run_session(open_session(study, "p1"))
    api = APIClient()
    api.force_authenticate(ada)
    started = api.post(f"/api/v1/studies/{study.slug}/exports", {"format": "bundle"}, format="json")
    assert started.status_code == 202, started.content
    job = export_jobs.export_job_run(job_id=started.json()["export"]["id"])
    assert job.status == "done", job.error
    assert job.done == job.total > 0
    with zipfile.ZipFile(export_jobs.export_path(job)) as bundle:
        names = bundle.namelist()
    images = [name for name in names if name.startswith("images/") and name.endswith(".png")]
    assert len(images) == study_images(study)
    assert {"README.md", "votes.csv", "images/metadata.jsonl", "pairs/metadata.jsonl"} <= set(names)
    refused = api.post(
        f"/api/v1/studies/{study.slug}/exports",
        {"format": "bundle", "include_pilot": True},
        format="json",
    )
    assert refused.status_code == 400


def study_images(study: Study) -> int:
    from annotation.models import Image

    return Image.objects.filter(scene__study=study).count()


def test_an_export_with_pilot_data_marks_it(study, ada, tmp_path, settings):
    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    run_session(open_session(study, "p1"))
    pilot = services.pilot_session_open(study=study, user=ada)
    run_session(pilot.token)
    for include, expected in ((False, 0), (True, 4)):
        job = export_jobs.export_job_start(
            study=study, owner=ada, format="csv", include_pilot=include
        )
        export_jobs.export_job_run(job_id=job.pk)
        with zipfile.ZipFile(export_jobs.export_path(job)) as archive:
            votes = archive.read("votes.csv").decode().splitlines()
        header = votes[0].split(",")
        pilot_column = header.index("is_pilot")
        marked = [line for line in votes[1:] if line.split(",")[pilot_column] == "True"]
        assert len(marked) == expected


# --- accounts -----------------------------------------------------------------------------


def test_a_forgotten_password_is_reset_by_e_mail_once(settings):
    User.objects.create_user("ada", email="ada@lab.example", password="an old password 1")
    client = Client()
    sent = client.post("/password/reset/", {"email": "ada@lab.example"})
    assert sent.status_code == 302
    assert sent["Location"] == "/password/reset/sent/"
    # The same answer for an address no account has; no e-mail then.
    assert client.post("/password/reset/", {"email": "who@else.example"})["Location"] == (
        "/password/reset/sent/"
    )
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/password/reset/\S+/)", mail.outbox[0].body)[1]
    assert mail.outbox[0].to == ["ada@lab.example"]
    set_password(client, link, "a brand new password 7")
    assert User.objects.get(username="ada").check_password("a brand new password 7")
    # Used once: the link now says it no longer works.
    again = Client().get(link, follow=True).content.decode()
    assert "This link no longer works" in again


def test_an_invited_researcher_whose_link_lapsed_can_ask_for_another():
    call_command("create_researcher", "cy", "--invite", "--email", "cy@lab.example")
    assert Client().post("/password/reset/", {"email": "CY@lab.example"}).status_code == 302
    assert [message.to for message in mail.outbox] == [["cy@lab.example"]]


def test_reset_links_use_the_base_url_and_e_mails_are_limited_per_address(settings):
    settings.IQA_BASE_URL = "https://iqa.lab.example"
    settings.IQA_PASSWORD_RESET_RATE = "2/h"
    User.objects.create_user("ada", email="ada@lab.example")
    client = Client()
    for _ in range(2):
        assert client.post("/password/reset/", {"email": "ada@lab.example"}).status_code == 302
    refused = client.post("/password/reset/", {"email": "ada@lab.example"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many reset e-mails" in refused.content.decode()
    assert len(mail.outbox) == 2
    assert "https://iqa.lab.example/password/reset/" in mail.outbox[0].body
    # Another address is not limited by this one's requests.
    other = Client(REMOTE_ADDR="127.0.0.9")
    assert other.post("/password/reset/", {"email": "ada@lab.example"}).status_code == 302


def test_a_study_receiving_scenes_is_not_deleted_meanwhile(study, ada):
    services.study_configure(study=study, status="closed")
    services.study_configure(study=study, status="draft")
    ImportJob.objects.create(
        owner=ada, slug=study.slug, study=study, adds_scenes=True, status="queued"
    )
    refused = browser(ada).post(f"/studies/{study.slug}/delete/", {"confirm": "shared"})
    assert refused.status_code == 409
    assert "scenes are being added" in refused.content.decode()
    assert Study.objects.filter(pk=study.pk).exists()


def set_password(client: Client, link: str, password: str) -> None:
    form = client.get(link, follow=True)
    assert "Set your password" in form.content.decode()
    url = form.redirect_chain[-1][0]
    done = client.post(url, {"new_password1": password, "new_password2": password})
    assert done.status_code == 302, done.content.decode()[:1500]
    assert done["Location"] == "/password/reset/done/"


def test_an_invitation_link_sets_the_password_of_a_new_account_once(capsys):
    call_command(
        "create_researcher", "bea", "--invite", "--email", "bea@lab.example",
        "--base-url", "https://iqa.lab.example",
    )  # fmt: skip
    out = capsys.readouterr().out
    link = re.search(r"https://iqa\.lab\.example(/password/reset/\S+/)", out)[1]
    bea = User.objects.get(username="bea")
    assert not bea.has_usable_password()
    assert bea.email == "bea@lab.example"
    client = Client()
    set_password(client, link, "bea's own password 3")
    assert User.objects.get(username="bea").check_password("bea's own password 3")
    assert "This link no longer works" in Client().get(link, follow=True).content.decode()


def test_the_e_mail_backend_comes_from_the_environment():
    """Without EMAIL_HOST messages go to the console; with it, over SMTP (checked in a
    fresh interpreter, as the settings are read at start)."""
    import subprocess
    import sys

    base = Path(__file__).resolve().parents[2]
    code = "from django.conf import settings; print(settings.EMAIL_BACKEND, settings.EMAIL_PORT)"
    for env, expected in (
        ({}, "django.core.mail.backends.console.EmailBackend 587"),
        ({"EMAIL_HOST": "smtp.lab.example", "EMAIL_PORT": "465"}, "smtp.EmailBackend 465"),
    ):
        import os

        environ = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
        environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
        done = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=base, env=environ, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip().endswith(expected), done.stdout
