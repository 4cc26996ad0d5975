from django.urls import path

from annotation import api

app_name = "annotation"

urlpatterns = [
    path("ping", api.PingApi.as_view(), name="ping"),
    path("studies/<slug:slug>/sessions", api.SessionOpenApi.as_view(), name="session-open"),
    path("sessions/<str:token>", api.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<str:token>/next-trial", api.NextTrialApi.as_view(), name="next-trial"),
    path("sessions/<str:token>/votes", api.VoteApi.as_view(), name="votes"),
]
