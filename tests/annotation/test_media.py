"""The image store at /media/images/...: who may fetch a file.

Files are content-addressed and can be shared by several studies. Anyone may fetch a file
a live or closed study uses (annotators need it); a file only draft studies use goes to a
logged-in researcher who may see one of them; anything else answers 404.
"""

import hashlib
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from annotation.models import AnnotatorSession, Study
from tests.factories import ImageFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"


def stored(media_root: Path, content: bytes, ext: str = "png") -> str:
    sha = hashlib.sha256(content).hexdigest()
    relative = f"images/{sha[:2]}/{sha[2:4]}/{sha}.{ext}"
    (media_root / relative).parent.mkdir(parents=True, exist_ok=True)
    (media_root / relative).write_bytes(content)
    return relative


def image_in(study: Study, file: str, **fields):
    sha = Path(file).stem
    return ImageFactory(scene=SceneFactory(study=study), sha256=sha, file=file, **fields)


@pytest.fixture
def people():
    ada = User.objects.create_user("ada")
    return {
        "ada": ada,
        "bob": User.objects.create_user("bob"),
        "staff": User.objects.create_user("boss", is_staff=True),
    }


def client_for(user=None, **headers) -> Client:
    client = Client(**headers)
    if user is not None:
        client.force_login(user)
    return client


def test_a_live_or_closed_studys_images_are_public_and_cached_for_good(
    media_root, django_assert_num_queries
):
    """Anyone gets them, in one query, with immutable public caching."""
    for status in (Study.Status.LIVE, Study.Status.CLOSED):
        file = stored(media_root, PNG + status.encode())
        image_in(StudyFactory(status=status), file)
        with django_assert_num_queries(1):
            response = Client().get(f"/media/{file}")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["Cache-Control"] == "public, max-age=31536000, immutable"
        assert b"".join(response.streaming_content) == PNG + status.encode()


def test_a_draft_studys_images_go_only_to_those_who_may_see_it(media_root, people):
    """Owner, member and staff get a draft's image (never cached by a shared cache);
    another researcher, an annotator's token and anonymous callers get 404."""
    draft = StudyFactory(owner=people["ada"])
    member = User.objects.create_user("mia")
    draft.members.add(member)
    file = stored(media_root, PNG + b"draft")
    image_in(draft, file)
    live = StudyFactory(status=Study.Status.LIVE)
    annotator = AnnotatorSession.objects.create(study=live, created_at=timezone.now())
    url = f"/media/{file}"
    for user in (people["ada"], member, people["staff"]):
        response = client_for(user).get(url)
        assert response.status_code == 200, user
        assert response["Cache-Control"] == "private, max-age=31536000, immutable"
    for client in (
        client_for(people["bob"]),
        Client(),
        Client(HTTP_AUTHORIZATION=f"Token {annotator.token}"),
        Client(HTTP_AUTHORIZATION=f"Bearer {annotator.token}"),
    ):
        assert client.get(url).status_code == 404


def test_a_file_shared_with_a_live_study_is_public_and_one_shared_by_drafts_is_each_owners(
    media_root, people
):
    """Content addressing: the same file in a draft and a live study is public; the same
    file in two researchers' drafts goes to each of them, not to a third."""
    shared = stored(media_root, PNG + b"shared")
    image_in(StudyFactory(owner=people["ada"]), shared)
    image_in(StudyFactory(status=Study.Status.LIVE), shared)
    assert Client().get(f"/media/{shared}").status_code == 200

    drafts = stored(media_root, PNG + b"drafts")
    image_in(StudyFactory(owner=people["ada"]), drafts)
    image_in(StudyFactory(owner=people["bob"]), drafts)
    assert client_for(people["ada"]).get(f"/media/{drafts}").status_code == 200
    assert client_for(people["bob"]).get(f"/media/{drafts}").status_code == 200
    assert client_for(User.objects.create_user("eve")).get(f"/media/{drafts}").status_code == 404
    assert Client().get(f"/media/{drafts}").status_code == 404


def test_display_copies_follow_their_images_study(media_root, people):
    """The PNG shown for a TIFF/PPM/BMP original is served like the original."""
    for status, public in ((Study.Status.LIVE, True), (Study.Status.DRAFT, False)):
        original = stored(media_root, b"II*\x00tiff" + status.encode(), ext="tiff")
        display = stored(media_root, PNG + b"display" + status.encode())
        image_in(StudyFactory(owner=people["ada"], status=status), original, display_file=display)
        assert (Client().get(f"/media/{display}").status_code == 200) is public
        assert client_for(people["ada"]).get(f"/media/{display}").status_code == 200
        assert client_for(people["bob"]).get(f"/media/{display}").status_code == (
            200 if public else 404
        )


def test_unknown_stray_and_outside_files_answer_404(media_root, people):
    """A file no study uses (even for staff), a missing one, and a path out of the store."""
    stray = stored(media_root, PNG + b"stray")
    staff = client_for(people["staff"])
    assert staff.get(f"/media/{stray}").status_code == 404
    assert staff.get("/media/images/ab/cd/nothing.png").status_code == 404
    (media_root / "secret.txt").write_text("secret")
    assert staff.get("/media/images/../secret.txt").status_code == 404
    assert staff.get("/media/images/%2e%2e/secret.txt").status_code == 404


def test_the_store_answers_get_only(media_root):
    file = stored(media_root, PNG + b"methods")
    image_in(StudyFactory(status=Study.Status.LIVE), file)
    assert Client().get(f"/media/{file}").status_code == 200
    assert Client().post(f"/media/{file}").status_code == 405


@pytest.mark.parametrize("path", ["images/%00.png", "images/a%00b/c.png", "images/../x.png"])
def test_a_malformed_or_escaping_path_is_a_404_not_an_error(path):
    """A NUL byte (which the file system refuses) or a path leaving the store answers 404,
    as a missing file does."""
    assert Client().get(f"/media/{path}").status_code == 404
