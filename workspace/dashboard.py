"""The study dashboard's reads: progress, scoring and recruiting links, from the same
selectors as the commands and the export, cached so that a study of a million votes
answers in milliseconds.

How stale a number can be: the vote counts (per scene, per hour, pairs complete, the
median response time) are recomputed when they are older than
``IQA_DASHBOARD_REFRESH_SECONDS`` (10 s) and votes have come in since; while no vote comes
in they are exact, and are recomputed every ``IQA_DASHBOARD_HOLD_SECONDS`` (120 s) all the
same, for the rate of the last two hours. Whether votes came in is one cheap query on the
sessions table (each vote moves its session's answered count), which also gives the
session counts, so those are never stale. While one request recomputes, others get the
snapshot they find. Every snapshot carries ``as_of``, which the page shows.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from annotation import selectors
from annotation.models import Image, Pair, Study
from annotation.study_settings import SETTINGS, Sampling
from scoring import weights
from scoring.selectors import study_scoring_requested

# The recent rate, and so the estimated time to completion, is measured over this window.
RATE_WINDOW = timedelta(hours=2)
# Prolific fills these in when it sends a participant to the study's URL.
PROLIFIC_QUERY = (
    "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
)
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
MTURK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd">
  <ExternalURL>{url}</ExternalURL>
  <FrameHeight>0</FrameHeight>
</ExternalQuestion>"""


def _refresh_seconds() -> float:
    return settings.IQA_DASHBOARD_REFRESH_SECONDS


def _hold_seconds() -> float:
    return settings.IQA_DASHBOARD_HOLD_SECONDS


def _progress_key(study: Study) -> str:
    return f"iqa:dashboard:progress:{study.pk}"


def study_progress_compute(*, study: Study, now: datetime | None = None) -> dict:
    """The vote-derived numbers of a study, uncached (a few scans of its votes)."""
    now = now or timezone.now()
    scenes = selectors.study_scene_progress(study=study)
    sampling = selectors.study_sampling_summary(study=study)
    for scene in scenes:
        scene["posterior_sd"] = sampling["posterior_sd"].get(scene["scene"])
        if study.sampling == Sampling.ACTIVE:
            # Active sampling raises pairs' targets as it plans: the scene's target is its
            # budget, pairs x votes_per_pair.
            scene["target_votes"] = scene["pairs"] * study.votes_per_pair
            scene["credited"] = min(scene["counted_votes"], scene["target_votes"])
    hours = selectors.study_votes_per_hour(study=study)
    recent = selectors.study_counted_votes_since(study=study, since=now - RATE_WINDOW)
    totals = {
        key: sum(scene[key] for scene in scenes)
        for key in ("pairs", "pairs_complete", "target_votes", "counted_votes", "credited")
    }
    remaining = totals["target_votes"] - totals["credited"]
    per_hour = recent / (RATE_WINDOW.total_seconds() / 3600)
    eta_hours = None if per_hour == 0 else remaining / per_hour
    if remaining == 0:
        eta_hours = 0.0
    return {
        "as_of": now,
        "policy": study.policy,
        "scenes": scenes,
        "totals": {
            **totals,
            "uniform_votes": sampling["uniform_votes"],
            "pairs_decided_early": sampling["pairs_decided_early"],
            "votes_saved": sampling["votes_saved"],
            "remaining_votes": remaining,
            # Set-aside or released leases answered after all (assignment rules 7, 12).
            "past_target_votes": totals["counted_votes"] - totals["credited"],
            "votes": sum(hour["votes"] for hour in hours),
            "scenes": len(scenes),
            "images": Image.objects.filter(scene__study=study).count(),
            "gold_pairs": Pair.objects.filter(study=study).exclude(gold_answer="").count(),
        },
        "votes_per_hour": hours,
        "median_response_ms": selectors.study_median_response_ms(study=study),
        "rate": {
            "window_hours": RATE_WINDOW.total_seconds() / 3600,
            "counted_votes": recent,
            "per_hour": per_hour,
        },
        "eta_hours": eta_hours,
    }


def study_dashboard_progress(*, study: Study) -> dict:
    """The study's progress as the dashboard shows it: the cached vote-derived numbers
    (``as_of`` says when they were read) and the sessions, read now."""
    sessions = selectors.study_session_counts(study=study)
    key = _progress_key(study)
    entry = cache.get(key)
    now = timezone.now()
    if entry is not None:
        age = (now - entry["as_of"]).total_seconds()
        unchanged = entry["answered"] == sessions["answered"]
        if age < _refresh_seconds() or (unchanged and age < _hold_seconds()):
            return {**entry, "sessions": sessions}
        # Someone else is recomputing: the snapshot in hand will do meanwhile.
        if not cache.add(f"{key}:lock", 1, timeout=60):
            return {**entry, "sessions": sessions}
        locked = True
    else:
        locked = False  # nothing to serve meanwhile: compute, and take no one's lock
    try:
        entry = {**study_progress_compute(study=study, now=now), "answered": sessions["answered"]}
        cache.set(key, entry, timeout=24 * 3600)
    finally:
        if locked:
            cache.delete(f"{key}:lock")
    return {**entry, "sessions": sessions}


