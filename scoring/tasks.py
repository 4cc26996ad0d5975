"""Scoring tasks. Thin: ids in, one service call; the services import PyTorch lazily.

A worker reports the metrics it can run when it is ready and forgets its report when it
stops (``scoring.models.WorkerReport``): ``score_study --metrics available`` reads those.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from annotation.models import Study
from scoring import services
from scoring.errors import MetricUnavailable

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="scoring.score_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    # The worker could not run the metric (missing weights, CUDA out of memory, a driver
    # error): nothing was stored and the batch is still pending. Try again later, a
    # bounded number of times, then mark the batch failed to run.
    autoretry_for=(MetricUnavailable,),
    max_retries=settings.IQA_SCORE_MAX_RETRIES,
    retry_backoff=settings.IQA_SCORE_RETRY_BACKOFF,
    retry_backoff_max=settings.IQA_SCORE_RETRY_BACKOFF_MAX,
    retry_jitter=True,
)
def score_batch(self, batch_id: int) -> int:
    try:
        return services.batch_score(batch_id=batch_id)
    except MetricUnavailable as exc:
        if self.request.retries >= self.max_retries:
            services.batch_fail(batch_id=batch_id, reason=str(exc))
            return 0
        raise


@shared_task(name="scoring.sweep")
def sweep() -> int:
    return services.scores_sweep()


@shared_task(name="scoring.study_score_plan")
def study_score_plan(study_id: int, selection: str = "available") -> int:
    """``score_study SLUG --metrics SELECTION`` without ``--wait``, on a worker: the web
    process (the dashboard's Score now) cannot read the metric registry, which imports
    pyiqa. Idempotent: items scored or in a pending batch are not sent again. Returns the
    items sent."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return 0
    specs, _ = services.specs_for_study(services.metrics_select(selection), study)
    plans = services.study_score(study=study, specs=specs)
    return sum(plan.queued for plan in plans)


@worker_ready.connect
def report_metrics(sender, **kwargs) -> None:
    """Record which metrics this worker can run, before it says it is ready."""
    queues = [queue.name for queue in sender.task_consumer.queues]
    try:
        report = services.worker_report_save(hostname=sender.hostname, queues=queues)
    except Exception:  # a worker that cannot report still works; score_study says so
        logger.exception("scoring worker: could not record which metrics it can run")
        return
    logger.info("scoring worker %s can run %d metrics", report.hostname, len(report.metrics))


@worker_shutdown.connect
def forget_metrics(sender, **kwargs) -> None:
    try:
        services.worker_report_remove(hostname=sender.hostname)
    except Exception:
        logger.exception("scoring worker: could not remove its report")
