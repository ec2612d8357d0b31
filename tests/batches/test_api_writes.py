"""Writes of the manufacturing API, part one: receipts and received-lot disposition, lab results
(an OOS opens an investigation), shipments, who may write at all, keys resolved within the
caller's scope, and the OpenAPI description of every write."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from batches import services
from batches.disposition import batch_disposition
from batches.models import Lot, Shipment
from deviations.models import Deviation
from qms.signatures import printed_name
from sponsors.models import Role
from suppliers.models import Supplier
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _post(user, name, *args, body=None, method="post"):
    client = APIClient()
    client.force_authenticate(user)
    return getattr(client, method)(reverse(f"api:{name}", args=args), body or {}, format="json")


def _refusal(response, code, detail):
    assert response.status_code == 409, response.content
    assert response.json() == {"error": code, "detail": detail}


@pytest.fixture
def staff_a(plant):
    """CMO staff on sponsor A only."""
    return make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="staff-only-a")


# --- receipts -----------------------------------------------------------------------------


def test_receipt_books_the_lot_in_quarantine(plant):
    # when
    response = _post(
        plant.operator,
        "lot-list",
        body={
            "material": "RM-API",
            "lot_number": "R-API-001",
            "quantity": "250",
            "supplier": "SUP-1",
            "supplier_lot_number": "CHEM-77",
            "receipt_reference": "GRN-1001",
            "expires_on": "2030-01-31",
        },
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert {key: body[key] for key in ("lot_number", "material", "status", "quantity")} == {
        "lot_number": "R-API-001",
        "material": "RM-API",
        "status": "quarantine",
        "quantity": "250.000",
    }
    assert (body["supplier"], body["supplier_lot_number"], body["receipt_reference"]) == (
        "SUP-1",
        "CHEM-77",
        "GRN-1001",
    )
    assert body["lab_results"] == []
    lot = Lot.objects.get(lot_number="R-API-001")
    assert (lot.status, str(lot.expires_on)) == ("quarantine", "2030-01-31")


def test_receipt_from_a_supplier_not_approved_is_refused(plant):
    Supplier.objects.create(code="SUP-X", name="Dubious Chemicals", status="disqualified")
    response = _post(
        plant.operator,
        "lot-list",
        body={"material": "RM-API", "lot_number": "R-X-1", "quantity": "5", "supplier": "SUP-X"},
    )
    _refusal(
        response,
        "supplier_not_approved",
        "Lot R-X-1 cannot be received: supplier SUP-X is not approved (disqualified).",
    )
    assert not Lot.objects.filter(lot_number="R-X-1").exists()


def test_receipt_of_a_material_made_here_is_refused(plant):
    response = _post(
        plant.operator,
        "lot-list",
        body={"material": "FG-ALP-100", "lot_number": "R-FG", "quantity": "5", "supplier": "SUP-1"},
    )
    _refusal(
        response,
        "invalid",
        "Lot R-FG: FG-ALP-100 Alphacillin 100 mg is a finished product, made here, not received.",
    )


def test_receipt_naming_another_sponsors_material_is_a_400_naming_the_key(plant, staff_a):
    response = _post(
        staff_a,
        "lot-list",
        body={
            "material": "FG-ZZOTHER-1",
            "lot_number": "R-1",
            "quantity": "5",
            "supplier": "SUP-1",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert body["detail"] == "material: Unknown, or not in your sponsor scope: FG-ZZOTHER-1."
    assert "secret" not in response.content.decode().lower()


def test_receipt_with_bad_input_names_each_field(plant):
    response = _post(
        plant.operator,
        "lot-list",
        body={"material": "RM-NOPE", "lot_number": "", "quantity": "-3", "supplier": "SUP-9"},
    )
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert fields == {
        "material": ["Unknown, or not in your sponsor scope: RM-NOPE."],
        "lot_number": ["This field may not be blank."],
        "quantity": ["The quantity must be positive."],
        "supplier": ["Unknown, or not in your sponsor scope: SUP-9."],
    }


def test_received_lot_is_released_by_e_signature(plant):
    lot = plant.receive(plant.api, release=False)
    response = _post(
        plant.qa, "lot-disposition", lot.lot_number, body={"password": PASSWORD, "release": True}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["lot_number"], body["status"]) == (lot.lot_number, "released")
    signature = body["signature"]
    assert (signature["record"], signature["meaning"], signature["is_valid"]) == (
        "lot",
        "released",
        True,
    )
    assert signature["printed_name"] == printed_name(plant.qa)
    assert signature["signed_at"].endswith("Z")
    lot.refresh_from_db()
    assert lot.status == Lot.Status.RELEASED


def test_lot_disposition_with_a_wrong_password_is_refused(plant):
    lot = plant.receive(plant.api, release=False)
    response = _post(
        plant.qa, "lot-disposition", lot.lot_number, body={"password": "guess", "release": True}
    )
    _refusal(
        response,
        "signature_password_invalid",
        "Signature refused: the password for plant-qa is not correct.",
    )
    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE


def test_lot_disposition_by_cmo_staff_without_approval_rights_is_refused(plant):
    lot = plant.receive(plant.api, release=False)
    response = _post(
        plant.operator,
        "lot-disposition",
        lot.lot_number,
        body={"password": PASSWORD, "release": True},
    )
    _refusal(response, "not_permitted", f"plant-operator may not release or reject lot {lot}.")


def test_a_produced_lot_is_released_only_through_its_batch(plant):
    batch, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    response = _post(
        plant.qa, "lot-disposition", lot.lot_number, body={"password": PASSWORD, "release": True}
    )
    _refusal(
        response,
        "lot_released_through_batch",
        f"Lot {lot} was made by batch {batch}: it is released or rejected through that batch's "
        "disposition.",
    )


# --- lab results --------------------------------------------------------------------------


def test_lab_result_within_specification(plant):
    lot = plant.receive(plant.api, release=False)
    response = _post(
        plant.qa,
        "lot-lab-results",
        lot.lot_number,
        body={
            "test": "Assay",
            "method": "HPLC",
            "value": "99.1",
            "low_limit": "98",
            "high_limit": "102",
            "unit": "%",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["lot"], body["test"], body["outcome"], body["deviation"]) == (
        lot.lot_number,
        "Assay",
        "pass",
        None,
    )
    assert isinstance(body["id"], int)


def test_out_of_specification_result_opens_an_investigation_named_in_the_response(plant):
    # given
    _, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    # when
    response = _post(
        plant.qa,
        "lot-lab-results",
        lot.lot_number,
        body={"test": "Dissolution", "method": "USP <711>", "value": "71", "low_limit": "80"},
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["outcome"] == "oos"
    investigation = Deviation.objects.get(lab_result_id=body["id"])
    assert body["deviation"] == investigation.number
    assert (investigation.category, investigation.severity, investigation.status) == (
        "oos",
        "major",
        "open",
    )
    assert investigation.title == f"OOS: Dissolution on lot {lot}"


def test_lab_result_without_a_specification_is_a_400(plant):
    lot = plant.receive(plant.api, release=False)
    response = _post(
        plant.qa,
        "lot-lab-results",
        lot.lot_number,
        body={"test": "Assay", "method": "HPLC", "value": "99"},
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Give the specification: a low or high limit."


# --- shipments ----------------------------------------------------------------------------


def _ship(user, lot, quantity="3", customer="CUST-1"):
    return _post(
        user,
        "shipment-list",
        body={
            "lot": lot.lot_number,
            "customer": customer,
            "quantity": quantity,
            "reference": "DN-7",
        },
    )


def test_shipment_of_a_released_lot(plant):
    _, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")])
    response = _ship(plant.operator, lot)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["lot"], body["customer"]["code"], body["quantity"], body["reference"]) == (
        lot.lot_number,
        "CUST-1",
        "3.000",
        "DN-7",
    )
    assert Shipment.objects.get(pk=body["id"]).lot == lot


def test_shipment_of_a_lot_in_quarantine_is_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    _refusal(
        _ship(plant.operator, lot),
        "lot_not_released",
        f"Lot {lot} cannot be shipped: its batch {batch} is completed, not released.",
    )
    assert not Shipment.objects.exists()


def test_shipment_of_a_lot_whose_batch_awaits_the_sponsors_release_is_refused(plant):
    # given: CMO QA released the batch; with no agreement in force the sponsor releases too
    batch, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    plant.package(batch)
    batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=True)
    # when
    response = _ship(plant.operator, lot)
    # then
    _refusal(
        response,
        "lot_not_released",
        f"Lot {lot} cannot be shipped: its batch {batch} is under review, released by CMO QA "
        "and awaits the sponsor's release.",
    )
    assert not Shipment.objects.exists()


def test_shipment_of_a_received_lot_is_refused(plant):
    lot = plant.receive(plant.api)
    _refusal(
        _ship(plant.operator, lot),
        "lot_not_shippable",
        f"Lot {lot} is a site material, not a sponsor's product: it cannot be shipped.",
    )


def test_shipment_of_more_than_is_left_is_refused(plant):
    _, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")])
    _refusal(
        _ship(plant.operator, lot, quantity="11"),
        "lot_insufficient",
        f"Lot {lot} has 10 ea left: 11 ea cannot be shipped.",
    )


def test_shipment_to_an_unknown_customer_is_a_400(plant):
    _, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")])
    response = _ship(plant.operator, lot, customer="CUST-404")
    assert response.status_code == 400
    assert response.json()["detail"] == "customer: Unknown, or not in your sponsor scope: CUST-404."


def test_shipment_of_another_sponsors_lot_is_a_400_naming_only_the_key(plant, staff_a):
    _, lot_b = plant.run_batch(plant.product_b, [(plant.receive(plant.api), "5")])
    response = _ship(staff_a, lot_b)
    assert response.status_code == 400
    assert response.json()["detail"] == f"lot: Unknown, or not in your sponsor scope: {lot_b}."
    assert "zzother" not in response.content.decode().lower()


# --- who may write ------------------------------------------------------------------------


def _write_routes(plant):
    """Every write route, for a record of sponsor A."""
    lot = plant.receive(plant.api, release=False)
    batch = services.batch_plan(product=plant.product_a, number="B-W-1", by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    use = services.equipment_use_start(batch=batch, equipment=plant.tank, by=plant.operator)
    services.equipment_use_end(use=use, by=plant.operator)
    cleaning = services.cleaning_record(equipment=plant.tank, method="CIP", performed_by=plant.qa)
    mbr = batch.mbr
    number = batch.number
    return [
        ("post", "lot-list", []),
        ("post", "lot-disposition", [lot.lot_number]),
        ("post", "lot-lab-results", [lot.lot_number]),
        ("post", "batch-list", []),
        ("post", "batch-start", [number]),
        ("post", "batch-steps", [number]),
        ("post", "batch-step-verify", [number, 1]),
        ("post", "batch-consumptions", [number]),
        ("post", "batch-equipment-uses", [number]),
        ("post", "batch-equipment-use-end", [number, use.pk]),
        ("post", "batch-packaging", [number]),
        ("post", "batch-line-clearance", [number]),
        ("post", "batch-reconciliation", [number]),
        ("post", "batch-complete", [number]),
        ("post", "batch-submit-for-review", [number]),
        ("post", "equipment-cleanings", [plant.tank.code]),
        ("post", "equipment-cleaning-verify", [plant.tank.code, cleaning.pk]),
        ("post", "shipment-list", []),
        ("post", "master-batch-record-list", []),
        ("put", "master-batch-record-detail", [mbr.pk]),
        ("patch", "master-batch-record-detail", [mbr.pk]),
        ("post", "master-batch-record-review", [mbr.pk]),
        ("post", "master-batch-record-approve", [mbr.pk]),
        ("post", "master-batch-record-make-effective", [mbr.pk]),
    ]


@pytest.mark.parametrize("role", [Role.SPONSOR_AUDITOR, Role.SPONSOR_APPROVER])
def test_sponsor_users_may_write_nothing(plant, role):
    # given
    user = make_user(sponsor=plant.sponsor_a, role=role, username=f"sponsor-{role}")
    routes = _write_routes(plant)
    lots, batches = Lot.objects.count(), plant.product_a.batches.count()
    # when
    answers = {
        (method, name): _post(user, name, *args, body={"password": PASSWORD}, method=method)
        for method, name, args in routes
    }
    # then
    refused = {key: response.status_code for key, response in answers.items()}
    assert set(refused.values()) == {403}, refused
    assert {response.json()["error"] for response in answers.values()} == {"permission_denied"}
    assert (Lot.objects.count(), plant.product_a.batches.count()) == (lots, batches)


def test_a_sponsor_approver_is_told_the_manufacturing_record_is_read_only(plant):
    approver = plant.sponsor_approver(plant.sponsor_a)
    lots = Lot.objects.count()
    response = _post(
        approver,
        "lot-list",
        body={"material": "RM-API", "lot_number": "R-SP", "quantity": "1", "supplier": "SUP-1"},
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "permission_denied",
        "detail": "Recording manufacturing data needs the change permission on a sponsor; "
        "sponsor users have read access only.",
    }
    assert Lot.objects.count() == lots


def test_cmo_staff_writing_on_another_sponsors_records_get_404(plant, staff_a):
    batch_b, lot_b = plant.run_batch(plant.product_b, [(plant.receive(plant.api), "5")])
    for name, key in (
        ("lot-lab-results", lot_b.lot_number),
        ("batch-start", batch_b.number),
        ("batch-submit-for-review", batch_b.number),
        ("master-batch-record-make-effective", batch_b.mbr_id),
    ):
        response = _post(staff_a, name, key)
        assert response.status_code == 404, (name, response.content)
        assert response.json() == {
            "error": "not_found",
            "detail": "Not found, or not in your sponsor scope.",
        }


def test_writes_need_authentication(plant):
    response = APIClient().post(reverse("api:lot-list"), {}, format="json")
    assert response.status_code == 401


# --- OpenAPI ------------------------------------------------------------------------------

WRITE_PATHS = {
    "/api/v1/lots/": "post",
    "/api/v1/lots/{lot_number}/disposition/": "post",
    "/api/v1/lots/{lot_number}/lab-results/": "post",
    "/api/v1/batches/": "post",
    "/api/v1/batches/{number}/start/": "post",
    "/api/v1/batches/{number}/steps/": "post",
    "/api/v1/batches/{number}/steps/{sequence}/verify/": "post",
    "/api/v1/batches/{number}/consumptions/": "post",
    "/api/v1/batches/{number}/equipment-uses/": "post",
    "/api/v1/batches/{number}/equipment-uses/{use_id}/end/": "post",
    "/api/v1/batches/{number}/packaging/": "post",
    "/api/v1/batches/{number}/packaging/line-clearance/": "post",
    "/api/v1/batches/{number}/packaging/reconciliation/": "post",
    "/api/v1/batches/{number}/complete/": "post",
    "/api/v1/batches/{number}/submit-for-review/": "post",
    "/api/v1/equipment/{code}/cleanings/": "post",
    "/api/v1/equipment/{code}/cleanings/{cleaning_id}/verify/": "post",
    "/api/v1/shipments/": "post",
    "/api/v1/master-batch-records/": "post",
    "/api/v1/master-batch-records/{id}/": "put",
    "/api/v1/master-batch-records/{id}/review/": "post",
    "/api/v1/master-batch-records/{id}/approve/": "post",
    "/api/v1/master-batch-records/{id}/make-effective/": "post",
}


def test_openapi_schema_documents_every_write_with_its_refusals_and_idempotency_key():
    response = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, method in WRITE_PATHS.items():
        operation = paths[path][method]
        assert {"400", "403", "404", "409", "422"} <= set(operation["responses"]), path
        assert operation["responses"]["409"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, path
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["Idempotency-Key"], path
    assert "patch" in paths["/api/v1/master-batch-records/{id}/"]
    verify = paths["/api/v1/batches/{number}/steps/{sequence}/verify/"]["post"]
    body = verify["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/StepVerifyRequest"


def test_openapi_schema_has_no_warnings_about_the_writes():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    messages = list(GENERATOR_STATS._warn_cache) + list(GENERATOR_STATS._error_cache)
    ours = [m for m in messages if "batches/api" in m or "qms/idempotency" in m]
    assert ours == []
