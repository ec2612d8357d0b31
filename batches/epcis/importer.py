"""EPCIS import: each event is mapped onto the service that owns its rules (a receipt onto
`lot_receive`, a shipment onto `shipment_create`, a transformation onto the batch record's
`batch_consume` and `batch_complete`). The importer resolves identifiers and writes no row."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import DatabaseError, transaction
from django.db.models import Sum

from qms.audit import audit_context
from qms.bounds import IDENTIFIER_RULE, identifier_problem
from qms.errors import RuleViolation
from qms.tenancy import sponsor_ids_for
from suppliers.models import Supplier

from .. import services
from ..models import Batch, Consumption, Customer, Lot, Material, Shipment, Unit
from .document import (
    Event,
    Problem,
    Quantity,
    document_name,
    event_list,
    prepare,
    read_epcs,
    read_list,
    read_quantities,
    read_text,
    retraction,
)
from .identifiers import (
    ILMD_LOT_KEYS,
    PARTY_RANK,
    Identifier,
    IdKind,
    Malformed,
    cbv,
    gln_from,
    namespace,
    own_parts,
)
from .report import EpcisError, ImportReport, Issue

BATCH_RECORD_FIRST = (
    "a batch is planned and executed in the batch record before its genealogy is reported"
)


class _Rollback(Exception):
    pass


@dataclass
class LotRef:
    material: Material
    lot_number: str
    quantity: Decimal | None
    where: str
    uri: str


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Importer:
    """Maps one event at a time onto the services, inside the import's transaction. A refusal
    of a service (`RuleViolation`) or of the mapping (`Problem`) becomes that event's error."""

    def __init__(self, user, change_ids: frozenset[int], report: ImportReport):
        self.user = user
        self.change_ids = change_ids
        self.report = report
        self.materials: dict[tuple[str, str], Material] = {}
        self.new_consumptions: set[int] = set()
        self.new_shipments: set[int] = set()

    def run(self, event: Event) -> None:
        self.event = event
        self.done: list[str] = []
        try:
            with transaction.atomic():
                self._dispatch(event)
        except (Problem, RuleViolation) as refusal:
            self._issue(self.report.errors, str(refusal))
            return
        except DatabaseError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._issue(self.report.errors, f"The event could not be stored: {first}")
            return
        if self.done:
            self._issue(self.report.imported, "; ".join(self.done) + ".")

    def _issue(self, target: list, detail: str) -> None:
        target.append(Issue(self.event.index, self.event.event_id, detail))

    def _dispatch(self, event: Event) -> None:
        if event.type == "TransformationEvent":
            return self._transformation(event.raw)
        if event.type == "AssociationEvent":
            return self._issue(self.report.skipped, "An AssociationEvent is not lot genealogy.")
        action = event.raw.get("action")
        if action not in ("ADD", "OBSERVE", "DELETE"):
            raise Problem(f"action is {action!r}: ADD, OBSERVE or DELETE is expected.")
        step = cbv(read_text(event.raw, "bizStep"), "bizstep")
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
            raise Problem(f"{where}: {ident.uri}: no material in your scope has {what}{hint}.")
        if len(found) > 1:
            codes = ", ".join(material.code for material in found)
            raise Problem(f"{where}: {what} is set on several materials ({codes}).")
        self.materials[key] = found[0]
        return found[0]

    def _lot_ref(self, item: Quantity, lot_number: str) -> LotRef:
        material = self._material(item.ident, item.where)
        if identifier_problem(lot_number):
            raise Problem(
                f"{item.where}: lot number {lot_number!r} cannot be recorded: a lot number has "
                f"{IDENTIFIER_RULE}."
            )
        if item.quantity is not None and item.unit != material.unit:
            raise Problem(
                f"{item.where}: {item.ident.uri} is counted in {Unit(item.unit).label}, but "
                f"{material.code} is recorded in {Unit(material.unit).label}."
            )
        return LotRef(material, lot_number, item.quantity, item.where, item.ident.uri)

    def _lot_refs(self, items: list[Quantity], epcs: list[Identifier]) -> list[LotRef]:
        """The lots an event names, quantities of the same lot added up; what is not a lot is
        noted as ignored, what cannot be mapped is an error."""
        merged: dict[str, LotRef] = {}
        ignored = 0
        for item in items:
            if item.ident.kind == IdKind.OTHER:
                raise Problem(
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
                raise Problem(
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

    def _lot(self, ref: LotRef) -> Lot | None:
        """The lot `ref` names, or None when there is none in the importer's scope: another
        sponsor's lot is treated as unknown, never described."""
        lot = (
            Lot.objects.select_related("material", "produced_by")
            .filter(lot_number=ref.lot_number)
            .first()
        )
        if lot is None or (lot.sponsor_id is not None and lot.sponsor_id not in self.change_ids):
            return None
        if lot.material_id != ref.material.pk:
            raise Problem(
                f"{ref.where}: lot {lot} is a lot of {lot.material.code}, not of "
                f"{ref.material.code} ({ref.uri})."
            )
        return lot

    def _free_lot_number(self, ref: LotRef) -> None:
        """A lot number is recorded once, site-wide; one taken outside the importer's scope is
        refused without saying by whom."""
        if Lot.objects.filter(lot_number=ref.lot_number).exists():
            raise Problem(f"{ref.where}: lot number {ref.lot_number} cannot be used.")

    def _parties(self, raw: dict, key: str, value_key: str) -> list[str]:
        ranked = []
        for n, entry in enumerate(read_list(raw, key)):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("type"), str)
                or not isinstance(entry.get(value_key), str)
            ):
                raise Problem(f"{key}[{n}] must have a type and a {value_key}.")
            rank = PARTY_RANK.get(cbv(entry["type"], "sdt"))
            if rank is not None:
                ranked.append((rank, n, entry[value_key]))
        return [uri for *_, uri in sorted(ranked)]

    def _gln(self, uri: str) -> str:
        try:
            return gln_from(uri)
        except Malformed as error:
            raise Problem(f"{error}.") from error

    def _own_code(self, uri: str, kind: str) -> str:
        try:
            parts = own_parts(uri, kind)
        except Malformed as error:
            raise Problem(f"{error}.") from error
        return parts[0] if parts else ""

    def _reference(self, raw: dict, kinds: tuple[str, ...], own_kind: str) -> str:
        found = {}
        for n, entry in enumerate(read_list(raw, "bizTransactionList")):
            if not isinstance(entry, dict) or not isinstance(entry.get("bizTransaction"), str):
                raise Problem(f"bizTransactionList[{n}] must have a bizTransaction.")
            kind = entry.get("type")
            kind = cbv(kind, "btt") if isinstance(kind, str) else ""
            found.setdefault(kind, entry["bizTransaction"])
        for kind in kinds:
            if kind in found:
                value = self._own_code(found[kind], own_kind) or found[kind]
                return value if len(value) <= 60 else ""
        return ""

    def _supplier(self, raw: dict) -> Supplier:
        """The supplier a receipt comes from: the first source party (owning, possessing,
        location) that is on the supplier list by GLN or by this site's supplier URI."""
        parties = self._parties(raw, "sourceList", "source")
        if not parties:
            raise Problem(
                "A receipt names its supplier: a sourceList party (a GLN, or "
                f"{namespace()}supplier/<supplier code>) is needed to receive a lot."
            )
        for uri in parties:
            gln, code = self._gln(uri), self._own_code(uri, "supplier")
            if gln:
                supplier = Supplier.objects.filter(gln=gln).order_by("pk").first()
            else:
                supplier = Supplier.objects.filter(code=code or uri).first()
            if supplier is not None:
                return supplier
        raise Problem(
            f"Source {parties[0]} is not on the supplier list (by GLN or supplier code): a lot "
            "is received only from a known, approved supplier."
        )

    def _customer(self, raw: dict) -> Customer:
        """The customer a shipment goes to: the first destination party (owning, possessing,
        location) that is a customer known here by GLN or by this site's customer URI."""
        uris = self._parties(raw, "destinationList", "destination")
        if not uris:
            raise Problem(
                "A shipment names its customer: a destinationList party or location (a GLN, or "
                f"{namespace()}customer/<customer code>)."
            )
        known = Customer.objects.for_user(self.user, "change")
        for uri in uris:
            gln, code = self._gln(uri), self._own_code(uri, "customer")
            if gln:
                customer = known.filter(gln=gln).order_by("pk").first()
            else:
                customer = known.filter(code=code or uri).first()
            if customer is not None:
                return customer
        raise Problem(
            f"Destination {uris[0]} is not a customer known here (by GLN or customer code): "
            "a customer is recorded before goods are shipped to it."
        )

    # -- receipts and shipments --

    def _receipt(self, raw: dict, quantities: str, epcs: str) -> None:
        refs = self._lot_refs(read_quantities(raw, quantities), read_epcs(raw, epcs))
        if not refs:
            return self._issue(self.report.skipped, "No class-level lot identifier: no receipt.")
        reference = self._reference(raw, ("recadv", "desadv", "po"), "receipt")
        supplier = None
        for ref in refs:
            if ref.quantity is None:
                raise Problem(f"{ref.where}: the quantity received is missing.")
            lot = self._lot(ref)
            if lot is not None:
                if lot.produced_by_id is not None:
                    raise Problem(
                        f"{ref.where}: lot {lot} was made here by batch {lot.produced_by}: it "
                        "cannot be received."
                    )
                self.report.lots_reused.append(lot.lot_number)
                self.done.append(f"lot {lot} already recorded: reused")
                continue
            self._free_lot_number(ref)
            supplier = supplier or self._supplier(raw)
            services.lot_receive(
                material=ref.material,
                lot_number=ref.lot_number,
                quantity=ref.quantity,
                supplier=supplier,
                by=self.user,
                receipt_reference=reference,
                received_at=self.event.time,
            )
            self.report.lots_created.append(ref.lot_number)
            self.done.append(
                f"received lot {ref.lot_number} from {supplier.code}: {_amount(ref.quantity)} "
                f"{ref.material.unit} of {ref.material.code}, in quarantine"
            )

    def _shipment(self, raw: dict, quantities: str, epcs: str) -> None:
        refs = self._lot_refs(read_quantities(raw, quantities), read_epcs(raw, epcs))
        if not refs:
            return self._issue(self.report.skipped, "No class-level lot identifier: no shipment.")
        customer = self._customer(raw)
        reference = self._reference(raw, ("desadv", "po", "inv", "bol"), "shipment")
        for ref in refs:
            if ref.quantity is None:
                raise Problem(f"{ref.where}: the quantity shipped is missing.")
            lot = self._lot(ref)
            if lot is None:
                raise Problem(
                    f"{ref.where}: lot {ref.lot_number} is not known here: a lot is received or "
                    "produced before it is shipped."
                )
            same = Shipment.objects.filter(
                lot=lot, customer=customer, quantity=ref.quantity, shipped_at=self.event.time
            ).exclude(pk__in=self.new_shipments)
            if same.exists():
                self.done.append(f"shipment of lot {lot} to {customer.code} already recorded")
                continue
            shipment = services.shipment_create(
                lot=lot,
                customer=customer,
                quantity=ref.quantity,
                by=self.user,
                reference=reference,
                at=self.event.time,
            )
            self.new_shipments.add(shipment.pk)
            self.report.shipments += 1
            self.done.append(
                f"shipped {_amount(ref.quantity)} {lot.unit} of lot {lot} to {customer.code}"
            )

    # -- transformations --

    def _transformation(self, raw: dict) -> None:
        inputs = self._lot_refs(
            read_quantities(raw, "inputQuantityList"), read_epcs(raw, "inputEPCList")
        )
        outputs, unnumbered = self._outputs(raw)
        both = {ref.lot_number for ref in inputs} & {ref.lot_number for ref in outputs}
        if both:
            raise Problem(
                f"Lot {', '.join(sorted(both))} is both an input and an output of the "
                "transformation."
            )
        batch = self._batch(raw)
        if unnumbered is not None:
            outputs.append(self._lot_ref(unnumbered, self._output_number(raw, batch, unnumbered)))
        for ref in inputs:
            self._consume(batch, ref)
        for ref in outputs:
            self._produce(batch, ref)
        if not inputs and not outputs:
            self.done.append(f"batch {batch} has no lot-level input or output")

    def _batch(self, raw: dict) -> Batch:
        """The batch a transformation reports, named by its transformationID: a batch of this
        site in the importer's scope. An import never creates one."""
        transformation = read_text(raw, "transformationID")
        if not transformation:
            raise Problem(
                "The transformation has no transformationID: it names the batch it reports "
                f"({namespace()}batch/<batch number>); {BATCH_RECORD_FIRST}."
            )
        number = self._own_code(transformation, "batch")
        if not number:
            raise Problem(
                f"transformationID {transformation} is not a batch of this site "
                f"({namespace()}batch/<batch number>); {BATCH_RECORD_FIRST}."
            )
        batch = (
            Batch.objects.for_user(self.user, "change")
            .select_related("product")
            .filter(number=number)
            .first()
        )
        if batch is None:
            raise Problem(f"batch {number} is not known here: {BATCH_RECORD_FIRST}.")
        return batch

    def _outputs(self, raw: dict) -> tuple[list[LotRef], Quantity | None]:
        """The output lots the event names, and the one output without a lot number (a GTIN
        class, or serialised items of one GTIN when no class is given), if any."""
        items = read_quantities(raw, "outputQuantityList")
        epcs = read_epcs(raw, "outputEPCList")
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
                Quantity(
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
            raise Problem(
                f"{len(loose)} outputs have no lot number; name each output lot with an lgtin "
                "(only one output can stand for the batch's output lot)."
            )
        return refs, (loose[0] if loose else None)

    def _output_number(self, raw: dict, batch: Batch, item: Quantity) -> str:
        """The lot number of an output the event does not number: the ILMD lot number, else the
        batch's recorded output lot of that material, else the batch number."""
        number = self._ilmd_lot(raw)
        if number:
            return number
        material = self._material(item.ident, item.where)
        made = list(
            Lot.objects.filter(produced_by=batch, material=material).values_list(
                "lot_number", flat=True
            )[:2]
        )
        return made[0] if len(made) == 1 else batch.number

    def _ilmd_lot(self, raw: dict) -> str:
        ilmd = raw.get("ilmd")
        if ilmd is None:
            return ""
        if not isinstance(ilmd, dict):
            raise Problem("ilmd must be an object.")
        for key in ILMD_LOT_KEYS:
            if isinstance(ilmd.get(key), str) and ilmd[key].strip():
                return ilmd[key].strip()
        return ""

    def _consume(self, batch: Batch, ref: LotRef) -> None:
        if ref.quantity is None:
            raise Problem(f"{ref.where}: the quantity consumed is missing.")
        lot = self._lot(ref)
        if lot is None:
            raise Problem(
                f"{ref.where}: lot {ref.lot_number} is not known here: an input lot is received "
                "or made here, and released, before a batch consumes it."
            )
        if lot.produced_by_id == batch.pk:
            raise Problem(f"Lot {lot} is an output of batch {batch}: it cannot be its input.")
        recorded = (
            Consumption.objects.filter(batch=batch, lot=lot)
            .exclude(pk__in=self.new_consumptions)
            .aggregate(total=Sum("quantity"))["total"]
        )
        if recorded is not None:
            self.done.append(f"consumption of lot {lot} by batch {batch} already recorded")
            if recorded != ref.quantity:
                self._issue(
                    self.report.notes,
                    f"{ref.where}: batch {batch} recorded {_amount(recorded)} {lot.unit} of lot "
                    f"{lot}; the event reports {_amount(ref.quantity)} {lot.unit}: the batch "
                    "record stands.",
                )
            return
        consumption = services.batch_consume(
            batch=batch, lot=lot, quantity=ref.quantity, by=self.user, at=self.event.time
        )
        self.new_consumptions.add(consumption.pk)
        self.report.consumptions += 1
        self.done.append(f"batch {batch} consumed {_amount(ref.quantity)} {lot.unit} of {lot}")

    def _produce(self, batch: Batch, ref: LotRef) -> None:
        if ref.quantity is None:
            raise Problem(f"{ref.where}: the quantity produced is missing.")
        lot = self._lot(ref)
        if lot is not None:
            if lot.produced_by_id == batch.pk:
                self.done.append(f"output lot {lot} of batch {batch} already recorded")
                return
            origin = f"made by batch {lot.produced_by}" if lot.produced_by_id else "received"
            raise Problem(
                f"Lot {lot} already exists ({origin}): it cannot be an output of batch {batch}."
            )
        self._free_lot_number(ref)
        if batch.status != Batch.Status.IN_PROGRESS:
            raise Problem(
                f"Batch {batch} is {batch.get_status_display().lower()}: lot {ref.lot_number} "
                "cannot be recorded as its output; a batch in progress is completed once, with "
                "its output lot."
            )
        services.batch_complete(
            batch=batch,
            output_lot_number=ref.lot_number,
            quantity=ref.quantity,
            by=self.user,
            at=self.event.time,
            material=ref.material,
        )
        self.report.lots_created.append(ref.lot_number)
        self.report.batches.append(batch.number)
        self.done.append(
            f"batch {batch} completed with output lot {ref.lot_number}: "
            f"{_amount(ref.quantity)} {ref.material.unit} of {ref.material.code}, in quarantine"
        )


def epcis_import(*, document, user) -> ImportReport:
    """Import an EPCIS 2.0 document's genealogy through the services: receipts from known
    suppliers are received (`lot_receive`), shipments to known customers are shipped
    (`shipment_create`), transformations report a batch in progress of the batch record, whose
    released inputs are consumed (`batch_consume`) and which is completed with its output lot
    (`batch_complete`). Events retracted by an error declaration are not counted. All or
    nothing: an event that cannot be mapped or that a service refuses leaves the database as it
    was, and the report says which, by its position in eventList."""
    change_ids = sponsor_ids_for(user, "change")
    if not change_ids:
        name = getattr(user, "username", "") or "An anonymous user"
        raise RuleViolation(
            EpcisError.NOT_PERMITTED,
            f"{name} may not import EPCIS events: importing needs the change permission on a "
            "sponsor.",
        )
    report = ImportReport()
    raw_events = event_list(document, report)
    if report.errors:
        return report
    report.events = len(raw_events)
    events = [event for i, raw in enumerate(raw_events) if (event := prepare(i, raw, report))]
    declared = {event.event_id for event in events if "errorDeclaration" in event.raw}
    declared.discard("")
    live = []
    for event in events:
        if "errorDeclaration" in event.raw or event.event_id in declared:
            report.retracted.append(event.index)
            report.skipped.append(Issue(event.index, event.event_id, retraction(event)))
        else:
            live.append(event)
    reason = f"EPCIS import of document {document_name(document)}"
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
