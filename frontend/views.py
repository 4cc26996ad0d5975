from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.selectors import study_list_with_counts


def study_index(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/study_index.html", {"studies": study_list_with_counts()})
