"""GS1 EPCIS 2.0 import and export of genealogy, tested on GS1's own example files and schema
(../shared/external/epcis/, see SOURCES.md there). An import maps events onto the services of
the manufacturing record, so the records an event refers to (suppliers, customers, batches in
progress, released lots) are set up through those services first."""

import copy
import functools
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
from django.db import transaction
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services
from batches.epcis import (
    IdKind,
    check_digit,
    epcis_export,
    epcis_import,
    lot_identifier,
    namespace,
    parse_identifier,
)
from batches.models import Batch, Consumption, Customer, Lot, Material, Shipment
from batches.selectors import recall_scope_forward, recall_trace_backward
from qms.audit import history_for
from qms.errors import RuleViolation
from qms.models import AuditEvent
from sponsors.models import Role
from suppliers.models import Supplier
from tests.factories import PASSWORD, make_user
from tests.querycount import count_queries

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = Path(os.environ.get("QMS_EXTERNAL_DIR", ROOT.parent / "shared" / "external"))
EPCIS_DIR = EXTERNAL / "epcis"
EXAMPLES = EPCIS_DIR / "examples"
SCHEMA = EPCIS_DIR / "schema" / "EPCIS-JSON-Schema.json"


def needs(path: Path, what: str):
    """Skip a test whose shared fixture file or folder is absent, except under CI=true, where the
    fixtures must be present and their absence fails the test."""

    def decorate(test):
        if path.exists():
            return test
        reason = f"{what} {path} is absent"
        if os.environ.get("CI") != "true":
            return pytest.mark.skip(reason=reason)(test)

        @functools.wraps(test)
        def absent(*args, **kwargs):
            pytest.fail(f"{reason}; CI=true requires it (set QMS_EXTERNAL_DIR to the folder)")

        return absent

    return decorate


needs_files = needs(EPCIS_DIR, "GS1 EPCIS example folder")

# The trade items named in the example files: (code, kind, unit, GTIN-14, where it is named).
GS1_ITEMS = [
    ("GS1-012345", "raw", "kg", "04012345123456", "urn:epc:class:lgtin:4012345.012345.998877"),
    (
        "GS1-DL-1234",
        "raw",
        "kg",
        "70614141123451",
        "https://id.gs1.org/01/70614141123451/10/998877",
    ),
    (
        "GS1-011111",
        "intermediate",
        "kg",
        "04012345111118",
        "urn:epc:class:lgtin:4012345.011111.4444",
    ),
    ("GS1-077777", "raw", "ea", "00614141777778", "urn:epc:class:lgtin:0614141.077777.987"),
    ("GS1-077889", "finished", "ea", "04012345778892", "urn:epc:id:sgtin:4012345.077889.25"),
    ("GS1-022222", "raw", "kg", "04012345222227", "urn:epc:class:lgtin:4012345.022222.87545GHGH"),
    ("GS1-044444", "finished", "kg", "04012345444445", "urn:epc:idpat:sgtin:4012345.044444.*"),
]


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def document(events: list) -> dict:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-01-01T00:00:00Z",
        "epcisBody": {"eventList": events},
    }


def without_declaration(name: str) -> dict:
    data = example(name)
    for event in data["epcisBody"]["eventList"]:
        event.pop("errorDeclaration", None)
    return data


@pytest.fixture
def gs1(plant):
    """The plant, with a material for each trade item the GS1 examples name and, as an approved
    supplier, the possessing party of the receipts in Example 9.6.2 (sgln 4012345.00001.0)."""
    for code, kind, unit, gtin, _ in GS1_ITEMS:
        product = plant.product_a if kind in Material.SPONSOR_KINDS else None
        Material.objects.create(
            code=code, name=f"GS1 example {code}", kind=kind, unit=unit, gtin=gtin, product=product
        )
    plant.gs1_supplier = Supplier.objects.create(
        code="SUP-GS1", name="GS1 example supplier", gln="4012345000016", status="approved"
    )
    return plant


def now() -> str:
    return timezone.now().isoformat()


def gln(party: str) -> str:
    """The GLN of a pgln/sgln's company prefix and location reference, e.g. 4012345.00225."""
    body = party.replace(".", "")
    return body + check_digit(body)


def with_bom(plant, *materials, product=None) -> None:
    plant.with_bom(*materials, product=product)


def in_progress(plant, number: str, *, steps: bool = True, product=None) -> Batch:
    """A batch of the batch record: planned, started under its MBR and, with `steps`, every
    step recorded and verified by a second person."""
    batch = services.batch_plan(
        product=product or plant.product_a, number=number, by=plant.operator
    )
    services.batch_start(batch=batch, by=plant.operator)
    if steps:
        for step in batch.mbr.steps.all():
            executed = services.batch_record_step(
                batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
            )
            services.batch_verify_step(
                executed=executed, verified_by=plant.verifier, password=PASSWORD
            )
    batch.refresh_from_db()
    return batch


