"""The researchers' pages: server-rendered templates over the same selectors and services
as the commands and the API. Every study page goes through ``access.study_for``."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.selectors import study_progress
from workspace.access import login_required


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    """The caller's studies with their progress."""
    studies = study_progress(user=request.user)
    return render(request, "workspace/study_list.html", {"studies": studies, "nav": "studies"})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "workspace/account.html", {"nav": "account"})
