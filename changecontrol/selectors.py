"""Scoped reads of change requests: the list, the parts of a change a user may see (their
sponsors' products and obligations only), a sponsor's own slice, and which lots were made under
which master batch record or document version."""

from django.db.models import Exists, OuterRef, Prefetch, Q

from batches.models import Batch, Lot, MasterBatchRecord
from sponsors.models import Obligation

from .models import ChangeProduct, ChangeRequest, SponsorObligation


def visible_obligations(user):
    return SponsorObligation.objects.for_user(user).select_related(
        "sponsor", "agreement", "notice", "decided_by"
    )


def visible_products(user):
    return ChangeProduct.objects.for_user(user).select_related("product", "sponsor", "removed_by")


def change_list(*, user, action: str = "view"):
    """Changes in the user's scope, each with only the obligations and products of the sponsors
    in that scope prefetched (constant queries however many rows)."""
    return (
        ChangeRequest.objects.for_user(user, action)
        .select_related("created_by")
        .prefetch_related(
            Prefetch(
                "obligations",
                queryset=visible_obligations(user).order_by("sponsor__code"),
                to_attr="visible_obligations",
            ),
            Prefetch(
                "affected_products",
                queryset=visible_products(user).order_by("sponsor__code", "product__code"),
                to_attr="visible_products",
            ),
        )
    )


def change_get(*, user, number: str) -> ChangeRequest:
    return change_list(user=user).get(number=number)


def pending_obligations():
    """Obligations still owed: an approval not given, or a notice not yet sent."""
    return SponsorObligation.objects.filter(
        Q(kind=Obligation.APPROVE, status=SponsorObligation.Status.PENDING)
        | Q(
            kind=Obligation.NOTIFY,
            status=SponsorObligation.Status.PENDING,
            notice__notified_at__isnull=True,
        )
    )


def with_pending_obligation_of(changes, sponsor):
    owed = pending_obligations().filter(change=OuterRef("pk"), sponsor=sponsor)
    return changes.filter(Exists(owed))


def change_obligations(*, change: ChangeRequest, user):
    return visible_obligations(user).filter(change=change).order_by("sponsor__code")


def change_products(*, change: ChangeRequest, user):
    return (
        visible_products(user)
        .filter(change=change)
        .order_by("removed_at", "sponsor__code", "product__code")
    )


# --- a sponsor's slice --------------------------------------------------------------------


def sponsor_changes(*, user, sponsor):
    """The submitted changes that affect the sponsor's products, each with only the sponsor's
    own obligation (`own_obligations`) and products (`own_products`)."""
    return (
        ChangeRequest.objects.for_user(user)
        .filter(obligations__sponsor=sponsor)
        .prefetch_related(
            Prefetch(
                "obligations",
                queryset=SponsorObligation.objects.for_user(user)
                .filter(sponsor=sponsor)
                .select_related("sponsor", "notice", "agreement", "decided_by"),
                to_attr="own_obligations",
            ),
            Prefetch(
                "affected_products",
                queryset=ChangeProduct.objects.for_user(user)
                .filter(sponsor=sponsor, removed_at__isnull=True)
                .select_related("product")
                .order_by("product__code"),
                to_attr="own_products",
            ),
        )
        .order_by("-submitted_at", "-id")
    )


def sponsor_pending_approvals(*, user, sponsor):
    return sponsor_changes(user=user, sponsor=sponsor).filter(
        status=ChangeRequest.Status.AWAITING_SPONSORS,
        obligations__sponsor=sponsor,
        obligations__kind=Obligation.APPROVE,
        obligations__status=SponsorObligation.Status.PENDING,
    )


# --- lots by version ----------------------------------------------------------------------


def batches_made_under_mbr(*, mbr: MasterBatchRecord, user):
    """The batches that ran under an MBR version (the version in force when each started), with
    their output lots."""
    return (
        Batch.objects.for_user(user)
        .filter(mbr=mbr)
        .select_related("product")
        .prefetch_related(
            Prefetch("output_lots", queryset=Lot.objects.for_user(user).order_by("lot_number"))
        )
        .order_by("started_at", "id")
    )


def lots_made_under_mbr(*, mbr: MasterBatchRecord, user):
    return (
        Lot.objects.for_user(user)
        .filter(produced_by__mbr=mbr)
        .select_related("produced_by__product")
        .order_by("produced_by__started_at", "lot_number")
    )


def lots_made_under_document_version(*, version, user):
    from documents.selectors import lots_made_under_version

    return (
        lots_made_under_version(version, user)
        .select_related("produced_by__product", "produced_by__mbr")
        .order_by("produced_by__started_at", "lot_number")
    )


def changes_carrying(record, user):
    """The changes in the user's scope that carry an MBR or document version."""
    field = "mbr" if isinstance(record, MasterBatchRecord) else "document_version"
    return ChangeRequest.objects.for_user(user).filter(**{field: record}).order_by("number")
