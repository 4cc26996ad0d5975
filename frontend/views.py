from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from annotation.models import Study
from frontend.presenters import study_example

GENERIC_CONSENT = """\
In this study you compare images and say which looks better. It takes about {minutes} \
minutes. There are no right or wrong answers, except for a few easy check trials.

We record your answers, how long each took, your browser window's size and screen scale, \
and the participant id your recruiting platform gives us (stored apart from the answers, \
which are published under a pseudonym). We record nothing else about you.

Taking part is voluntary: you can stop at any time by closing this page."""


def annotate(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator page; everything after loading goes through the annotator API."""
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        return render(request, "frontend/annotate_missing.html", {"slug": slug}, status=404)
    open_ = study.status == Study.Status.LIVE
    minutes = max(1, round((study.practice_trials + study.trials_per_session) * 6 / 60))
    config = {
        "slug": study.slug,
        "api": reverse("annotation:ping").removesuffix("ping"),
        "title": study.title or study.slug,
        "design": study.design,
        "show_reference": study.show_reference,
        "instructions": study.instructions,
        "consent": study.consent or GENERIC_CONSENT.format(minutes=minutes),
        "break_every": study.break_every,
        "example": study_example(study) if open_ else None,
        "open": open_,
        "require_participant_id": study.require_participant_id,
        "closed_message": (
            "This study has not opened yet." if study.status == Study.Status.DRAFT
            else "This study is closed: it takes no new annotators."
        ),
        "redirect_seconds": 5,
    }  # fmt: skip
    return render(request, "frontend/annotate.html", {"study": study, "config": config})
