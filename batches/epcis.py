"""GS1 EPCIS 2.0 (JSON-LD) import and export of lot genealogy: receipts and shipments are
ObjectEvents, batches are TransformationEvents, lots are class-level lgtin or Digital Link ids."""

import hashlib
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from qms.audit import audit_context
from qms.errors import RuleViolation
from qms.tenancy import sponsor_ids_for
from suppliers.models import Supplier

from .models import Batch, Consumption, Customer, Lot, Material, Shipment, Unit
from .selectors import lot_balance, recall_scope_forward, recall_trace_backward
from .services import mbr_in_force

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
DEFAULT_NAMESPACE = "https://qms.invalid/epcis/"
COMPANY_PREFIX_LENGTH = 7

LGTIN = "urn:epc:class:lgtin:"
SGTIN = "urn:epc:id:sgtin:"
IDPAT_SGTIN = "urn:epc:idpat:sgtin:"
SGLN = "urn:epc:id:sgln:"
PGLN = "urn:epc:id:pgln:"
EPC_ID = "urn:epc:id:"

UOM_UNITS = {
    "KGM": Unit.KG,
    "GRM": Unit.G,
    "MGM": Unit.MG,
    "LTR": Unit.L,
    "MLT": Unit.ML,
    "C62": Unit.EACH,
    "H87": Unit.EACH,
    "EA": Unit.EACH,
}
UNIT_UOMS = {Unit.KG: "KGM", Unit.G: "GRM", Unit.MG: "MGM", Unit.L: "LTR", Unit.ML: "MLT"}

CBV_PREFIXES = {
    "bizstep": ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    "sdt": ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    "btt": ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
}
PARTY_RANK = {"owning_party": 0, "possessing_party": 1, "location": 2}
ILMD_LOT_KEYS = ("cbvmda:lotNumber", "urn:epcglobal:cbv:mda:lotNumber")
EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
MAX_QUANTITY = Decimal("99999999999.999")

_DIGITS = re.compile(r"[0-9]+")


class EpcisError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "epcis_invalid"
    NOT_FOUND = "not_found"


def namespace() -> str:
    """The base of this site's own identifiers (batches, customers, suppliers, lots of
    materials without a GTIN), for what GS1 keys cannot name."""
    return getattr(settings, "QMS_EPCIS_NAMESPACE", DEFAULT_NAMESPACE)


# --- identifiers --------------------------------------------------------------------------


class Malformed(ValueError):
    pass


class IdKind(StrEnum):
    LOT = "lot"
    CLASS = "class"
    INSTANCE = "instance"
    OTHER = "other"


@dataclass(frozen=True)
class Identifier:
    uri: str
    kind: str
    gtin: str = ""
    lot: str = ""
    material_code: str = ""


def check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a key without its check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def normal_gtin(value: str) -> str:
    """A GTIN-8/12/13/14 as 14 digits, or '' when it is not a valid GTIN."""
    value = (value or "").strip()
    if not _DIGITS.fullmatch(value) or len(value) not in (8, 12, 13, 14):
        return ""
    value = value.zfill(14)
    return value if check_digit(value[:13]) == value[13] else ""


def _epc_gtin(company: str, item: str, uri: str) -> str:
    if (
        not _DIGITS.fullmatch(company)
        or not _DIGITS.fullmatch(item)
        or len(company) + len(item) != 13
        or not 6 <= len(company) <= 12
    ):
        raise Malformed(f"{uri}: the company prefix and item reference must be 13 digits together")
    body = item[0] + company + item[1:]
    return body + check_digit(body)


def _own(uri: str, kind: str) -> list[str] | None:
    prefix = f"{namespace()}{kind}/"
    if not uri.startswith(prefix):
        return None
    parts = [unquote(part) for part in uri[len(prefix) :].split("/")]
    if not all(parts):
        raise Malformed(f"{uri}: an empty part in a {kind} identifier")
    return parts