def received(plant, material, lot_number: str, quantity: str, supplier=None) -> Lot:
    """A received lot, released by its disposition."""
    lot = services.lot_receive(
        material=material,
        lot_number=lot_number,
        quantity=quantity,
        supplier=supplier or plant.supplier,
        by=plant.operator,
    )
    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)
    lot.refresh_from_db()
    return lot


def made(plant, material, lot_number: str, quantity: str) -> Lot:
    """A lot made here by a batch of the batch record, released through its disposition."""
    batch = in_progress(plant, plant.next("B"), product=material.product)
    lot = services.batch_complete(
        batch=batch,
        output_lot_number=lot_number,
        quantity=quantity,
        by=plant.operator,
        material=material,
    )
    plant.release(batch)
    lot.refresh_from_db()
    return lot


def reporting(data: dict, number: str) -> dict:
    """A copy of an example document whose events report batch `number` of this site, now."""
    data = copy.deepcopy(data)
    for event in data["epcisBody"]["eventList"]:
        event["transformationID"] = f"{namespace()}batch/{number}"
        event["eventTime"] = now()
    return data


def schema_errors(data: dict) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data))


# --- identifiers ----------------------------------------------------------------------------


@needs_files
@pytest.mark.parametrize(("code", "kind", "unit", "gtin", "uri"), GS1_ITEMS)
def test_example_identifiers_resolve_to_gtin(code, kind, unit, gtin, uri):
    named = [path.read_text(encoding="utf-8") for path in EXAMPLES.glob("*.jsonld")]
    assert any(uri in text for text in named)
    assert parse_identifier(uri).gtin == gtin


@needs_files
def test_digital_link_and_lgtin_in_the_examples_name_the_same_lot():
    urn = example("Example_9.6.4-TransformationEvent.jsonld")["epcisBody"]["eventList"][0]
    link = example("Example_9.6.4-TransformationEventWithDigitalLink.jsonld")
    link = link["epcisBody"]["eventList"][0]
    pairs = list(zip(urn["inputQuantityList"], link["inputQuantityList"], strict=True))
    assert pairs[1][1]["epcClass"].startswith("https://id.gs1.org/01/")
    for ours, theirs in pairs:
        a, b = parse_identifier(ours["epcClass"]), parse_identifier(theirs["epcClass"])
        assert (a.gtin, a.lot) == (b.gtin, b.lot)
        assert ours["quantity"] == theirs["quantity"]
    assert parse_identifier(pairs[1][1]["epcClass"]).lot == "987"
    assert parse_identifier(pairs[2][1]["epcClass"]).kind == IdKind.CLASS


def test_malformed_identifiers_are_refused():
    for uri in (
        "urn:epc:class:lgtin:4012345.01234.1",
        "urn:epc:class:lgtin:4012345.012345",
        "https://id.gs1.org/01/70614141123452/10/998877",
    ):
        with pytest.raises(ValueError):
            parse_identifier(uri)


# --- importing the example files ------------------------------------------------------------

NO_BATCH = "The transformation has no transformationID: it names the batch it reports"

# file → (events, retracted indexes, lots received, the refusal (index, start of its detail) or
# None). A transformation names no batch of this site and an aggregation receipt names no
# supplier: both are refused whole, with the event's position.
EXPECTED = {
    "ErrorDeclarationAndCorrectiveEvent.jsonld": (2, [0], set(), (1, NO_BATCH)),
    "Example_9.6.1-ObjectEvent.jsonld": (2, [], set(), None),
    "Example_9.6.2-ObjectEvent.jsonld": (1, [], {"998877"}, None),
    "Example_9.6.2-ObjectEventWithDigitalLink.jsonld": (1, [], {"998877"}, None),
    "Example_9.6.3-AggregationEvent.jsonld": (1, [], set(), (0, "A receipt names its supplier")),
    "Example_9.6.4-TransformationEvent.jsonld": (1, [], set(), (0, NO_BATCH)),
    "Example_9.6.4-TransformationEventWithDigitalLink.jsonld": (1, [], set(), (0, NO_BATCH)),
    "object_event_all_possible_fields.jsonld": (1, [0], set(), None),
    "transaction_event_all_possible_fields.jsonld": (1, [0], set(), None),
    "transformation_event_all_possible_fields.jsonld": (1, [0], set(), None),
}


@needs_files
def test_every_example_file_with_events_is_imported_by_a_test():
    with_events = {
        path.name
        for path in EXAMPLES.glob("*.jsonld")
        if json.loads(path.read_text(encoding="utf-8"))["epcisBody"]["eventList"]
    }
    assert with_events == set(EXPECTED)


