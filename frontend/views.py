from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.selectors import study_list_with_counts


@staff_member_required
def study_index(request: HttpRequest) -> HttpResponse:
    """Researchers' list of studies; annotators never see it."""
    return render(request, "frontend/study_index.html", {"studies": study_list_with_counts()})