def parse_identifier(uri) -> Identifier:
    """Classify an EPC or class identifier: a lot (lgtin, Digital Link with a lot, this site's
    own lot URI), a class without lot, a serialised instance, or something else."""
    if not isinstance(uri, str) or not uri.strip():
        raise Malformed("an identifier must be a non-empty string")
    if uri.startswith(LGTIN):
        parts = uri[len(LGTIN) :].split(".", 2)
        if len(parts) != 3 or not parts[2]:
            raise Malformed(
                f"{uri} is not an lgtin (urn:epc:class:lgtin:<company prefix>.<item "
                "reference>.<lot>)"
            )
        return Identifier(uri, IdKind.LOT, _epc_gtin(parts[0], parts[1], uri), unquote(parts[2]))
    if uri.startswith(SGTIN):
        parts = uri[len(SGTIN) :].split(".", 2)
        if len(parts) != 3 or not parts[2]:
            raise Malformed(f"{uri} is not an sgtin")
        return Identifier(uri, IdKind.INSTANCE, _epc_gtin(parts[0], parts[1], uri))
    if uri.startswith(IDPAT_SGTIN):
        parts = uri[len(IDPAT_SGTIN) :].split(".")
        if len(parts) == 3 and parts[2] == "*" and parts[1] != "*":
            return Identifier(uri, IdKind.CLASS, _epc_gtin(parts[0], parts[1], uri))
        return Identifier(uri, IdKind.CLASS)
    if uri.startswith(EPC_ID):
        return Identifier(uri, IdKind.INSTANCE)
    own = _own(uri, "lot")
    if own is not None:
        if len(own) != 2:
            raise Malformed(f"{uri}: a lot URI is {namespace()}lot/<material code>/<lot>")
        return Identifier(uri, IdKind.LOT, lot=own[1], material_code=own[0])
    if uri.startswith(("https://", "http://")):
        return _digital_link(uri)
    return Identifier(uri, IdKind.OTHER)


def _digital_link(uri: str) -> Identifier:
    segments = urlsplit(uri).path.split("/")
    if "01" not in segments:
        return Identifier(uri, IdKind.OTHER)
    values = segments[segments.index("01") :]
    if len(values) % 2:
        raise Malformed(f"{uri}: a GS1 Digital Link path is pairs of key and value")
    pairs = dict(zip(values[0::2], values[1::2], strict=True))
    gtin = normal_gtin(pairs["01"])
    if not gtin:
        raise Malformed(f"{uri}: {pairs['01']} is not a GTIN (wrong length or check digit)")
    if "21" in pairs:
        return Identifier(uri, IdKind.INSTANCE, gtin)
    if pairs.get("10"):
        return Identifier(uri, IdKind.LOT, gtin, unquote(pairs["10"]))
    return Identifier(uri, IdKind.CLASS, gtin)


def gln_from(uri: str) -> str:
    """The GLN an sgln/pgln URN or a Digital Link (414, 417) names; '' for other URIs."""
    for prefix, parts_wanted in ((SGLN, 3), (PGLN, 2)):
        if uri.startswith(prefix):
            parts = uri[len(prefix) :].split(".")
            body = "".join(parts[:2])
            if len(parts) != parts_wanted or not _DIGITS.fullmatch(body) or len(body) != 12:
                raise Malformed(f"{uri}: not a valid {prefix.rsplit(':', 2)[-2]}")
            return body + check_digit(body)
    if uri.startswith(("https://", "http://")):
        segments = urlsplit(uri).path.split("/")
        for key in ("417", "414"):
            if key in segments and segments.index(key) + 1 < len(segments):
                value = segments[segments.index(key) + 1]
                if len(value) != 13 or normal_gtin(value) == "":
                    raise Malformed(f"{uri}: {value} is not a GLN")
                return value
    return ""


def lot_identifier(lot: Lot) -> str:
    """A lot as a class-level identifier: lgtin when its material has a GTIN, else this site's
    own lot URI."""
    gtin = normal_gtin(lot.material.gtin)
    if gtin:
        company = gtin[1 : 1 + COMPANY_PREFIX_LENGTH]
        item = gtin[0] + gtin[1 + COMPANY_PREFIX_LENGTH : 13]
        return f"{LGTIN}{company}.{item}.{quote(lot.lot_number, safe='')}"
    code = quote(lot.material.code, safe="")
    return f"{namespace()}lot/{code}/{quote(lot.lot_number, safe='')}"


def _party_identifier(record, kind: str) -> str:
    gln = normal_gtin(record.gln) if len(record.gln or "") == 13 else ""
    if gln:
        gln = gln[1:]
        return f"{PGLN}{gln[:COMPANY_PREFIX_LENGTH]}.{gln[COMPANY_PREFIX_LENGTH:12]}"
    return f"{namespace()}{kind}/{quote(record.code, safe='')}"


def _cbv(value: str, vocabulary: str) -> str:
    for prefix in CBV_PREFIXES[vocabulary]:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


# --- import report ------------------------------------------------------------------------


@dataclass
class Issue:
    index: int | None
    event_id: str
    detail: str

    def as_dict(self) -> dict:
        return {"index": self.index, "eventID": self.event_id or None, "detail": self.detail}

    def __str__(self) -> str:
        where = "document" if self.index is None else f"event {self.index}"
        if self.event_id:
            where += f" ({self.event_id})"
        return f"{where}: {self.detail}"