@needs_files
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_import_example_file(gs1, name):
    events, retracted, lots, refusal = EXPECTED[name]
    customers = Customer.objects.count()

    report = epcis_import(document=example(name), user=gs1.qa)

    assert report.events == events
    assert report.retracted == retracted
    if refusal is None:
        assert report.ok, [str(error) for error in report.errors]
        assert report.committed
        assert set(report.lots_created) == lots
        assert Lot.objects.count() == len(lots)
    else:
        index, detail = refusal
        [error] = report.errors
        assert error.index == index and error.detail.startswith(detail)
        assert str(error).startswith(f"eventList[{index}] (")
        assert not report.committed and report.lots_created == []
        assert not Lot.objects.exists()
    assert report.batches == [] and report.shipments == 0
    assert not Batch.objects.exists() and not Shipment.objects.exists()
    assert Customer.objects.count() == customers


@needs_files
def test_receiving_event_creates_received_lot_from_known_supplier(gs1):
    # given: the supplier named as possessing party (sgln 4012345.00001.0), approved
    # when
    report = epcis_import(document=example("Example_9.6.2-ObjectEvent.jsonld"), user=gs1.qa)
    # then
    assert report.ok
    lot = Lot.objects.get(lot_number="998877")
    assert (lot.material.code, lot.quantity, lot.unit) == ("GS1-012345", Decimal("200"), "kg")
    assert lot.supplier == gs1.gs1_supplier
    assert lot.produced_by is None and lot.status == Lot.Status.QUARANTINE
    assert lot.received_at == datetime.fromisoformat("2013-06-08T14:58:56.591+00:00")
    event = history_for(lot).first()
    assert event.actor_username == gs1.qa.username
    assert event.reason == "EPCIS import of document https://id.example.org/document1"


@needs_files
def test_aggregation_receipt_reuses_the_lot_already_received(gs1):
    epcis_import(document=example("Example_9.6.2-ObjectEvent.jsonld"), user=gs1.qa)

    report = epcis_import(document=example("Example_9.6.3-AggregationEvent.jsonld"), user=gs1.qa)

    assert report.ok
    assert report.lots_created == [] and report.lots_reused == ["998877"]
    assert Lot.objects.get(lot_number="998877").quantity == Decimal("200")
    assert "3 identifier(s) without a lot number" in report.notes[0].detail


@needs_files
def test_same_lot_number_of_another_gtin_is_reported_and_nothing_imported(gs1):
    epcis_import(document=example("Example_9.6.2-ObjectEvent.jsonld"), user=gs1.qa)
    linked = example("Example_9.6.2-ObjectEventWithDigitalLink.jsonld")

    report = epcis_import(document=linked, user=gs1.qa)

    assert not report.ok and not report.committed
    [error] = report.errors
    assert error.index == 0
    assert error.event_id == linked["epcisBody"]["eventList"][0]["eventID"]
    assert error.detail == (
        "quantityList[0]: lot 998877 is a lot of GS1-012345, not of GS1-DL-1234 "
        "(https://id.gs1.org/01/70614141123451/10/998877)."
    )
    assert Lot.objects.filter(material__code="GS1-DL-1234").count() == 0


@needs_files
def test_example_transformation_naming_a_batch_in_progress_consumes_and_completes_it(gs1):
    # given: lot 4444 of the intermediate made and released here, lot 987 received and
    # released, and two batches in progress with every step recorded and verified
    intermediate = Material.objects.get(code="GS1-011111")
    with_bom(gs1, intermediate, Material.objects.get(code="GS1-077777"))
    made(gs1, intermediate, "4444", "100")
    received(gs1, Material.objects.get(code="GS1-077777"), "987", "100", gs1.gs1_supplier)
    first, second = in_progress(gs1, "EX-DL"), in_progress(gs1, "EX-URN")
    # when: the event with Digital Link inputs, then the same event with lgtin inputs
    linked = epcis_import(
        document=reporting(
            example("Example_9.6.4-TransformationEventWithDigitalLink.jsonld"), "EX-DL"
        ),
        user=gs1.qa,
    )
    urn = epcis_import(
        document=reporting(example("Example_9.6.4-TransformationEvent.jsonld"), "EX-URN"),
        user=gs1.qa,
    )
    # then: one lot 987, consumed by both batches; each completed with its output lot, numbered
    # after the batch (the outputs are four serialised items of GTIN 04012345778892)
    assert linked.ok and urn.ok, [str(e) for e in linked.errors + urn.errors]
    assert (linked.batches, urn.batches) == (["EX-DL"], ["EX-URN"])
    assert (linked.lots_created, urn.lots_created) == (["EX-DL"], ["EX-URN"])
    assert linked.consumptions == urn.consumptions == 2
    lot = Lot.objects.get(lot_number="987")
    assert set(lot.consumptions.values_list("batch__number", flat=True)) == {"EX-DL", "EX-URN"}
    assert lot.consumptions.aggregate(total=Sum("quantity"))["total"] == Decimal("60")
    for batch in (first, second):
        batch.refresh_from_db()
        assert batch.status == Batch.Status.COMPLETED and batch.actual_yield == Decimal("4")
        consumed = dict(batch.consumptions.values_list("lot__lot_number", "quantity"))
        assert consumed == {"4444": Decimal("10"), "987": Decimal("30")}
        [output] = batch.output_lots.all()
        assert (output.lot_number, output.material.code, output.quantity) == (
            batch.number,
            "GS1-077889",
            Decimal("4"),
        )
        assert output.status == Lot.Status.QUARANTINE
    assert [note.detail for note in urn.notes] == [
        "3 identifier(s) without a lot number (serialised items or classes) ignored: genealogy "
        "is kept by lot."
    ]
    trace = recall_trace_backward(lot=Lot.objects.get(lot_number="EX-URN"), user=gs1.qa)
    assert {"4444", "987", "EX-URN"} <= {item.lot_number for item in trace.lots}


