"""Scoped reads of deviations."""

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from qms.models import Deadline

from .models import Deviation


def deviation_list(*, user):
    return Deviation.objects.for_user(user).select_related("sponsor", "agreement", "source")


def deadlines_of(record):
    """The deadlines about a record (a deviation, a CAPA), earliest due first."""
    return Deadline.objects.filter(
        content_type=ContentType.objects.get_for_model(record), object_id=str(record.pk)
    ).order_by("due_at", "id")


def open_deviations_for_batch(batch) -> list[Deviation]:
    """Open deviations of the batch's sponsor linked to the batch or to its output lots."""
    return list(
        Deviation.objects.exclude(status=Deviation.Status.CLOSED)
        .filter(sponsor_id=batch.sponsor_id)
        .filter(Q(batches=batch) | Q(lots__produced_by=batch))
        .distinct()
        .order_by("number")
    )