@dataclass
class ImportReport:
    """What an import did, event by event (positions are indexes in eventList). With any
    error nothing is imported: `committed` is False and the record lists are empty."""

    events: int = 0
    imported: list[Issue] = field(default_factory=list)
    skipped: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    retracted: list[int] = field(default_factory=list)
    lots_created: list[str] = field(default_factory=list)
    lots_reused: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    consumptions: int = 0
    shipments: int = 0
    customers_created: list[str] = field(default_factory=list)
    committed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def discard(self) -> None:
        self.imported.clear()
        self.lots_created.clear()
        self.lots_reused.clear()
        self.batches.clear()
        self.customers_created.clear()
        self.consumptions = self.shipments = 0
        self.committed = False

    @property
    def summary(self) -> str:
        if self.errors:
            return (
                f"{len(self.errors)} problem(s) in {self.events} event(s); nothing was "
                f"imported. First: {self.errors[0]}"
            )
        return (
            f"{self.events} event(s): {len(self.imported)} imported, {len(self.skipped)} "
            f"skipped; {len(self.lots_created)} lot(s) and {len(self.batches)} batch(es) "
            f"recorded, {self.consumptions} consumption(s), {self.shipments} shipment(s)."
        )

    def as_dict(self) -> dict:
        return {
            "committed": self.committed,
            "summary": self.summary,
            "events": self.events,
            "imported": [item.as_dict() for item in self.imported],
            "skipped": [item.as_dict() for item in self.skipped],
            "retracted": list(self.retracted),
            "notes": [item.as_dict() for item in self.notes],
            "errors": [item.as_dict() for item in self.errors],
            "lots_created": list(self.lots_created),
            "lots_reused": list(self.lots_reused),
            "batches": list(self.batches),
            "consumptions": self.consumptions,
            "shipments": self.shipments,
            "customers_created": list(self.customers_created),
        }


# --- import -------------------------------------------------------------------------------


class _Problem(Exception):
    pass


class _Rollback(Exception):
    pass


@dataclass
class _Event:
    index: int
    raw: dict
    event_id: str
    type: str
    time: datetime | None


@dataclass
class _Quantity:
    ident: Identifier
    quantity: Decimal | None
    unit: str
    where: str


@dataclass
class _LotRef:
    material: Material
    lot_number: str
    quantity: Decimal | None
    where: str
    uri: str


def _list(raw: dict, key: str) -> list:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Problem(f"{key} must be a list.")
    return value


def _quantity(value, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"{where}: the quantity must be a number, not {json.dumps(value)}.")
    try:
        quantity = Decimal(str(value))
    except InvalidOperation as error:
        raise _Problem(f"{where}: the quantity {value} is not a number.") from error
    if not quantity.is_finite() or quantity <= 0:
        raise _Problem(f"{where}: the quantity must be positive.")
    if quantity > MAX_QUANTITY or quantity != quantity.quantize(Decimal("0.001")):
        raise _Problem(f"{where}: the quantity {value} has more digits than a lot can record.")
    return quantity


def _unit(value, where: str) -> str:
    if value is None:
        return Unit.EACH
    if not isinstance(value, str) or value not in UOM_UNITS:
        known = ", ".join(sorted(UOM_UNITS))
        raise _Problem(
            f"{where}: unit of measure {value!r} is not one this site records ({known})."
        )
    return UOM_UNITS[value]


def _identifier(value, where: str) -> Identifier:
    try:
        return parse_identifier(value)
    except Malformed as error:
        raise _Problem(f"{where}: {error}.") from error


def _quantities(raw: dict, key: str) -> list[_Quantity]:
    found = []
    for n, element in enumerate(_list(raw, key)):
        where = f"{key}[{n}]"
        if not isinstance(element, dict) or "epcClass" not in element:
            raise _Problem(f"{where} must be an object with an epcClass.")
        ident = _identifier(element["epcClass"], where)
        quantity = _quantity(element["quantity"], where) if "quantity" in element else None
        found.append(_Quantity(ident, quantity, _unit(element.get("uom"), where), where))
    return found


def _epcs(raw: dict, key: str) -> list[Identifier]:
    return [_identifier(value, f"{key}[{n}]") for n, value in enumerate(_list(raw, key))]


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _Problem(f"{key} must be a non-empty string.")
    return value


def _event_list(document, report: ImportReport) -> list:
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


def _prepare(index: int, raw, report: ImportReport) -> _Event | None:
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
    if "errorDeclaration" in raw and not isinstance(raw["errorDeclaration"], dict):
        return problem("errorDeclaration must be an object.")
    return _Event(index, raw, event_id, kind, moment)


def _retraction(event: _Event) -> str:
    declaration = event.raw.get("errorDeclaration") or {}
    reason = declaration.get("reason")
    detail = "retracted by an error declaration"
    if isinstance(reason, str):
        detail += f" ({_cbv(reason, 'btt').rsplit(':', 1)[-1]})"
    corrections = declaration.get("correctiveEventIDs")
    if isinstance(corrections, list) and corrections:
        detail += "; corrected by " + ", ".join(str(item) for item in corrections)
    return detail + ": not counted in genealogy."


