"""The annotator REST API (docs/design.md, "Public interface"). Views only translate HTTP.

The session token in the path is the annotator's only credential: these views use no
Django authentication (and so no CSRF or cookies), and a token reaches its own session
only. The researcher API is the workspace app's.
"""

import io

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException, ParseError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.serializers import (
    PingSerializer,
    SessionOpenInput,
    SessionSerializer,
    TrialSerializer,
    VoteInput,
    VoteNextSerializer,
    VoteSerializer,
)
from annotation.serializers import (
    error_responses as _errors,
)
from annotation.serializers import (
    valid as _valid,
)
from annotation.throttles import (
    NextTrialPerAddressThrottle,
    SessionOpenPerAddressThrottle,
    SessionVoteThrottle,
    client_address,
)
from config.parsers import CheckedJSONParser

# --- plumbing -----------------------------------------------------------------------


class RequestTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "request body too large"


class LimitedJSONParser(CheckedJSONParser):
    """JSON only, and small: annotator requests are a few hundred bytes (and checked, as
    every endpoint's JSON is: ``config.parsers``)."""

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


class AnnotatorApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [LimitedJSONParser]

    def check_throttles(self, request: Request) -> None:
        """The first throttle that refuses answers (DRF asks every throttle, so that a
        request refused per address would still use up its study's count: one address
        could then lock everyone out of the study). Per-address throttles come first."""
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter: ``1`` or ``true`` (as generated clients send it)."""
    return request.query_params.get(name, "").lower() in ("1", "true")


# --- annotator views ----------------------------------------------------------------


# Every annotator request body goes through LimitedJSONParser.
BODY_ERRORS = {
    400: "A malformed body: not JSON, not an object, nested deeper than 64 levels, text "
    "with a lone surrogate or NUL (`invalid_json`), or a field fails validation (`field` "
    "names it).",
    413: "The body is larger than IQA_API_MAX_BODY_BYTES.",
    415: "The body is not `application/json`.",
}
UNKNOWN_TOKEN = "No session has this token."


class SessionOpenApi(AnnotatorApi):
    throttle_classes = [SessionOpenPerAddressThrottle]

    @extend_schema(
        request=SessionOpenInput,
        responses={
            201: OpenApiResponse(SessionSerializer, description="A new session."),
            200: OpenApiResponse(
                SessionSerializer, description="The participant's existing session."
            ),
            **_errors(
                {
                    **BODY_ERRORS,
                    400: BODY_ERRORS[400] + " A recruiter's id of the wrong format "
                    "(`participant_id_invalid`) on a study that requires one.",
                    403: "The study requires a Prolific or MTurk participant id and the "
                    "request has none (`participant_id_required`).",
                    404: "No study has this slug (a draft study answers so too).",
                    409: "The study is closed (`study_not_open`), or, on a live study, the "
                    "participant id has a session already and the request does not carry "
                    "the recruiter's id of that participation (`participant_id_in_use`).",
                    429: "Too many sessions opened from this address (IQA_SESSION_RATE); "
                    "`Retry-After` says when to try again.",
                }
            ),
        },
        description="Open a session. A participant_id with a session already gets it back "
        "(200) only with the recruiter's id of the same participation in external_ids "
        "(Prolific SESSION_ID, MTurk assignmentId); the page resumes with the token.",
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
            address=client_address(request),
        )
        return Response(
            SessionSerializer.render(state.session), status=201 if state.created else 200
        )


class SessionDetailApi(AnnotatorApi):
    @extend_schema(
        responses={200: SessionSerializer, **_errors({404: UNKNOWN_TOKEN})},
        description="The session's progress, and its completion code once completed.",
    )
    def get(self, request: Request, token: str) -> Response:
        return Response(SessionSerializer.render(services.session_get(token=token)))


class NextTrialApi(AnnotatorApi):
    throttle_classes = [NextTrialPerAddressThrottle]

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
            200: OpenApiResponse(
                TrialSerializer,
                description="The open trial: asked again before it is answered, the same one.",
            ),
            204: OpenApiResponse(description="Nothing left: the session is completed."),
            **_errors(
                {
                    404: UNKNOWN_TOKEN,
                    409: "Try again after `Retry-After` seconds: every trial left is held "
                    "by annotators answering now (`trials_held`), or the pairs were busy "
                    "for a moment (`try_again`).",
                    429: "Too many requests from this address (IQA_TRIAL_RATE); "
                    "`Retry-After` says when to try again.",
                }
            ),
        },
    )
    def get(self, request: Request, token: str) -> Response:
        trial = services.trial_next(token=token, ahead=_flag(request, "ahead"))
        if trial is None:
            return Response(status=204)
        return Response(TrialSerializer.render(trial))


class VoteApi(AnnotatorApi):
    throttle_classes = [SessionVoteThrottle]

    @extend_schema(
        request=VoteInput,
        parameters=[
            OpenApiParameter(
                "next",
                bool,
                description="Also claim the session's next trial in the same transaction "
                "and return it as `next_trial`: one request per trial. Counted against "
                "the address's next-trial rate (IQA_TRIAL_RATE); over it, the vote is "
                "still stored and `next_trial` is absent.",
            ),
            OpenApiParameter(
                "ahead",
                bool,
                description="With `next=1`: the trial after that one too, as next-trial's "
                "`ahead=1` gives it.",
            ),
        ],
        responses={
            201: OpenApiResponse(VoteNextSerializer, description="The vote, stored."),
            200: OpenApiResponse(
                VoteNextSerializer,
                description="A retry: the stored vote (with `next=1`, the open trial: the "
                "same one the first answer got, while it is unanswered and its lease holds).",
            ),
            **_errors(
                {
                    **BODY_ERRORS,
                    404: "No session has this token, or no such trial was issued to it.",
                    409: "The trial was answered with another choice.",
                    429: "Too many votes from this session (IQA_VOTE_RATE); `Retry-After` "
                    "says when to try again.",
                }
            ),
        },
    )
    def post(self, request: Request, token: str) -> Response:
        data = _valid(VoteInput, request.data)
        vote = {
            "token": token,
            "trial_id": data["trial_id"],
            "choice": data["choice"],
            "response_ms": data["response_ms"],
            "client_info": dict(data.get("client", {})),
        }
        if _flag(request, "next") and self._trial_allowed(request):
            result = services.vote_submit_next(**vote, ahead=_flag(request, "ahead"))
            status = 201 if result.vote.created else 200
            return Response(VoteNextSerializer.render(result), status=status)
        stored = services.vote_submit(**vote)
        return Response(VoteSerializer.render(stored), status=201 if stored.created else 200)

    def _trial_allowed(self, request: Request) -> bool:
        """A claimed trial counts against the address's next-trial rate wherever it is
        claimed; over it the vote is still taken, without its next trial."""
        return NextTrialPerAddressThrottle().allow_request(request, self)


class PingApi(AnnotatorApi):
    """A trivial JSON endpoint: the web stack's ceiling for benchmarks, and a liveness probe.

    ``?db=1`` adds one ``SELECT 1`` round trip: the ceiling of a request that touches the
    database at all.
    """

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "db", str, enum=["1"], description="1: also make one round trip to the database."
            )
        ],
        responses={200: PingSerializer},
    )
    def get(self, request: Request) -> Response:
        if request.query_params.get("db") == "1":
            selectors.database_ping()
        return Response(PingSerializer.render({"ok": True}))
