"""The researcher API's routes, under /api/v1/ beside the annotator API's."""

from django.urls import path

from workspace import api

app_name = "workspace-api"

urlpatterns = [
    path("studies", api.StudiesApi.as_view(), name="study-list"),
    path("studies/<slug:slug>", api.StudyDetailApi.as_view(), name="study-detail"),
]
