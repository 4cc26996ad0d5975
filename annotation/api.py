"""The annotator REST API (DESIGN.md section 5). Views only translate HTTP.

The session token in the path is the annotator's only credential: these views use no
Django authentication (and so no CSRF or cookies), and a token reaches its own session
only. Researcher endpoints are staff-only.
"""

import io

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.errors import NotFound
from annotation.models import AnnotatorSession, Image, Vote
from annotation.services.annotator import IssuedTrial, Progress, ShownImage

# --- plumbing -----------------------------------------------------------------------


class RequestTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "request body too large"


class LimitedJSONParser(JSONParser):
    """JSON only, and small: annotator requests are a few hundred bytes."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.IQA_API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"request body too large ({declared} bytes; at most {limit})")
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"request body too large (at most {limit} bytes)")
        if not body:
            raise ParseError("request body is empty; send a JSON object")
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        if not isinstance(data, dict):
            raise ParseError("request body must be a JSON object")
        return data


class SessionVoteThrottle(SimpleRateThrottle):
    """Votes per session token (a person answers at most a few trials a second)."""

    scope = "vote"

    def get_rate(self) -> str:
        return settings.IQA_VOTE_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": view.kwargs.get("token", "")}


class AnnotatorApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [LimitedJSONParser]


def image_url(file: str) -> str:
    return f"{settings.MEDIA_URL}{file}"


def _progress(progress: Progress) -> dict:
    return {"done": progress.done, "total": progress.total}


def image_size(image: ShownImage | Image | None) -> dict | None:
    return None if image is None else {"width": image.width, "height": image.height}


def session_payload(session: AnnotatorSession) -> dict:
    study = session.study
    completed = session.completed_at is not None
    return {
        "token": session.token,
        "study": study.slug,
        "design": study.design,
        "show_reference": study.show_reference,
        "title": study.title,
        "instructions": study.instructions,
        "practice_trials": study.practice_trials,
        "break_every": study.break_every,
        "completed": completed,
        "completion_code": study.completion_code if completed else None,
        "completion_url": (study.completion_url or None) if completed else None,
        "progress": _progress(services.session_progress(session, study)),
    }


def trial_payload(trial: IssuedTrial) -> dict:
    body = {
        "trial_id": str(trial.trial_id),
        "practice": trial.practice,
        "images": {
            "left": image_url(trial.left.file),
            "right": image_url(trial.right.file),
            "reference": image_url(trial.reference.file) if trial.reference else None,
        },
        "sizes": {
            "left": image_size(trial.left),
            "right": image_size(trial.right),
            "reference": image_size(trial.reference),
        },
        "lease_expires_at": trial.lease_expires_at.isoformat(),
        "progress": _progress(trial.progress),
    }
    if trial.next is not None:
        body["next"] = trial_payload(trial.next)
    return body


# --- input --------------------------------------------------------------------------


class ClientInfoInput(serializers.Serializer):
    device_pixel_ratio = serializers.FloatField(min_value=0.1, max_value=16, required=False)
    viewport_width = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    viewport_height = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    screen_width = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    screen_height = serializers.IntegerField(min_value=1, max_value=100_000, required=False)


class SessionOpenInput(serializers.Serializer):
    participant_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    source = serializers.CharField(max_length=32, required=False, allow_blank=True)
    external_ids = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True), required=False
    )
    client = ClientInfoInput(required=False)

    def validate_external_ids(self, value: dict) -> dict:
        if len(value) > 16 or any(len(key) > 64 for key in value):
            raise serializers.ValidationError("at most 16 ids, names of at most 64 characters")
        return value


class VoteInput(serializers.Serializer):
    trial_id = serializers.UUIDField()
    choice = serializers.ChoiceField(choices=Vote.Choice.values)
    response_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000)
    client = ClientInfoInput(required=False)


def _valid(serializer_class: type[serializers.Serializer], data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- annotator views ----------------------------------------------------------------

SESSION_OUT = inline_serializer(
    "Session",
    {
        "token": serializers.CharField(),
        "study": serializers.CharField(),
        "design": serializers.CharField(),
        "completed": serializers.BooleanField(),
        "completion_code": serializers.CharField(allow_null=True),
        "completion_url": serializers.CharField(allow_null=True),
        "progress": serializers.DictField(child=serializers.IntegerField()),
    },
)


class SessionOpenApi(AnnotatorApi):
    @extend_schema(
        request=SessionOpenInput,
        responses={201: SESSION_OUT, 200: SESSION_OUT},
        description="Open a session; the same participant_id gets its existing session (200).",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(SessionOpenInput, request.data)
        client = dict(data.get("client", {}))
        client["user_agent"] = request.META.get("HTTP_USER_AGENT", "")[:400]
        state = services.session_open(
            study_slug=slug,
            participant_id=data.get("participant_id", ""),
            source=data.get("source", ""),
            external_ids=data.get("external_ids", {}),
            client_info=client,
        )
        return Response(session_payload(state.session), status=201 if state.created else 200)


class SessionDetailApi(AnnotatorApi):
    @extend_schema(responses={200: SESSION_OUT})
    def get(self, request: Request, token: str) -> Response:
        return Response(session_payload(services.session_get(token=token)))


class NextTrialApi(AnnotatorApi):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ahead",
                bool,
                description="Also issue the trial after this one (as `next`), so a page "
                "can preload its images; answering this trial makes it the open one.",
            )
        ],
        responses={
            200: inline_serializer(
                "Trial",
                {
                    "trial_id": serializers.UUIDField(),
                    "practice": serializers.BooleanField(),
                    "images": serializers.DictField(child=serializers.CharField(allow_null=True)),
                    "progress": serializers.DictField(child=serializers.IntegerField()),
                },
            ),
            204: OpenApiResponse(description="Nothing left: the session is completed."),
        },
    )
    def get(self, request: Request, token: str) -> Response:
        trial = services.trial_next(token=token, ahead=request.query_params.get("ahead") == "1")
        if trial is None:
            return Response(status=204)
        return Response(trial_payload(trial))


class VoteApi(AnnotatorApi):
    throttle_classes = [SessionVoteThrottle]

    @extend_schema(
        request=VoteInput,
        responses={
            201: inline_serializer(
                "Vote",
                {
                    "vote_id": serializers.UUIDField(),
                    "late": serializers.BooleanField(),
                    "choice": serializers.CharField(),
                    "completed": serializers.BooleanField(),
                    "progress": serializers.DictField(child=serializers.IntegerField()),
                },
            ),
            200: OpenApiResponse(description="A retry: the stored vote."),
            404: OpenApiResponse(description="No such trial issued to this session."),
            409: OpenApiResponse(description="The trial was answered with another choice."),
        },
    )
    def post(self, request: Request, token: str) -> Response:
        data = _valid(VoteInput, request.data)
        result = services.vote_submit(
            token=token,
            trial_id=data["trial_id"],
            choice=data["choice"],
            response_ms=data["response_ms"],
            client_info=dict(data.get("client", {})),
        )
        body = {
            "vote_id": str(result.vote_id),
            "late": result.late,
            "choice": result.choice,
            "completed": result.completed,
            "progress": _progress(result.progress),
        }
        return Response(body, status=201 if result.created else 200)


class PingApi(AnnotatorApi):
    """A trivial JSON endpoint: the web stack's ceiling for benchmarks, and a liveness probe.

    ``?db=1`` adds one ``SELECT 1`` round trip: the ceiling of a request that touches the
    database at all.
    """

    @extend_schema(responses={200: inline_serializer("Ping", {"ok": serializers.BooleanField()})})
    def get(self, request: Request) -> Response:
        if request.query_params.get("db") == "1":
            selectors.database_ping()
        return Response({"ok": True})


# --- researcher views ---------------------------------------------------------------


class ResearcherApi(APIView):
    permission_classes = [IsAdminUser]


class StudyListApi(ResearcherApi):
    def get(self, request: Request) -> Response:
        return Response([selectors.study_summary(study) for study in selectors.study_progress()])


class StudyDetailApi(ResearcherApi):
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.study_progress().filter(slug=slug).first()
        if study is None:
            raise NotFound(f"no study with slug {slug!r}")
        return Response(selectors.study_summary(study))
