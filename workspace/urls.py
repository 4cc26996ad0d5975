"""The researchers' pages."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from workspace import views

app_name = "workspace"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="workspace:study-list"), name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="workspace:login"), name="logout"),
    path("account/", views.account, name="account"),
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(
            template_name="workspace/password_change.html",
            success_url=reverse_lazy("workspace:password-change-done"),
            extra_context={"nav": "account"},
        ),
        name="password-change",
    ),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="workspace/password_change_done.html", extra_context={"nav": "account"}
        ),
        name="password-change-done",
    ),
    path("account/token/", views.token_create, name="token-create"),
    path("account/token/revoke/", views.token_revoke, name="token-revoke"),
    path("studies/", views.study_list, name="study-list"),
    # Before the study pages: "new" and "imports" are not study slugs here.
    path("studies/new/", views.study_new, name="study-new"),
    path("studies/imports/<uuid:job_id>/", views.import_detail, name="import-detail"),
    path("studies/<slug:slug>/", views.study_dashboard, name="study-dashboard"),
    path("studies/<slug:slug>/status/", views.study_status, name="study-status"),
    path("studies/<slug:slug>/settings/", views.study_settings, name="study-settings"),
    path("studies/<slug:slug>/score/", views.study_score, name="study-score"),
    path("studies/<slug:slug>/agreement/", views.study_agreement, name="study-agreement"),
]
