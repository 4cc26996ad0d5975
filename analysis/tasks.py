"""Celery tasks of the analysis: thin (ids in, one service), idempotent."""

from celery import shared_task

from analysis import services
from annotation.models import Study


@shared_task(name="analysis.agreement_snapshot_refresh", acks_late=True)
def agreement_snapshot_refresh(study_id: int, variant: str = "counted") -> int | None:
    """Refresh a study's agreement snapshot if its data moved; the votes it counted, or
    None when the study is gone or another computation of it is under way."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return None
    snapshot = services.agreement_snapshot_refresh(study=study, variant=variant)
    return snapshot.votes if snapshot is not None else None


@shared_task(name="analysis.agreement_snapshots_sweep", ignore_result=True)
def agreement_snapshots_sweep() -> int:
    """Queue a refresh of every stale snapshot (the beat's entry)."""
    return services.agreement_snapshots_sweep()


@shared_task(name="analysis.sampling_plan", ignore_result=True)
def sampling_plan(scene_id: int) -> list[int] | None:
    """Active sampling: plan one scene (queued after every ``sampling_every`` counted
    votes in it); the pairs whose targets were raised."""
    return services.sampling_plan(scene_id=scene_id)


@shared_task(name="analysis.sampling_plans_sweep", ignore_result=True)
def sampling_plans_sweep() -> int:
    """Queue a plan of every actively sampled scene whose budget is not spent (the beat's
    entry)."""
    return services.sampling_plans_sweep()
