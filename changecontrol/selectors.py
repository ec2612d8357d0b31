"""Scoped reads of change requests: the list, the parts of a change a user may see (their
sponsors' products and obligations only), a sponsor's own slice, and which lots were made under
which master batch record or document version."""

from django.db.models import Exists, OuterRef, Prefetch, Q
from django.urls import reverse

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
    in that scope prefetched (constant queries however many rows), and the carried document or
    MBR version when the user may see it (`visible_document_version`, `visible_mbr`)."""
    from documents.models import DocumentVersion

    return (
        ChangeRequest.objects.for_user(user, action)
        .select_related("created_by")
        .prefetch_related(
            Prefetch(
                "document_version",
                queryset=DocumentVersion.objects.for_user(user).select_related("document"),
                to_attr="visible_document_version",
            ),
            Prefetch(
                "mbr",
                queryset=MasterBatchRecord.objects.for_user(user).select_related("product"),
                to_attr="visible_mbr",
            ),
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


def _carriable_documents(user, sponsor):
    """Document versions a sponsor's slice may name: the sponsor's own, and the site's (a change
    that carries one affects the sponsor's products); never another sponsor's."""
    from documents.models import DocumentVersion

    own = DocumentVersion.objects.for_user(user).filter(sponsor=sponsor)
    return (own | DocumentVersion.objects.filter(sponsor__isnull=True)).select_related("document")


def sponsor_changes(*, user, sponsor):
    """The submitted changes that affect the sponsor's products, each with only the sponsor's
    own obligation (`own_obligations`) and products (`own_products`), the change's tasks, and
    what it carries when that is the sponsor's own or the site's (`own_mbr`,
    `own_document_version`)."""
    return (
        ChangeRequest.objects.for_user(user)
        .filter(obligations__sponsor=sponsor)
        .select_related("equipment", "supplier")
        .prefetch_related(
            "tasks",
            Prefetch(
                "mbr",
                queryset=MasterBatchRecord.objects.for_user(user)
                .filter(sponsor=sponsor)
                .select_related("product"),
                to_attr="own_mbr",
            ),
            Prefetch(
                "document_version",
                queryset=_carriable_documents(user, sponsor),
                to_attr="own_document_version",
            ),
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


def sponsor_carried(change) -> dict | None:
    """What a change of `sponsor_changes` carries, as a reference the sponsor may read; None
    when it carries nothing the sponsor may see."""
    version = getattr(change, "own_document_version", None)
    if version is not None:
        return {
            "kind": "document_version",
            "kind_display": "Document version",
            "reference": str(version),
            "number": version.document.number,
            "version": version.version,
            "title": version.document.title,
            "status": version.status,
            "status_display": version.get_status_display(),
            "url": (
                reverse("portal_documents:detail", args=[version.document.number])
                if version.sponsor_id is not None
                else ""
            ),
        }
    mbr = getattr(change, "own_mbr", None)
    if mbr is not None:
        return {
            "kind": "mbr",
            "kind_display": "Master batch record version",
            "reference": str(mbr),
            "number": mbr.product.code,
            "version": mbr.version,
            "title": mbr.title,
            "status": mbr.status,
            "status_display": mbr.get_status_display(),
            "url": "",
        }
    for kind, label, record in (
        ("equipment", "Equipment", change.equipment),
        ("supplier", "Supplier", change.supplier),
    ):
        if record is not None:
            return {
                "kind": kind,
                "kind_display": label,
                "reference": record.code,
                "number": record.code,
                "version": None,
                "title": record.name,
                "status": "",
                "status_display": "",
                "url": "",
            }
    return None


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
