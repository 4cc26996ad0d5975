"""The researchers' pages: server-rendered templates over the same selectors and services
as the commands and the API. Every study page goes through ``access.study_for``."""

import math
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse, reverse_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from annotation.errors import InvalidSetting, StudyArchived
from annotation.models import Role, role_at_least
from annotation.selectors import pilot_summary, studies_visible, study_members, study_progress
from annotation.throttles import PasswordResetPerAddressThrottle
from core.errors import DomainError, NotFound
from workspace import dashboard, selectors, services
from workspace.access import login_required, study_for_page
from workspace.forms import ResearcherPasswordResetForm, StudySettingsForm, readable
from workspace.import_forms import StudyNewForm
from workspace.import_jobs import import_job_start
from workspace.templatetags.dashboard import setting_label
from workspace.uploads import (
    ZipUploadHandler,
    content_length,
    handler_install,
    upload_too_large_error,
)

# The session key under which a new API token waits to be shown once on the account page.
NEW_TOKEN_SESSION_KEY = "workspace:new-api-token"


class LoginView(auth_views.LoginView):
    """The platform's own login page. Failed logins count per username and address with
    the admin's and ``POST /api/v1/auth/token`` (django-axes; ``access.login_locked_out``
    answers a locked-out one)."""

    template_name = "workspace/login.html"
    redirect_authenticated_user = True

    def get_redirect_url(self) -> str:
        """``next`` unless it is the login page itself (``/login/?next=/login/`` would
        send a logged-in researcher round in a loop): then the study list."""
        url = super().get_redirect_url()
        if url and urlsplit(url).path == reverse("workspace:login"):
            return ""
        return url


def _link_days() -> float:
    return round(settings.PASSWORD_RESET_TIMEOUT / 86400, 1)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset by e-mail, on the platform's pages: the same answer whether or not
    an account has the address (nothing to learn by trying), at most
    ``IQA_PASSWORD_RESET_RATE`` e-mails asked for per address; links point at
    ``IQA_BASE_URL`` when it is set, not at the request's Host header."""

    template_name = "workspace/password_reset.html"
    email_template_name = "workspace/password_reset_email.txt"
    subject_template_name = "workspace/password_reset_subject.txt"
    success_url = reverse_lazy("workspace:password-reset-done")
    form_class = ResearcherPasswordResetForm

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "timeout_days": _link_days()}

    def post(self, request, *args, **kwargs):
        throttle = PasswordResetPerAddressThrottle()
        if not throttle.allow_request(request, self):
            minutes = max(1, math.ceil(throttle.wait() / 60))
            context = self.get_context_data(form=self.get_form())
            context["throttled_minutes"] = minutes
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(math.ceil(throttle.wait()))
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        # Django's view, with the link's address from IQA_BASE_URL when it is set.
        base = urlsplit(settings.IQA_BASE_URL) if settings.IQA_BASE_URL else None
        form.save(
            domain_override=base.netloc + base.path if base else None,
            use_https=base.scheme == "https" if base else self.request.is_secure(),
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context={"timeout_days": _link_days()},
        )
        return redirect(self.get_success_url())


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Sets the password from an e-mailed or invitation link; the link then stops working
    (its token hashes the old password and the last login)."""

    template_name = "workspace/password_reset_confirm.html"
    success_url = reverse_lazy("workspace:password-reset-complete")


def api_docs(request: HttpRequest) -> HttpResponse:
    """The API reference: the OpenAPI schema (public, as ``/api/schema/`` is) drawn by the
    vendored Swagger UI."""
    return render(request, "workspace/api_docs.html", {"nav": "api"})


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    """The caller's studies with their progress; ``?archived=1`` the archived ones."""
    archived = request.GET.get("archived") == "1"
    studies = study_progress(user=request.user, archived=archived)
    context = {
        "studies": studies,
        "nav": "studies",
        "archived": archived,
        "n_archived": studies_visible(user=request.user, archived=True).count(),
    }
    return render(request, "workspace/study_list.html", context)


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """Who is logged in, the way to change the password, and the API token: its key is
    shown once, right after it is made."""
    token = selectors.token_get(user=request.user)
    new_key = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    context = {
        "nav": "account",
        "token": token,
        # The key itself is never stored (its digest is): it is shown from the session once.
        "new_key": new_key if token and new_key and new_key.startswith(token.token_key) else None,
        "studies_url": request.build_absolute_uri(reverse("workspace-api:study-list")),
        "token_url": request.build_absolute_uri(reverse("workspace-api:auth-token")),
    }
    return render(request, "workspace/account.html", context)


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    """Make a new API token, replacing the caller's old one; then show it once."""
    replaced = selectors.token_get(user=request.user) is not None
    _, key = services.token_create(user=request.user)
    request.session[NEW_TOKEN_SESSION_KEY] = key
    messages.success(
        request,
        "New API token made; the old one no longer works." if replaced else "API token made.",
    )
    return redirect("workspace:account")


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    """Delete the caller's API token: scripts using it are refused from now on."""
    if services.token_revoke(user=request.user):
        messages.success(request, "API token revoked: scripts using it are refused from now on.")
    else:
        messages.info(request, "You had no API token.")
    return redirect("workspace:account")


