# ruff: noqa: E501  (TABLE keeps one URL per line, however long)
"""The access matrix: every researcher URL against every kind of caller.

Principals: researcher A (owns study ``a``, a draft with images), A again with their API
token instead of the session, the members of ``a`` by role (O an owner member, E an
editor, V a viewer), a staff user, researcher B (owns study ``b``, member of nothing), an
annotator's session token of a live study sent as ``Authorization: Token <token>`` and as
``Bearer <token>``, and no credentials. A viewer reads and downloads; an editor also
changes; an owner also manages members, archives and deletes (403 below the role).

Every URL pattern of the ``workspace`` and ``workspace-api`` namespaces (and the image
store, ``media``) must have a row in TABLE: ``test_every_researcher_url_has_a_row`` walks
the URL resolver and fails on a pattern without one. A row is the URL name and its cases,
each a method, a path (``{a}`` is study a's slug; see ``World.placeholders`` for the
others) and the expected status per principal, in the order of PRINCIPALS:

    LOGIN  a redirect to the login page (``/login/?next=...``)
    302    any other redirect
    200, 202, 400, 403, 404, 405, 409  that status

Another researcher's study answers 404, never 403, and its title (or its slug, in a 200
page) never appears in the body.
"""

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from annotation.models import AnnotatorSession, ExclusionDecision, Role, Study, StudyMember
from tests.factories import ImageFactory, PairFactory, SceneFactory, StudyFactory
from workspace.forms import StudySettingsForm
from workspace.models import ExportJob, ImportJob

pytestmark = pytest.mark.django_db

User = get_user_model()

LOGIN = "login"

# The order of the expected statuses in every row.
PRINCIPALS = (
    "A", "A-token", "O", "E", "V", "staff", "B", "annotator-Token", "annotator-Bearer", "anonymous"
)  # fmt: skip

