"""The researchers' pages."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from workspace import browse_views, manage_views, views

app_name = "workspace"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="workspace:study-list"), name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("api/docs/", views.api_docs, name="api-docs"),
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
    # Password reset by e-mail (and the invitation links of create_researcher --invite).
    path("password/reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(
            template_name="workspace/password_reset_done.html"
        ),
        name="password-reset-done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="workspace/password_reset_complete.html"
        ),
        name="password-reset-complete",
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
    path("studies/<slug:slug>/members/", manage_views.study_members, name="study-members"),
    path("studies/<slug:slug>/archive/", manage_views.study_archive, name="study-archive"),
    path("studies/<slug:slug>/restore/", manage_views.study_restore, name="study-restore"),
    path("studies/<slug:slug>/delete/", manage_views.study_delete, name="study-delete"),
    path("studies/<slug:slug>/preview/", manage_views.study_preview, name="study-preview"),
    path(
        "studies/<slug:slug>/pilot/delete/",
        manage_views.study_pilot_delete,
        name="study-pilot-delete",
    ),
    path("studies/<slug:slug>/scenes/add/", manage_views.study_scenes_add, name="study-scenes-add"),
    # Browsing the data: scenes, a scene's images and pairs, a pair.
    path("studies/<slug:slug>/data/", browse_views.study_data, name="study-data"),
    path(
        "studies/<slug:slug>/data/scenes/<int:scene_id>/",
        browse_views.scene_detail,
        name="scene-detail",
    ),
    path(
        "studies/<slug:slug>/data/pairs/<int:pair_id>/",
        browse_views.pair_detail,
        name="pair-detail",
    ),
]