@needs_files
def test_retracted_event_is_not_counted_in_genealogy_or_yield(gs1):
    # given: the raw lot received and released, the batch both events report in progress
    material = Material.objects.get(code="GS1-022222")
    with_bom(gs1, material)
    raw = received(gs1, material, "87545GHGH", "600", gs1.gs1_supplier)
    batch = in_progress(gs1, "EX-CORR")
    data = reporting(example("ErrorDeclarationAndCorrectiveEvent.jsonld"), "EX-CORR")
    retracted, corrective = data["epcisBody"]["eventList"]
    # when
    report = epcis_import(document=data, user=gs1.qa)
    # then
    assert report.ok and report.retracted == [0], [str(e) for e in report.errors]
    [skipped] = report.skipped
    assert skipped.event_id == retracted["eventID"]
    assert skipped.detail == (
        f"retracted by an error declaration (incorrect_data); corrected by "
        f"{corrective['eventID']}: not counted in genealogy."
    )
    assert raw.consumptions.aggregate(total=Sum("quantity"))["total"] == Decimal("500")
    batch.refresh_from_db()
    assert batch.actual_yield == Decimal("500")
    [output] = batch.output_lots.all()
    assert (output.material.code, output.quantity) == ("GS1-044444", Decimal("500"))
    scope = recall_scope_forward(lot=raw, user=gs1.qa)
    assert [b.number for b in scope.batches] == [batch.number]


@needs_files
def test_error_declaration_in_a_copy_retracts_the_event_with_the_same_id(gs1):
    data = example("Example_9.6.2-ObjectEvent.jsonld")
    event = data["epcisBody"]["eventList"][0]
    declared = copy.deepcopy(event)
    declared["errorDeclaration"] = {"declarationTime": "2014-01-01T00:00:00Z"}
    data["epcisBody"]["eventList"].append(declared)

    report = epcis_import(document=data, user=gs1.qa)

    assert report.ok and report.retracted == [0, 1]
    assert not Lot.objects.exists()


@needs_files
def test_all_possible_fields_object_event_from_an_unknown_source_is_refused_naming_it(gs1):
    data = without_declaration("object_event_all_possible_fields.jsonld")

    report = epcis_import(document=data, user=gs1.qa)

    [error] = report.errors
    assert (error.index, error.event_id) == (0, data["epcisBody"]["eventList"][0]["eventID"])
    assert error.detail == (
        "Source urn:epc:id:pgln:4012345.00225 is not on the supplier list (by GLN or supplier "
        "code): a lot is received only from a known, approved supplier."
    )
    assert not Lot.objects.exists()


@needs_files
def test_all_possible_fields_object_event_from_a_known_supplier_is_a_receipt(gs1):
    supplier = Supplier.objects.create(
        code="SUP-225", name="Owning party", gln=gln("4012345.00225"), status="approved"
    )

    report = epcis_import(
        document=without_declaration("object_event_all_possible_fields.jsonld"), user=gs1.qa
    )

    assert report.ok and report.lots_created == ["998877"]
    lot = Lot.objects.get(lot_number="998877")
    assert (lot.quantity, lot.supplier, lot.status) == (
        Decimal("200"),
        supplier,
        Lot.Status.QUARANTINE,
    )
    assert lot.receipt_reference == "urn:epc:id:gdti:0614141.00001.1618034"


@needs_files
def test_all_possible_fields_transaction_event_to_an_unknown_customer_is_refused(gs1):
    made(gs1, Material.objects.get(code="GS1-011111"), "4444", "50")
    customers = Customer.objects.count()
    data = without_declaration("transaction_event_all_possible_fields.jsonld")

    report = epcis_import(document=data, user=gs1.qa)

    [error] = report.errors
    assert error.index == 0
    assert error.detail == (
        "Destination urn:epc:id:pgln:0614141.00777 is not a customer known here (by GLN or "
        "customer code): a customer is recorded before goods are shipped to it."
    )
    assert Customer.objects.count() == customers and not Shipment.objects.exists()


