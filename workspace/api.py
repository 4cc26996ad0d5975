"""The researcher API (JSON under /api/v1/): views only translate HTTP.

Session authentication (the pages' scripts) or ``Authorization: Token <token>`` (scripts
and notebooks). Every study comes through ``workspace.access.study_for``: another
researcher's study answers 404, like one that does not exist.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation.serializers import StudySummarySerializer, error_responses
from workspace.access import IsResearcher, study_for

NOT_SIGNED_IN = "Not signed in (session or token authentication)."
NO_STUDY = "No study has this slug that the caller may see."


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
        """The caller's studies (owned or member; every study for staff)."""
        studies = selectors.study_progress(user=request.user)
        return Response([StudySummarySerializer.render(study) for study in studies])


class StudyDetailApi(ResearcherApi):
    @extend_schema(
        operation_id="v1_studies_retrieve",
        responses={
            200: StudySummarySerializer,
            **error_responses({403: NOT_SIGNED_IN, 404: NO_STUDY}),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        study = study_for(request, slug)
        return Response(
            StudySummarySerializer.render(selectors.study_progress_get(slug=study.slug))
        )
