"""The researcher API (JSON under /api/v1/): views only translate HTTP.

Session authentication (the pages' scripts) or ``Authorization: Token <token>`` (scripts
and notebooks). Every study comes through ``workspace.access.study_for``: another
researcher's study answers 404, like one that does not exist.
"""

from django.conf import settings
from django.core.cache import cache
from django.http import FileResponse, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis.annotators import CACHE_SECONDS as ANNOTATOR_TABLE_SECONDS
from analysis.annotators import annotator_table_get, annotator_table_key
from annotation import selectors
from annotation.serializers import StudySummarySerializer, error_responses, valid
from annotation.services import annotator_exclusion_decide
from core.errors import Conflict, DomainError
from workspace import dashboard, services
from workspace import selectors as workspace_selectors
from workspace.access import IsResearcher, Role, study_for
from workspace.errors import UploadTooLarge
from workspace.export_jobs import export_filename, export_job_start, export_path
from workspace.import_jobs import import_job_start
from workspace.serializers import (
    AnnotatorRowSerializer,
    AnnotatorTableSerializer,
    ExclusionInput,
    ExportInput,
    ExportJobSerializer,
    ExportStartedSerializer,
    ImportJobSerializer,
    ImportStartedSerializer,
    StudyChangeInput,
    StudyCreateInput,
    StudyDetailSerializer,
    StudyLiveSerializer,
    TokenObtainInput,
    TokenSerializer,
)
from workspace.uploads import ZipUploadHandler, handler_install

NOT_SIGNED_IN = "Not signed in (session or token authentication)."
NO_STUDY = "No study has this slug that the caller may see."
# A request that changes a study: an editor's or an owner's.
EDITORS_ONLY = (
    NOT_SIGNED_IN + " Or the caller is a viewer of the study: this needs the role editor "
    "or owner (`role_required`)."
)
ARCHIVED = "The study is archived: read-only until an owner restores it (`study_archived`)."


class ResearcherApi(APIView):
    permission_classes = [IsResearcher]


class StudiesApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_list",
        responses={
            200: StudySummarySerializer(many=True),
            **error_responses({403: NOT_SIGNED_IN}),
        },
    )
    def get(self, request: Request) -> Response:
        """The caller's studies (owned or member, archived ones included and marked;
        every study for staff)."""
        studies = selectors.study_progress(user=request.user)
        return Response([StudySummarySerializer.render(study) for study in studies])

    # A study's zip streams to disk as it arrives (workspace.uploads): the handler goes in
    # before authentication, whose CSRF check (session callers) reads the form first.
    parser_classes = [MultiPartParser]
    upload: ZipUploadHandler | None = None

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":
            self.upload = handler_install(request)
        return super().initialize_request(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        if self.upload is not None:
            self.upload.discard()  # refused, or never reached the job: nothing is kept
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="v1_studies_create",
        request={"multipart/form-data": StudyCreateInput},
        responses={
            202: ImportStartedSerializer,
            **error_responses(
                {
                    400: "A setting refused (``field`` names it), no file (or both a file "
                    "and a server folder), or a server folder outside IQA_IMPORT_ROOT.",
                    403: NOT_SIGNED_IN + " Or server_folder from a non-staff caller.",
                    409: "A study (or an import under way) has this slug.",
                    413: "The body is larger than IQA_UPLOAD_MAX_BYTES.",
                    415: "Not multipart/form-data.",
                    429: "The researcher has IQA_JOBS_PER_RESEARCHER imports and exports "
                    "queued or running (`too_many_jobs`); nothing was queued.",
                    503: "The Celery broker did not answer; nothing was queued.",
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """Create a study from a zip (``file``: the folder layout or a manifest CSV with its
        images) or, staff only, a ``server_folder`` under IQA_IMPORT_ROOT: the settings
        are checked at once, then the import runs on a worker, all or nothing. Follow it
        at the returned ``url`` (``GET imports/{id}``)."""
        data = request.data
        if self.upload.too_large:
            limit = settings.IQA_UPLOAD_MAX_BYTES
            raise UploadTooLarge(
                f"the upload is larger than the limit of {limit:,} bytes (IQA_UPLOAD_MAX_BYTES)"
            )
        values = valid(StudyCreateInput, data)
        options = {
            name: value
            for name, value in values.items()
            if name not in ("file", "server_folder", "slug")
        }
        job = import_job_start(
            owner=request.user,
            slug=values["slug"],
            options=options,
            upload=self.upload.take() if values.get("file") else None,
            server_folder=values.get("server_folder") or "",
        )
        return Response(ImportStartedSerializer.render(job), status=202)


class StudyDetailApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_retrieve",
        responses={
            200: StudyDetailSerializer,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        """The study as its dashboard shows it: the list's keys, then settings, progress
        (vote counts as of ``progress.as_of``), scoring and recruiting links."""
        study = study_for(request, slug)
        return Response(StudyDetailSerializer.render(_detail(request, study)))

    @extend_schema(
        operation_id="v1_studies_partial_update",
        request=StudyChangeInput,
        responses={
            200: StudyDetailSerializer,
            **error_responses(
                {
                    400: "A setting refused (``field`` names it): out of bounds, unknown, or "
                    "fixed at import.",
                    403: EDITORS_ONLY,
                    404: NO_STUDY,
                    409: ARCHIVED,
                }
            ),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        """Change the status and the settings ``configure_study`` changes, with the same
        validation; quality-control thresholds take ``"off"``; ``metric_deltas`` is the
        whole new map."""
        study = study_for(request, slug, role=Role.EDITOR)
        if not isinstance(request.data, dict):
            raise DomainError("the body must be a JSON object of settings")
        study = services.study_settings_change(study=study, changes=dict(request.data))
        return Response(StudyDetailSerializer.render(_detail(request, study)))


class StudyProgressApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_progress_retrieve",
        responses={
            200: StudyLiveSerializer,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        """What the dashboard polls: status, progress (vote counts as of ``as_of``, at most
        ``IQA_DASHBOARD_REFRESH_SECONDS`` behind while votes come in) and scoring."""
        study = study_for(request, slug)
        live = {
            "status": study.status,
            "progress": dashboard.study_dashboard_progress(study=study),
            "scoring": dashboard.study_scoring_overview(study=study),
        }
        return Response(StudyLiveSerializer.render(live))


def _detail(request: Request, study) -> dict:
    url = request.build_absolute_uri(reverse("frontend:annotate", args=[study.slug]))
    return dashboard.study_detail(study=study, annotator_url=url)


class TokenObtainApi(APIView):
    # No authentication: the body carries the credentials (and no session means no CSRF
    # check on a script's POST). Failed attempts count per username and address with the
    # login pages' (django-axes).
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="v1_auth_token_create",
        request=TokenObtainInput,
        responses={
            200: TokenSerializer,
            **error_responses(
                {
                    400: "Missing fields, or a wrong username or password (or an inactive "
                    "account).",
                    429: "Too many failed logins for this username from this address "
                    "(IQA_LOGIN_FAILURES within IQA_LOGIN_COOLOFF_MINUTES); `Retry-After` "
                    "says when to try again.",
                }
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        """A new API token for the caller, replacing the one they had (only its digest is
        stored, so it is shown this once; the account page replaces or revokes it too).
        Send it as ``Authorization: Token <token>``."""
        data = valid(TokenObtainInput, request.data)
        # The Django request (DRF's wraps it): django-axes marks a locked-out attempt on it,
        # and its middleware answers 429 from that mark.
        key = services.token_obtain(
            request=request._request, username=data["username"], password=data["password"]
        )
        return Response(TokenSerializer.render({"token": key}))


class ImportDetailApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_imports_retrieve",
        responses={
            200: ImportJobSerializer,
            **error_responses(
                {403: NOT_SIGNED_IN, 404: "No import job has this id that the caller may see."}
            ),
        },
    )
    def get(self, request: Request, job_id) -> Response:
        """A study import: queued, running (images checked of ``total``), then done with its
        summary or failed with its one-line error. Only its owner and staff see it."""
        job = workspace_selectors.import_job_get_visible(user=request.user, job_id=job_id)
        return Response(ImportJobSerializer.render(job))


# --- quality control: the annotators' table and decisions by hand ----------------------

NO_ANNOTATOR = "No study has this slug that the caller may see, or no annotator this pseudonym."


class StudyAnnotatorsApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_annotators_list",
        responses={
            200: AnnotatorTableSerializer,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        """The quality-control table: per annotator the measures (gold accuracy,
        agreement with the others, response times, side bias, similar share), whether
        they are excluded and why, and the researcher's decision in force. The same table
        as ``agreement_report`` and the export; cached until a vote or a decision comes in
        (``as_of``: when the votes were read)."""
        study = study_for(request, slug)
        key = annotator_table_key(study=study)
        body = cache.get(f"{key}:json")
        if body is None:
            # A table of thousands of annotators takes longer to render than to look up:
            # its JSON is kept beside it, under the same key.
            table = annotator_table_get(study=study, key=key)
            body = JSONRenderer().render(AnnotatorTableSerializer.render(table))
            cache.set(f"{key}:json", body, ANNOTATOR_TABLE_SECONDS)
        return HttpResponse(body, content_type="application/json")


class AnnotatorExclusionApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_annotators_exclusion_create",
        request=ExclusionInput,
        responses={
            200: AnnotatorRowSerializer,
            **error_responses(
                {
                    400: "No reason, or a reason too long.",
                    403: EDITORS_ONLY,
                    404: NO_ANNOTATOR,
                    409: ARCHIVED,
                }
            ),
        },
    )
    def post(self, request: Request, slug: str, annotator: str) -> Response:
        """Exclude (``excluded: true``) or re-include an annotator by hand, with the
        reason. Every decision is kept; the latest is in force and overrides the automatic
        rules for that annotator in labels, scores, agreement and the export. Answers the
        annotator's new row."""
        study = study_for(request, slug, role=Role.EDITOR)
        data = valid(ExclusionInput, request.data)
        annotator_exclusion_decide(
            study=study,
            annotator=annotator,
            excluded=data["excluded"],
            reason=data["reason"],
            user=request.user,
        )
        row = annotator_table_get(study=study).row(annotator)
        return Response(AnnotatorRowSerializer.render(row))


# --- study exports ----------------------------------------------------------------------

NO_EXPORT = "No export job has this id that the caller may see."


class StudyExportsApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_exports_list",
        responses={
            200: ExportJobSerializer(many=True),
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        """The study's latest exports (up to 10), newest first."""
        study = study_for(request, slug)
        jobs = workspace_selectors.export_jobs_recent(study=study)
        return Response([ExportJobSerializer.render(job) for job in jobs])

    @extend_schema(
        operation_id="v1_studies_exports_create",
        request=ExportInput,
        responses={
            202: ExportStartedSerializer,
            **error_responses(
                {
                    400: "Unknown format, or pilot data with a bundle.",
                    403: EDITORS_ONLY,
                    404: NO_STUDY,
                    429: "The researcher has IQA_JOBS_PER_RESEARCHER imports and exports "
                    "queued or running (`too_many_jobs`); nothing was queued.",
                    503: "The Celery broker did not answer; nothing was queued.",
                }
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        """Build the export (every table in ``format`` and the datasheet, one zip) on a
        worker. Follow it at the returned ``url`` (``GET exports/{id}``)."""
        study = study_for(request, slug, role=Role.EDITOR)
        data = valid(ExportInput, request.data)
        job = export_job_start(
            study=study,
            owner=request.user,
            format=data["format"],
            include_pilot=data["include_pilot"],
        )
        return Response(ExportStartedSerializer.render(job), status=202)


class ExportDetailApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_exports_retrieve",
        responses={
            200: ExportJobSerializer,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_EXPORT}),
        },
    )
    def get(self, request: Request, job_id) -> Response:
        """An export: queued, running (steps done of ``total``), then done with its
        ``download`` URL or failed with its one-line error. Whoever reaches the study
        reaches its exports."""
        job = workspace_selectors.export_job_get_visible(user=request.user, job_id=job_id)
        return Response(ExportJobSerializer.render(job))


class ExportDownloadApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_exports_download_retrieve",
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The zip: every table and README.md."
            ),
            **error_responses(
                {
                    403: NOT_SIGNED_IN,
                    404: NO_EXPORT,
                    409: "The export is not done (yet), or expired (IQA_EXPORT_KEEP_DAYS).",
                }
            ),
        },
    )
    def get(self, request: Request, job_id) -> FileResponse:
        """The finished export's zip, as an attachment."""
        job = workspace_selectors.export_job_get_visible(user=request.user, job_id=job_id)
        if job.status == job.Status.DONE and not job.file:
            raise Conflict(
                f"this export expired (zips are kept {settings.IQA_EXPORT_KEEP_DAYS} days): "
                "start a new one"
            )
        path = export_path(job)
        if job.status != job.Status.DONE or not path.is_file():
            raise Conflict(f"the export is {job.status}, not ready to download")
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=export_filename(job),
            content_type="application/zip",
        )
