"""Scoped reads of the manufacturing record, and recall scope: forward (a lot → every descendant
lot → batches → shipments → customers) and backward (a lot → every ancestor lot → supplier and
receipt), each one recursive SQL query over the genealogy, then filtered by `for_user`."""

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import Prefetch, Sum

from .models import Batch, Consumption, Customer, Equipment, EquipmentUse, Lot, Shipment

FORWARD_SQL = """
WITH RECURSIVE scope(lot_id, depth, path) AS (
    SELECT id, 0, ARRAY[id] FROM batches_lot WHERE id = %s
  UNION ALL
    SELECT child.id, scope.depth + 1, scope.path || child.id
    FROM scope
    JOIN batches_consumption edge ON edge.lot_id = scope.lot_id
    JOIN batches_lot child ON child.produced_by_id = edge.batch_id
    WHERE NOT child.id = ANY (scope.path)
)
SELECT lot_id, min(depth) FROM scope GROUP BY lot_id
"""

BACKWARD_SQL = """
WITH RECURSIVE trace(lot_id, depth, path) AS (
    SELECT id, 0, ARRAY[id] FROM batches_lot WHERE id = %s
  UNION ALL
    SELECT edge.lot_id, trace.depth + 1, trace.path || edge.lot_id
    FROM trace
    JOIN batches_lot made ON made.id = trace.lot_id
    JOIN batches_consumption edge ON edge.batch_id = made.produced_by_id
    WHERE NOT edge.lot_id = ANY (trace.path)
)
SELECT lot_id, min(depth) FROM trace GROUP BY lot_id
"""


def _walk(sql: str, lot: Lot) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, [lot.pk])
        return dict(cursor.fetchall())


@dataclass
class SponsorSlice:
    label: str
    lots: list[Lot] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    shipments: list[Shipment] = field(default_factory=list)


@dataclass
class Genealogy:
    """The lots reached from `origin`, with the batches and shipments around them, as much of it
    as the user may see; `groups` splits it by sponsor (site materials on their own)."""

    origin: Lot
    direction: str
    lots: list[Lot]
    batches: list[Batch]
    shipments: list[Shipment]

    @property
    def customers(self) -> list[Customer]:
        seen = OrderedDict((s.customer_id, s.customer) for s in self.shipments)
        return list(seen.values())

    @property
    def groups(self) -> list[SponsorSlice]:
        slices: dict[object, SponsorSlice] = {}

        def slot(sponsor):
            key = sponsor.pk if sponsor else None
            if key not in slices:
                slices[key] = SponsorSlice(sponsor.name if sponsor else "Site materials")
            return slices[key]

        for lot in self.lots:
            slot(lot.sponsor).lots.append(lot)
        for batch in self.batches:
            slot(batch.sponsor).batches.append(batch)
        for shipment in self.shipments:
            slot(shipment.sponsor).shipments.append(shipment)
        return sorted(slices.values(), key=lambda s: (s.label == "Site materials", s.label))

    def rows(self) -> list[dict]:
        """One flat table for CSV, PDF and the command line."""
        rows = []
        for lot in self.lots:
            rows.append(
                {
                    "record": "lot",
                    "sponsor": lot.sponsor.code if lot.sponsor else "",
                    "depth": lot.depth,
                    "lot": lot.lot_number,
                    "material": lot.material.code,
                    "status": lot.status,
                    "quantity": f"{lot.quantity.normalize():f} {lot.unit}",
                    "batch": lot.produced_by.number if lot.produced_by_id else "",
                    "supplier": lot.supplier.name if lot.supplier_id else "",
                    "receipt": lot.receipt_reference,
                    "customer": "",
                    "date": (lot.received_at or lot.created_at).date().isoformat(),
                }
            )
        for batch in self.batches:
            rows.append(
                {
                    "record": "batch",
                    "sponsor": batch.sponsor.code,
                    "depth": "",
                    "lot": "",
                    "material": batch.product.code,
                    "status": batch.status,
                    "quantity": "",
                    "batch": batch.number,
                    "supplier": "",
                    "receipt": "",
                    "customer": "",
                    "date": (batch.started_at or batch.planned_at).date().isoformat(),
                }
            )
        for shipment in self.shipments:
            rows.append(
                {
                    "record": "shipment",
                    "sponsor": shipment.sponsor.code,
                    "depth": "",
                    "lot": shipment.lot.lot_number,
                    "material": shipment.lot.material.code,
                    "status": "shipped",
                    "quantity": f"{shipment.quantity.normalize():f} {shipment.lot.unit}",
                    "batch": "",
                    "supplier": "",
                    "receipt": shipment.reference,
                    "customer": shipment.customer.name,
                    "date": shipment.shipped_at.date().isoformat(),
                }
            )
        return rows


