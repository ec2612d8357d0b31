"""Reading an EPCIS 2.0 document: its event list, each event's type and time, and the
quantities, identifiers and texts of an event, checked as data before anything is mapped."""

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime

from qms.bounds import date_problem

from ..models import Unit
from .identifiers import UOM_UNITS, Identifier, Malformed, cbv, parse_identifier
from .report import ImportReport, Issue

EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
MAX_QUANTITY = Decimal("99999999999.999")


class Problem(Exception):
    """An event that cannot be mapped; the message names the field and the rule."""


@dataclass
class Event:
    index: int
    raw: dict
    event_id: str
    type: str
    time: datetime


@dataclass
class Quantity:
    ident: Identifier
    quantity: Decimal | None
    unit: str
    where: str


def read_list(raw: dict, key: str) -> list:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Problem(f"{key} must be a list.")
    return value


def read_quantity(value, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem(f"{where}: the quantity must be a number, not {json.dumps(value)}.")
    try:
        quantity = Decimal(str(value))
    except InvalidOperation as error:
        raise Problem(f"{where}: the quantity {value} is not a number.") from error
    if not quantity.is_finite() or quantity <= 0:
        raise Problem(f"{where}: the quantity must be positive.")
    if quantity > MAX_QUANTITY or quantity != quantity.quantize(Decimal("0.001")):
        raise Problem(f"{where}: the quantity {value} has more digits than a lot can record.")
    return quantity


def read_unit(value, where: str) -> str:
    if value is None:
        return Unit.EACH
    if not isinstance(value, str) or value not in UOM_UNITS:
        known = ", ".join(sorted(UOM_UNITS))
        raise Problem(f"{where}: unit of measure {value!r} is not one this site records ({known}).")
    return UOM_UNITS[value]


def read_identifier(value, where: str) -> Identifier:
    try:
        return parse_identifier(value)
    except Malformed as error:
        raise Problem(f"{where}: {error}.") from error


def read_quantities(raw: dict, key: str) -> list[Quantity]:
    found = []
    for n, element in enumerate(read_list(raw, key)):
        where = f"{key}[{n}]"
        if not isinstance(element, dict) or "epcClass" not in element:
            raise Problem(f"{where} must be an object with an epcClass.")
        ident = read_identifier(element["epcClass"], where)
        amount = read_quantity(element["quantity"], where) if "quantity" in element else None
        found.append(Quantity(ident, amount, read_unit(element.get("uom"), where), where))
    return found


def read_epcs(raw: dict, key: str) -> list[Identifier]:
    return [read_identifier(value, f"{key}[{n}]") for n, value in enumerate(read_list(raw, key))]


def read_text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise Problem(f"{key} must be a non-empty string.")
    return value


def event_list(document, report: ImportReport) -> list:
    def refuse(detail: str) -> list:
        report.errors.append(Issue(None, "", detail))
        return []

    if not isinstance(document, dict):
        return refuse("The body is not an EPCIS document (a JSON object).")
    kind = document.get("type")
    if kind not in ("EPCISDocument", "EPCISQueryDocument"):
        return refuse(f"type is {kind!r}: an EPCISDocument or EPCISQueryDocument is expected.")
    version = document.get("schemaVersion")
    if not isinstance(version, str) or not version.startswith("2"):
        return refuse(f"schemaVersion is {version!r}: this site reads EPCIS 2.0.")
    body = document.get("epcisBody")
    if kind == "EPCISQueryDocument" and isinstance(body, dict):
        results = body.get("queryResults")
        body = results.get("resultsBody") if isinstance(results, dict) else None
    events = body.get("eventList") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return refuse("epcisBody has no eventList.")
    return events


def prepare(index: int, raw, report: ImportReport) -> Event | None:
    event_id = raw.get("eventID", "") if isinstance(raw, dict) else ""
    event_id = event_id if isinstance(event_id, str) else ""

    def problem(detail: str) -> None:
        report.errors.append(Issue(index, event_id, detail))

    if not isinstance(raw, dict):
        return problem("An event must be a JSON object.")
    if "eventID" in raw and not event_id:
        return problem("eventID must be a string (a URI).")
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        known = ", ".join(EVENT_TYPES)
        return problem(f"Unknown event type {kind!r} (known: {known}).")
    stamp = raw.get("eventTime")
    moment = None
    if isinstance(stamp, str):
        try:
            moment = parse_datetime(stamp)
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        return problem(f"eventTime {stamp!r} is not a date and time with a UTC offset.")
    out_of_range = date_problem(moment)
    if out_of_range:
        return problem(f"eventTime {out_of_range}")
    if "errorDeclaration" in raw and not isinstance(raw["errorDeclaration"], dict):
        return problem("errorDeclaration must be an object.")
    return Event(index, raw, event_id, kind, moment)


def retraction(event: Event) -> str:
    declaration = event.raw.get("errorDeclaration") or {}
    reason = declaration.get("reason")
    detail = "retracted by an error declaration"
    if isinstance(reason, str):
        detail += f" ({cbv(reason, 'btt').rsplit(':', 1)[-1]})"
    corrections = declaration.get("correctiveEventIDs")
    if isinstance(corrections, list) and corrections:
        detail += "; corrected by " + ", ".join(str(item) for item in corrections)
    return detail + ": not counted in genealogy."


def document_name(document: dict) -> str:
    for key in ("id", "instanceIdentifier", "creationDate"):
        if isinstance(document.get(key), str) and document[key].strip():
            return document[key].strip()[:120]
    return "without an id"
