"""Celery tasks of the annotation app: thin wrappers that take ids and call a service."""

from celery import shared_task

from annotation import services, throttles


@shared_task(name="annotation.image_verify", acks_late=True)
def image_verify(image_id: int) -> str:
    """Re-hash one stored image; idempotent (the last check wins)."""
    return services.image_verify(image_id=image_id).integrity


@shared_task(name="annotation.leases_sweep")
def leases_sweep() -> int:
    """Expired, unanswered trial leases back to the pool (beat); idempotent."""
    return services.leases_sweep()


@shared_task(name="annotation.rate_windows_sweep")
def rate_windows_sweep() -> int:
    """The throttles' expired windows deleted from the database (beat); idempotent."""
    return throttles.rate_windows_sweep()


@shared_task(name="annotation.store_leftovers_sweep")
def store_leftovers_sweep() -> int:
    """Files refused imports left in the store (another import held them) removed once
    free and unreferenced (beat); idempotent."""
    return services.store_leftovers_sweep()