class _Importer:
    def __init__(self, user, change_ids: frozenset[int], report: ImportReport):
        self.user = user
        self.change_ids = change_ids
        self.report = report
        self.materials: dict[tuple[str, str], Material] = {}
        self.inferred: set[int] = set()
        self.new_consumptions: set[int] = set()
        self.new_shipments: set[int] = set()

    def run(self, event: _Event) -> None:
        self.event = event
        self.done: list[str] = []
        try:
            with transaction.atomic():
                self._dispatch(event)
        except _Problem as problem:
            self._issue(self.report.errors, str(problem))
            return
        except DatabaseError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._issue(self.report.errors, f"The event could not be stored: {first}")
            return
        if self.done:
            self._issue(self.report.imported, "; ".join(self.done) + ".")

    def _issue(self, target: list, detail: str) -> None:
        target.append(Issue(self.event.index, self.event.event_id, detail))

    def _dispatch(self, event: _Event) -> None:
        if event.type == "TransformationEvent":
            return self._transformation(event.raw)
        if event.type == "AssociationEvent":
            return self._issue(self.report.skipped, "An AssociationEvent is not lot genealogy.")
        action = event.raw.get("action")
        if action not in ("ADD", "OBSERVE", "DELETE"):
            raise _Problem(f"action is {action!r}: ADD, OBSERVE or DELETE is expected.")
        step = _cbv(_text(event.raw, "bizStep"), "bizstep")
        quantities, epcs = {
            "ObjectEvent": ("quantityList", "epcList"),
            "TransactionEvent": ("quantityList", "epcList"),
            "AggregationEvent": ("childQuantityList", "childEPCs"),
        }[event.type]
        receipt = step == "receiving" or (
            step == "commissioning" and action == "ADD" and event.type == "ObjectEvent"
        )
        if action != "DELETE" and receipt:
            return self._receipt(event.raw, quantities, epcs)
        if action != "DELETE" and step == "shipping":
            return self._shipment(event.raw, quantities, epcs)
        return self._issue(
            self.report.skipped,
            f"{event.type} with bizStep {step or 'none'} and action {action} is neither a "
            "receipt nor a shipment.",
        )

    # -- resolving identifiers --

    def _material(self, ident: Identifier, where: str) -> Material:
        key = ("gtin", ident.gtin) if ident.gtin else ("code", ident.material_code)
        if key in self.materials:
            return self.materials[key]
        scope = Material.objects.for_user(self.user, "change").select_related("product")
        if ident.gtin:
            gtin = ident.gtin
            candidates = {gtin} | {gtin[n:] for n in (1, 2, 6) if set(gtin[:n]) == {"0"}}
            found = list(scope.filter(gtin__in=candidates).order_by("code")[:3])
            what = f"GTIN {gtin}"
        else:
            found = list(scope.filter(code=ident.material_code)[:1])
            what = f"material code {ident.material_code}"
        if not found:
            hint = "; set the GTIN on the material first" if ident.gtin else ""
            raise _Problem(f"{where}: {ident.uri}: no material in your scope has {what}{hint}.")
        if len(found) > 1:
            codes = ", ".join(material.code for material in found)
            raise _Problem(f"{where}: {what} is set on several materials ({codes}).")
        self.materials[key] = found[0]
        return found[0]

    def _lot_ref(self, item: _Quantity, lot_number: str) -> _LotRef:
        material = self._material(item.ident, item.where)
        if not lot_number.strip() or len(lot_number) > Lot._meta.get_field("lot_number").max_length:
            raise _Problem(f"{item.where}: lot number {lot_number!r} cannot be recorded.")
        if item.quantity is not None and item.unit != material.unit:
            raise _Problem(
                f"{item.where}: {item.ident.uri} is counted in {Unit(item.unit).label}, but "
                f"{material.code} is recorded in {Unit(material.unit).label}."
            )
        return _LotRef(material, lot_number, item.quantity, item.where, item.ident.uri)

    def _lot_refs(self, items: list[_Quantity], epcs: list[Identifier]) -> list[_LotRef]:
        """The lots an event names, quantities of the same lot added up; what is not a lot is
        noted as ignored, what cannot be mapped is an error."""
        merged: dict[str, _LotRef] = {}
        ignored = 0
        for item in items:
            if item.ident.kind == IdKind.OTHER:
                raise _Problem(
                    f"{item.where}: {item.ident.uri} is not a lot identifier this site can map "
                    "(urn:epc:class:lgtin:… or a GS1 Digital Link with /10/<lot>)."
                )
            if item.ident.kind != IdKind.LOT:
                ignored += 1
                continue
            ref = self._lot_ref(item, item.ident.lot)
            seen = merged.get(ref.lot_number)
            if seen is None:
                merged[ref.lot_number] = ref
            elif seen.material.pk != ref.material.pk:
                raise _Problem(
                    f"{ref.where}: lot {ref.lot_number} is named for two materials "
                    f"({seen.material.code}, {ref.material.code})."
                )
            elif ref.quantity is not None:
                seen.quantity = (seen.quantity or 0) + ref.quantity
        ignored += len(epcs)
        if ignored:
            self._issue(
                self.report.notes,
                f"{ignored} identifier(s) without a lot number (serialised items or classes) "
                "ignored: genealogy is kept by lot.",
            )
        return list(merged.values())

    def _lot(self, ref: _LotRef) -> Lot | None:
        lot = Lot.objects.select_related("material").filter(lot_number=ref.lot_number).first()
        if lot is None:
            return None
        if lot.sponsor_id is not None and lot.sponsor_id not in self.change_ids:
            raise _Problem(f"Lot number {ref.lot_number} is already used outside your scope.")
        if lot.material_id != ref.material.pk:
            raise _Problem(
                f"{ref.where}: lot {lot} is a lot of {lot.material.code}, not of "
                f"{ref.material.code} ({ref.uri})."
            )
        return lot

    def _parties(self, raw: dict, key: str, value_key: str) -> list[str]:
        ranked = []
        for n, entry in enumerate(_list(raw, key)):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("type"), str)
                or not isinstance(entry.get(value_key), str)
            ):
                raise _Problem(f"{key}[{n}] must have a type and a {value_key}.")
            rank = PARTY_RANK.get(_cbv(entry["type"], "sdt"))
            if rank is not None:
                ranked.append((rank, n, entry[value_key]))
        return [uri for *_, uri in sorted(ranked)]

    def _gln(self, uri: str) -> str:
        try:
            return gln_from(uri)
        except Malformed as error:
            raise _Problem(f"{error}.") from error

    def _own_code(self, uri: str, kind: str) -> str:
        try:
            parts = _own(uri, kind)
        except Malformed as error:
            raise _Problem(f"{error}.") from error
        return parts[0] if parts else ""

    def _reference(self, raw: dict, kinds: tuple[str, ...], own_kind: str) -> str:
        found = {}
        for n, entry in enumerate(_list(raw, "bizTransactionList")):
            if not isinstance(entry, dict) or not isinstance(entry.get("bizTransaction"), str):
                raise _Problem(f"bizTransactionList[{n}] must have a bizTransaction.")
            kind = entry.get("type")
            kind = _cbv(kind, "btt") if isinstance(kind, str) else ""
            found.setdefault(kind, entry["bizTransaction"])
        for kind in kinds:
            if kind in found:
                value = self._own_code(found[kind], own_kind) or found[kind]
                return value if len(value) <= 60 else ""
        return ""

    def _supplier(self, raw: dict) -> Supplier | None:
        parties = self._parties(raw, "sourceList", "source")
        for uri in parties:
            gln, code = self._gln(uri), self._own_code(uri, "supplier")
            supplier = (
                Supplier.objects.filter(gln=gln).first()
                if gln
                else Supplier.objects.filter(code=code).first()
                if code
                else None
            )
            if supplier is not None:
                return supplier
        if parties:
            self._issue(
                self.report.notes,
                f"Source {parties[0]} is not on the supplier list: received without a supplier.",
            )
        return None

    def _customer(self, uris: list[str]) -> Customer:
        keys = []
        for uri in uris:
            gln, code = self._gln(uri), self._own_code(uri, "customer")
            keys.append((uri, gln, code))
            if gln:
                customer = Customer.objects.filter(gln=gln).order_by("pk").first()
            else:
                customer = Customer.objects.filter(code=code or uri).first()
            if customer is not None:
                return customer
        uri, gln, code = keys[0]
        if gln:
            code, name = f"GLN-{gln}", f"GLN {gln}"
        elif code:
            name = code
        else:
            code = uri if len(uri) <= 40 else "EPCIS-" + _digest(uri)
            name = uri[:200]
        if len(code) > Customer._meta.get_field("code").max_length:
            raise _Problem(f"Customer code {code!r} is too long to record.")
        customer, created = Customer.objects.get_or_create(
            code=code, defaults={"name": name, "gln": gln}
        )
        if created:
            self.report.customers_created.append(code)
            self.done.append(f"customer {code} created")
        return customer

    # -- events --

    def _receipt(self, raw: dict, quantities: str, epcs: str) -> None:
        refs = self._lot_refs(_quantities(raw, quantities), _epcs(raw, epcs))
        if not refs:
            return self._issue(self.report.skipped, "No class-level lot identifier: no receipt.")
        supplier = self._supplier(raw)
        reference = self._reference(raw, ("recadv", "desadv", "po"), "receipt")
        for ref in refs:
            if ref.quantity is None:
                raise _Problem(f"{ref.where}: the quantity received is missing.")
            lot = self._lot(ref)
            if lot is None:
                Lot.objects.create(
                    lot_number=ref.lot_number,
                    material=ref.material,
                    quantity=ref.quantity,
                    unit=ref.material.unit,
                    supplier=supplier,
                    receipt_reference=reference,
                    received_at=self.event.time,
                )
                self.report.lots_created.append(ref.lot_number)
                self.done.append(
                    f"received lot {ref.lot_number}: {_amount(ref.quantity)} "
                    f"{ref.material.unit} of {ref.material.code}"
                )
            elif lot.pk in self.inferred:
                self._complete_inferred(lot, ref, supplier, reference)
            else:
                self.report.lots_reused.append(lot.lot_number)
                self.done.append(f"lot {lot} already recorded: reused")

    def _complete_inferred(self, lot: Lot, ref: _LotRef, supplier, reference: str) -> None:
        used = lot.quantity - lot_balance(lot)["remaining"]
        if ref.quantity < used:
            raise _Problem(
                f"{ref.where}: lot {lot} received {_amount(ref.quantity)} {lot.unit}, less "
                f"than the {_amount(used)} {lot.unit} consumed earlier in this document."
            )
        lot.quantity, lot.supplier, lot.receipt_reference = ref.quantity, supplier, reference
        lot.received_at = self.event.time
        lot.save(update_fields=["quantity", "supplier", "receipt_reference", "received_at"])
        self.inferred.discard(lot.pk)
        self.done.append(f"receipt of lot {lot} recorded: {_amount(ref.quantity)} {lot.unit}")

    def _shipment(self, raw: dict, quantities: str, epcs: str) -> None:
        refs = self._lot_refs(_quantities(raw, quantities), _epcs(raw, epcs))
        if not refs:
            return self._issue(self.report.skipped, "No class-level lot identifier: no shipment.")
        uris = self._parties(raw, "destinationList", "destination")
        point = raw.get("readPoint")
        if isinstance(point, dict) and isinstance(point.get("id"), str):
            uris.append(point["id"])
        if not uris:
            raise _Problem(
                "A shipment needs its customer: a destinationList party or location, or a "
                "readPoint."
            )
        reference = self._reference(raw, ("desadv", "po", "inv", "bol"), "shipment")
        customer = None
        for ref in refs:
            if ref.quantity is None:
                raise _Problem(f"{ref.where}: the quantity shipped is missing.")
            lot = self._lot(ref)
            if lot is None:
                raise _Problem(
                    f"{ref.where}: lot {ref.lot_number} is not known here: a lot is received or "
                    "produced before it is shipped."
                )
            if lot.sponsor_id is None:
                raise _Problem(
                    f"Lot {lot} is a site material, not a sponsor's product: it cannot be shipped."
                )
            customer = customer or self._customer(uris)
            same = Shipment.objects.filter(
                lot=lot, customer=customer, quantity=ref.quantity, shipped_at=self.event.time
            ).exclude(pk__in=self.new_shipments)
            if same.exists():
                self.done.append(f"shipment of lot {lot} to {customer.code} already recorded")
                continue
            remaining = lot_balance(lot)["remaining"]
            if ref.quantity > remaining:
                raise _Problem(
                    f"Lot {lot} has {_amount(remaining)} {lot.unit} left: "
                    f"{_amount(ref.quantity)} {lot.unit} cannot be shipped."
                )
            shipment = Shipment.objects.create(
                lot=lot,
                customer=customer,
                quantity=ref.quantity,
                shipped_at=self.event.time,
                reference=reference,
                recorded_by=self.user,
            )
            self.new_shipments.add(shipment.pk)
            self.report.shipments += 1
            self.done.append(
                f"shipped {_amount(ref.quantity)} {lot.unit} of lot {lot} to {customer.code}"
            )

    def _batch_number(self, raw: dict) -> str:
        transformation = _text(raw, "transformationID")
        own = self._own_code(transformation, "batch") if transformation else ""
        if own:
            if len(own) > Batch._meta.get_field("number").max_length:
                raise _Problem(f"transformationID: batch number {own!r} is too long to record.")
            return own
        key = transformation or self.event.event_id or json.dumps(raw, sort_keys=True)
        return "EPCIS-" + _digest(key)

    def _outputs(self, raw: dict, number: str) -> list[_LotRef]:
        """Output lots: class-level lots as named; outputs without a lot (a GTIN class, or
        serialised items of one GTIN when no class is given) make one lot, numbered by the ILMD
        lot number or else after the batch."""
        items = _quantities(raw, "outputQuantityList")
        epcs = _epcs(raw, "outputEPCList")
        named = [item for item in items if item.ident.kind in (IdKind.LOT, IdKind.OTHER)]
        refs = self._lot_refs(named, [])
        loose = []
        if not named:
            loose = [item for item in items if item.ident.kind == IdKind.CLASS and item.ident.gtin]
        if not named and not loose:
            counts: dict[str, int] = defaultdict(int)
            for ident in epcs:
                if ident.gtin:
                    counts[ident.gtin] += 1
            loose = [
                _Quantity(
                    Identifier(f"GTIN {gtin}", IdKind.CLASS, gtin),
                    Decimal(count),
                    Unit.EACH,
                    "outputEPCList",
                )
                for gtin, count in counts.items()
            ]
            ignored = len(items) + sum(1 for ident in epcs if not ident.gtin)
        else:
            ignored = len(items) - len(named) - len(loose) + len(epcs)
        if ignored:
            self._issue(
                self.report.notes,
                f"{ignored} output identifier(s) without a lot number ignored.",
            )
        if len(loose) > 1:
            raise _Problem(
                f"{len(loose)} outputs have no lot number; name each output lot with an lgtin "
                "(only one output can be numbered after the batch)."
            )
        if loose:
            refs.append(self._lot_ref(loose[0], self._ilmd_lot(raw) or number))
        return refs

    def _ilmd_lot(self, raw: dict) -> str:
        ilmd = raw.get("ilmd")
        if ilmd is None:
            return ""
        if not isinstance(ilmd, dict):
            raise _Problem("ilmd must be an object.")
        for key in ILMD_LOT_KEYS:
            if isinstance(ilmd.get(key), str) and ilmd[key].strip():
                return ilmd[key].strip()
        return ""

    def _transformation(self, raw: dict) -> None:
        inputs = self._lot_refs(_quantities(raw, "inputQuantityList"), _epcs(raw, "inputEPCList"))
        number = self._batch_number(raw)
        outputs = self._outputs(raw, number)
        both = {ref.lot_number for ref in inputs} & {ref.lot_number for ref in outputs}
        if both:
            raise _Problem(
                f"Lot {', '.join(sorted(both))} is both an input and an output of the "
                "transformation."
            )
        for ref in outputs:
            if ref.quantity is None:
                raise _Problem(f"{ref.where}: the quantity produced is missing.")
            if ref.material.product_id is None:
                raise _Problem(
                    f"{ref.where}: {ref.uri} is {ref.material.code}, a site-wide "
                    f"{ref.material.get_kind_display().lower()}: a batch makes a sponsor's "
                    "product, so it has no sponsor to be filed under."
                )
        batch = self._batch(number, outputs)
        for ref in inputs:
            self._consume(batch, ref)
        produced = Decimal(0)
        for ref in outputs:
            produced += self._produce(batch, ref)
        if produced:
            batch.actual_yield = (batch.actual_yield or 0) + produced
            batch.save(update_fields=["actual_yield"])
        if not inputs and not outputs:
            self.done.append(f"batch {batch} has no lot-level input or output")

    def _batch(self, number: str, outputs: list[_LotRef]) -> Batch:
        batch = Batch.objects.select_related("product").filter(number=number).first()
        if batch is not None and batch.sponsor_id not in self.change_ids:
            raise _Problem(f"Batch number {number} is already used outside your scope.")
        products = {ref.material.product for ref in outputs}
        if len(products) > 1:
            codes = ", ".join(sorted(product.code for product in products))
            raise _Problem(f"The outputs are of several products ({codes}): a batch makes one.")
        if batch is not None:
            if products and products != {batch.product}:
                raise _Problem(
                    f"Batch {batch} makes {batch.product.code}; the outputs are of "
                    f"{products.pop().code}."
                )
            if number not in self.report.batches:
                self.done.append(f"batch {batch} already recorded")
            return batch
        if not products:
            raise _Problem(
                f"No output names a sponsor's product: batch {number} cannot be filed under one."
            )
        product = products.pop()
        at = self.event.time
        mbr = mbr_in_force(product, at) or mbr_in_force(product)
        if mbr is None:
            raise _Problem(
                f"{product.code} has no effective master batch record: batch {number} cannot be "
                "filed under one."
            )
        batch = Batch.objects.create(
            number=number,
            product=product,
            mbr=mbr,
            status=Batch.Status.COMPLETED,
            planned_at=at,
            started_at=at,
            completed_at=at,
        )
        self.report.batches.append(number)
        self.done.append(f"batch {number} of {product.code} recorded under {mbr}")
        return batch

    def _consume(self, batch: Batch, ref: _LotRef) -> None:
        if ref.quantity is None:
            raise _Problem(f"{ref.where}: the quantity consumed is missing.")
        sponsor_id = ref.material.sponsor_id
        if sponsor_id is not None and sponsor_id != batch.sponsor_id:
            raise _Problem(
                f"Lot {ref.lot_number} belongs to another sponsor's product: batch {batch} "
                "cannot consume it."
            )
        lot = self._lot(ref)
        if lot is None:
            lot = Lot.objects.create(
                lot_number=ref.lot_number,
                material=ref.material,
                quantity=ref.quantity,
                unit=ref.material.unit,
            )
            self.inferred.add(lot.pk)
            self.report.lots_created.append(lot.lot_number)
            self._issue(
                self.report.notes,
                f"Lot {lot} was not known: recorded from its consumption, "
                f"{_amount(ref.quantity)} {lot.unit} of {ref.material.code}.",
            )
        else:
            if lot.produced_by_id == batch.pk:
                raise _Problem(f"Lot {lot} is an output of batch {batch}: it cannot be its input.")
            recorded = Consumption.objects.filter(batch=batch, lot=lot).exclude(
                pk__in=self.new_consumptions
            )
            if recorded.exists():
                self.done.append(f"consumption of lot {lot} by batch {batch} already recorded")
                return
            if lot.pk in self.inferred:
                lot.quantity += ref.quantity
                lot.save(update_fields=["quantity"])
            else:
                remaining = lot_balance(lot)["remaining"]
                if ref.quantity > remaining:
                    raise _Problem(
                        f"Lot {lot} has {_amount(remaining)} {lot.unit} left: "
                        f"{_amount(ref.quantity)} {lot.unit} cannot be consumed."
                    )
        consumption = Consumption.objects.create(
            batch=batch,
            lot=lot,
            quantity=ref.quantity,
            consumed_at=self.event.time,
            recorded_by=self.user,
        )
        self.new_consumptions.add(consumption.pk)
        self.report.consumptions += 1
        self.done.append(f"batch {batch} consumed {_amount(ref.quantity)} {lot.unit} of {lot}")

    def _produce(self, batch: Batch, ref: _LotRef) -> Decimal:
        lot = self._lot(ref)
        if lot is not None:
            if lot.produced_by_id == batch.pk:
                self.done.append(f"output lot {lot} already recorded")
                return Decimal(0)
            origin = f"made by batch {lot.produced_by}" if lot.produced_by_id else "received"
            raise _Problem(
                f"Lot {lot} already exists ({origin}): it cannot be an output of batch {batch}."
            )
        Lot.objects.create(
            lot_number=ref.lot_number,
            material=ref.material,
            quantity=ref.quantity,
            unit=ref.material.unit,
            produced_by=batch,
        )
        self.report.lots_created.append(ref.lot_number)
        self.done.append(
            f"batch {batch} produced lot {ref.lot_number}: {_amount(ref.quantity)} "
            f"{ref.material.unit} of {ref.material.code}"
        )
        return ref.quantity


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10].upper()