# ---------------------------------------------------------------------------------------
# A study's dashboard: run it (status, settings, scoring) and watch it fill

# The lifecycle's buttons, by the status they lead to, with what each does for annotators.
STATUS_ACTIONS = {
    "live": "Go live: annotators can start",
    "closed": "Close: no new annotators; answers to open trials are kept",
    "draft": "Back to draft: the annotator page says not open yet",
}


def _dashboard(request: HttpRequest, study, *, form=None, status: int = 200) -> HttpResponse:
    annotator_url = request.build_absolute_uri(reverse("frontend:annotate", args=[study.slug]))
    progress = dashboard.study_dashboard_progress(study=study)
    agreement = f"{reverse('workspace:study-dashboard', args=[study.slug])}agreement/"
    try:
        resolve(agreement)
    except Resolver404:
        agreement = None
    scoring = dashboard.study_scoring_overview(study=study)
    context = {
        "nav": "studies",
        "study": study,
        "memberships": study_members(study=study),
        "roles": Role.choices,
        "can_edit": role_at_least(study.role, Role.EDITOR),
        "can_own": study.role == Role.OWNER,
        "pilot": pilot_summary(study=study),
        "progress": progress,
        "counts": dashboard.study_counts(progress),
        "scoring": scoring,
        "weights": dashboard.weights_overview(
            study_metrics=[m["metric"] for m in scoring["metrics"]]
        ),
        "links": dashboard.recruiting_links(study=study, annotator_url=annotator_url),
        "actions": [(to, label) for to, label in STATUS_ACTIONS.items() if to != study.status],
        "form": form or StudySettingsForm.for_study(study),
        "agreement_url": agreement,
        "refresh_seconds": f"{settings.IQA_DASHBOARD_REFRESH_SECONDS:g}",
        "progress_url": reverse("workspace-api:study-progress", args=[study.slug]),
        "chart_data": [
            {
                "hour": hour["hour"].isoformat(),
                "counted_votes": hour["counted_votes"],
                "votes": hour["votes"],
            }
            for hour in progress["votes_per_hour"]
        ],
    }
    return render(request, "workspace/study_dashboard.html", context, status=status)


@login_required
def study_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    """Run the study and watch it fill: lifecycle, settings, links, progress, scoring,
    annotators, downloads."""
    return _dashboard(request, study_for_page(request, slug))


@login_required
@require_POST
def study_status(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for_page(request, slug, Role.EDITOR)
    status = request.POST.get("status", "")
    try:
        services.study_status_change(study=study, status=status)
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"The study is {study.get_status_display().lower()}.")
    return redirect(reverse("workspace:study-dashboard", args=[slug]) + "#lifecycle")


@login_required
@require_POST
def study_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """Save the settings through ``study_configure``; a refused value is shown next to the
    field it names, and nothing is saved."""
    study = study_for_page(request, slug, Role.EDITOR)
    form = StudySettingsForm(request.POST)
    if form.is_valid():
        try:
            services.study_settings_change(study=study, changes=form.changes())
        except StudyArchived as exc:
            messages.error(request, str(exc))
            return redirect(reverse("workspace:study-dashboard", args=[slug]) + "#settings")
        except InvalidSetting as exc:
            study.refresh_from_db()
            # Every setting at fault at once, each next to its field.
            for name, errors in (exc.fields or {exc.field: [str(exc)]}).items():
                field = form.fields.get(name)
                for error in errors:
                    if field is None:
                        form.add_error(None, error)
                    else:
                        form.add_error(name, readable(error, name, setting_label(name)))
        else:
            messages.success(request, "Settings saved.")
            return redirect(reverse("workspace:study-dashboard", args=[slug]) + "#settings")
    return _dashboard(request, study, form=form, status=400)


@login_required
@require_POST
def study_score(request: HttpRequest, slug: str) -> HttpResponse:
    """Score now: what ``score_study SLUG`` does, planned on a worker."""
    study = study_for_page(request, slug, Role.EDITOR)
    try:
        services.study_score_request(study=study)
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        dashboard.scoring_overview_forget(study=study)
        messages.success(
            request,
            "Scoring requested: a worker sends the available metrics' work; the table below "
            "shows it as it goes.",
        )
    return redirect(reverse("workspace:study-dashboard", args=[slug]) + "#scoring")


