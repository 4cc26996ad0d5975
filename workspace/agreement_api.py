"""The live agreement report's API: the latest stored snapshot of a study, never computed
in the request. A read of a stale snapshot queues a refresh (debounced) and answers the
snapshot there is, with ``stale``/``computing`` flags; conditional requests (``ETag`` /
``If-None-Match``, ``Last-Modified`` / ``If-Modified-Since``) answer 304 when nothing
changed. A poll reads the snapshot's small columns only (the ``ETag`` is made from them)
and compares them with the data's mark computed by at most one reader per debounce
interval (``services.agreement_snapshot_check``); the report is read for a full answer.
The per-image block (the scatter's data) is served per scene, from its own endpoint."""

import hashlib
import json
from datetime import datetime

from django.http import HttpResponse
from django.utils.http import http_date, parse_http_date_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.models import AgreementSnapshot
from analysis.services import agreement_snapshot_check
from analysis.snapshot_selectors import (
    agreement_scene_images,
    agreement_snapshot_head,
    agreement_snapshot_report,
)
from analysis.tables import headline_csv, headline_latex
from annotation.serializers import error_responses
from core.errors import Conflict, DomainError, NotFound
from workspace.access import study_for
from workspace.agreement_serializers import (
    AgreementFreshnessSerializer,
    AgreementSceneImagesSerializer,
    AgreementSnapshotSerializer,
)
from workspace.api import NO_STUDY, NOT_SIGNED_IN, ResearcherApi

ANNOTATORS = OpenApiParameter(
    "annotators",
    str,
    enum=["counted", "all"],
    description="``counted`` (default): the excluded annotators left out, as "
    "``agreement_report``; ``all``: every annotator counted.",
)
NOT_MODIFIED = OpenApiResponse(description="Not modified since the ``ETag`` / date sent.")
NOT_YET = "No snapshot yet (one is being computed): read the JSON first."


def _variant(request: Request) -> str:
    value = request.query_params.get("annotators", "counted")
    return value if value in AgreementSnapshot.Variant.values else "counted"


def _freshness(request: Request, slug: str) -> tuple[object, str, AgreementSnapshot | None, dict]:
    study = study_for(request, slug)
    variant = _variant(request)
    digest = agreement_snapshot_check(study=study, variant=variant)  # queued when stale
    snapshot = agreement_snapshot_head(study=study, variant=variant)
    ready = snapshot is not None and snapshot.computed_at is not None
    stale = not ready or snapshot.mark != digest
    computing = (
        snapshot is not None
        and snapshot.requested_at is not None
        and (snapshot.computed_at is None or snapshot.requested_at > snapshot.computed_at)
    )
    flags = {
        "study": study.slug,
        "variant": variant,
        "as_of": snapshot.as_of if ready else None,
        "votes": snapshot.votes if ready else None,
        "stale": stale,
        "computing": bool(computing and stale),
    }
    return study, variant, snapshot if ready else None, flags


def _etag_of(parts: tuple) -> str:
    return '"' + hashlib.sha256(repr(parts).encode()).hexdigest()[:20] + '"'


def _etag(snapshot: AgreementSnapshot, flags: dict, kind: str) -> str:
    return _etag_of((kind, snapshot.pk, snapshot.computed_at.isoformat(), flags["stale"],
                     flags["computing"]))  # fmt: skip


def _modified_at(what) -> datetime:
    return what if isinstance(what, datetime) else what.computed_at


def _not_modified(request: Request, etag: str, what) -> bool:
    """``what``: the snapshot (its ``computed_at``) or a datetime."""
    sent = request.headers.get("If-None-Match")
    if sent is not None:
        return etag in [tag.strip() for tag in sent.split(",")] or sent.strip() == "*"
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and int(_modified_at(what).timestamp()) <= since


def _headers(response: HttpResponse, etag: str, what) -> HttpResponse:
    response["ETag"] = etag
    response["Last-Modified"] = http_date(_modified_at(what).timestamp())
    response["Cache-Control"] = "private, no-cache"
    return response


def _conditional(request, snapshot, flags, kind, respond):
    etag = _etag(snapshot, flags, kind)
    if _not_modified(request, etag, snapshot):
        return _headers(HttpResponse(status=304), etag, snapshot)
    whole = agreement_snapshot_report(snapshot=snapshot)  # a newer one, if stored since
    return _headers(respond(whole), _etag(whole, flags, kind), whole)


class StudyAgreementApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_agreement_retrieve",
        parameters=[ANNOTATORS],
        responses={
            200: AgreementSnapshotSerializer,
            202: AgreementFreshnessSerializer,
            304: NOT_MODIFIED,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        """The study's latest agreement snapshot: the object ``agreement_report SLUG
        --json`` prints for it (same keys and numbers for the same data), plus the scenes
        with compared images (their images and scores: ``agreement/images?scene=``),
        each metric's kind, the votes per pair, each metric's accuracy against its tie
        band delta, and ``as_of`` / ``votes`` / ``stale`` / ``computing``. A stale
        snapshot is refreshed on a worker (not in this request). 202 with the flags only
        until the first snapshot exists."""
        _, _, snapshot, flags = _freshness(request, slug)
        if snapshot is None:
            return Response(AgreementFreshnessSerializer.render(flags), status=202)

        def respond(whole: AgreementSnapshot) -> HttpResponse:
            body = {
                **whole.report,
                **flags,
                "as_of": whole.as_of,
                "votes": whole.votes,
                "computed_at": whole.computed_at,
                "computed_in_s": whole.duration_s,
            }
            return HttpResponse(
                JSONRenderer().render(AgreementSnapshotSerializer.render(body)),
                content_type="application/json",
            )

        return _conditional(request, snapshot, flags, "json", respond)


SCENE = OpenApiParameter(
    "scene", str, required=True, description="The scene's name (one of the report's ``scenes``)."
)


class StudyAgreementImagesApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_agreement_images_retrieve",
        parameters=[SCENE, ANNOTATORS],
        responses={
            200: AgreementSceneImagesSerializer,
            304: NOT_MODIFIED,
            **error_responses(
                {
                    400: "No ``scene`` given.",
                    403: NOT_SIGNED_IN,
                    404: f"{NO_STUDY} Or no such scene in the report.",
                    409: NOT_YET,
                }
            ),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        """One scene's compared images of the latest snapshot (the scatter's data): each
        image's human scores (Thurstone, Bradley-Terry), votes and metric scores. Its
        ``ETag`` changes only when a refresh changed this scene's block (new votes on its
        pairs, new scores), so the page's re-read after a live update is mostly a 304."""
        study = study_for(request, slug)
        scene = request.query_params.get("scene", "")
        if not scene:
            raise DomainError("give the scene: ?scene=NAME (one of the report's scenes)",
                              field="scene")  # fmt: skip
        variant = _variant(request)
        snapshot = agreement_snapshot_head(study=study, variant=variant)
        if snapshot is None or snapshot.computed_at is None:
            raise Conflict("the study's agreement report has not been computed yet; try again soon")
        block = agreement_scene_images(snapshot=snapshot, scene=scene)
        if block is None:
            raise NotFound(f"the agreement report of {study.slug!r} has no scene {scene!r}",
                           field="scene")  # fmt: skip
        etag = _etag_of(("images", snapshot.pk, scene, block.updated_at.isoformat()))
        if _not_modified(request, etag, block.updated_at):
            return _headers(HttpResponse(status=304), etag, block.updated_at)
        # (a scene's images: small; their metric scores are joined by name)
        scores = json.loads(block.scores_json)
        images = [
            {"scene": scene, **row, "scores": scores.get(row["image"], {})}
            for row in json.loads(block.images_json)
        ]
        body = {"study": study.slug, "variant": variant, "scene": scene,
                "updated_at": block.updated_at, "images": images}  # fmt: skip
        content = JSONRenderer().render(AgreementSceneImagesSerializer.render(body))
        response = HttpResponse(content, content_type="application/json")
        return _headers(response, etag, block.updated_at)


def _table_response(request: Request, slug: str, kind: str, render, content_type: str):
    _, variant, snapshot, flags = _freshness(request, slug)
    if snapshot is None:
        raise Conflict("the study's agreement report has not been computed yet; try again soon")

    def respond(whole):
        response = HttpResponse(render(whole.report), content_type=content_type)
        suffix = "" if variant == "counted" else "-all-annotators"
        name = f"{flags['study']}-agreement{suffix}.{kind}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    return _conditional(request, snapshot, flags, kind, respond)


class StudyAgreementCsvApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_agreement_csv_retrieve",
        parameters=[ANNOTATORS],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The headline table: one row per metric, best first; per "
                "subset accuracy, its 95% interval and pairs; 2AFC, SRCC, KRCC, PLCC; "
                "whether it is not significantly worse than the best.",
            ),
            304: NOT_MODIFIED,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY, 409: NOT_YET}),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        """The latest snapshot's headline table as CSV."""
        return _table_response(request, slug, "csv", headline_csv, "text/csv; charset=utf-8")


class StudyAgreementLatexApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_agreement_tex_retrieve",
        parameters=[ANNOTATORS],
        responses={
            (200, "application/x-tex"): OpenApiResponse(
                OpenApiTypes.STR,
                description="A booktabs table (A-FINE layout: metric rows, FR then NR; "
                "subset columns; best in bold).",
            ),
            304: NOT_MODIFIED,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY, 409: NOT_YET}),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        """The latest snapshot's headline table as LaTeX (``\\usepackage{booktabs}``)."""
        return _table_response(
            request, slug, "tex", headline_latex, "application/x-tex; charset=utf-8"
        )