# Common rows of statuses, in the order of PRINCIPALS:
#                     A      A-tok  O      E      V      staff  B      ann-T  ann-B  anon
STUDY_PAGE =         (200,   LOGIN, 200,   200,   200,   200,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
STUDY_ACTION =       (302,   LOGIN, 302,   302,   302,   302,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
EDITOR_PAGE =        (200,   LOGIN, 200,   200,   403,   200,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
EDITOR_ACTION =      (302,   LOGIN, 302,   302,   403,   302,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
EDITOR_REFUSED =     (400,   LOGIN, 400,   400,   403,   400,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
OWNER_PAGE =         (200,   LOGIN, 200,   403,   403,   200,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
OWNER_ACTION =       (302,   LOGIN, 302,   403,   403,   302,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
OWNER_REFUSED =      (400,   LOGIN, 400,   403,   403,   400,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
SIGNED_IN_PAGE =     (200,   LOGIN, 200,   200,   200,   200,   200,   LOGIN, LOGIN, LOGIN)  # fmt: skip
SIGNED_IN_ACTION =   (302,   LOGIN, 302,   302,   302,   302,   302,   LOGIN, LOGIN, LOGIN)  # fmt: skip
OWN_JOB_PAGE =       (200,   LOGIN, 404,   404,   404,   200,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
STUDY_API =          (200,   200,   200,   200,   200,   200,   404,   403,   403,   403)  # fmt: skip
EDITOR_API =         (200,   200,   200,   200,   403,   200,   404,   403,   403,   403)  # fmt: skip
STUDY_API_STARTED =  (202,   202,   202,   202,   202,   202,   404,   403,   403,   403)  # fmt: skip
EDITOR_API_STARTED = (202,   202,   202,   202,   403,   202,   404,   403,   403,   403)  # fmt: skip
NO_REPORT_YET =      (409,   409,   409,   409,   409,   409,   404,   403,   403,   403)  # fmt: skip
SIGNED_IN_API =      (200,   200,   200,   200,   200,   200,   200,   403,   403,   403)  # fmt: skip
OWN_JOB_API =        (200,   200,   404,   404,   404,   200,   404,   403,   403,   403)  # fmt: skip
DRAFT_MEDIA =        (200,   404,   200,   200,   200,   200,   404,   404,   404,   404)  # fmt: skip
PUBLIC = (200,) * len(PRINCIPALS)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expect: tuple
    # The body: a dict, or a function of the World giving one.
    data: dict | Callable = field(default_factory=dict)
    json: bool = False  # send the body as JSON (API) rather than as a form


def get(path: str, expect: tuple) -> Case:
    return Case("get", path, expect)


def post(path: str, expect: tuple, data: dict | Callable | None = None) -> Case:
    return Case("post", path, expect, data or {}, json=path.startswith("/api/"))


def patch(path: str, expect: tuple, data: dict | Callable) -> Case:
    return Case("patch", path, expect, data, json=True)


# Bodies.
WRONG_LOGIN = {"username": "ada", "password": "wrong"}
GO_LIVE = {"status": "live"}
EXCLUDE = {"excluded": True, "reason": "clicked at random"}


def settings_form(world: "World") -> dict:
    """Study a's settings form as the dashboard shows it, with a new title."""
    return {**StudySettingsForm.for_study(world.a).initial, "title": "Renamed"}


# Rows with statuses of their own, in the order of PRINCIPALS.
#                     A      A-tok  O      E      V      staff  B      ann-T  ann-B  anon
LOGIN_PAGE =         (302,   200,   302,   302,   302,   302,   302,   200,   200,   200)  # fmt: skip
B_STUDY_PAGE =       (404,   LOGIN, 404,   404,   404,   200,   200,   LOGIN, LOGIN, LOGIN)  # fmt: skip
# A page of study a naming a pair or scene of study b: not in a, for everyone.
B_IN_A =             (404,   LOGIN, 404,   404,   404,   404,   404,   LOGIN, LOGIN, LOGIN)  # fmt: skip
FORM_REFUSED =       (400,   LOGIN, 400,   400,   400,   400,   400,   LOGIN, LOGIN, LOGIN)  # fmt: skip
NOT_ALLOWED =        (405,   LOGIN, 405,   405,   405,   405,   405,   LOGIN, LOGIN, LOGIN)  # fmt: skip
# A request any researcher may make but whose body is refused (API: annotators 403).
SIGNED_IN_API_REFUSED = (400, 400,  400,   400,   400,   400,   400,   403,   403,   403)  # fmt: skip
# Study a's URL naming an annotator of another study: no such annotator in a (a viewer
# is refused first: deciding is an editor's).
OTHER_STUDYS_ANNOTATOR = (404, 404, 404,   404,   403,   404,   404,   403,   403,   403)  # fmt: skip
REDIRECT = (302,) * len(PRINCIPALS)
REFUSED = (400,) * len(PRINCIPALS)
GET_REFUSED = (405,) * len(PRINCIPALS)


# One row per URL name; add a row (or a case) for every URL you add.
TABLE: dict[str, list[Case]] = {
    # --- pages -----------------------------------------------------------------------------
    "workspace:home": [get("/", REDIRECT)],
    "workspace:login": [get("/login/", LOGIN_PAGE)],
    # The API reference: public, as the schema it draws (/api/schema/) is.
    "workspace:api-docs": [get("/api/docs/", PUBLIC)],
    "workspace:logout": [post("/logout/", REDIRECT), get("/logout/", GET_REFUSED)],
    "workspace:account": [get("/account/", SIGNED_IN_PAGE)],
    "workspace:password-change": [get("/account/password/", SIGNED_IN_PAGE)],
    "workspace:password-change-done": [get("/account/password/done/", SIGNED_IN_PAGE)],
    # Password reset by e-mail: anyone (it says the same whether an account has the address).
    "workspace:password-reset": [get("/password/reset/", PUBLIC), post("/password/reset/", REDIRECT, {"email": "nobody@example.org"})],
    "workspace:password-reset-done": [get("/password/reset/sent/", PUBLIC)],
    # A link that is not one: the page says so (200), and sets nothing.
    "workspace:password-reset-confirm": [get("/password/reset/MQ/not-a-token/", PUBLIC)],
    "workspace:password-reset-complete": [get("/password/reset/done/", PUBLIC)],
    "workspace:token-create": [post("/account/token/", SIGNED_IN_ACTION)],
    "workspace:token-revoke": [post("/account/token/revoke/", SIGNED_IN_ACTION)],
    "workspace:study-list": [get("/studies/", SIGNED_IN_PAGE), get("/studies/?archived=1", SIGNED_IN_PAGE)],
    "workspace:study-new": [get("/studies/new/", SIGNED_IN_PAGE), post("/studies/new/", FORM_REFUSED)],
    "workspace:import-detail": [get("/studies/imports/{import}/", OWN_JOB_PAGE)],
    "workspace:study-dashboard": [get("/studies/{a}/", STUDY_PAGE), get("/studies/{b}/", B_STUDY_PAGE)],
    "workspace:study-status": [post("/studies/{a}/status/", EDITOR_ACTION, GO_LIVE), get("/studies/{a}/status/", NOT_ALLOWED)],
    "workspace:study-settings": [post("/studies/{a}/settings/", EDITOR_ACTION, settings_form)],
    "workspace:study-score": [post("/studies/{a}/score/", EDITOR_ACTION)],
    "workspace:study-agreement": [get("/studies/{a}/agreement/", STUDY_PAGE)],
    "workspace:study-members": [post("/studies/{a}/members/", OWNER_ACTION, {"username": "bob", "role": "viewer"}), get("/studies/{a}/members/", NOT_ALLOWED)],
    "workspace:study-archive": [post("/studies/{a}/archive/", OWNER_ACTION)],
    "workspace:study-restore": [post("/studies/{a}/restore/", OWNER_ACTION)],
    "workspace:study-delete": [get("/studies/{a}/delete/", OWNER_PAGE), post("/studies/{a}/delete/", OWNER_REFUSED, {"confirm": "wrong"}), post("/studies/{a}/delete/", OWNER_ACTION, {"confirm": "alpha-secret"}), get("/studies/{b}/delete/", (404, LOGIN, 404, 404, 404, 200, 200, LOGIN, LOGIN, LOGIN))],
    "workspace:study-preview": [post("/studies/{a}/preview/", STUDY_ACTION), post("/studies/{b}/preview/", (404, LOGIN, 404, 404, 404, 302, 302, LOGIN, LOGIN, LOGIN))],
    "workspace:study-pilot-delete": [post("/studies/{a}/pilot/delete/", EDITOR_ACTION)],
    "workspace:study-scenes-add": [get("/studies/{a}/scenes/add/", EDITOR_PAGE), post("/studies/{a}/scenes/add/", EDITOR_REFUSED)],
    "workspace:study-data": [get("/studies/{a}/data/", STUDY_PAGE), get("/studies/{a}/data/?sort=disagreement&page=2", STUDY_PAGE), get("/studies/{b}/data/", B_STUDY_PAGE)],
    "workspace:scene-detail": [get("/studies/{a}/data/scenes/{scene}/", STUDY_PAGE), get("/studies/{a}/data/scenes/{b_scene}/", B_IN_A)],
    "workspace:pair-detail": [get("/studies/{a}/data/pairs/{pair}/", STUDY_PAGE), get("/studies/{a}/data/pairs/{b_pair}/", B_IN_A)],
    # --- researcher API --------------------------------------------------------------------
    "workspace-api:auth-token": [post("/api/v1/auth/token", REFUSED, WRONG_LOGIN)],
    # A study's settings without a zip or a server folder: refused, nothing queued.
    "workspace-api:study-list": [get("/api/v1/studies", SIGNED_IN_API), Case("post", "/api/v1/studies", SIGNED_IN_API_REFUSED, {"slug": "new-one", "design": "pairwise"})],
    "workspace-api:study-detail": [get("/api/v1/studies/{a}", STUDY_API), patch("/api/v1/studies/{a}", EDITOR_API, {"title": "Renamed"})],
    "workspace-api:study-progress": [get("/api/v1/studies/{a}/progress", STUDY_API)],
    "workspace-api:import-detail": [get("/api/v1/imports/{import}", OWN_JOB_API)],
    "workspace-api:study-annotators": [get("/api/v1/studies/{a}/annotators", STUDY_API)],
    # No snapshot of study a yet: the JSON answers 202 (a refresh queued), the tables 409.
    "workspace-api:study-agreement": [get("/api/v1/studies/{a}/agreement", STUDY_API_STARTED)],
    "workspace-api:study-agreement-csv": [get("/api/v1/studies/{a}/agreement.csv", NO_REPORT_YET)],
    "workspace-api:study-agreement-tex": [get("/api/v1/studies/{a}/agreement.tex", NO_REPORT_YET)],
    "workspace-api:study-agreement-images": [get("/api/v1/studies/{a}/agreement/images?scene=s", NO_REPORT_YET)],
    "workspace-api:annotator-exclusion": [post("/api/v1/studies/{a}/annotators/{annotator}/exclusion", EDITOR_API, EXCLUDE), post("/api/v1/studies/{a}/annotators/{live_annotator}/exclusion", OTHER_STUDYS_ANNOTATOR, EXCLUDE)],
    "workspace-api:study-exports": [get("/api/v1/studies/{a}/exports", STUDY_API), post("/api/v1/studies/{a}/exports", EDITOR_API_STARTED, {"format": "csv"})],
    "workspace-api:export-detail": [get("/api/v1/exports/{export}", STUDY_API)],
    "workspace-api:export-download": [get("/api/v1/exports/{export}/download", STUDY_API)],
    # --- the image store -------------------------------------------------------------------
    "media": [get("/media/{image}", DRAFT_MEDIA), get("/media/{live_image}", PUBLIC)],
}  # fmt: skip


@dataclass
class World:
    users: dict
    a: Study
    b: Study
    live: Study
    placeholders: dict
    annotator_token: str

    def client(self, principal: str) -> Client:
        if principal == "A-token":
            _, key = AuthToken.objects.create(user=self.users["A"], expiry=None)
            return APIClient(HTTP_AUTHORIZATION=f"Token {key}")
        if principal == "annotator-Token":
            return APIClient(HTTP_AUTHORIZATION=f"Token {self.annotator_token}")
        if principal == "annotator-Bearer":
            return APIClient(HTTP_AUTHORIZATION=f"Bearer {self.annotator_token}")
        client = APIClient()
        if principal != "anonymous":
            client.force_login(self.users[principal])
        return client

    def secrets_hidden_from(self, principal: str) -> tuple[list[str], list[str]]:
        """What ``principal`` must never be shown: (always, in a 200 page too)."""
        a = [self.a.title, self.placeholders["image_sha"]]
        b = [self.b.title]
        members = ("A", "A-token", "O", "E", "V")
        if principal in members:
            return b, [self.b.slug]
        if principal == "staff":
            return [], []
        return (a, [self.a.slug]) if principal == "B" else (a + b, [self.a.slug])


def stored_file(media_root: Path, content: bytes) -> tuple[str, str]:
    sha = hashlib.sha256(content).hexdigest()
    relative = f"images/{sha[:2]}/{sha[2:4]}/{sha}.png"
    (media_root / relative).parent.mkdir(parents=True, exist_ok=True)
    (media_root / relative).write_bytes(b"\x89PNG\r\n\x1a\n" + content)
    return relative, sha


@pytest.fixture
def world(media_root: Path, tmp_path: Path, settings) -> World:
    users = {
        "A": User.objects.create_user("ada"),
        "B": User.objects.create_user("bob"),
        "O": User.objects.create_user("olga"),
        "E": User.objects.create_user("eve"),
        "V": User.objects.create_user("vic"),
        "staff": User.objects.create_user("sam", is_staff=True),
    }
    a = StudyFactory(slug="alpha-secret", title="Alpha confidential study", owner=users["A"])
    for principal, role in (("O", Role.OWNER), ("E", Role.EDITOR), ("V", Role.VIEWER)):
        StudyMember.objects.create(study=a, user=users[principal], role=role)
    b = StudyFactory(slug="bravo", title="Bravo private study", owner=users["B"])
    live = StudyFactory(
        slug="charlie-live", title="Charlie", status=Study.Status.LIVE, owner=users["staff"]
    )
    files, scenes, pairs = {}, {}, {}
    for study, key in ((a, "image"), (live, "live_image"), (b, "b_image")):
        scene = scenes[key] = SceneFactory(study=study)
        images = []
        for n in range(2):
            relative, sha = stored_file(media_root, f"{study.slug}-{n}".encode())
            images.append(ImageFactory(scene=scene, sha256=sha, file=relative))
            files.setdefault(key, (relative, sha))
        pairs[key] = PairFactory(scene=scene, image_a=images[0], image_b=images[1])
    now = timezone.now()
    annotator = AnnotatorSession.objects.create(study=live, created_at=now)
    excluded = AnnotatorSession.objects.create(study=a, created_at=now)
    import_job = ImportJob.objects.create(
        owner=users["A"],
        slug=a.slug,
        status=ImportJob.Status.DONE,
        study=a,
        done=2,
        total=2,
        summary={
            "scenes": 1,
            "images": 2,
            "pairs": 1,
            "gold_pairs": 0,
            "files_stored": 2,
            "per_scene": [{"scene": "s", "images": 2, "pairs": 1, "gold_pairs": 0}],
        },
    )
    export_job = ExportJob.objects.create(
        owner=users["A"], study=a, format="csv", status=ExportJob.Status.DONE
    )
    settings.IQA_EXPORT_DIR = tmp_path / "exports"
    settings.IQA_EXPORT_DIR.mkdir()
    with zipfile.ZipFile(settings.IQA_EXPORT_DIR / f"{export_job.pk}.zip", "w") as bundle:
        bundle.writestr("votes.csv", "vote_id\n")
    export_job.file = f"{export_job.pk}.zip"
    export_job.save()
    placeholders = {
        "a": a.slug,
        "b": b.slug,
        "live": live.slug,
        "image": files["image"][0],
        "image_sha": files["image"][1],
        "live_image": files["live_image"][0],
        "scene": str(scenes["image"].pk),
        "pair": str(pairs["image"].pk),
        "b_scene": str(scenes["b_image"].pk),
        "b_pair": str(pairs["b_image"].pk),
        "import": str(import_job.pk),
        "export": str(export_job.pk),
        "annotator": excluded.pseudonym,
        "live_annotator": annotator.pseudonym,
        "session": annotator.token,
    }
    return World(users, a, b, live, placeholders, annotator.token)


def researcher_url_names() -> set[str]:
    """Every named URL pattern of the researcher side, by walking the URL resolver."""
    names, unnamed = set(), []

    def walk(resolver: URLResolver, namespace: str | None, prefix: str) -> None:
        for pattern in resolver.url_patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or namespace
                walk(pattern, inner if pattern.namespace is None else pattern.namespace, route)
            elif isinstance(pattern, URLPattern):
                if namespace in ("workspace", "workspace-api"):
                    if pattern.name is None:
                        unnamed.append(route)
                    names.add(f"{namespace}:{pattern.name}")
                elif namespace is None and pattern.name == "media":
                    names.add("media")

    walk(get_resolver(), None, "")
    assert not unnamed, f"researcher URL patterns without a name: {unnamed}"
    return names


def test_every_researcher_url_has_a_row():
    """A URL added to the researcher side without a row here fails: add its row."""
    names = researcher_url_names()
    assert {"workspace:study-list", "workspace-api:study-list", "media"} <= names
    missing = sorted(names - set(TABLE))
    stale = sorted(set(TABLE) - names)
    assert not missing, f"URL patterns without a row in TABLE: {missing}"
    assert not stale, f"rows in TABLE for no URL pattern: {stale}"


def test_every_case_is_the_url_of_its_row(world):
    """Each case's path resolves to the URL name of its row, and each row says what each
    principal gets."""
    for name, cases in TABLE.items():
        for case in cases:
            path = case.path.format(**world.placeholders).split("?")[0]
            match = resolve(path)
            assert match.view_name == name, (name, case.path, match.view_name)
            assert len(case.expect) == len(PRINCIPALS), (name, case.path)


CASES = [
    pytest.param(name, case, id=f"{name}-{case.method}-{case.path}")
    for name, cases in TABLE.items()
    for case in cases
]


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize(("name", "case"), CASES)
def test_access(world, name, case, principal):
    """Each principal gets its expected status on each researcher URL, and never another
    researcher's study in the body."""
    expected = case.expect[PRINCIPALS.index(principal)]
    client = world.client(principal)
    path = case.path.format(**world.placeholders)
    data = case.data(world) if callable(case.data) else case.data
    send = getattr(client, case.method)
    if case.method == "get":
        response = send(path)
    else:
        response = send(path, data, format="json") if case.json else send(path, data)
    got = response.status_code
    if expected == LOGIN:
        assert got == 302, f"{principal} {case.method.upper()} {path}: {got}, not a redirect"
        assert response["Location"].startswith("/login/?next="), response["Location"]
    else:
        assert got == expected, f"{principal} {case.method.upper()} {path}: {got} != {expected}"
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    ).decode(errors="replace")
    hidden, hidden_when_shown = world.secrets_hidden_from(principal)
    for secret in hidden + (hidden_when_shown if got == 200 else []):
        assert secret not in body, f"{principal} {case.method.upper()} {path} shows {secret!r}"


def test_an_exclusion_through_another_study_changes_nothing(world):
    """Study a's owner naming an annotator of study charlie-live through a's URL gets
    404, and no decision is recorded for that annotator."""
    path = "/api/v1/studies/{a}/annotators/{live_annotator}/exclusion".format(**world.placeholders)
    response = world.client("A").post(path, EXCLUDE, format="json")
    assert response.status_code == 404
    assert not ExclusionDecision.objects.filter(session__study=world.live).exists()