# --- new study: the form, then the import's progress -----------------------------------


@csrf_exempt  # checked by _study_new_post, once the upload handler is in place
@login_required
def study_new(request: HttpRequest) -> HttpResponse:
    """Create a study: its settings and a zip (or, staff, a server folder), imported on a
    worker. The zip streams to disk as it arrives (``workspace.uploads``)."""
    if request.method != "POST":
        initial = _new_study_initial(request)
        return _study_new_page(request, StudyNewForm(user=request.user, initial=initial))
    if content_length(request) > settings.IQA_UPLOAD_MAX_BYTES:
        # Refused unread, so the form's CSRF token is unread too: this answer changes
        # nothing and shows only the empty form, like a GET.
        return _upload_too_large(request)
    upload = handler_install(request)
    try:
        return _study_new_post(request, upload)
    finally:
        upload.discard()  # unless the import job took it


def _upload_too_large(request: HttpRequest) -> HttpResponse:
    form = StudyNewForm(user=request.user, initial=_new_study_initial(request))
    return _study_new_page(request, form, error=upload_too_large_error(), status=413)


@csrf_protect
def _study_new_post(request: HttpRequest, upload: ZipUploadHandler) -> HttpResponse:
    form = StudyNewForm(request.POST, request.FILES, user=request.user)
    if upload.too_large:  # stopped while streaming
        return _upload_too_large(request)
    if not form.is_valid():
        return _study_new_page(request, form, status=400)
    try:
        job = import_job_start(
            owner=request.user,
            slug=form.cleaned_data["slug"],
            options=form.options(),
            upload=upload.take() if form.cleaned_data.get("file") else None,
            server_folder=form.cleaned_data.get("server_folder") or "",
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        return _study_new_page(request, form, status=exc.status_code)
    return redirect("workspace:import-detail", job_id=job.pk)


def _new_study_initial(request: HttpRequest) -> dict:
    """The values of an earlier import (``?from=<job id>``, one the caller may see) to try
    again with, else none."""
    try:
        job = selectors.import_job_get_visible(user=request.user, job_id=request.GET["from"])
    except (KeyError, NotFound):
        return {}
    return {"slug": job.slug, **job.options}


def _study_new_page(request, form, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "nav": "studies",
        "form": form,
        "error": error,
        "max_bytes": settings.IQA_UPLOAD_MAX_BYTES,
        "max_uncompressed": settings.IQA_UPLOAD_MAX_UNCOMPRESSED,
        "max_members_text": f"{settings.IQA_UPLOAD_MAX_MEMBERS:,}",
        "import_root": settings.IQA_IMPORT_ROOT if form.server_folders else None,
    }
    return render(request, "workspace/study_new.html", context, status=status)


@login_required
def import_detail(request: HttpRequest, job_id) -> HttpResponse:
    """An import's progress (the page polls ``GET /api/v1/imports/{id}``), then its
    summary or its one-line error."""
    try:
        job = selectors.import_job_get_visible(user=request.user, job_id=job_id)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    context = {
        "nav": "studies",
        "job": job,
        "api_url": reverse("workspace-api:import-detail", args=[job.pk]),
        "study_url": reverse("workspace:study-list") + f"{job.slug}/",
    }
    return render(request, "workspace/import_detail.html", context)


@login_required
def study_agreement(request: HttpRequest, slug: str) -> HttpResponse:
    """The live agreement report: the headline table and charts of the study's latest
    agreement snapshot, which the page's script reads from the API and follows."""
    study = study_for_page(request, slug)
    context = {
        "nav": "studies",
        "study": study,
        "api_url": reverse("workspace-api:study-agreement", args=[study.slug]),
        "study_url": reverse("workspace-api:study-detail", args=[study.slug]),
        "csv_url": reverse("workspace-api:study-agreement-csv", args=[study.slug]),
        "images_url": reverse("workspace-api:study-agreement-images", args=[study.slug]),
        "tex_url": reverse("workspace-api:study-agreement-tex", args=[study.slug]),
        "poll_seconds": f"{settings.IQA_AGREEMENT_POLL_SECONDS:g}",
        "debounce_seconds": f"{settings.IQA_AGREEMENT_DEBOUNCE_SECONDS:g}",
        "intervals_seconds": f"{settings.IQA_AGREEMENT_INTERVALS_SECONDS:g}",
        "intervals_growth": f"{settings.IQA_AGREEMENT_INTERVALS_GROWTH * 100:g}",
    }
    return render(request, "workspace/study_agreement.html", context)