def study_counts(progress: dict) -> dict[str, int]:
    """The ``counts`` of ``GET /api/v1/studies`` (``annotation.selectors.study_progress``'s
    ``n_*``), from a dashboard progress snapshot."""
    totals, sessions = progress["totals"], progress["sessions"]
    return {
        "n_scenes": totals["scenes"],
        "n_images": totals["images"],
        "n_pairs": totals["pairs"],
        "n_gold_pairs": totals["gold_pairs"],
        "n_pairs_complete": totals["pairs_complete"],
        "n_votes": totals["votes"],
        "n_counted_votes": totals["counted_votes"],
        "n_sessions": sessions["started"],
        "n_sessions_completed": sessions["completed"],
    }


def study_scoring_overview(*, study: Study) -> dict:
    """Per metric sent for the study: scored, failed and pending items and the first
    error; cached for ``IQA_DASHBOARD_REFRESH_SECONDS``."""
    key = f"iqa:dashboard:scoring:{study.pk}"
    entry = cache.get(key)
    if entry is None:
        metrics = [
            {
                "metric": status.progress.metric,
                "version": status.progress.version,
                "total": status.progress.total,
                "scored": status.scored,
                "failed": status.progress.failed,
                "pending": status.pending,
                "pending_batches": status.progress.pending_batches,
                "first_error": status.first_error,
            }
            for status in study_scoring_requested(study=study)
        ]
        entry = {"as_of": timezone.now(), "metrics": metrics}
        cache.set(key, entry, timeout=max(1, int(_refresh_seconds())))
    return entry


def weights_overview(*, study_metrics: list[str]) -> dict:
    """Which catalogued metrics lack weight files in this machine's weights folder
    (``IQA_WEIGHTS_DIR``; workers sharing it see the same), and the commands that fetch
    them: for the metrics sent for the study (``study_metrics``) and the recommended ones.
    Reads the catalog and the folder only (never pyiqa); the folder's state is cached for
    a minute."""
    lacking = cache.get("iqa:dashboard:weights-lacking")
    if lacking is None:
        lacking = [
            name
            for name in sorted(weights.catalog())
            if weights.missing_files(weights.needed_files(name) or [])
        ]
        cache.set("iqa:dashboard:weights-lacking", lacking, timeout=60)
    study = [name for name in study_metrics if name in lacking]
    recommended = [name for name in weights.RECOMMENDED if name in lacking]
    return {
        "lacking": lacking,
        "total": len(weights.catalog()),
        "folder": str(weights.weights_dir()),
        "study": study,
        "study_command": weights.fetch_command(study) if study else "",
        "recommended": recommended,
        "recommended_command": (
            "python manage.py install_weights --fetch recommended" if recommended else ""
        ),
        "all_command": "python manage.py install_weights --fetch all",
    }


def scoring_overview_forget(*, study: Study) -> None:
    """Drop the cached scoring overview (after Score now, the page shows the new batches)."""
    cache.delete(f"iqa:dashboard:scoring:{study.pk}")


def recruiting_links(*, study: Study, annotator_url: str) -> dict[str, str]:
    """What a researcher pastes into Prolific and MTurk for this study."""
    return {
        "annotator_url": annotator_url,
        "prolific_url": f"{annotator_url}?{PROLIFIC_QUERY}",
        "prolific_completion_url": f"{PROLIFIC_COMPLETE}{study.completion_code}",
        "mturk_xml": MTURK_XML.format(url=annotator_url),
    }


# What configure_study changes besides the status: every setting not fixed at import.
EDITABLE_SETTINGS = tuple(
    name for name, setting in SETTINGS.items() if not setting.fixed and name != "status"
)


def study_settings(study: Study) -> dict:
    return {
        **{name: getattr(study, name) for name in EDITABLE_SETTINGS},
        "completion_code": study.completion_code,
    }


def study_detail(*, study: Study, annotator_url: str) -> dict:
    """A study as ``GET /api/v1/studies/{slug}`` renders it: the summary's keys (its
    counts from the cached progress), settings, progress, scoring and links."""
    progress = study_dashboard_progress(study=study)
    return {
        **{
            name: getattr(study, name)
            for name in (
                "slug",
                "title",
                "design",
                "status",
                "votes_per_pair",
                "gold_rate",
                "trials_per_session",
                "practice_trials",
                "archived_at",
            )
        },
        **study_counts(progress),
        "settings": study_settings(study),
        "progress": progress,
        "scoring": study_scoring_overview(study=study),
        "links": recruiting_links(study=study, annotator_url=annotator_url),
    }