ROW_FIELDS = [
    "record",
    "sponsor",
    "depth",
    "lot",
    "material",
    "status",
    "quantity",
    "batch",
    "supplier",
    "receipt",
    "customer",
    "date",
]


def _lots(ids: dict[int, int], user) -> list[Lot]:
    lots = list(
        Lot.objects.for_user(user)
        .filter(pk__in=ids)
        .select_related("material", "sponsor", "supplier", "produced_by")
    )
    for lot in lots:
        lot.depth = ids[lot.pk]
    return sorted(lots, key=lambda lot: (lot.depth, lot.lot_number))


def recall_scope_forward(*, lot: Lot, user) -> Genealogy:
    """Every lot made from `lot` at any depth, the batches that consumed them, their shipments
    and customers."""
    ids = _walk(FORWARD_SQL, lot)
    batches = (
        Batch.objects.for_user(user)
        .filter(consumptions__lot_id__in=ids)
        .select_related("product", "sponsor")
        .distinct()
        .order_by("number")
    )
    shipments = (
        Shipment.objects.for_user(user)
        .filter(lot_id__in=ids)
        .select_related("lot__material", "customer", "sponsor")
        .order_by("shipped_at", "id")
    )
    return Genealogy(lot, "forward", _lots(ids, user), list(batches), list(shipments))


def recall_trace_backward(*, lot: Lot, user) -> Genealogy:
    """Every lot `lot` was made from, at any depth, with supplier and receipt, and the batches
    that made them."""
    ids = _walk(BACKWARD_SQL, lot)
    batches = (
        Batch.objects.for_user(user)
        .filter(output_lots__id__in=ids)
        .select_related("product", "sponsor")
        .distinct()
        .order_by("number")
    )
    return Genealogy(lot, "backward", _lots(ids, user), list(batches), [])


def lot_list(*, user):
    return Lot.objects.for_user(user).select_related(
        "material", "sponsor", "supplier", "produced_by"
    )


def lot_get(*, user, lot_number: str) -> Lot:
    return lot_list(user=user).get(lot_number=lot_number)


def batch_list(*, user):
    return Batch.objects.for_user(user).select_related("product", "sponsor", "mbr")


def batch_detail(*, user, number: str) -> Batch:
    consumptions = Consumption.objects.select_related("lot__material")
    return (
        batch_list(user=user)
        .prefetch_related(
            Prefetch("consumptions", queryset=consumptions),
            "executed_steps__step",
            "executed_steps__performed_by",
            "executed_steps__verified_by",
            "equipment_uses__equipment",
            "output_lots__lab_results",
            "mbr__steps",
            "mbr__bom_lines__material",
            "packaging",
        )
        .get(number=number)
    )


def equipment_history(*, user, equipment: Equipment):
    """The uses of shared equipment that the user may see: a sponsor's people see only their
    own batches on it."""
    return (
        EquipmentUse.objects.for_user(user)
        .filter(equipment=equipment)
        .select_related("batch__product", "sponsor")
        .order_by("-started_at", "-id")
    )


def lot_balance(lot: Lot) -> dict[str, Decimal]:
    """How much of a lot was consumed and shipped, and what remains."""
    consumed = lot.consumptions.aggregate(total=Sum("quantity"))["total"] or Decimal(0)
    shipped = lot.shipments.aggregate(total=Sum("quantity"))["total"] or Decimal(0)
    return {
        "consumed": consumed,
        "shipped": shipped,
        "remaining": lot.quantity - consumed - shipped,
    }
