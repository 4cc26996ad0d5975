"""Celery tasks of the annotation app: thin wrappers that take ids and call a service."""

from celery import shared_task

from annotation import services


@shared_task(name="annotation.image_verify", acks_late=True)
def image_verify(image_id: int) -> str:
    """Re-hash one stored image; idempotent (the last check wins)."""
    return services.image_verify(image_id=image_id).integrity


@shared_task(name="annotation.leases_sweep")
def leases_sweep() -> int:
    """Expired, unanswered trial leases back to the pool (beat); idempotent."""
    return services.leases_sweep()