@needs_files
def test_all_possible_fields_transaction_event_ships_to_the_customer_by_its_gln(gs1):
    # given: lot 4444 of the intermediate made and released here; the owning party of the
    # destination (pgln 0614141.00777) a customer; the example's event time moved to after the
    # release (a lot is never shipped before it is released)
    made(gs1, Material.objects.get(code="GS1-011111"), "4444", "50")
    customer = Customer.objects.create(
        code="CUST-777", name="GS1 example customer", gln=gln("0614141.00777")
    )
    # when
    data = without_declaration("transaction_event_all_possible_fields.jsonld")
    shipped_at = timezone.now().replace(microsecond=0)
    data["epcisBody"]["eventList"][0]["eventTime"] = shipped_at.isoformat()
    report = epcis_import(document=data, user=gs1.qa)
    # then
    assert report.ok and report.shipments == 1, [str(e) for e in report.errors]
    shipment = Shipment.objects.get()
    assert (shipment.lot.lot_number, shipment.quantity) == ("4444", Decimal("10"))
    assert shipment.customer == customer
    assert shipment.reference == "urn:epc:id:gdti:0614141.00001.1618034"
    assert shipment.sponsor == gs1.sponsor_a
    assert shipment.shipped_at == shipped_at
    assert shipment.recorded_by == gs1.qa


@needs_files
def test_all_possible_fields_transformation_without_declaration_is_refused_outputs_repeat_inputs(
    gs1,
):
    data = without_declaration("transformation_event_all_possible_fields.jsonld")

    report = epcis_import(document=data, user=gs1.qa)

    [error] = report.errors
    assert error.index == 0
    assert error.event_id == data["epcisBody"]["eventList"][0]["eventID"]
    assert error.detail == "Lot 4444, 987 is both an input and an output of the transformation."
    assert not Lot.objects.exists() and not Batch.objects.exists()


# --- refusals -------------------------------------------------------------------------------


@needs_files
def test_unknown_and_malformed_events_reported_with_position_and_nothing_imported(gs1):
    # given: one good receipt, then events that cannot be imported
    good = example("Example_9.6.2-ObjectEvent.jsonld")["epcisBody"]["eventList"][0]
    unknown = copy.deepcopy(good) | {"eventID": "urn:uuid:00000000-0000-4000-8000-000000000001"}
    unknown["quantityList"] = [
        {"epcClass": "urn:epc:class:lgtin:4099999.012345.L1", "quantity": 5, "uom": "KGM"}
    ]
    text = copy.deepcopy(good) | {"eventID": "urn:uuid:00000000-0000-4000-8000-000000000002"}
    text["quantityList"][0]["quantity"] = "ten"
    timeless = copy.deepcopy(good) | {"eventID": "urn:uuid:00000000-0000-4000-8000-000000000003"}
    del timeless["eventTime"]
    foreign = {"type": "FooEvent", "eventTime": "2020-01-01T00:00:00Z"}
    private = copy.deepcopy(good)
    private["quantityList"] = [{"epcClass": "urn:example:lot:7", "quantity": 1}]
    audit_before = AuditEvent.objects.count()
    # when
    report = epcis_import(
        document=document([good, unknown, text, timeless, foreign, "not an event", private]),
        user=gs1.qa,
    )
    # then
    assert not report.ok and not report.committed
    assert [(e.index, e.event_id) for e in report.errors] == [
        (1, "urn:uuid:00000000-0000-4000-8000-000000000001"),
        (2, "urn:uuid:00000000-0000-4000-8000-000000000002"),
        (3, "urn:uuid:00000000-0000-4000-8000-000000000003"),
        (4, ""),
        (5, ""),
        (6, good["eventID"]),
    ]
    details = [e.detail for e in report.errors]
    assert details[0] == (
        "quantityList[0]: urn:epc:class:lgtin:4099999.012345.L1: no material in your scope has "
        "GTIN 04099999123452; set the GTIN on the material first."
    )
    assert details[1] == 'quantityList[0]: the quantity must be a number, not "ten".'
    assert details[2] == "eventTime None is not a date and time with a UTC offset."
    assert details[3].startswith("Unknown event type 'FooEvent'")
    assert details[4] == "An event must be a JSON object."
    assert details[5].startswith("quantityList[0]: urn:example:lot:7 is not a lot identifier")
    assert report.lots_created == [] and report.imported == []
    assert not Lot.objects.exists()
    assert AuditEvent.objects.count() == audit_before


def test_document_that_is_not_epcis_is_reported(plant):
    for body, detail in (
        ([], "The body is not an EPCIS document (a JSON object)."),
        ({"type": "Foo"}, "type is 'Foo': an EPCISDocument or EPCISQueryDocument is expected."),
        ({"type": "EPCISDocument", "schemaVersion": "2.0"}, "epcisBody has no eventList."),
    ):
        report = epcis_import(document=body, user=plant.qa)
        assert [(e.index, e.detail) for e in report.errors] == [(None, detail)]


