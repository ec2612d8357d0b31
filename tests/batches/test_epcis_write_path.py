"""One write path: an EPCIS import maps each event onto the service that owns its rules
(`lot_receive`, `shipment_create`, `batch_consume`, `batch_complete`), so every refusal of those
services holds for an import too, reported with the event's position in eventList, and nothing of
the document is written."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services
from batches.epcis import epcis_import, namespace
from batches.models import Batch, Consumption, Customer, Lot, Shipment
from deviations.services import deviation_record
from qms.audit import history_for
from qms.errors import RuleViolation
from sponsors.models import Role
from suppliers.models import Supplier
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def document(events: list) -> dict:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "id": "urn:uuid:11111111-2222-4333-8444-555555555555",
        "creationDate": timezone.now().isoformat(),
        "epcisBody": {"eventList": events},
    }


def own(kind: str, *parts: str) -> str:
    return f"{namespace()}{kind}/" + "/".join(parts)


def _event(kind: str, event_id: str, at=None, **fields) -> dict:
    return {
        "type": kind,
        "eventID": f"urn:uuid:00000000-0000-4000-8000-{event_id:0>12}",
        "eventTime": (at or timezone.now()).isoformat(),
        "eventTimeZoneOffset": "+00:00",
        **fields,
    }


def receiving(event_id: str, lot: str, quantity, source: str, material="RM-API") -> dict:
    element = {"epcClass": own("lot", material, lot), "quantity": quantity}
    if material.startswith("RM-"):
        element["uom"] = "KGM"
    return _event(
        "ObjectEvent",
        event_id,
        action="OBSERVE",
        bizStep="receiving",
        quantityList=[element],
        sourceList=[{"type": "owning_party", "source": source}],
    )


def shipping(event_id: str, lot, quantity, destination: str, at=None) -> dict:
    return _event(
        "ObjectEvent",
        event_id,
        at,
        action="OBSERVE",
        bizStep="shipping",
        quantityList=[
            {"epcClass": own("lot", lot.material.code, lot.lot_number), "quantity": quantity}
        ],
        destinationList=[{"type": "owning_party", "destination": destination}],
    )


def transformation(event_id: str, number: str | None, inputs, outputs, at=None) -> dict:
    """`inputs`: [(lot, quantity)]; `outputs`: [(material code, lot number, quantity)]."""
    fields = {
        "inputQuantityList": [
            {
                "epcClass": own("lot", lot.material.code, lot.lot_number),
                "quantity": quantity,
                "uom": "KGM",
            }
            for lot, quantity in inputs
        ],
        "outputQuantityList": [
            {"epcClass": own("lot", code, lot_number), "quantity": quantity}
            for code, lot_number, quantity in outputs
        ],
    }
    if number is not None:
        fields["transformationID"] = own("batch", number)
    return _event("TransformationEvent", event_id, at, **fields)


def in_progress(plant, number: str, *, steps: bool = True) -> Batch:
    """Planned and started under its MBR; with `steps`, every step recorded and verified."""
    batch = services.batch_plan(product=plant.product_a, number=number, by=plant.operator)
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


def counts() -> tuple[int, ...]:
    return (
        Lot.objects.count(),
        Shipment.objects.count(),
        Customer.objects.count(),
        Consumption.objects.count(),
        Batch.objects.filter(status=Batch.Status.COMPLETED).count(),
    )


def shipment_refusal(plant, lot, quantity) -> RuleViolation:
    """What `shipment_create` itself answers for shipping `lot`, undone."""
    with pytest.raises(RuleViolation) as refusal, transaction.atomic():
        services.shipment_create(
            lot=lot, customer=plant.customers[0], quantity=quantity, by=plant.qa
        )
    return refusal.value


def refused(report, index: int):
    """The one error of a refused import, at eventList[index]."""
    assert not report.ok and not report.committed, report.summary
    [error] = report.errors
    assert error.index == index
    assert str(error).startswith(f"eventList[{index}] (")
    assert report.lots_created == report.batches == report.imported == []
    assert report.shipments == report.consumptions == 0
    return error


# --- shipments ----------------------------------------------------------------------------


def test_shipment_of_a_quarantined_lot_under_an_open_major_deviation_is_refused(plant):
    # given: a lot made here, in quarantine, under an open major deviation
    raw = plant.receive(plant.api)
    batch, lot = plant.run_batch(plant.product_a, [(raw, "5")], release=False)
    deviation_record(
        title="Blend time exceeded",
        description="Blend ran 17 minutes.",
        category="deviation",
        severity="major",
        occurred_at=timezone.now() - timedelta(hours=2),
        discovered_at=timezone.now() - timedelta(hours=1),
        by=plant.qa,
        lots=[lot],
    )
    _, released = plant.run_batch(plant.product_a, [(raw, "5")])
    before = counts()
    good = shipping("1", released, 1, own("customer", "CUST-1"))
    # when: a document whose second event ships 50 ea of that lot
    report = epcis_import(
        document=document([good, shipping("2", lot, 50, own("customer", "CUST-1"))]),
        user=plant.qa,
    )
    # then: the import reports what shipment_create answers: the lot is not released
    error = refused(report, 1)
    refusal = shipment_refusal(plant, lot, "50")
    assert refusal.code == "lot_not_released"
    assert error.detail == refusal.detail
    assert error.detail.startswith(f"Lot {lot} ")
    assert counts() == before
    assert not Shipment.objects.exists()


def test_shipment_of_a_released_lot_with_an_open_deviation_is_refused(plant):
    raw = plant.receive(plant.api)
    _, lot = plant.run_batch(plant.product_a, [(raw, "5")])
    deviation = deviation_record(
        title="Label misprint",
        description="Found after release.",
        category="deviation",
        severity="major",
        occurred_at=timezone.now() - timedelta(hours=2),
        discovered_at=timezone.now() - timedelta(hours=1),
        by=plant.qa,
        lots=[lot],
    )
    before = counts()

    report = epcis_import(
        document=document([shipping("1", lot, 5, own("customer", "CUST-1"))]), user=plant.qa
    )

    error = refused(report, 0)
    refusal = shipment_refusal(plant, lot, "5")
    assert error.detail == refusal.detail
    assert f"deviation {deviation.number} (major) is open" in error.detail
    assert counts() == before


def test_shipment_to_an_unknown_destination_is_refused_naming_it(plant):
    raw = plant.receive(plant.api)
    _, lot = plant.run_batch(plant.product_a, [(raw, "5")])
    before = counts()

    report = epcis_import(
        document=document([shipping("1", lot, 5, "urn:epc:id:pgln:0614141.00777")]),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        "Destination urn:epc:id:pgln:0614141.00777 is not a customer known here (by GLN or "
        "customer code): a customer is recorded before goods are shipped to it."
    )
    assert counts() == before


def test_shipment_of_a_released_lot_to_a_known_customer_goes_through_shipment_create(plant):
    raw = plant.receive(plant.api)
    _, lot = plant.run_batch(plant.product_a, [(raw, "5")])
    at = timezone.now()
    data = document([shipping("1", lot, 4, own("customer", "CUST-2"), at)])

    report = epcis_import(document=data, user=plant.qa)
    again = epcis_import(document=data, user=plant.qa)

    assert report.ok and report.shipments == 1, report.summary
    shipment = Shipment.objects.get()
    assert (shipment.lot, shipment.customer, shipment.quantity) == (
        lot,
        plant.customers[1],
        Decimal("4"),
    )
    assert (shipment.shipped_at, shipment.recorded_by) == (at, plant.qa)
    event = history_for(shipment).first()
    assert event.reason == "EPCIS import of document urn:uuid:11111111-2222-4333-8444-555555555555"
    assert again.ok and again.shipments == 0
    assert again.imported[0].detail == f"shipment of lot {lot} to CUST-2 already recorded."
    assert Shipment.objects.count() == 1


def test_shipment_of_another_sponsors_lot_is_refused_as_unknown(plant):
    raw = plant.receive(plant.api)
    _, theirs = plant.run_batch(plant.product_b, [(raw, "5")])
    staff_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="a-only")

    report = epcis_import(
        document=document([shipping("1", theirs, 1, own("customer", "CUST-1"))]), user=staff_a
    )

    error = refused(report, 0)
    assert error.detail == (
        f"quantityList[0]: {own('lot', 'FG-ZZOTHER-1', theirs.lot_number)}: no material in your "
        "scope has material code FG-ZZOTHER-1."
    )


# --- receipts -----------------------------------------------------------------------------


def test_receipt_from_a_supplier_that_is_not_approved_is_refused(plant):
    Supplier.objects.create(code="SUP-NEW", name="Newco", gln="4012345000016", status="pending")
    before = counts()

    report = epcis_import(
        document=document([receiving("1", "R-NEW", 20, "urn:epc:id:pgln:4012345.00001")]),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        "Lot R-NEW cannot be received: supplier SUP-NEW is not approved (qualification pending)."
    )
    assert counts() == before


def test_receipt_from_an_unknown_source_is_refused_naming_it(plant):
    report = epcis_import(
        document=document([receiving("1", "R-NEW", 20, own("supplier", "SUP-NOBODY"))]),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        f"Source {own('supplier', 'SUP-NOBODY')} is not on the supplier list (by GLN or "
        "supplier code): a lot is received only from a known, approved supplier."
    )
    assert not Lot.objects.exists()


def test_receipt_from_an_approved_supplier_goes_through_lot_receive(plant):
    at = timezone.now() - timedelta(hours=1)
    event = receiving("1", "R-NEW", 20, own("supplier", "SUP-1"))
    event["eventTime"] = at.isoformat()

    report = epcis_import(document=document([event]), user=plant.qa)

    assert report.ok and report.lots_created == ["R-NEW"], report.summary
    lot = Lot.objects.get(lot_number="R-NEW")
    assert (lot.supplier, lot.quantity, lot.status, lot.received_at) == (
        plant.supplier,
        Decimal("20"),
        Lot.Status.QUARANTINE,
        at,
    )
    assert history_for(lot).first().actor_username == plant.qa.username


def test_receipt_of_a_material_made_here_is_refused(plant):
    report = epcis_import(
        document=document(
            [receiving("1", "FG-IN", 5, own("supplier", "SUP-1"), material="FG-ALP-100")]
        ),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        f"Lot FG-IN: {plant.finished_a} is a finished product, made here, not received."
    )


def test_receipt_of_a_lot_number_used_by_another_sponsor_does_not_reveal_it(plant):
    raw = plant.receive(plant.api)
    _, theirs = plant.run_batch(plant.product_b, [(raw, "5")])
    staff_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="a-only")

    report = epcis_import(
        document=document([receiving("1", theirs.lot_number, 5, own("supplier", "SUP-1"))]),
        user=staff_a,
    )

    error = refused(report, 0)
    assert error.detail == f"quantityList[0]: lot number {theirs.lot_number} cannot be used."


# --- transformations ----------------------------------------------------------------------


def test_transformation_of_an_unknown_batch_is_refused(plant):
    raw = plant.receive(plant.api)
    before = counts()

    report = epcis_import(
        document=document(
            [
                receiving("1", "R-NEW", 20, own("supplier", "SUP-1")),
                transformation("2", "B-17", [(raw, 5)], [("FG-ALP-100", "OUT-17", 10)]),
            ]
        ),
        user=plant.qa,
    )

    error = refused(report, 1)
    assert str(error) == (
        "eventList[1] (urn:uuid:00000000-0000-4000-8000-000000000002): batch B-17 is not known "
        "here: a batch is planned and executed in the batch record before its genealogy is "
        "reported."
    )
    assert counts() == before
    assert not Batch.objects.filter(number="B-17").exists()


def test_transformation_without_a_transformation_id_is_refused(plant):
    raw = plant.receive(plant.api)

    report = epcis_import(
        document=document([transformation("1", None, [(raw, 5)], [("FG-ALP-100", "OUT-1", 10)])]),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        "The transformation has no transformationID: it names the batch it reports "
        f"({namespace()}batch/<batch number>); a batch is planned and executed in the batch "
        "record before its genealogy is reported."
    )
    assert not Lot.objects.filter(lot_number="OUT-1").exists()


def test_transformation_of_another_sponsors_batch_is_refused_as_unknown(plant):
    raw = plant.receive(plant.api)
    theirs, _ = plant.run_batch(plant.product_b, [(raw, "5")])
    staff_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="a-only")

    report = epcis_import(
        document=document([transformation("1", theirs.number, [(raw, 1)], [])]), user=staff_a
    )

    error = refused(report, 0)
    assert error.detail.startswith(f"batch {theirs.number} is not known here: ")


def test_transformation_consumes_released_inputs_and_completes_the_batch_in_progress(plant):
    # given: two released input lots, a batch in progress with every step recorded and verified
    api, excipient = plant.receive(plant.api), plant.receive(plant.excipient)
    batch = in_progress(plant, "B-EP-1")
    at = timezone.now()
    event = transformation(
        "1", "B-EP-1", [(api, 5), (excipient, 2.5)], [("FG-ALP-100", "L-EP-1", 10)], at
    )
    # when
    report = epcis_import(document=document([event]), user=plant.qa)
    # then
    assert report.ok, [str(error) for error in report.errors]
    assert (report.batches, report.lots_created, report.consumptions) == (
        ["B-EP-1"],
        ["L-EP-1"],
        2,
    )
    batch.refresh_from_db()
    assert (batch.status, batch.completed_at, batch.actual_yield) == (
        Batch.Status.COMPLETED,
        at,
        Decimal("10"),
    )
    consumed = {c.lot: (c.quantity, c.consumed_at, c.recorded_by) for c in batch.consumptions.all()}
    assert consumed == {
        api: (Decimal("5"), at, plant.qa),
        excipient: (Decimal("2.5"), at, plant.qa),
    }
    output = Lot.objects.get(lot_number="L-EP-1")
    assert (output.produced_by, output.material, output.quantity, output.status) == (
        batch,
        plant.finished_a,
        Decimal("10"),
        Lot.Status.QUARANTINE,
    )
    event = history_for(output).first()
    assert event.actor_username == plant.qa.username
    assert event.reason == "EPCIS import of document urn:uuid:11111111-2222-4333-8444-555555555555"


def test_transformation_reported_again_is_already_recorded(plant):
    api = plant.receive(plant.api)
    in_progress(plant, "B-EP-1")
    data = document([transformation("1", "B-EP-1", [(api, 5)], [("FG-ALP-100", "L-EP-1", 10)])])
    assert epcis_import(document=data, user=plant.qa).ok
    before = counts()

    report = epcis_import(document=data, user=plant.qa)

    assert report.ok and report.lots_created == [] and report.consumptions == 0
    assert report.imported[0].detail == (
        f"consumption of lot {api} by batch B-EP-1 already recorded; output lot L-EP-1 of "
        "batch B-EP-1 already recorded."
    )
    assert counts() == before


def test_transformation_input_consumed_in_the_batch_record_is_not_consumed_again(plant):
    api = plant.receive(plant.api)
    batch = in_progress(plant, "B-EP-1")
    services.batch_consume(batch=batch, lot=api, quantity="5", by=plant.operator)

    report = epcis_import(
        document=document(
            [transformation("1", "B-EP-1", [(api, 6)], [("FG-ALP-100", "L-EP-1", 10)])]
        ),
        user=plant.qa,
    )

    assert report.ok and report.consumptions == 0, report.summary
    assert batch.consumptions.get().quantity == Decimal("5")
    [note] = report.notes
    assert note.detail == (
        f"inputQuantityList[0]: batch B-EP-1 recorded 5 kg of lot {api}; the event reports "
        "6 kg: the batch record stands."
    )


def test_transformation_of_a_batch_with_steps_missing_is_refused_and_consumes_nothing(plant):
    api = plant.receive(plant.api)
    batch = in_progress(plant, "B-EP-1", steps=False)
    before = counts()

    report = epcis_import(
        document=document(
            [transformation("1", "B-EP-1", [(api, 5)], [("FG-ALP-100", "L-EP-1", 10)])]
        ),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == "Batch B-EP-1 cannot be completed: steps 1, 2 are not recorded."
    assert counts() == before
    batch.refresh_from_db()
    assert batch.status == Batch.Status.IN_PROGRESS


def test_transformation_consuming_a_lot_in_quarantine_is_refused(plant):
    api = plant.receive(plant.api, release=False)
    in_progress(plant, "B-EP-1")

    report = epcis_import(
        document=document(
            [transformation("1", "B-EP-1", [(api, 5)], [("FG-ALP-100", "L-EP-1", 10)])]
        ),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == f"Lot {api} is in quarantine: it cannot be consumed."
    assert not Consumption.objects.exists()


def test_transformation_consuming_an_unknown_lot_is_refused_and_no_lot_is_inferred(plant):
    in_progress(plant, "B-EP-1")
    event = transformation("1", "B-EP-1", [], [("FG-ALP-100", "L-EP-1", 10)])
    event["inputQuantityList"] = [
        {"epcClass": own("lot", "RM-API", "R-GHOST"), "quantity": 5, "uom": "KGM"}
    ]

    report = epcis_import(document=document([event]), user=plant.qa)

    error = refused(report, 0)
    assert error.detail == (
        "inputQuantityList[0]: lot R-GHOST is not known here: an input lot is received or made "
        "here, and released, before a batch consumes it."
    )
    assert not Lot.objects.filter(lot_number__in=["R-GHOST", "L-EP-1"]).exists()


def test_transformation_of_a_planned_batch_is_refused(plant):
    api = plant.receive(plant.api)
    services.batch_plan(product=plant.product_a, number="B-PLAN", by=plant.operator)

    report = epcis_import(
        document=document(
            [transformation("1", "B-PLAN", [(api, 5)], [("FG-ALP-100", "L-EP-1", 10)])]
        ),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == f"Batch B-PLAN is planned: cannot consume lot {api}."


def test_new_output_of_a_completed_batch_is_refused(plant):
    raw = plant.receive(plant.api)
    batch, lot = plant.run_batch(plant.product_a, [(raw, "5")], release=False)

    report = epcis_import(
        document=document([transformation("1", batch.number, [], [("FG-ALP-100", "L-MORE", 3)])]),
        user=plant.qa,
    )

    error = refused(report, 0)
    assert error.detail == (
        f"Batch {batch} is completed: lot L-MORE cannot be recorded as its output; a batch in "
        "progress is completed once, with its output lot."
    )
    assert list(batch.output_lots.all()) == [lot]


# --- API ------------------------------------------------------------------------------------


def test_api_refuses_shipping_a_quarantined_lot_under_an_open_deviation_and_writes_nothing(plant):
    # given
    raw = plant.receive(plant.api)
    _, lot = plant.run_batch(plant.product_a, [(raw, "5")], release=False)
    deviation_record(
        title="Blend time exceeded",
        description="Blend ran 17 minutes.",
        category="deviation",
        severity="major",
        occurred_at=timezone.now() - timedelta(hours=2),
        discovered_at=timezone.now() - timedelta(hours=1),
        by=plant.qa,
        lots=[lot],
    )
    before = counts()
    client = Client()
    client.force_login(plant.qa)
    # when
    response = client.post(
        reverse("api:epcis-import"),
        data=document([shipping("1", lot, 50, "urn:epc:id:pgln:0614141.00777")]),
        content_type="application/ld+json",
    )
    # then: the unknown customer is named; with a known customer, the quarantine
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "epcis_invalid" and body["committed"] is False
    assert body["errors"] == [
        {
            "index": 0,
            "eventID": "urn:uuid:00000000-0000-4000-8000-000000000001",
            "detail": "Destination urn:epc:id:pgln:0614141.00777 is not a customer known here "
            "(by GLN or customer code): a customer is recorded before goods are shipped to it.",
        }
    ]
    response = client.post(
        reverse("api:epcis-import"),
        data=document([shipping("1", lot, 50, own("customer", "CUST-1"))]),
        content_type="application/ld+json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith("1 problem(s) in 1 event(s); nothing was imported.")
    refusal = shipment_refusal(plant, lot, "50")
    assert refusal.code == "lot_not_released"
    assert [(e["index"], e["detail"]) for e in body["errors"]] == [(0, refusal.detail)]
    assert body["shipments"] == 0 and body["lots_created"] == []
    assert counts() == before
    assert not Shipment.objects.exists()
