import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt

from annotation.models import Study
from annotation.selectors import studies_visible, study_for_annotators
from core.csp import csp_replace
from frontend.presenters import study_example

logger = logging.getLogger(__name__)

# Where MTurk sends a HIT's answers (its turkSubmitTo): the only hosts the completion
# page's form posts to.
MTURK_ORIGINS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
# The pages that show a HIT's external question in a frame: the worker site
# (worker.mturk.com; workersandbox.mturk.com is both for the sandbox) and the requester
# site's preview. The only ones that may frame the annotator page.
MTURK_FRAME_ORIGINS = ("https://worker.mturk.com", *MTURK_ORIGINS)

GENERIC_CONSENT = """\
In this study you compare images and say which looks better. It takes about {minutes} \
minutes. There are no right or wrong answers, except for a few easy check trials.

We record your answers, how long each took, your browser window's size and screen scale, \
and the participant id your recruiting platform gives us (stored apart from the answers, \
which are published under a pseudonym). We record nothing else about you.

Taking part is voluntary: you can stop at any time by closing this page."""


ANNOTATOR_HEADING = "Image comparison study"


def mturk_submit_url(request: HttpRequest) -> str | None:
    """MTurk's externalSubmit address from the query's ``turkSubmitTo`` when it names one
    of ``MTURK_ORIGINS``; anything else is ignored (and logged): the page posts nowhere."""
    given = request.GET.get("turkSubmitTo")
    if not given:
        return None
    origin = given.rstrip("/")
    if origin in MTURK_ORIGINS:
        return f"{origin}/mturk/externalSubmit"
    logger.warning(
        "annotator page %s: turkSubmitTo %r ignored (not one of %s)",
        request.path,
        given[:200],
        ", ".join(MTURK_ORIGINS),
    )
    return None


# MTurk shows the page in a frame: frame-ancestors (not X-Frame-Options) says who may.
@xframe_options_exempt
@csp_replace(
    frame_ancestors=("'self'", *MTURK_FRAME_ORIGINS),
    form_action=("'self'", *MTURK_ORIGINS),
)
def annotate(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator page; everything after loading goes through the annotator API. A
    draft is a 404 like an unknown slug to anyone but its owner, members and staff."""
    study = study_for_annotators(slug=slug, user=request.user)
    if study is None:
        return render(request, "frontend/annotate_missing.html", {"slug": slug}, status=404)
    # Preview (the dashboard's "Preview as annotator"): a researcher who sees the study
    # answers as a pilot session, on a draft too; its token comes in the address's
    # fragment. The API, not this flag, keeps pilot answers apart.
    preview = (
        request.GET.get("preview") == "1"
        and studies_visible(user=request.user).filter(pk=study.pk).exists()
    )
    open_ = study.status == Study.Status.LIVE or (
        preview and study.status == Study.Status.DRAFT and study.archived_at is None
    )
    minutes = max(1, round((study.practice_trials + study.trials_per_session) * 6 / 60))
    config = {
        "slug": study.slug,
        "api": reverse("annotation:ping").removesuffix("ping"),
        # The study's title is the researchers' (it may name the methods compared):
        # annotators see this heading only.
        "title": ANNOTATOR_HEADING,
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
        "mturk_submit_url": mturk_submit_url(request),
        "preview": preview,
        "dashboard_url": (
            reverse("workspace:study-dashboard", args=[study.slug]) if preview else None
        ),
    }  # fmt: skip
    return render(request, "frontend/annotate.html", {"study": study, "config": config})