def test_output_of_a_site_material_is_refused_by_the_batch_record(plant):
    # given: a batch in progress; its input released
    raw = received(plant, plant.api, "IN-1", "10")
    batch = in_progress(plant, "B-SITE")
    event = {
        "type": "TransformationEvent",
        "eventID": "urn:uuid:00000000-0000-4000-8000-0000000000aa",
        "eventTime": now(),
        "eventTimeZoneOffset": "+00:00",
        "transformationID": f"{namespace()}batch/B-SITE",
        "inputQuantityList": [
            {"epcClass": f"{namespace()}lot/RM-API/IN-1", "quantity": 5, "uom": "KGM"}
        ],
        "outputQuantityList": [
            {"epcClass": f"{namespace()}lot/RM-EXC/OUT-1", "quantity": 5, "uom": "KGM"}
        ],
    }
    # when
    report = epcis_import(document=document([event]), user=plant.qa)
    # then: batch_complete refuses; the consumption before it is undone with the event
    [error] = report.errors
    assert (error.index, error.event_id) == (0, event["eventID"])
    assert error.detail == (
        f"Batch B-SITE cannot make a lot of {plant.excipient}: it is not an intermediate or "
        "finished material of ALP-100."
    )
    assert not Lot.objects.filter(lot_number="OUT-1").exists()
    assert not raw.consumptions.exists()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.IN_PROGRESS


def test_import_refused_without_change_permission(plant, auditor_a):
    with pytest.raises(RuleViolation) as refused:
        epcis_import(document=document([]), user=auditor_a)
    assert refused.value.code == "not_permitted"
    assert str(refused.value) == (
        "auditor-a may not import EPCIS events: importing needs the change permission on a sponsor."
    )


@needs_files
def test_import_into_a_sponsor_outside_change_scope_is_refused(gs1):
    other_staff = make_user(sponsor=gs1.sponsor_b, role=Role.CMO_STAFF, username="b-staff")

    report = epcis_import(
        document=example("Example_9.6.4-TransformationEvent.jsonld"), user=other_staff
    )

    [error] = report.errors
    assert error.detail.startswith(
        "inputQuantityList[0]: urn:epc:class:lgtin:4012345.011111.4444: no material in your "
        "scope has GTIN 04012345111118"
    )
    assert not Lot.objects.exists()


# --- export ---------------------------------------------------------------------------------


def _gtins(plant):
    for material, gtin in (
        (plant.api, "04012345123456"),
        (plant.excipient, "04012345222227"),
        (plant.finished_a, "04012345778892"),
        (plant.finished_b, "04012345444445"),
    ):
        material.gtin = gtin
        material.save()
    plant.supplier.gln = "4012345000016"
    plant.supplier.save()
    plant.customers[0].gln = "0614141007776"
    plant.customers[0].save()


def _genealogy(plant) -> SimpleNamespace:
    """raw, excipient → B1 (A) → L1 → B2 (A) → L2 → two customers; raw → batch of B → LB."""
    raw, excipient = plant.receive(plant.api), plant.receive(plant.excipient)
    b1, l1 = plant.run_batch(plant.product_a, [(raw, "5"), (excipient, "5")])
    with_bom(plant, plant.finished_a)
    b2, l2 = plant.run_batch(plant.product_a, [(l1, "4")], output_quantity="8")
    bb, lb = plant.run_batch(plant.product_b, [(raw, "5")])
    services.shipment_create(
        lot=l2, customer=plant.customers[0], quantity="3", by=plant.operator, reference="DN-1"
    )
    services.shipment_create(lot=l2, customer=plant.customers[1], quantity="2", by=plant.operator)
    return SimpleNamespace(raw=raw, excipient=excipient, b1=b1, l1=l1, b2=b2, l2=l2, lb=lb)


def _signature(lot_number: str, user) -> dict:
    """A lot's genealogy as comparable values: lots, batches, edges and shipments."""
    lot = Lot.objects.get(lot_number=lot_number)
    back = recall_trace_backward(lot=lot, user=user)
    forward = recall_scope_forward(lot=lot, user=user)
    lots = {item.pk: item for item in [*back.lots, *forward.lots]}
    batches = {b.pk: b for b in [*back.batches, *forward.batches]}
    edges = (
        Consumption.objects.filter(batch__in=list(batches), lot__in=list(lots))
        .values_list("lot__lot_number", "batch__number")
        .annotate(total=Sum("quantity"))
    )
    return {
        "lots": {
            (
                item.lot_number,
                item.material.code,
                item.quantity,
                item.unit,
                item.produced_by.number if item.produced_by_id else None,
                item.supplier.code if item.supplier_id else None,
                item.receipt_reference,
                item.received_at,
            )
            for item in lots.values()
        },
        "batches": {(b.number, b.product.code) for b in batches.values()},
        "edges": set(edges),
        "shipments": {
            (s.lot.lot_number, s.customer.code, s.quantity, s.shipped_at, s.reference)
            for s in forward.shipments
        },
    }


def _events(data: dict, kind: str, step: str | None = None) -> list[dict]:
    return [
        event
        for event in data["epcisBody"]["eventList"]
        if event["type"] == kind and (step is None or event.get("bizStep") == step)
    ]


