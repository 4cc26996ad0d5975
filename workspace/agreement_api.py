"""The live agreement report's API: the latest stored snapshot of a study, never computed
in the request. A read of a stale snapshot queues a refresh (debounced) and answers the
snapshot there is, with ``stale``/``computing`` flags; conditional requests (``ETag`` /
``If-None-Match``, ``Last-Modified`` / ``If-Modified-Since``) answer 304 when nothing
changed."""

import hashlib

from django.http import HttpResponse
from django.utils.http import http_date, parse_http_date_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.models import AgreementSnapshot
from analysis.services import agreement_snapshot_request
from analysis.snapshot_selectors import agreement_mark, agreement_snapshot_get
from analysis.tables import headline_csv, headline_latex
from annotation.serializers import error_responses
from core.errors import Conflict
from workspace.access import study_for
from workspace.agreement_serializers import (
    AgreementFreshnessSerializer,
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
    mark = agreement_mark(study=study)
    agreement_snapshot_request(study=study, variant=variant, mark=mark)  # queued when stale
    snapshot = agreement_snapshot_get(study=study, variant=variant)
    ready = snapshot is not None and snapshot.report is not None
    stale = not ready or snapshot.mark != mark.digest
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


def _etag(snapshot: AgreementSnapshot, flags: dict, kind: str) -> str:
    parts = (kind, snapshot.pk, snapshot.computed_at.isoformat(), flags["stale"],
             flags["computing"])  # fmt: skip
    return '"' + hashlib.sha256(repr(parts).encode()).hexdigest()[:20] + '"'


def _not_modified(request: Request, etag: str, snapshot: AgreementSnapshot) -> bool:
    sent = request.headers.get("If-None-Match")
    if sent is not None:
        return etag in [tag.strip() for tag in sent.split(",")] or sent.strip() == "*"
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and int(snapshot.computed_at.timestamp()) <= since


def _conditional(request, snapshot, flags, kind, respond):
    etag = _etag(snapshot, flags, kind)
    response = HttpResponse(status=304) if _not_modified(request, etag, snapshot) else respond()
    response["ETag"] = etag
    response["Last-Modified"] = http_date(snapshot.computed_at.timestamp())
    response["Cache-Control"] = "private, no-cache"
    return response


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
        --json`` prints for it (same keys and numbers for the same data), plus the
        compared images' human and metric scores, each metric's kind, the votes per pair,
        and ``as_of`` / ``votes`` / ``stale`` / ``computing``. A stale snapshot is
        refreshed on a worker (not in this request). 202 with the flags only until the
        first snapshot exists."""
        _, _, snapshot, flags = _freshness(request, slug)
        if snapshot is None:
            return Response(AgreementFreshnessSerializer.render(flags), status=202)

        def respond():
            body = {
                **snapshot.report,
                **flags,
                "computed_at": snapshot.computed_at,
                "computed_in_s": snapshot.duration_s,
            }
            return Response(AgreementSnapshotSerializer.render(body))

        return _conditional(request, snapshot, flags, "json", respond)


def _table_response(request: Request, slug: str, kind: str, render, content_type: str):
    _, variant, snapshot, flags = _freshness(request, slug)
    if snapshot is None:
        raise Conflict("the study's agreement report has not been computed yet; try again soon")

    def respond():
        response = HttpResponse(render(snapshot.report), content_type=content_type)
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
