"""The researcher API's routes, under /api/v1/ beside the annotator API's."""

from django.urls import path

from workspace import agreement_api, api

app_name = "workspace-api"

urlpatterns = [
    path("auth/token", api.TokenObtainApi.as_view(), name="auth-token"),
    path("studies", api.StudiesApi.as_view(), name="study-list"),
    path("imports/<uuid:job_id>", api.ImportDetailApi.as_view(), name="import-detail"),
    path("studies/<slug:slug>", api.StudyDetailApi.as_view(), name="study-detail"),
    path("studies/<slug:slug>/progress", api.StudyProgressApi.as_view(), name="study-progress"),
    path(
        "studies/<slug:slug>/annotators", api.StudyAnnotatorsApi.as_view(), name="study-annotators"
    ),
    path(
        "studies/<slug:slug>/annotators/<str:annotator>/exclusion",
        api.AnnotatorExclusionApi.as_view(),
        name="annotator-exclusion",
    ),
    path(
        "studies/<slug:slug>/agreement",
        agreement_api.StudyAgreementApi.as_view(),
        name="study-agreement",
    ),
    path(
        "studies/<slug:slug>/agreement/images",
        agreement_api.StudyAgreementImagesApi.as_view(),
        name="study-agreement-images",
    ),
    path(
        "studies/<slug:slug>/agreement.csv",
        agreement_api.StudyAgreementCsvApi.as_view(),
        name="study-agreement-csv",
    ),
    path(
        "studies/<slug:slug>/agreement.tex",
        agreement_api.StudyAgreementLatexApi.as_view(),
        name="study-agreement-tex",
    ),
    path("studies/<slug:slug>/exports", api.StudyExportsApi.as_view(), name="study-exports"),
    path("exports/<uuid:job_id>", api.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<uuid:job_id>/download", api.ExportDownloadApi.as_view(), name="export-download"),
]