@needs(SCHEMA, "GS1 EPCIS JSON schema")
def test_export_is_valid_epcis_2_with_lgtin_identifiers(plant):
    # given
    _gtins(plant)
    g = _genealogy(plant)
    raw_id = f"urn:epc:class:lgtin:4012345.012345.{g.raw.lot_number}"
    # when
    data = epcis_export(lot=g.l1, user=plant.qa)
    # then
    assert schema_errors(data) == []
    receipts = _events(data, "ObjectEvent", "receiving")
    assert {e["quantityList"][0]["epcClass"] for e in receipts} == {
        raw_id,
        f"urn:epc:class:lgtin:4012345.022222.{g.excipient.lot_number}",
    }
    assert receipts[0]["sourceList"] == [
        {"type": "owning_party", "source": "urn:epc:id:pgln:4012345.00001"}
    ]
    assert lot_identifier(g.l1) == f"urn:epc:class:lgtin:4012345.077889.{g.l1.lot_number}"
    first, second = _events(data, "TransformationEvent")
    assert first["transformationID"] == f"{namespace()}batch/{g.b1.number}"
    assert {"epcClass": raw_id, "quantity": 5, "uom": "KGM"} in first["inputQuantityList"]
    assert first["outputQuantityList"] == [{"epcClass": lot_identifier(g.l1), "quantity": 10}]
    assert second["inputQuantityList"] == [{"epcClass": lot_identifier(g.l1), "quantity": 4}]
    assert second["outputQuantityList"] == [{"epcClass": lot_identifier(g.l2), "quantity": 8}]
    shipments = _events(data, "ObjectEvent", "shipping")
    assert sorted(e["destinationList"][0]["destination"] for e in shipments) == [
        f"{namespace()}customer/CUST-2",
        "urn:epc:id:pgln:0614141.00777",
    ]
    assert [e["quantityList"][0]["quantity"] for e in shipments] == [3, 2]
    assert len(data["epcisBody"]["eventList"]) == 6


def test_sponsor_user_export_holds_nothing_of_other_sponsors(plant, auditor_a):
    _gtins(plant)
    g = _genealogy(plant)

    data = epcis_export(lot=g.raw, user=auditor_a)

    text = json.dumps(data)
    assert g.lb.lot_number not in text and "ZZOTHER" not in text
    assert "4012345.044444" not in text
    assert g.l1.lot_number in text and g.l2.lot_number in text
    assert len(_events(data, "TransformationEvent")) == 2
    cmo = epcis_export(lot=g.raw, user=plant.qa)
    assert g.lb.lot_number in json.dumps(cmo)
    assert len(_events(cmo, "TransformationEvent")) == 3


def test_export_into_a_site_without_its_batch_record_is_refused_at_each_batch(plant):
    # given: the plant's master data; a genealogy recorded, exported, then undone
    _gtins(plant)
    undo = transaction.savepoint()
    g = _genealogy(plant)
    exported = json.loads(json.dumps(epcis_export(lot=g.l1, user=plant.qa)))
    transaction.savepoint_rollback(undo)
    assert not Lot.objects.exists() and not Batch.objects.exists()
    events = exported["epcisBody"]["eventList"]
    # when
    report = epcis_import(document=exported, user=plant.qa)
    # then: each transformation names a batch that is not known here, each shipment a lot that
    # is not; nothing is imported, not even the receipts
    assert not report.committed
    batches = {
        n: e["transformationID"].rsplit("/", 1)[-1]
        for n, e in enumerate(events)
        if e["type"] == "TransformationEvent"
    }
    assert {g.b1.number, g.b2.number} == set(batches.values())
    shipments = [n for n, e in enumerate(events) if e.get("bizStep") == "shipping"]
    assert [e.index for e in report.errors] == sorted([*batches, *shipments])
    for error in report.errors:
        if error.index in batches:
            assert error.detail == (
                f"batch {batches[error.index]} is not known here: a batch is planned and "
                "executed in the batch record before its genealogy is reported."
            )
        else:
            assert error.detail.endswith(
                f"lot {g.l2.lot_number} is not known here: a lot is received or produced "
                "before it is shipped."
            )
    assert not Lot.objects.exists() and not Batch.objects.exists()


def test_importing_an_export_again_changes_nothing(plant):
    _gtins(plant)
    l1 = _genealogy(plant).l1
    exported = json.loads(json.dumps(epcis_export(lot=l1, user=plant.qa)))
    before = _signature(l1.lot_number, plant.qa)
    counts = (Lot.objects.count(), Consumption.objects.count(), Shipment.objects.count())

    report = epcis_import(document=exported, user=plant.qa)

    assert report.ok and report.lots_created == [] and report.batches == []
    assert report.consumptions == 0 and report.shipments == 0
    assert (Lot.objects.count(), Consumption.objects.count(), Shipment.objects.count()) == counts
    assert _signature(l1.lot_number, plant.qa) == before


