"""Scoped reads of deviations."""

from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Exists, OuterRef, Q
from django.db.models.functions import Cast

from qms.models import Deadline

from .models import Deviation


def deviation_list(*, user):
    return Deviation.objects.for_user(user).select_related("sponsor", "agreement", "source")


def deadlines_of(record):
    """The deadlines about a record (a deviation, a CAPA), earliest due first."""
    return Deadline.objects.filter(
        content_type=ContentType.objects.get_for_model(record), object_id=str(record.pk)
    ).order_by("due_at", "id")


def awaiting_acknowledgement(deviations, *, user):
    """The sponsor deviation records whose notice was sent and is not acknowledged yet."""
    sent = Deadline.objects.for_user(user).filter(
        content_type=ContentType.objects.get_for_model(Deviation),
        object_id=Cast(OuterRef("pk"), CharField()),
        kind="deviation_notice",
        notified_at__isnull=False,
    )
    return deviations.filter(
        Exists(sent), sponsor__isnull=False, sponsor_acknowledged_at__isnull=True
    )


def sponsor_awaiting(*, user, sponsor) -> dict[str, int]:
    """What awaits the sponsor's people among its own deviation records: closures awaiting the
    sponsor's approval and notices awaiting acknowledgement."""
    own = Deviation.objects.for_user(user).filter(sponsor=sponsor)
    return {
        "closures": own.filter(status=Deviation.Status.PENDING_SPONSOR_APPROVAL).count(),
        "notices": awaiting_acknowledgement(own, user=user).count(),
    }


def open_deviations_for_batch(batch) -> list[Deviation]:
    """Open deviations of the batch's sponsor linked to the batch or to its output lots."""
    return list(
        Deviation.objects.exclude(status=Deviation.Status.CLOSED)
        .filter(sponsor_id=batch.sponsor_id)
        .filter(Q(batches=batch) | Q(lots__produced_by=batch))
        .distinct()
        .order_by("number")
    )
