"""Celery tasks of the kernel: thin, idempotent, acknowledged only after they ran."""

from celery import shared_task

from .audit import write_checkpoint
from .idempotency import idempotency_keys_purge
from .notifications import deadlines_send_due


@shared_task(acks_late=True)
def send_due_notifications() -> int:
    """Beat, every minute: notify the deadlines that fell due (exactly once, however often it
    runs). Returns how many were notified."""
    return deadlines_send_due()


@shared_task(acks_late=True)
def write_audit_checkpoint() -> int | None:
    """Beat, every 5 minutes: record the audit chain's head outside the database, only when it
    moved since the last checkpoint (running it twice writes one line). Returns the head's
    sequence number (None while the trail is empty)."""
    head = write_checkpoint(only_if_moved=True)
    return head.seq if head is not None else None


@shared_task(acks_late=True)
def purge_idempotency_keys() -> int:
    """Beat, hourly: forget API idempotency keys past their lifetime (safe to run twice)."""
    return idempotency_keys_purge()
