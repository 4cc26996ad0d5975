"""Schemathesis against the live OpenAPI schema, on gunicorn and the real PostgreSQL.

Every operation of the published schema (annotator and researcher, the researcher's with a
token) is called with generated requests, valid and invalid, bounded and deterministic;
every response must be no 5xx, a documented status, the documented content type and
headers, and a body that conforms to the documented schema. Seeded data (a live study of
each design with images, votes and open sessions, import and export jobs, an agreement
snapshot) makes the requests reach the handlers, not only their 404. It runs twice:

- ``seeded-paths``: every path parameter is a seeded object; the examples, the coverage
  phase's boundary cases and fuzzing exercise the bodies and queries;
- ``generated-paths``: path parameters are generated (any shape) or seeded, half each;
  fuzzing only.

The API has no DELETE. The PATCH of a study changes a study of its own, so that closing
it or changing its settings leaves the other operations' studies as they were.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import schemathesis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from knox.models import AuthToken
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from analysis.services import agreement_snapshot_refresh
from annotation import services
from annotation.models import AnnotatorSession, Design
from config.celery import app as celery_app
from tests.annotation.sessions import open_session, run_session
from tests.conftest import WebServer, start_web_server, stop_web_server
from tests.frontend.conftest import make_study
from workspace.export_jobs import export_job_run
from workspace.models import ExportJob, ImportJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Fuzzed requests per operation (the coverage phase adds its boundary cases); a fixed seed
# and derandomized generation make every run send the same requests.
MAX_EXAMPLES = 10
SEED = 20_161_605
# How often a generated path parameter (or a vote's trial id) is a seeded one instead.
SEEDED = 0.5
# The throttles would answer most fuzzed requests 429 (documented) before the handler.
UNTHROTTLED = {
    **{name: "1000000/min" for name in ("IQA_SESSION_RATE", "IQA_TRIAL_RATE", "IQA_VOTE_RATE")},
    "IQA_LOGIN_FAILURES": "1000000",
}


@dataclass
class Seed:
    token: str
    pairwise: str  # the slugs of the live studies
    ref_vs_test: str
    patch_slug: str  # the PATCH's own study
    session: str  # an open session of the pairwise study, and its unanswered trial
    trial_id: str
    sessions: list[str]  # open sessions of both studies and their issued trials
    trial_ids: list[str]
    annotator: str  # one of the ref-vs-test study's annotators
    annotators: list[str]
    import_id: str  # a done import; a failed one is in job_ids
    export_id: str  # a done export (its zip on disk); a queued one is in job_ids
    job_ids: list[str]


def seed_data(tmp_path: Path) -> Seed:
    """A researcher with a token owning a live pairwise and a live ref-vs-test study (real
    images; two completed sessions each, one open session with unanswered trials), a
    study for the PATCH, an agreement snapshot of the pairwise study, a done and a failed
    import, a done export (its zip on disk) and a queued one."""
    user = get_user_model().objects.create_user("ada", password="a good secret 1")
    token = AuthToken.objects.create(user=user, expiry=None)[1]
    studies = [
        make_study(
            tmp_path,
            slug=f"fuzz-{design}",
            design=design,
            scenes=2,
            tests_per_scene=3,
            votes_per_pair=3,
            owner=user,
        )
        for design in (Design.PAIRWISE, Design.REF_VS_TEST)
    ]
    patched = make_study(tmp_path, slug="fuzz-patch", design=Design.PAIRWISE, owner=user)
    sessions, trial_ids = [], []
    for study in studies:
        for n in range(2):
            run_session(open_session(study, f"{study.slug}-done-{n}"), "left" if n else "right")
        session = open_session(study, f"{study.slug}-open")
        trial = services.trial_next(token=session, ahead=True)
        sessions.append(session)
        trial_ids.extend(str(t.trial_id) for t in (trial, trial.next) if t is not None)
    agreement_snapshot_refresh(study=studies[0])
    scene = {"scene": "s0", "images": 4, "pairs": 6, "gold_pairs": 0}
    summary = {
        "scenes": 1,
        "images": 4,
        "pairs": 6,
        "gold_pairs": 0,
        "files_stored": 4,
        "per_scene": [scene],
    }
    imports = [
        ImportJob.objects.create(
            owner=user,
            slug=studies[0].slug,
            status=ImportJob.Status.DONE,
            done=4,
            total=4,
            summary=summary,
            study=studies[0],
        ),
        ImportJob.objects.create(
            owner=user,
            slug="broken",
            status=ImportJob.Status.FAILED,
            error="manifest.csv, line 2: no such file",
        ),
    ]
    done = ExportJob.objects.create(study=studies[0], owner=user, format="csv")
    export_job_run(job_id=done.pk)
    assert ExportJob.objects.get(pk=done.pk).status == ExportJob.Status.DONE
    queued = ExportJob.objects.create(study=studies[1], owner=user, format="jsonl")
    annotators = sorted(
        AnnotatorSession.objects.filter(study__in=studies).values_list("pseudonym", flat=True)
    )
    return Seed(
        token=token,
        pairwise=studies[0].slug,
        ref_vs_test=studies[1].slug,
        patch_slug=patched.slug,
        session=sessions[0],
        trial_id=trial_ids[0],
        sessions=sessions,
        trial_ids=trial_ids,
        annotator=AnnotatorSession.objects.filter(study=studies[1]).first().pseudonym,
        annotators=annotators,
        import_id=str(imports[0].pk),
        export_id=str(done.pk),
        job_ids=[str(job.pk) for job in (*imports, done, queued)],
    )


@pytest.fixture
def stack(media_root: Path, tmp_path: Path) -> Iterator[tuple[WebServer, Seed]]:
    """gunicorn on the test database with the seeded data. The Celery messages of both
    processes (the fuzzed imports and exports, agreement refreshes) go to a queue of their
    own, removed afterwards: no worker is needed, the responses do not wait for one."""
    queue = f"test-fuzz-{uuid.uuid4().hex[:8]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    dirs = {"IQA_EXPORT_DIR": tmp_path / "exports", "IQA_UPLOAD_DIR": tmp_path / "uploads"}
    server = None
    try:
        with override_settings(**dirs):
            seed = seed_data(tmp_path / "studies")
        env = {**{k: str(v) for k, v in dirs.items()}, **UNTHROTTLED}
        server = start_web_server(
            media=media_root,
            workers=1,
            threads=4,
            extra_env={**env, "CELERY_TASK_DEFAULT_QUEUE": queue},
        )
        yield server, seed
    finally:
        if server is not None:
            stop_web_server(server)
        celery_app.conf.task_default_queue = previous
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def seeded_paths(seed: Seed) -> dict:
    """Every path parameter (and the vote's trial id) fixed to a seeded object, per
    operation: the boundary cases and fuzzed bodies and queries reach the handlers."""
    on = {
        "v1_studies_partial_update": {"path.slug": seed.patch_slug},
        "v1_studies_annotators_list": {"path.slug": seed.ref_vs_test},
        "v1_studies_annotators_exclusion_create": {
            "path.slug": seed.ref_vs_test,
            "path.annotator": seed.annotator,
        },
        "v1_studies_exports_create": {"path.slug": seed.ref_vs_test},
        "v1_imports_retrieve": {"path.job_id": seed.import_id},
        "v1_exports_retrieve": {"path.job_id": seed.export_id},
        "v1_exports_download_retrieve": {"path.job_id": seed.export_id},
    }
    return {
        "parameters": {
            "path.slug": seed.pairwise,
            "path.token": seed.session,
            "body.trial_id": seed.trial_id,
        },
        "operations": [
            {"include-operation-id": name, "parameters": parameters}
            for name, parameters in on.items()
        ],
    }


def generated_paths(seed: Seed) -> dict:
    """Path parameters generated, valid or not, or drawn from the seeded objects
    (``SEEDED`` of the time); the fuzzing phase only, as the boundary cases of bodies would
    mostly stop at a 404."""
    return {
        "phases": {"coverage": {"enabled": False}},
        "dictionaries": {
            "slugs": {"values": [seed.pairwise, seed.ref_vs_test]},
            "sessions": {"values": seed.sessions},
            "trials": {"values": seed.trial_ids},
            "annotators": {"values": seed.annotators},
            "jobs": {"values": seed.job_ids},
        },
        "parameters": {
            "path.slug": {"dictionary": "slugs", "probability": SEEDED},
            "path.token": {"dictionary": "sessions", "probability": SEEDED},
            "path.annotator": {"dictionary": "annotators", "probability": SEEDED},
            "path.job_id": {"dictionary": "jobs", "probability": SEEDED},
            "body.trial_id": {"dictionary": "trials", "probability": SEEDED},
        },
        # The PATCH does not reach the other operations' studies.
        "operations": [
            {
                "include-operation-id": "v1_studies_partial_update",
                "parameters": {"path.slug": seed.patch_slug},
            }
        ],
    }


MODES = {"seeded-paths": seeded_paths, "generated-paths": generated_paths}


def fuzz_config(server: WebServer, seed: Seed, mode: str) -> schemathesis.Config:
    specific = MODES[mode](seed)
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": server.url,
            "headers": {"Authorization": f"Token {seed.token}"},
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # Examples, boundary cases and fuzzing; no stateful phase (chains of calls).
            "phases": {"stateful": {"enabled": False}, **specific.pop("phases", {})},
            **specific,
        }
    )


@pytest.fixture(params=list(MODES))
def api_schema(request, stack):
    server, seed = stack
    return schemathesis.openapi.from_url(
        f"{server.url}/api/schema/?format=json", config=fuzz_config(server, seed, request.param)
    )


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request) -> None:
    """schemathesis 4.32's lazy schemas read ``Function._nodeid``, which pytest 9.2 no
    longer has (it names each operation's subtest through it): give it the node's id."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case):
    """No 5xx, and every response's status, content type, headers and body as documented."""
    case.call_and_validate(checks=CHECKS)


# Explicit hostile bodies (config/parsers.py): nested past 64 levels, a lone surrogate in
# a value and in a key. Each JSON operation answers 400 as documented, never a 5xx.
HOSTILE_BODIES = {
    "deep": {"title": [[[0]]]},  # deepened below
    "surrogate value": {"title": "x\ud800"},
    "surrogate key": {"external_ids": {"\ud800": "x"}},
}


def _deep(levels: int):
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_hostile_json_on_every_json_operation_is_a_documented_400(stack):
    """schemathesis's own case objects for every operation that reads JSON, with the
    seeded path parameters, each hostile body in turn: the response is a 400 with the
    invalid_json code and conforms to the schema (the checks of the fuzzing above)."""
    server, seed = stack
    api = schemathesis.openapi.from_url(
        f"{server.url}/api/schema/?format=json", config=fuzz_config(server, seed, "seeded-paths")
    )
    paths = seeded_paths(seed)
    fixed = {k.removeprefix("path."): v for k, v in paths["parameters"].items() if "path." in k}
    per_operation = {
        entry["include-operation-id"]: {
            k.removeprefix("path."): v for k, v in entry["parameters"].items()
        }
        for entry in paths["operations"]
    }
    bodies = {**HOSTILE_BODIES, "deep": {"title": _deep(70)}}
    checked = []
    for result in api.get_all_operations():
        operation = result.ok()
        if "application/json" not in operation.definition.raw.get("requestBody", {}).get(
            "content", {}
        ):
            continue
        names = {p.name for p in operation.path_parameters}
        path_parameters = {
            name: {**fixed, **per_operation.get(operation.definition.raw["operationId"], {})}[name]
            for name in names
        }
        for label, body in bodies.items():
            case = operation.Case(
                body=body,
                path_parameters=path_parameters,
                media_type="application/json",
                headers={"Authorization": f"Token {seed.token}"},
            )
            response = case.call_and_validate(checks=CHECKS)
            assert response.status_code == 400, (operation.label, label, response.text)
            assert response.json()["error"]["code"] == "invalid_json", (operation.label, label)
        checked.append(operation.label)
    assert len(checked) == 6, checked
