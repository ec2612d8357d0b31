"""What every record page shows beside the record: its audit trail and its signatures."""

from django.db.models import Q

from .models import AuditEvent
from .signatures import signatures_for


def audit_events_for(*records):
    """The audit events of the given records, oldest first."""
    match = Q(pk__in=[])
    for record in records:
        match |= Q(model=record._meta.label_lower, object_id=str(record.pk))
    return AuditEvent.objects.filter(match).order_by("seq")


def record_trail(record, *related) -> dict:
    """Template context for `qms/_record_trail.html`."""
    return {
        "audit_events": list(audit_events_for(record, *related)),
        "signatures": signatures_for(record),
    }
