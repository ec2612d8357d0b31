"""Celery tasks of controlled documents: thin, idempotent, acknowledged only after they ran."""

from celery import shared_task

from .services import versions_make_due_effective


@shared_task(acks_late=True)
def documents_make_due_effective() -> int:
    """Beat, every minute: put in force the approved versions whose effective date has come
    (each once, however often it runs). Returns how many."""
    return versions_make_due_effective()
