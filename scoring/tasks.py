"""Scoring tasks. Thin: ids in, one service call; the services import PyTorch lazily."""

from celery import shared_task

from scoring import services


@shared_task(name="scoring.score_batch", acks_late=True, reject_on_worker_lost=True)
def score_batch(batch_id: int) -> int:
    return services.batch_score(batch_id=batch_id)


@shared_task(name="scoring.sweep")
def sweep() -> int:
    return services.scores_sweep()
