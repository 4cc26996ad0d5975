"""Celery tasks of the workspace: thin (ids in, one service), idempotent."""

from celery import shared_task

from workspace import export_jobs, import_jobs, jobs


@shared_task(name="workspace.import_job_run", acks_late=True)
def import_job_run(job_id: str) -> str | None:
    """Run a queued study import; a job no longer queued is left alone."""
    job = import_jobs.import_job_run(job_id=job_id)
    return job.status if job is not None else None


@shared_task(name="workspace.export_job_run", acks_late=True, reject_on_worker_lost=True)
def export_job_run(job_id: str) -> str | None:
    """Build an export job's zip; a job done or failed is left alone."""
    job = export_jobs.export_job_run(job_id=job_id)
    return job.status if job is not None else None


@shared_task(name="workspace.jobs_sweep")
def jobs_sweep() -> int:
    """Fail the running jobs whose worker stopped (no progress for IQA_JOB_STALE_SECONDS);
    remove the export zips expired (IQA_EXPORT_KEEP_DAYS) or whose job is gone."""
    failed = jobs.jobs_sweep()
    jobs.export_files_sweep()
    return failed
