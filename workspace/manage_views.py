"""A study's management pages beside its dashboard: members and their roles, archive and
restore, delete, preview (pilot data) and adding scenes. Each goes through
``access.study_for_page`` with the role it needs, and through the services."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from annotation import services as annotation_services
from annotation.models import Role
from annotation.selectors import study_contents_counts
from core.errors import DomainError
from workspace import services
from workspace.access import login_required, study_for_page
from workspace.import_forms import ScenesAddForm
from workspace.import_jobs import scenes_job_start
from workspace.models import ExportJob
from workspace.uploads import (
    ZipUploadHandler,
    content_length,
    handler_install,
    upload_too_large_error,
)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _dashboard_url(slug: str, anchor: str = "") -> str:
    return reverse("workspace:study-dashboard", args=[slug]) + (f"#{anchor}" if anchor else "")


# --- members ----------------------------------------------------------------------------


@login_required
@require_POST
def study_members(request: HttpRequest, slug: str) -> HttpResponse:
    """Add a member, change a member's role, or (``remove``) take a member off: owners."""
    study = study_for_page(request, slug, Role.OWNER)
    username = request.POST.get("username", "").strip()
    if request.POST.get("remove"):
        if services.study_member_remove(study=study, username=username):
            messages.success(request, f"{username} is no longer a member of this study.")
        else:
            messages.info(request, f"{username} was not a member of this study.")
        return redirect(_dashboard_url(slug, "people"))
    try:
        member = services.study_member_set(
            study=study, username=username, role=request.POST.get("role", "")
        )
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        name = member.user.get_username()
        messages.success(request, f"{name} is now {member.role} of this study.")
    return redirect(_dashboard_url(slug, "people"))


# --- archive, restore, delete -----------------------------------------------------------


@login_required
@require_POST
def study_archive(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for_page(request, slug, Role.OWNER)
    try:
        annotation_services.study_archive(study=study)
    except DomainError as exc:
        messages.error(request, str(exc))
        return redirect(_dashboard_url(slug, "lifecycle"))
    messages.success(
        request,
        f"Study {slug} archived: read-only, and listed under Archived studies, where an "
        "owner can restore it.",
    )
    return redirect("workspace:study-list")


@login_required
@require_POST
def study_restore(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for_page(request, slug, Role.OWNER)
    annotation_services.study_restore(study=study)
    messages.success(request, f"Study {slug} restored: back in the study list, writable.")
    return redirect(_dashboard_url(slug, "lifecycle"))


def _deletion_counts(study) -> dict[str, int]:
    exports = ExportJob.objects.filter(study=study).count()
    return {**study_contents_counts(study=study), "exports": exports}


@login_required
def study_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """What deleting removes, and the typed confirmation (owners); then the deletion."""
    study = study_for_page(request, slug, Role.OWNER)
    error, status = "", 200
    if request.method == "POST":
        try:
            deleted = services.study_remove(study=study, confirm=request.POST.get("confirm", ""))
        except DomainError as exc:
            error, status = str(exc), exc.status_code
        else:
            messages.success(
                request,
                f"Study {deleted.slug} deleted: {_count(deleted.sessions, 'session')}, "
                f"{_count(deleted.votes, 'vote')} and {_count(deleted.images, 'image')}, with "
                "the image files no other study uses.",
            )
            return redirect("workspace:study-list")
    context = {"nav": "studies", "study": study, "counts": _deletion_counts(study), "error": error}
    return render(request, "workspace/study_delete.html", context, status=status)


# --- preview and pilot data -------------------------------------------------------------


@login_required
@require_POST
def study_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """Open the annotator page as a pilot session (any role): its answers are pilot data.
    The session's token travels in the address's fragment, which no server sees."""
    study = study_for_page(request, slug)
    try:
        session = annotation_services.pilot_session_open(study=study, user=request.user)
    except DomainError as exc:
        messages.error(request, str(exc))
        return redirect(_dashboard_url(slug, "pilot"))
    page = reverse("frontend:annotate", args=[slug])
    return redirect(f"{page}?preview=1#pilot={session.token}")


@login_required
@require_POST
def study_pilot_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """Delete the study's pilot data in one action (editors)."""
    study = study_for_page(request, slug, Role.EDITOR)
    try:
        deleted = annotation_services.pilot_data_delete(study=study)
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Pilot data deleted: {_count(deleted.sessions, 'preview session')} and "
            f"{_count(deleted.votes, 'vote')}; the annotators' data is untouched.",
        )
    return redirect(_dashboard_url(slug, "pilot"))


# --- adding scenes ----------------------------------------------------------------------


@csrf_exempt  # checked by _scenes_add_post, once the upload handler is in place
@login_required
def study_scenes_add(request: HttpRequest, slug: str) -> HttpResponse:
    """Add scenes from a zip (editors): the same checks as a new study, on a worker, all
    or nothing; the new pairs join assignment."""
    study = study_for_page(request, slug, Role.EDITOR)
    if request.method != "POST":
        return _scenes_page(request, study, ScenesAddForm())
    if content_length(request) > settings.IQA_UPLOAD_MAX_BYTES:
        return _scenes_page(request, study, ScenesAddForm(), upload_too_large_error(), 413)
    upload = handler_install(request)
    try:
        return _scenes_add_post(request, study, upload)
    finally:
        upload.discard()  # unless the job took it


@csrf_protect
def _scenes_add_post(request: HttpRequest, study, upload: ZipUploadHandler) -> HttpResponse:
    form = ScenesAddForm(request.POST, request.FILES)
    if upload.too_large:
        return _scenes_page(request, study, ScenesAddForm(), upload_too_large_error(), 413)
    if not form.is_valid():
        return _scenes_page(request, study, form, status=400)
    try:
        job = scenes_job_start(
            study=study,
            owner=request.user,
            upload=upload.take(),
            reference_name=form.cleaned_data.get("reference_name") or "reference",
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        return _scenes_page(request, study, form, status=exc.status_code)
    return redirect("workspace:import-detail", job_id=job.pk)


def _scenes_page(request, study, form, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "nav": "studies",
        "study": study,
        "form": form,
        "error": error,
        "max_bytes": settings.IQA_UPLOAD_MAX_BYTES,
        "max_uncompressed": settings.IQA_UPLOAD_MAX_UNCOMPRESSED,
        "max_members_text": f"{settings.IQA_UPLOAD_MAX_MEMBERS:,}",
    }
    return render(request, "workspace/study_scenes_add.html", context, status=status)