def test_material_without_gtin_is_exported_with_the_site_lot_uri_and_read_back(plant):
    raw = plant.receive(plant.api)
    _, l1 = plant.run_batch(plant.product_a, [(raw, "5")])
    exported = json.loads(json.dumps(epcis_export(lot=l1, user=plant.qa)))
    before = _signature(l1.lot_number, plant.qa)

    report = epcis_import(document=exported, user=plant.qa)

    assert f"{namespace()}lot/RM-API/{raw.lot_number}" in json.dumps(exported)
    assert report.ok and report.lots_reused == [raw.lot_number]
    assert report.lots_created == [] and report.consumptions == 0
    assert _signature(l1.lot_number, plant.qa) == before


# --- API ------------------------------------------------------------------------------------


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@needs_files
def test_api_import_answers_201_with_the_report(gs1):
    response = _client(gs1.qa).post(
        reverse("api:epcis-import"),
        data=example("Example_9.6.2-ObjectEvent.jsonld"),
        content_type="application/ld+json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["committed"] is True and body["lots_created"] == ["998877"]
    assert body["imported"][0]["index"] == 0


@needs_files
def test_api_import_answers_400_with_positions_and_imports_nothing(gs1):
    data = example("Example_9.6.2-ObjectEvent.jsonld")
    data["epcisBody"]["eventList"].append({"type": "ObjectEvent", "eventID": "urn:uuid:x"})

    response = _client(gs1.qa).post(
        reverse("api:epcis-import"), data=data, content_type="application/json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "epcis_invalid"
    assert body["detail"].startswith("1 problem(s) in 2 event(s); nothing was imported.")
    assert body["errors"] == [
        {
            "index": 1,
            "eventID": "urn:uuid:x",
            "detail": "eventTime None is not a date and time with a UTC offset.",
        }
    ]
    assert not Lot.objects.exists()


def test_api_import_of_a_body_that_is_not_json_is_400(plant):
    response = _client(plant.qa).post(
        reverse("api:epcis-import"), data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_api_import_refused_to_a_sponsor_auditor(plant, auditor_a):
    response = _client(auditor_a).post(
        reverse("api:epcis-import"), data=document([]), content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "permission_denied",
        "detail": "Importing EPCIS documents needs the change permission on a sponsor.",
    }


def test_api_anonymous_is_401(plant):
    client = _client()
    for url in (
        reverse("api:epcis-import") + "?lot=X",
        reverse("api:epcis-export", args=["X"]),
    ):
        assert client.get(url).status_code == 401
    response = client.post(reverse("api:epcis-import"), data={}, content_type="application/json")
    assert response.status_code == 401


def test_api_export_by_query_and_by_route(plant, auditor_a):
    _gtins(plant)
    l1 = _genealogy(plant).l1
    client = _client(auditor_a)

    by_query = client.get(reverse("api:epcis-import"), {"lot": l1.lot_number})
    by_route = client.get(reverse("api:epcis-export", args=[l1.lot_number]))

    assert by_query.status_code == by_route.status_code == 200
    assert by_route["Content-Disposition"] == f'attachment; filename="epcis-{l1.lot_number}.jsonld"'
    assert len(by_query.json()["epcisBody"]["eventList"]) == len(
        by_route.json()["epcisBody"]["eventList"]
    )
    assert by_query.json()["type"] == "EPCISDocument"


def test_api_export_of_another_sponsors_lot_is_404(plant, auditor_a):
    lb = _genealogy(plant).lb
    client = _client(auditor_a)

    for response in (
        client.get(reverse("api:epcis-export", args=[lb.lot_number])),
        client.get(reverse("api:epcis-import"), {"lot": lb.lot_number}),
    ):
        assert response.status_code == 404
        assert "ZZOTHER" not in response.content.decode()


def test_api_export_without_a_lot_is_400(plant):
    response = _client(plant.qa).get(reverse("api:epcis-import"))
    assert response.status_code == 400
    assert response.json()["detail"] == "lot: Name the lot: ?lot=<lot number>."


def _batch_of(plant, tag: str, size: int) -> str:
    """A batch whose output lot descends from `size` received lots and went out in `size`
    shipments; returns the output lot number."""
    inputs = [(plant.receive(plant.api, quantity="10"), "1") for _ in range(size)]
    _, output = plant.run_batch(plant.product_a, inputs, output_quantity="1000")
    for n in range(size):
        customer = Customer.objects.create(code=f"{tag}-C-{n}", name=f"Customer {tag} {n}")
        services.shipment_create(lot=output, customer=customer, quantity="1", by=plant.operator)
    return output.lot_number


def test_api_export_query_count_does_not_grow_with_the_genealogy(plant):
    small, large = _batch_of(plant, "S", 5), _batch_of(plant, "L", 50)
    client = _client(plant.qa)
    counts = []
    for lot_number, size in ((small, 5), (large, 50)):

        def events(response, size=size):
            assert len(response.json()["epcisBody"]["eventList"]) == 2 * size + 1

        url = reverse("api:epcis-export", args=[lot_number])
        counts.append(count_queries(client, url, check=events))
    assert counts[0] == counts[1]
