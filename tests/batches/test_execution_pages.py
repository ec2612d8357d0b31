"""The manufacturing-record acts on the CMO pages: each succeeds through its service and
redirects, and each refusal comes back on the page (400) with the rule and the record named."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services
from batches.models import (
    Batch,
    CleaningRecord,
    Equipment,
    EquipmentUse,
    ExecutedStep,
    LabResult,
    Lot,
    MasterBatchRecord,
    Shipment,
)
from deviations.models import Deviation
from deviations.services import deviation_record
from qms.errors import RuleViolation
from qms.signatures import signatures_for
from sponsors.models import Role
from suppliers.models import Supplier
from tests.documents.conftest import People, mbr_naming, sop
from tests.factories import PASSWORD, ProductFactory, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

API_GTIN = "00614141000012"
EXCIPIENT_GTIN = "00614141000029"
GS = "\x1d"


@pytest.fixture
def site(plant):
    plant.api.gtin = API_GTIN
    plant.api.save()
    plant.excipient.gtin = EXCIPIENT_GTIN
    plant.excipient.save()
    return plant


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def _post(client, url, data=None, status=302):
    response = client.post(url, data or {})
    assert response.status_code == status, (url, response.status_code, _errors(response))
    return response


def _errors(response) -> str:
    html = response.content.decode()
    start = html.find('class="errors"')
    return html[start : start + 400] if start >= 0 else ""


def _refused(client, url, data, message) -> str:
    html = _post(client, url, data, status=400).content.decode()
    assert message in html, _errors_in(html)
    return html


def _errors_in(html: str) -> str:
    return " | ".join(part[:300] for part in html.split('class="errors"')[1:]) or html[:300]


def _followed(client, url, data=None) -> str:
    response = client.post(url, data or {}, follow=True)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def _url(name, *args) -> str:
    return reverse(f"batches:{name}", args=args)


def _running(plant, product=None, number=None) -> Batch:
    batch = services.batch_plan(
        product=product or plant.product_a, number=number or plant.next("B"), by=plant.operator
    )
    return services.batch_start(batch=batch, by=plant.operator)


def _label(gtin: str, lot: Lot, prefix: str = "]C1", tail: str = "") -> str:
    """A GS1-128 element string as a wedge scanner types it: (01) GTIN, (10) lot, FNC1 as GS."""
    return f"{prefix}01{gtin}10{lot.lot_number}{GS}17{date.today():%y%m%d}{tail}"


def _record_all_steps(plant, batch):
    for step in batch.mbr.steps.all():
        executed = services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)


# --- receipt and disposition of received lots ----------------------------------------------


def test_receipt_books_the_lot_into_quarantine(site):
    client = _client(site.operator)
    form = _get(client, _url("lot-receive"))
    assert "RM-API" in form and "Chemco GmbH" in form and "FG-ALP-100" not in form

    html = _followed(
        client,
        _url("lot-receive"),
        {
            "material": site.api.pk,
            "lot_number": "R-NEW-1",
            "supplier": site.supplier.pk,
            "supplier_lot_number": "CH-778",
            "quantity": "250",
            "expires_on": "2030-01-31",
            "receipt_reference": "GRN-991",
            "received_at": "2026-03-02T08:30",
        },
    )

    lot = Lot.objects.get(lot_number="R-NEW-1")
    assert lot.status == Lot.Status.QUARANTINE and lot.quantity == Decimal("250")
    assert lot.received_at.isoformat() == "2026-03-02T08:30:00+00:00"
    assert "Lot R-NEW-1 received: 250 kg of RM-API, in quarantine." in html
    assert "GRN-991" in html and "CH-778" in html


def test_receipt_refused_from_a_supplier_not_approved(site):
    pending = Supplier.objects.create(code="SUP-9", name="Newco", status="pending")
    data = {"material": site.api.pk, "lot_number": "R-X", "supplier": pending.pk, "quantity": "5"}

    _refused(
        _client(site.operator),
        _url("lot-receive"),
        data,
        "Lot R-X cannot be received: supplier SUP-9 is not approved (qualification pending).",
    )
    assert not Lot.objects.filter(lot_number="R-X").exists()


def test_qa_releases_a_received_lot_by_signature(site):
    lot = site.receive(site.api, release=False)
    client = _client(site.qa)
    assert "Sign disposition" in _get(client, _url("lot", lot.lot_number))

    html = _followed(
        client,
        _url("lot-disposition", lot.lot_number),
        {"decision": "release", "password": PASSWORD},
    )

    lot.refresh_from_db()
    assert lot.status == Lot.Status.RELEASED
    assert f"Lot {lot} signed: released." in html
    assert "released —" in html  # the signature, shown on the record


def test_lot_release_refused_with_a_wrong_password(site):
    lot = site.receive(site.api, release=False)
    _refused(
        _client(site.qa),
        _url("lot-disposition", lot.lot_number),
        {"decision": "release", "password": "nope"},
        "the password for plant-qa is not correct",
    )
    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE


def test_lot_disposition_is_not_offered_to_staff_and_refused_when_posted(site):
    lot = site.receive(site.api, release=False)
    client = _client(site.operator)
    assert "Sign disposition" not in _get(client, _url("lot", lot.lot_number))
    _refused(
        client,
        _url("lot-disposition", lot.lot_number),
        {"decision": "release", "password": PASSWORD},
        f"plant-operator may not release or reject lot {lot}.",
    )


# --- planning and starting -----------------------------------------------------------------


def test_batch_is_planned_then_started_at_the_line(site):
    client = _client(site.operator)
    assert "ALP-100" in _get(client, _url("batch-new"))

    response = _post(client, _url("batch-new"), {"product": site.product_a.pk, "number": "B-77"})
    assert response["Location"] == _url("execution", "B-77")
    html = _get(client, _url("execution", "B-77"))
    assert "Start batch B-77" in html and "Record step" not in html

    record = _get(client, _url("batch", "B-77"))
    assert f'href="{_url("execution", "B-77")}">Execution at the line' in record
    html = _followed(client, _url("batch-start", "B-77"))

    assert Batch.objects.get(number="B-77").status == Batch.Status.IN_PROGRESS
    assert "Batch B-77 started under MBR ALP-100 v1." in html
    assert "Next: step 1 of 2 — Dispense" in html


def test_batch_plan_refused_for_a_number_in_use(site):
    _running(site, number="B-DUP")
    _refused(
        _client(site.operator),
        _url("batch-new"),
        {"product": site.product_a.pk, "number": "B-DUP"},
        "Batch number B-DUP is already used.",
    )


def test_batch_start_refused_when_already_started(site):
    batch = _running(site)
    _refused(
        _client(site.operator),
        _url("batch-start", batch.number),
        {},
        f"Batch {batch} is in progress; it cannot become in progress.",
    )


# --- steps, one at a time ------------------------------------------------------------------


def test_next_step_is_shown_first_with_what_is_left(site):
    batch = _running(site)
    client = _client(site.operator)

    html = _get(client, _url("execution", batch.number))
    assert html.index("Next: step 1 of 2 — Dispense") < html.index("Still to do after this step")
    assert "0 of 2 steps recorded, 2 left" in html and "Blend" in html

    html = _followed(client, _url("step-record", batch.number, 1), {"value": "5.5"})

    assert "Step 1 (Dispense) recorded, within limits." in html
    assert "Next: step 2 of 2 — Blend" in html and "1 of 2 steps recorded, 1 left" in html
    assert "Still to do after this step" not in html
    assert "Awaiting the second-person check" in html
    assert "You recorded this step: a second person verifies it." in html


def test_value_out_of_limits_needs_a_comment(site):
    batch = _running(site)
    client = _client(site.operator)

    _refused(
        client,
        _url("step-record", batch.number, 1),
        {"value": "7.5"},
        "7.5 kg is outside the limits 5–6 kg: a comment is required.",
    )
    assert not ExecutedStep.objects.filter(batch=batch).exists()

    html = _followed(
        client,
        _url("step-record", batch.number, 1),
        {"value": "7.5", "note": "Scale re-zeroed; QA informed."},
    )
    assert "recorded, OUT OF LIMITS, with comment" in html
    assert ExecutedStep.objects.get(batch=batch).is_in_limits is False


def test_service_also_refuses_a_value_out_of_limits_without_comment(site):
    batch = _running(site)
    step = batch.mbr.steps.get(sequence=1)
    with pytest.raises(RuleViolation) as refused:
        services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="7")
    assert "a comment is required" in refused.value.detail


def test_step_refused_for_an_operator_not_trained_on_its_sop(site, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    people = People(author=site.verifier, reviewer=site.operator, approver=site.qa)
    sop(people, number="SOP-QA-001")
    mbr_naming(site, site.product_a, ["SOP-QA-001"])
    batch = _running(site)

    _refused(
        _client(site.operator),
        _url("step-record", batch.number, 1),
        {},
        f"cannot sign step 1 of batch {batch}: not trained on SOP-QA-001 v1",
    )


def test_second_person_verifies_a_step_by_signature(site):
    batch = _running(site)
    step = batch.mbr.steps.get(sequence=1)
    services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="5")
    client = _client(site.verifier)
    assert "Verify step 1" in _get(client, _url("execution", batch.number))

    html = _followed(client, _url("step-verify", batch.number, 1), {"password": PASSWORD})

    executed = ExecutedStep.objects.get(batch=batch, step=step)
    assert executed.verified_by == site.verifier
    assert f"verified by {site.verifier.get_full_name()}" in html
    assert "Awaiting the second-person check" not in html


def test_performer_cannot_verify_their_own_step(site):
    batch = _running(site)
    step = batch.mbr.steps.get(sequence=1)
    services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="5")
    client = _client(site.operator)
    assert "Verify step 1" not in _get(client, _url("execution", batch.number))

    _refused(
        client,
        _url("step-verify", batch.number, 1),
        {"password": PASSWORD},
        f"Step 1 of batch {batch} was performed by plant-operator; a second person must verify it.",
    )


def test_verification_refused_with_a_wrong_password(site):
    batch = _running(site)
    step = batch.mbr.steps.get(sequence=1)
    services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="5")
    _refused(
        _client(site.verifier),
        _url("step-verify", batch.number, 1),
        {"password": "wrong"},
        "the password for plant-verifier is not correct",
    )
    assert ExecutedStep.objects.get(batch=batch, step=step).verified_by is None


# --- consumption of scanned lots -----------------------------------------------------------


def test_scanned_label_consumes_the_lot(site):
    lot = site.receive(site.api)
    batch = _running(site)

    html = _followed(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "5", "lot": _label(API_GTIN, lot)},
    )

    assert f"5 kg of lot {lot} (RM-API) consumed." in html
    assert batch.consumptions.get().lot == lot


def test_typed_lot_number_consumes_the_lot(site):
    lot = site.receive(site.excipient)
    batch = _running(site)
    _post(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "2", "lot": lot.lot_number},
    )
    assert batch.consumptions.get().quantity == Decimal("2")


def test_consumption_of_a_lot_in_quarantine_refused(site):
    lot = site.receive(site.api, release=False)
    batch = _running(site)
    _refused(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "5", "lot": _label(API_GTIN, lot, prefix="]d2")},
        f"Lot {lot} is in quarantine: it cannot be consumed.",
    )
    assert not batch.consumptions.exists()


def test_consumption_of_a_material_not_on_the_bill_refused(site):
    lot = site.receive(site.excipient)
    batch = _running(site, product=site.product_b)  # its bill lists RM-API only
    _refused(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "5", "lot": lot.lot_number},
        f"Lot {lot} is RM-EXC, which is not in the bill of materials",
    )


def test_label_of_another_material_refused(site):
    lot = site.receive(site.api)
    batch = _running(site)
    _refused(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "5", "lot": _label(EXCIPIENT_GTIN, lot)},
        f"The label&#x27;s GTIN {EXCIPIENT_GTIN} is RM-EXC Lactose, but lot {lot} is RM-API",
    )


def test_consumption_of_more_than_is_left_refused(site):
    lot = site.receive(site.api, quantity="3")
    batch = _running(site)
    _refused(
        _client(site.operator),
        _url("batch-consume", batch.number),
        {"quantity": "5", "lot": lot.lot_number},
        f"Lot {lot} has 3 kg left: 5 kg cannot be consumed.",
    )


# --- equipment use and cleaning ------------------------------------------------------------


def test_equipment_use_started_and_ended_from_the_line(site):
    batch = _running(site)
    client = _client(site.operator)

    html = _followed(client, _url("equipment-use-start", batch.number), {"equipment": site.tank.pk})
    assert f"TANK-4 in use for batch {batch}." in html and "End use of TANK-4" in html
    use = EquipmentUse.objects.get(batch=batch)

    html = _followed(client, _url("equipment-use-end", batch.number, use.pk))
    use.refresh_from_db()
    assert use.ended_at is not None
    assert f"TANK-4 released by batch {batch}." in html


def test_equipment_past_its_qualification_refused(site):
    old = Equipment.objects.create(
        code="MIX-9", name="Old mixer", kind="mixer", qualified_until=date(2020, 1, 1)
    )
    batch = _running(site)
    _refused(
        _client(site.operator),
        _url("equipment-use-start", batch.number),
        {"equipment": old.pk},
        "MIX-9 cannot be used: its qualification expired on 2020-01-01.",
    )


def test_equipment_without_cleaning_between_products_refused(site):
    first = _running(site, product=site.product_a)
    use = services.equipment_use_start(batch=first, equipment=site.tank, by=site.operator)
    services.equipment_use_end(use=use, by=site.operator)
    second = _running(site, product=site.product_b)

    html = _refused(
        _client(site.operator),
        _url("equipment-use-start", second.number),
        {"equipment": site.tank.pk},
        "TANK-4 last ran another product",
    )
    assert f"a verified cleaning after that is required before batch {second} uses it" in html


def test_cleaning_recorded_then_verified_by_a_second_person(site):
    client = _client(site.operator)
    html = _followed(
        client, _url("cleaning-record", "TANK-4"), {"method": "CIP caustic wash, SOP-CL-3"}
    )
    assert "Cleaning of TANK-4 recorded; a second person verifies it." in html
    cleaning = CleaningRecord.objects.get(equipment=site.tank)
    assert "Verify cleaning" not in html  # not to the person who cleaned

    checker = _client(site.verifier)
    assert "Verify cleaning" in _get(checker, _url("equipment", "TANK-4"))
    html = _followed(
        checker, _url("cleaning-verify", "TANK-4", cleaning.pk), {"password": PASSWORD}
    )

    cleaning.refresh_from_db()
    assert cleaning.verified_by == site.verifier
    [(signature, check)] = signatures_for(cleaning)
    assert signature.meaning == "verified" and check.is_valid
    assert f"Cleaning of TANK-4 verified by {site.verifier.get_full_name()}." in html


def test_cleaning_verified_by_the_cleaner_refused(site):
    cleaning = services.cleaning_record(
        equipment=site.tank, method="CIP", performed_by=site.operator
    )
    _refused(
        _client(site.operator),
        _url("cleaning-verify", "TANK-4", cleaning.pk),
        {"password": PASSWORD},
        "was performed by plant-operator; a second person must verify it.",
    )


def test_cleaning_without_method_refused(site):
    _refused(
        _client(site.operator),
        _url("cleaning-record", "TANK-4"),
        {"method": " "},
        "This field is required.",
    )


# --- completion, review, packaging ---------------------------------------------------------


def test_batch_completed_with_its_output_lot_then_submitted(site):
    batch = _running(site)
    _record_all_steps(site, batch)
    client = _client(site.operator)
    assert "Complete batch" in _get(client, _url("execution", batch.number))

    html = _followed(
        client,
        _url("batch-complete", batch.number),
        {"output_lot_number": "L-OUT-1", "quantity": "9", "expires_on": "2028-12-31"},
    )
    lot = Lot.objects.get(lot_number="L-OUT-1")
    assert lot.produced_by == batch and lot.status == Lot.Status.QUARANTINE
    assert f"Batch {batch} completed: lot L-OUT-1, 9 ea, in quarantine." in html
    assert "Yield 90.0 %" in html

    html = _followed(client, _url("batch-submit", batch.number))
    batch.refresh_from_db()
    assert batch.status == Batch.Status.UNDER_REVIEW
    assert f"Batch {batch} submitted for review." in html


def test_completion_refused_while_a_step_is_not_recorded(site):
    batch = _running(site)
    step = batch.mbr.steps.get(sequence=1)
    services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="5")
    _refused(
        _client(site.operator),
        _url("batch-complete", batch.number),
        {"output_lot_number": "L-X", "quantity": "9"},
        f"Batch {batch} cannot be completed: step 2 is not recorded.",
    )


def test_packaging_with_signed_clearance_and_balanced_labels(site):
    batch = _running(site)
    client = _client(site.operator)

    _post(client, _url("packaging-start", batch.number), {"label_version": "LBL-7 v3"})
    html = _followed(client, _url("line-clearance", batch.number), {"password": PASSWORD})
    assert f"Line clearance for batch {batch} signed." in html
    html = _followed(
        client,
        _url("label-reconciliation", batch.number),
        {"issued": "100", "used": "90", "destroyed": "6", "returned": "4"},
    )

    packaging = batch.packaging
    packaging.refresh_from_db()
    assert packaging.line_cleared_at is not None and packaging.is_reconciled
    assert "100 issued = 90 used + 6 destroyed + 4 returned" in html


def test_unbalanced_label_reconciliation_refused_with_the_numbers(site):
    batch = _running(site)
    services.packaging_start(batch=batch, label_version="LBL-7", by=site.operator)
    _refused(
        _client(site.operator),
        _url("label-reconciliation", batch.number),
        {"issued": "100", "used": "90", "destroyed": "5", "returned": "0"},
        f"Label reconciliation of batch {batch} does not balance: 100 issued, 95 accounted for "
        "(90 used + 5 destroyed + 0 returned).",
    )


def test_line_clearance_refused_with_a_wrong_password(site):
    batch = _running(site)
    services.packaging_start(batch=batch, label_version="LBL-7", by=site.operator)
    _refused(
        _client(site.operator),
        _url("line-clearance", batch.number),
        {"password": "guess"},
        "the password for plant-operator is not correct",
    )


# --- lab results ---------------------------------------------------------------------------


def _lab(value, **extra):
    return {
        "test": "Assay",
        "method": "HPLC-12",
        "low_limit": "95",
        "high_limit": "105",
        "value": value,
        "unit": "%",
        **extra,
    }


def test_lab_result_within_specification(site):
    _, lot = site.run_batch(site.product_a, [], release=False)
    html = _followed(_client(site.qa), _url("lab-result-add", lot.lot_number), _lab("99.2"))
    assert f"Assay on lot {lot} recorded: within specification." in html
    assert lot.lab_results.get().outcome == LabResult.Outcome.PASS


def test_oos_result_opens_an_investigation_linked_from_the_lot_page(site):
    _, lot = site.run_batch(site.product_a, [], release=False)

    html = _followed(_client(site.qa), _url("lab-result-add", lot.lot_number), _lab("91.5"))

    deviation = Deviation.objects.get(lab_result__lot=lot)
    assert deviation.category == Deviation.Category.OOS
    assert f"OOS investigation {deviation.number} opened" in html
    link = reverse("deviations:detail", args=[deviation.number])
    assert f'href="{link}">OOS investigation {deviation.number}</a>' in html
    assert f"deviation {deviation.number} (major) is open" in html  # open quality issues


def test_lab_result_without_a_specification_refused(site):
    _, lot = site.run_batch(site.product_a, [], release=False)
    _refused(
        _client(site.qa),
        _url("lab-result-add", lot.lot_number),
        _lab("99", low_limit="", high_limit=""),
        f"Lot {lot}, Assay: a specification limit is needed.",
    )


# --- shipments -----------------------------------------------------------------------------


def test_released_lot_shipped_from_the_lot_page(site):
    _, lot = site.run_batch(site.product_a, [])
    client = _client(site.operator)
    assert "Record shipment" in _get(client, _url("lot", lot.lot_number))

    html = _followed(
        client,
        _url("lot-ship", lot.lot_number),
        {"customer": "cust-1", "quantity": "4", "reference": "DN-5501"},
    )

    shipment = Shipment.objects.get(lot=lot)
    assert shipment.customer.code == "CUST-1" and shipment.recorded_by == site.operator
    assert f"4 ea of lot {lot} shipped to Northwind Wholesale." in html
    assert "DN-5501" in _get(client, _url("shipments"))


def test_shipment_of_a_lot_in_quarantine_refused(site):
    batch, lot = site.run_batch(site.product_a, [], release=False)
    client = _client(site.operator)
    assert lot.status == Lot.Status.QUARANTINE
    assert "Record shipment" not in _get(client, _url("lot", lot.lot_number))
    _refused(
        client,
        _url("lot-ship", lot.lot_number),
        {"customer": "CUST-1", "quantity": "1"},
        f"Lot {lot} cannot be shipped: its batch {batch} is completed, not released.",
    )
    assert not Shipment.objects.exists()


def test_shipment_of_a_lot_with_an_open_deviation_refused(site):
    _, lot = site.run_batch(site.product_a, [])
    deviation = deviation_record(
        title="Label smudged",
        description="Found at dispatch.",
        category="deviation",
        severity="minor",
        occurred_at=timezone.now() - timedelta(hours=1),
        discovered_at=timezone.now(),
        lots=[lot],
        by=site.qa,
    )
    _refused(
        _client(site.operator),
        _url("lot-ship", lot.lot_number),
        {"customer": "CUST-1", "quantity": "1"},
        f"Lot {lot} cannot be shipped: deviation {deviation.number} (minor) is open.",
    )


def test_shipment_to_an_unknown_customer_refused(site):
    _, lot = site.run_batch(site.product_a, [])
    _refused(
        _client(site.operator),
        _url("lot-ship", lot.lot_number),
        {"customer": "NOBODY", "quantity": "1"},
        "No customer NOBODY is known here.",
    )


def test_shipments_list_filters_and_keeps_to_the_users_sponsors(site):
    northwind, pharmacy = site.customers
    _, lot_a = site.run_batch(site.product_a, [])
    _, lot_b = site.run_batch(site.product_b, [])
    services.shipment_create(lot=lot_a, customer=northwind, quantity="2", by=site.operator)
    services.shipment_create(lot=lot_b, customer=pharmacy, quantity="3", by=site.operator)
    client = _client(site.qa)

    html = _get(client, _url("shipments"))
    assert lot_a.lot_number in html and lot_b.lot_number in html
    html = _get(client, _url("shipments") + "?customer=northwind")
    assert lot_a.lot_number in html and lot_b.lot_number not in html
    html = _get(client, _url("shipments") + f"?sponsor={site.sponsor_b.pk}")
    assert lot_b.lot_number in html and lot_a.lot_number not in html
    html = _get(client, _url("shipments") + f"?lot={lot_a.lot_number}")
    assert lot_a.lot_number in html and lot_b.lot_number not in html

    alpha_only = make_user(sponsor=site.sponsor_a, role=Role.CMO_STAFF)
    html = _get(_client(alpha_only), _url("shipments"))
    assert lot_a.lot_number in html and lot_b.lot_number not in html
    assert "ZZOTHER" not in html


# --- master batch record versions ----------------------------------------------------------


def _edit_data(mbr, title="Alphacillin 100 mg manufacture, rev. 2"):
    lines = list(mbr.bom_lines.all())
    steps = list(mbr.steps.all())
    data = {
        "title": title,
        "batch_size": "120",
        "batch_unit": "ea",
        "theoretical_yield": "12",
        "reason": "Scale-up",
        "bom-TOTAL_FORMS": str(len(lines) + 1),
        "bom-INITIAL_FORMS": str(len(lines)),
        "bom-MIN_NUM_FORMS": "0",
        "bom-MAX_NUM_FORMS": "1000",
        "steps-TOTAL_FORMS": str(len(steps) + 1),
        "steps-INITIAL_FORMS": str(len(steps)),
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for index, line in enumerate(lines):
        data |= {
            f"bom-{index}-material": line.material_id,
            f"bom-{index}-quantity": str(line.quantity * 2),
            f"bom-{index}-unit": line.unit,
        }
    for index, step in enumerate(steps):
        data |= {
            f"steps-{index}-title": step.title,
            f"steps-{index}-parameter": step.parameter,
            f"steps-{index}-unit": step.unit,
            f"steps-{index}-low_limit": "" if step.low_limit is None else str(step.low_limit),
            f"steps-{index}-high_limit": "" if step.high_limit is None else str(step.high_limit),
            f"steps-{index}-requires_verification": "on",
        }
    new = len(steps)
    data |= {
        f"steps-{new}-title": "Compress",
        f"steps-{new}-parameter": "Hardness",
        f"steps-{new}-unit": "N",
        f"steps-{new}-low_limit": "40",
        f"steps-{new}-high_limit": "60",
        f"steps-{new}-sop_reference": "SOP-PR-7",
    }
    return data


def test_mbr_version_drafted_edited_reviewed_approved_and_made_effective(site):
    current = MasterBatchRecord.objects.get(product=site.product_a)
    author, reviewer, qa = (_client(u) for u in (site.operator, site.verifier, site.qa))
    assert "Draft a new version of ALP-100" in _get(author, _url("mbr", current.pk))

    # given: a draft copied from v1
    response = _post(author, _url("mbr-new-version", site.product_a.pk))
    draft = MasterBatchRecord.objects.get(product=site.product_a, version=2)
    assert response["Location"] == _url("mbr-edit", draft.pk)
    assert draft.based_on == current and draft.created_by == site.operator
    assert "Dispense" in _get(author, _url("mbr-edit", draft.pk))

    # when: edited, reviewed, approved, made effective
    _post(author, _url("mbr-edit", draft.pk), _edit_data(draft))
    draft.refresh_from_db()
    assert draft.title == "Alphacillin 100 mg manufacture, rev. 2"
    assert [s.title for s in draft.steps.all()] == ["Dispense", "Blend", "Compress"]
    assert draft.steps.get(sequence=3).sop_reference == "SOP-PR-7"
    assert [line.quantity for line in draft.bom_lines.all()] == [Decimal("10"), Decimal("10")]
    assert "Sign: review" not in _get(author, _url("mbr", draft.pk))
    _post(reviewer, _url("mbr-review", draft.pk), {"password": PASSWORD})
    _post(qa, _url("mbr-approve", draft.pk), {"password": PASSWORD})
    html = _followed(qa, _url("mbr-effective", draft.pk))

    # then
    draft.refresh_from_db()
    current.refresh_from_db()
    assert draft.status == MasterBatchRecord.Status.EFFECTIVE
    assert current.status == MasterBatchRecord.Status.SUPERSEDED
    assert "reviewed —" in html and "approved —" in html
    assert f"{draft} effective from" in html


def test_author_cannot_review_their_draft(site):
    draft = services.mbr_draft_new_version(product=site.product_a, by=site.operator)
    _refused(
        _client(site.operator),
        _url("mbr-review", draft.pk),
        {"password": PASSWORD},
        f"{draft} was written by plant-operator; a second person must review it.",
    )
    draft.refresh_from_db()
    assert draft.status == MasterBatchRecord.Status.DRAFT


def test_second_draft_refused_while_one_is_open(site):
    draft = services.mbr_draft_new_version(product=site.product_a, by=site.operator)
    _refused(
        _client(site.verifier),
        _url("mbr-new-version", site.product_a.pk),
        {},
        f"{draft} is draft: finish or edit it before drafting another version.",
    )


def test_edit_refused_for_a_step_with_limits_reversed(site):
    draft = services.mbr_draft_new_version(product=site.product_a, by=site.operator)
    data = _edit_data(draft) | {"steps-0-low_limit": "9", "steps-0-high_limit": "2"}
    html = _post(_client(site.operator), _url("mbr-edit", draft.pk), data, status=400)
    assert "The high limit is below the low limit 9." in html.content.decode()


def test_edit_refused_without_steps(site):
    draft = services.mbr_draft_new_version(product=site.product_a, by=site.operator)
    data = _edit_data(draft)
    for index in range(3):
        data[f"steps-{index}-DELETE"] = "on"
    _refused(
        _client(site.operator),
        _url("mbr-edit", draft.pk),
        data,
        f"{draft}: it needs at least one step.",
    )


def test_an_effective_version_is_not_edited(site):
    current = MasterBatchRecord.objects.get(product=site.product_a)
    response = _client(site.operator).get(_url("mbr-edit", current.pk), follow=True)
    assert "only a draft is edited; draft a new version instead." in response.content.decode()


def test_make_effective_refused_while_a_change_request_carries_the_version(site):
    from changecontrol.services import change_create

    draft = services.mbr_draft_new_version(product=site.product_a, by=site.operator)
    change = change_create(
        title="Scale-up",
        description="Batch size 120.",
        category="master_batch_record",
        products=[site.product_a],
        mbr=draft,
        by=site.qa,
    )
    services.mbr_review(mbr=draft, user=site.verifier, password=PASSWORD)
    services.mbr_approve(mbr=draft, user=site.qa, password=PASSWORD)

    _refused(
        _client(site.qa),
        _url("mbr-effective", draft.pk),
        {},
        f"{draft} is carried by change {change.number}; it becomes effective when that "
        "change does.",
    )


# --- scope ---------------------------------------------------------------------------------


def test_other_sponsors_batch_and_lot_acts_are_not_found(site):
    alpha_only = make_user(sponsor=site.sponsor_a, role=Role.CMO_STAFF)
    batch_b = _running(site, product=site.product_b)
    _, lot_b = site.run_batch(site.product_b, [], release=False)
    client = _client(alpha_only)
    _get(client, _url("execution", batch_b.number), status=404)
    _post(client, _url("batch-consume", batch_b.number), {"quantity": "1"}, status=404)
    _post(client, _url("lab-result-add", lot_b.lot_number), _lab("99"), status=404)


def test_sponsor_users_are_refused_the_cmo_acts(site):
    auditor = make_user(sponsor=site.sponsor_a, role=Role.SPONSOR_AUDITOR)
    batch = _running(site)
    client = _client(auditor)
    _get(client, _url("execution", batch.number), status=403)
    _get(client, _url("lot-receive"), status=403)
    _get(client, _url("shipments"), status=403)
    _post(client, _url("batch-start", batch.number), status=403)


# --- query counts --------------------------------------------------------------------------


def test_execution_page_query_count_is_constant(site):
    client = _client(site.verifier)
    batch = _running(site)
    url = _url("execution", batch.number)

    def grow(n):
        for _ in range(n):
            lot = site.receive(site.api, quantity="1")
            services.batch_consume(batch=batch, lot=lot, quantity="1", by=site.operator)
            Equipment.objects.create(
                code=site.next("EQ"), name="Mixer", kind="mixer", qualified_until=date(2099, 1, 1)
            )

    def first(n):
        grow(n)
        step = batch.mbr.steps.get(sequence=1)
        services.batch_record_step(batch=batch, step=step, performed_by=site.operator, value="5")

    assert_constant_queries(client, url, first, more=grow)


def test_shipments_list_query_count_is_constant(site):
    client = _client(site.qa)
    northwind = site.customers[0]
    _, lot = site.run_batch(site.product_a, [], output_quantity="1000")

    def ship(n):
        for _ in range(n):
            services.shipment_create(lot=lot, customer=northwind, quantity="1", by=site.operator)

    assert_constant_queries(client, _url("shipments"), ship)


def test_the_first_version_of_a_new_product_is_written_from_its_header_and_first_step(site):
    product = ProductFactory(sponsor=site.sponsor_a, code="ALP-NEW", name="Alphacillin new")
    client = _client(site.operator)
    url = reverse("batches:mbr-new-version", args=[product.pk])
    assert "Draft version 1" in _get(client, url)
    assert url in _get(client, reverse("sponsors:product", args=[product.pk]))

    html = _followed(
        client,
        url,
        {
            "title": "Alphacillin new: manufacture",
            "batch_size": "1000",
            "batch_unit": "ea",
            "theoretical_yield": "990",
            "first_step": "Dispense",
        },
    )

    draft = MasterBatchRecord.objects.get(product=product)
    assert (draft.version, draft.status, draft.created_by) == (1, "draft", site.operator)
    assert [step.title for step in draft.steps.all()] == ["Dispense"]
    assert f"{draft} drafted: add its steps and bill of materials, then review." in html


def test_a_first_version_without_its_first_step_is_refused_inline(site):
    product = ProductFactory(sponsor=site.sponsor_a, code="ALP-NEW", name="Alphacillin new")
    url = reverse("batches:mbr-new-version", args=[product.pk])

    response = _post(
        _client(site.operator),
        url,
        {"title": "X", "batch_size": "1", "batch_unit": "ea", "theoretical_yield": "1"},
        status=400,
    )

    assert "This field is required." in response.content.decode()
    assert not MasterBatchRecord.objects.filter(product=product).exists()


def test_the_master_batch_record_link_of_a_product_with_one_leads_to_its_latest_version(site):
    mbr = MasterBatchRecord.objects.filter(product=site.product_a).order_by("-version").first()

    response = _client(site.operator).get(
        reverse("batches:mbr-new-version", args=[site.product_a.pk])
    )

    assert response.status_code == 302 and response["Location"] == mbr.get_absolute_url()