def _document_name(document: dict) -> str:
    for key in ("id", "instanceIdentifier", "creationDate"):
        if isinstance(document.get(key), str) and document[key].strip():
            return document[key].strip()[:120]
    return "without an id"


def epcis_import(*, document, user) -> ImportReport:
    """Import an EPCIS 2.0 document's genealogy: receipts become received lots, shipments
    become shipments to customers, transformations become batches with their consumption and
    output lots. Events retracted by an error declaration are not counted. All or nothing: any
    event that cannot be mapped leaves the database as it was, and the report says which."""
    change_ids = sponsor_ids_for(user, "change")
    if not change_ids:
        name = getattr(user, "username", "") or "An anonymous user"
        raise RuleViolation(
            EpcisError.NOT_PERMITTED,
            f"{name} may not import EPCIS events: importing needs the change permission on a "
            "sponsor.",
        )
    report = ImportReport()
    raw_events = _event_list(document, report)
    if report.errors:
        return report
    report.events = len(raw_events)
    events = [event for i, raw in enumerate(raw_events) if (event := _prepare(i, raw, report))]
    declared = {event.event_id for event in events if "errorDeclaration" in event.raw}
    declared.discard("")
    live = []
    for event in events:
        if "errorDeclaration" in event.raw or event.event_id in declared:
            report.retracted.append(event.index)
            report.skipped.append(Issue(event.index, event.event_id, _retraction(event)))
        else:
            live.append(event)
    reason = f"EPCIS import of document {_document_name(document)}"
    try:
        with transaction.atomic(), audit_context(actor=user, reason=reason):
            importer = _Importer(user, change_ids, report)
            for event in sorted(live, key=lambda event: (event.time, event.index)):
                importer.run(event)
            if report.errors:
                raise _Rollback
    except _Rollback:
        report.discard()
        report.errors.sort(key=lambda issue: (issue.index is not None, issue.index or 0))
        return report
    report.committed = True
    return report


# --- export -------------------------------------------------------------------------------


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
        supplier = _party_identifier(lot.supplier, "supplier")
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
    customer = _party_identifier(shipment.customer, "customer")
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
