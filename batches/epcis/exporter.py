"""EPCIS export: a lot's genealogy as the user may see it, as an EPCIS 2.0 JSON-LD document."""

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

from django.db.models import Sum
from django.utils import timezone

from qms.errors import RuleViolation

from ..models import Batch, Consumption, Lot, Shipment
from ..selectors import recall_scope_forward, recall_trace_backward
from .identifiers import CONTEXT, UNIT_UOMS, lot_identifier, namespace, party_identifier
from .report import EpcisError


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _number(value: Decimal) -> int | float:
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else float(value)


def _quantity_element(lot: Lot, quantity: Decimal) -> dict:
    element = {"epcClass": lot_identifier(lot), "quantity": _number(quantity)}
    if lot.unit in UNIT_UOMS:
        element["uom"] = UNIT_UOMS[lot.unit]
    return element


def _event_id(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{namespace()}{kind}/{key}')}"


def _base(kind: str, event_id: str, at: datetime) -> dict:
    return {
        "type": kind,
        "eventID": event_id,
        "eventTime": _time(at),
        "eventTimeZoneOffset": "+00:00",
    }


def _receipt_event(lot: Lot) -> dict:
    event = _base(
        "ObjectEvent", _event_id("receipt", lot.lot_number), lot.received_at or lot.created_at
    )
    event.update(
        {
            "action": "OBSERVE",
            "bizStep": "receiving",
            "disposition": "in_progress",
            "quantityList": [_quantity_element(lot, lot.quantity)],
        }
    )
    if lot.supplier_id:
        supplier = party_identifier(lot.supplier, "supplier")
        event["sourceList"] = [{"type": "owning_party", "source": supplier}]
    if lot.receipt_reference:
        reference = f"{namespace()}receipt/{quote(lot.receipt_reference, safe='')}"
        event["bizTransactionList"] = [{"type": "recadv", "bizTransaction": reference}]
    return event


def _transformation_event(batch: Batch, inputs: list[tuple[Lot, Decimal]], outputs) -> dict:
    at = batch.completed_at or batch.started_at or batch.planned_at
    event = _base("TransformationEvent", _event_id("batch", batch.number), at)
    if inputs:
        event["inputQuantityList"] = [_quantity_element(lot, qty) for lot, qty in inputs]
    if outputs:
        event["outputQuantityList"] = [_quantity_element(lot, lot.quantity) for lot in outputs]
    event["transformationID"] = f"{namespace()}batch/{quote(batch.number, safe='')}"
    event["bizStep"] = "commissioning"
    return event


def _shipment_event(shipment: Shipment) -> dict:
    event = _base("ObjectEvent", _event_id("shipment", str(shipment.pk)), shipment.shipped_at)
    customer = party_identifier(shipment.customer, "customer")
    event.update(
        {
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "quantityList": [_quantity_element(shipment.lot, shipment.quantity)],
            "destinationList": [{"type": "owning_party", "destination": customer}],
        }
    )
    if shipment.reference:
        reference = f"{namespace()}shipment/{quote(shipment.reference, safe='')}"
        event["bizTransactionList"] = [{"type": "desadv", "bizTransaction": reference}]
    return event


def epcis_export(*, lot: Lot, user) -> dict:
    """A lot's genealogy as the user may see it (backward trace and forward scope) as an EPCIS
    2.0 document: a receiving ObjectEvent per received lot, a TransformationEvent per batch
    (its inputs and outputs within the genealogy) and a shipping ObjectEvent per shipment."""
    backward = recall_trace_backward(lot=lot, user=user)
    forward = recall_scope_forward(lot=lot, user=user)
    lots = {item.pk: item for item in [*backward.lots, *forward.lots]}
    if lot.pk not in lots:
        raise RuleViolation(EpcisError.NOT_FOUND, f"Lot {lot} is not in your scope.")
    batches = {batch.pk: batch for batch in [*backward.batches, *forward.batches]}
    consumed = (
        Consumption.objects.for_user(user)
        .filter(batch_id__in=list(batches), lot_id__in=list(lots))
        .values("batch_id", "lot_id")
        .annotate(total=Sum("quantity"))
        .order_by("batch_id", "lot_id")
    )
    inputs: dict[int, list] = defaultdict(list)
    for row in consumed:
        inputs[row["batch_id"]].append((lots[row["lot_id"]], row["total"]))
    outputs: dict[int, list] = defaultdict(list)
    for item in sorted(lots.values(), key=lambda item: item.lot_number):
        if item.produced_by_id in batches:
            outputs[item.produced_by_id].append(item)
    ranked = []
    for item in lots.values():
        if item.produced_by_id is None:
            ranked.append((item.received_at or item.created_at, 0, item.lot_number, item))
    for batch in batches.values():
        at = batch.completed_at or batch.started_at or batch.planned_at
        ranked.append((at, 1, batch.number, batch))
    for shipment in forward.shipments:
        ranked.append((shipment.shipped_at, 2, f"{shipment.pk:012d}", shipment))
    events = []
    for *_, record in sorted(ranked, key=lambda entry: entry[:3]):
        if isinstance(record, Lot):
            events.append(_receipt_event(record))
        elif isinstance(record, Batch):
            events.append(_transformation_event(record, inputs[record.pk], outputs[record.pk]))
        else:
            events.append(_shipment_event(record))
    return {
        "@context": [CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _time(timezone.now()),
        "id": _event_id("genealogy", f"{lot.lot_number}/{timezone.now().isoformat()}"),
        "epcisBody": {"eventList": events},
    }
