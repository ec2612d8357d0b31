"""The manufacturing-record API: what each endpoint returns, sponsor isolation, recall scope and
trace per user, constant query counts, and the OpenAPI schema."""

from dataclasses import dataclass

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from batches import services
from batches.models import Equipment, Material
from sponsors.models import Role
from tests.factories import PASSWORD, make_user
from tests.querycount import count_queries

pytestmark = pytest.mark.django_db

MARKER = "zzother"
NOT_FOUND = {"error": "not_found", "detail": "Not found, or not in your sponsor scope."}


def _run(plant, product, inputs, *, equipment=(), number=None, lot_number=None, labels=None):
    """A batch from plan to released output lot, using `equipment` while it runs; packaged
    under the label version `labels` when given."""
    batch = services.batch_plan(
        product=product, number=number or plant.next("B"), by=plant.operator
    )
    services.batch_start(batch=batch, by=plant.operator)
    for item in equipment:
        services.equipment_use_start(batch=batch, equipment=item, by=plant.operator)
    for lot, quantity in inputs:
        services.batch_consume(batch=batch, lot=lot, quantity=quantity, by=plant.operator)
    for step in batch.mbr.steps.all():
        executed = services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    lot = services.batch_complete(
        batch=batch,
        output_lot_number=lot_number or plant.next("L"),
        quantity="10",
        by=plant.operator,
    )
    if labels is not None:
        plant.package(batch, label_version=labels)
    plant.release(batch)
    lot.refresh_from_db()
    return batch, lot


def _rework_mbr(plant):
    """Version 2 of product A's MBR, which takes a finished lot back in (rework), reviewed,
    approved and in force."""
    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)
    content = services.mbr_content(draft)
    content["bom"] = [*content["bom"], (plant.finished_a, "5", "ea")]
    services.mbr_update_draft(mbr=draft, by=plant.operator, **content)
    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)
    services.mbr_make_effective(mbr=draft, by=plant.qa)
    return draft


@dataclass
class Record:
    plant: object
    raw: object
    excipient: object
    batch_a1: object
    lot_a1: object
    batch_a2: object
    lot_a2: object
    batch_b: object
    lot_b: object
    mixer: Equipment
    ship_a: object
    ship_b: object
    staff_a: object
    auditor_a: object


@pytest.fixture
def record(plant):
    """raw (shared) → A1 → lot_a1 → A2 (+ excipient) → lot_a2 → shipped to Northwind;
    raw → ZZOTHER batch → lot_b → shipped to the ZZOTHER chain. Tank 4 ran A1, was cleaned, then
    ran the ZZOTHER batch; the mixer ran only the ZZOTHER batch."""
    raw = plant.receive(plant.api, quantity="1000")
    excipient = plant.receive(plant.excipient)
    mixer = Equipment.objects.create(
        code="MIX-9", name="Mixer 9", kind="mixer", qualified_until=plant.tank.qualified_until
    )
    batch_a1, lot_a1 = _run(plant, plant.product_a, [(raw, "5")], equipment=[plant.tank])
    cleaning = services.cleaning_record(
        equipment=plant.tank, method="CIP alkaline wash", performed_by=plant.operator
    )
    services.cleaning_verify(cleaning=cleaning, verified_by=plant.verifier, password=PASSWORD)
    batch_b, lot_b = _run(
        plant,
        plant.product_b,
        [(raw, "5")],
        equipment=[plant.tank, mixer],
        number="B-ZZOTHER-1",
        lot_number="L-ZZOTHER-1",
    )
    _rework_mbr(plant)
    batch_a2, lot_a2 = _run(
        plant, plant.product_a, [(lot_a1, "5"), (excipient, "5")], labels="LBL-ALP-100 v3"
    )
    services.lab_result_record(
        lot=lot_a2,
        test="Assay",
        method="HPLC",
        value="99.5",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.qa,
    )
    northwind, other_chain = plant.customers
    ship_a = services.shipment_create(
        lot=lot_a2, customer=northwind, quantity="3", by=plant.operator, reference="DN-A-1"
    )
    ship_b = services.shipment_create(
        lot=lot_b, customer=other_chain, quantity="2", by=plant.operator, reference="DN-B-1"
    )
    return Record(
        plant,
        raw,
        excipient,
        batch_a1,
        lot_a1,
        batch_a2,
        lot_a2,
        batch_b,
        lot_b,
        mixer,
        ship_a,
        ship_b,
        staff_a=make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="only-a"),
        auditor_a=make_user(
            sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="auditor-of-a"
        ),
    )


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _get(user, name, *args, **params):
    response = _client(user).get(reverse(f"api:{name}", args=args), params)
    assert response.status_code == 200, (name, response.status_code, response.content)
    return response.json()


def _codes(rows, key):
    return {row[key] for row in rows}


# --- what each endpoint returns, for a CMO user on both sponsors --------------------------


def test_material_list_shows_site_materials_and_every_product(record):
    rows = _get(record.plant.qa, "material-list")["results"]
    assert _codes(rows, "code") == {"RM-API", "RM-EXC", "FG-ALP-100", "FG-ZZOTHER-1"}
    finished = next(row for row in rows if row["code"] == "FG-ALP-100")
    assert finished == {
        "code": "FG-ALP-100",
        "name": "Alphacillin 100 mg",
        "kind": "finished",
        "unit": "ea",
        "gtin": "",
        "product": "ALP-100",
        "sponsor": "alpha",
    }


def test_material_detail_is_looked_up_by_code(record):
    body = _get(record.plant.qa, "material-detail", "RM-API")
    assert body["kind"] == "raw"
    assert body["sponsor"] is None


def test_lot_list_shows_every_lot_with_its_origin(record):
    rows = _get(record.plant.qa, "lot-list")["results"]
    r = record
    assert _codes(rows, "lot_number") == {
        lot.lot_number for lot in (r.raw, r.excipient, r.lot_a1, r.lot_a2, r.lot_b)
    }
    raw = next(row for row in rows if row["lot_number"] == r.raw.lot_number)
    assert raw["supplier"] == "SUP-1"
    assert raw["produced_by"] is None
    assert raw["receipt_reference"] == r.raw.receipt_reference
    made = next(row for row in rows if row["lot_number"] == r.lot_a2.lot_number)
    assert (made["produced_by"], made["sponsor"], made["status"]) == (
        r.batch_a2.number,
        "alpha",
        "released",
    )


def test_lot_list_filters_by_material_status_and_sponsor(record):
    qa, r = record.plant.qa, record
    by_material = _get(qa, "lot-list", material__code="RM-API")["results"]
    assert _codes(by_material, "lot_number") == {r.raw.lot_number}
    by_sponsor = _get(qa, "lot-list", sponsor__code="alpha")["results"]
    assert _codes(by_sponsor, "lot_number") == {r.lot_a1.lot_number, r.lot_a2.lot_number}
    assert _get(qa, "lot-list", status="quarantine")["results"] == []
    assert len(_get(qa, "lot-list", status="released")["results"]) == 5


def test_lot_list_refuses_an_unknown_status_with_a_json_400(record):
    response = _client(record.plant.qa).get(reverse("api:lot-list"), {"status": "lost"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert (
        "status: Select a valid choice. lost is not one of the available choices."
        in (body["detail"])
    )


def test_lot_detail_carries_its_lab_results(record):
    body = _get(record.plant.qa, "lot-detail", record.lot_a2.lot_number)
    assert body["material"] == "FG-ALP-100"
    [result] = body["lab_results"]
    assert result["test"] == "Assay"
    assert result["outcome"] == "pass"
    assert result["value"] == "99.5000"


def test_unknown_lot_number_is_a_json_404(record):
    response = _client(record.plant.qa).get(reverse("api:lot-detail", args=["NO-SUCH.LOT-1"]))
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_batch_list_shows_both_sponsors_batches(record):
    rows = _get(record.plant.qa, "batch-list")["results"]
    r = record
    assert _codes(rows, "number") == {r.batch_a1.number, r.batch_a2.number, r.batch_b.number}
    row = next(row for row in rows if row["number"] == r.batch_a1.number)
    assert (row["product"], row["sponsor"], row["status"], row["mbr_version"]) == (
        "ALP-100",
        "alpha",
        "released",
        1,
    )
    assert row["yield_percent"] == "100.0"


def test_batch_detail_carries_steps_consumption_equipment_output_and_packaging(record):
    r = record
    body = _get(r.plant.qa, "batch-detail", r.batch_a2.number)
    assert [(s["sequence"], s["title"], s["is_in_limits"]) for s in body["executed_steps"]] == [
        (1, "Dispense", True),
        (2, "Blend", True),
    ]
    assert {s["performed_by"] for s in body["executed_steps"]} == {"plant-operator"}
    assert {s["verified_by"] for s in body["executed_steps"]} == {"plant-verifier"}
    assert [(c["lot"], c["material"], c["quantity"]) for c in body["consumptions"]] == [
        (r.lot_a1.lot_number, "FG-ALP-100", "5.000"),
        (r.excipient.lot_number, "RM-EXC", "5.000"),
    ]
    assert body["equipment_uses"] == []
    [output] = body["output_lots"]
    assert output["lot_number"] == r.lot_a2.lot_number
    assert [result["test"] for result in output["lab_results"]] == ["Assay"]
    assert body["packaging"]["label_version"] == "LBL-ALP-100 v3"
    assert body["packaging"]["labels_issued"] == 100
    assert body["packaging"]["is_reconciled"] is True

    first = _get(r.plant.qa, "batch-detail", r.batch_a1.number)
    assert [use["equipment"] for use in first["equipment_uses"]] == ["TANK-4"]
    assert first["equipment_uses"][0]["ended_at"] is not None
    assert first["packaging"]["label_version"] == "LBL-1 v1"


def test_master_batch_records_carry_bom_and_steps(record):
    rows = _get(record.plant.qa, "master-batch-record-list")["results"]
    assert {(row["product"], row["version"], row["status"]) for row in rows} == {
        ("ALP-100", 2, "effective"),
        ("ALP-100", 1, "superseded"),
        ("ZZOTHER-1", 1, "effective"),
    }
    mbr = next(row for row in rows if row["product"] == "ALP-100")
    assert [(line["material"], line["quantity"]) for line in mbr["bom_lines"]] == [
        ("RM-API", "5.000"),
        ("RM-EXC", "5.000"),
        ("FG-ALP-100", "5.000"),
    ]
    assert [(s["sequence"], s["title"], s["low_limit"]) for s in mbr["steps"]] == [
        (1, "Dispense", "5.0000"),
        (2, "Blend", "10.0000"),
    ]
    assert _get(record.plant.qa, "master-batch-record-detail", mbr["id"]) == mbr


def test_equipment_detail_shows_uses_and_cleanings(record):
    r = record
    assert _codes(_get(r.plant.qa, "equipment-list")["results"], "code") == {"TANK-4", "MIX-9"}
    body = _get(r.plant.qa, "equipment-detail", "TANK-4")
    assert [(u["batch"], u["product"], u["sponsor"]) for u in body["uses"]] == [
        (r.batch_b.number, "ZZOTHER-1", "zzother"),
        (r.batch_a1.number, "ALP-100", "alpha"),
    ]
    [cleaning] = body["cleanings"]
    assert cleaning["method"] == "CIP alkaline wash"
    assert (cleaning["performed_by"], cleaning["verified_by"], cleaning["is_verified"]) == (
        "plant-operator",
        "plant-verifier",
        True,
    )


def test_shipments_name_lot_and_customer(record):
    r = record
    rows = _get(r.plant.qa, "shipment-list")["results"]
    assert _codes(rows, "id") == {r.ship_a.pk, r.ship_b.pk}
    body = _get(r.plant.qa, "shipment-detail", r.ship_a.pk)
    assert body["lot"] == r.lot_a2.lot_number
    assert body["material"] == "FG-ALP-100"
    assert body["customer"]["code"] == "CUST-1"
    assert (body["quantity"], body["unit"], body["reference"]) == ("3.000", "ea", "DN-A-1")
    filtered = _get(r.plant.qa, "shipment-list", customer__code="CUST-2")["results"]
    assert _codes(filtered, "id") == {r.ship_b.pk}


# --- sponsor isolation ----------------------------------------------------------------------

LIST_ROUTES = [
    "material-list",
    "lot-list",
    "batch-list",
    "master-batch-record-list",
    "equipment-list",
    "shipment-list",
]


def _other_sponsor_records(r):
    mbr_b = r.batch_b.mbr_id
    return [
        ("material-detail", "FG-ZZOTHER-1"),
        ("lot-detail", r.lot_b.lot_number),
        ("lot-recall-scope", r.lot_b.lot_number),
        ("lot-trace", r.lot_b.lot_number),
        ("batch-detail", r.batch_b.number),
        ("master-batch-record-detail", mbr_b),
        ("shipment-detail", r.ship_b.pk),
    ]


def _own_records(r):
    return [
        ("material-detail", "RM-API"),
        ("material-detail", "FG-ALP-100"),
        ("lot-detail", r.raw.lot_number),
        ("lot-detail", r.lot_a2.lot_number),
        ("lot-recall-scope", r.raw.lot_number),
        ("lot-trace", r.lot_a2.lot_number),
        ("batch-detail", r.batch_a1.number),
        ("batch-detail", r.batch_a2.number),
        ("master-batch-record-detail", r.batch_a1.mbr_id),
        ("equipment-detail", "TANK-4"),
        ("shipment-detail", r.ship_a.pk),
    ]


@pytest.fixture(params=["staff_a", "auditor_a"])
def sponsor_a_user(request, record):
    return getattr(record, request.param)


def test_sponsor_a_user_never_sees_the_other_sponsor_in_lists(record, sponsor_a_user):
    client = _client(sponsor_a_user)
    for name in LIST_ROUTES:
        response = client.get(reverse(f"api:{name}"))
        assert response.status_code == 200, name
        assert response.json()["results"], name
        assert MARKER not in response.content.decode().lower(), name


def test_sponsor_a_user_sees_own_records_without_the_other_sponsor(record, sponsor_a_user):
    client = _client(sponsor_a_user)
    for name, key in _own_records(record):
        response = client.get(reverse(f"api:{name}", args=[key]))
        assert response.status_code == 200, (name, key, response.content)
        assert MARKER not in response.content.decode().lower(), (name, key)


def test_other_sponsors_records_are_a_json_404(record, sponsor_a_user):
    client = _client(sponsor_a_user)
    for name, key in _other_sponsor_records(record):
        response = client.get(reverse(f"api:{name}", args=[key]))
        assert response.status_code == 404, (name, key)
        assert response.json() == NOT_FOUND


def test_shared_tank_shows_a_sponsor_user_only_their_own_batches(record, sponsor_a_user):
    body = _get(sponsor_a_user, "equipment-detail", "TANK-4")
    assert [use["batch"] for use in body["uses"]] == [record.batch_a1.number]
    assert len(body["cleanings"]) == 1


def test_equipment_only_the_other_sponsor_used_is_hidden_from_a_sponsor_auditor(record):
    response = _client(record.auditor_a).get(reverse("api:equipment-detail", args=["MIX-9"]))
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    codes = _codes(_get(record.auditor_a, "equipment-list")["results"], "code")
    assert codes == {"TANK-4"}


def test_site_equipment_shows_cmo_staff_of_one_sponsor_none_of_the_others_uses(record):
    body = _get(record.staff_a, "equipment-detail", "MIX-9")
    assert body["uses"] == []


def test_sponsor_auditor_sees_site_materials_only_where_own_batches_used_them(record, plant):
    Material.objects.create(code="RM-UNUSED", name="Unused solvent", kind="raw", unit="L")
    codes = _codes(_get(record.auditor_a, "material-list")["results"], "code")
    assert codes == {"RM-API", "RM-EXC", "FG-ALP-100"}
    assert "RM-UNUSED" in _codes(_get(record.staff_a, "material-list")["results"], "code")


# --- recall scope and trace ---------------------------------------------------------------


def _scope(body):
    return {
        "lots": {lot["lot_number"]: lot["depth"] for lot in body["lots"]},
        "batches": {batch["number"] for batch in body["batches"]},
        "shipments": {shipment["id"] for shipment in body["shipments"]},
        "customers": {customer["code"] for customer in body["customers"]},
        "groups": {
            group["sponsor"]: (set(group["lots"]), set(group["batches"]))
            for group in body["groups"]
        },
    }


def test_recall_scope_of_the_shared_raw_lot_for_a_cmo_user_on_both_sponsors(record):
    r = record
    body = _get(r.plant.qa, "lot-recall-scope", r.raw.lot_number)
    assert body["origin"]["lot_number"] == r.raw.lot_number
    assert body["direction"] == "forward"
    assert _scope(body) == {
        "lots": {
            r.raw.lot_number: 0,
            r.lot_a1.lot_number: 1,
            r.lot_b.lot_number: 1,
            r.lot_a2.lot_number: 2,
        },
        "batches": {r.batch_a1.number, r.batch_a2.number, r.batch_b.number},
        "shipments": {r.ship_a.pk, r.ship_b.pk},
        "customers": {"CUST-1", "CUST-2"},
        "groups": {
            "alpha": (
                {r.lot_a1.lot_number, r.lot_a2.lot_number},
                {r.batch_a1.number, r.batch_a2.number},
            ),
            "zzother": ({r.lot_b.lot_number}, {r.batch_b.number}),
            None: ({r.raw.lot_number}, set()),
        },
    }
    assert [group["label"] for group in body["groups"]] == [
        "Alpha Therapeutics",
        "ZZOTHER Biologics",
        "Site materials",
    ]


def test_recall_scope_of_the_shared_raw_lot_for_a_sponsor_a_user(record, sponsor_a_user):
    r = record
    response = _client(sponsor_a_user).get(reverse("api:lot-recall-scope", args=[r.raw.lot_number]))
    assert response.status_code == 200
    assert MARKER not in response.content.decode().lower()
    assert _scope(response.json()) == {
        "lots": {r.raw.lot_number: 0, r.lot_a1.lot_number: 1, r.lot_a2.lot_number: 2},
        "batches": {r.batch_a1.number, r.batch_a2.number},
        "shipments": {r.ship_a.pk},
        "customers": {"CUST-1"},
        "groups": {
            "alpha": (
                {r.lot_a1.lot_number, r.lot_a2.lot_number},
                {r.batch_a1.number, r.batch_a2.number},
            ),
            None: ({r.raw.lot_number}, set()),
        },
    }


def test_trace_of_a_finished_lot_reaches_every_ancestor_with_supplier_and_receipt(
    record, sponsor_a_user
):
    r = record
    body = _get(sponsor_a_user, "lot-trace", r.lot_a2.lot_number)
    assert body["direction"] == "backward"
    assert _scope(body) == {
        "lots": {
            r.lot_a2.lot_number: 0,
            r.lot_a1.lot_number: 1,
            r.excipient.lot_number: 1,
            r.raw.lot_number: 2,
        },
        "batches": {r.batch_a1.number, r.batch_a2.number},
        "shipments": set(),
        "customers": set(),
        "groups": {
            "alpha": (
                {r.lot_a1.lot_number, r.lot_a2.lot_number},
                {r.batch_a1.number, r.batch_a2.number},
            ),
            None: ({r.raw.lot_number, r.excipient.lot_number}, set()),
        },
    }
    raw = next(lot for lot in body["lots"] if lot["lot_number"] == r.raw.lot_number)
    assert (raw["supplier"], raw["receipt_reference"]) == ("SUP-1", r.raw.receipt_reference)


def test_trace_of_the_other_sponsors_lot_for_a_cmo_user_on_both(record):
    r = record
    body = _get(r.plant.qa, "lot-trace", r.lot_b.lot_number)
    assert _scope(body)["lots"] == {r.lot_b.lot_number: 0, r.raw.lot_number: 1}
    assert _scope(body)["batches"] == {r.batch_b.number}


# --- query counts -------------------------------------------------------------------------


def _grow(plant, raw, n):
    for _ in range(n):
        code = plant.next("RM")
        Material.objects.create(code=code, name=f"Solvent {code}", kind="raw", unit="L")
        Equipment.objects.create(
            code=plant.next("EQ"),
            name="Vessel",
            kind="vessel",
            qualified_until=plant.tank.qualified_until,
        )
        services.mbr_create_draft(
            product=plant.product_a,
            title="Revision",
            batch_size="100",
            batch_unit="ea",
            theoretical_yield="10",
            bom=[(plant.api, "5", "kg")],
            steps=[{"title": "Dispense", "parameter": "Weight", "unit": "kg"}],
            by=plant.qa,
        )
        _, lot = _run(plant, plant.product_a, [(raw, "1")], equipment=[plant.tank])
        services.shipment_create(
            lot=lot, customer=plant.customers[0], quantity="1", by=plant.operator
        )
    return lot


def _count(user, url):
    client = APIClient()
    client.force_login(user)
    return count_queries(client, url)


def _counts(plant, auditor, raw, last):
    urls = {name: reverse(f"api:{name}") for name in LIST_ROUTES} | {
        "lot-recall-scope": reverse("api:lot-recall-scope", args=[raw.lot_number]),
        "lot-trace": reverse("api:lot-trace", args=[last.lot_number]),
        "equipment-detail": reverse("api:equipment-detail", args=["TANK-4"]),
    }
    return {
        (user.username, name): _count(user, url)
        for user in (plant.qa, auditor)
        for name, url in urls.items()
    }


def test_lists_and_recall_scope_cost_the_same_queries_for_5_and_50_rows(plant):
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="aud")
    raw = plant.receive(plant.api, quantity="1000")
    last = _grow(plant, raw, 5)
    small = _counts(plant, auditor, raw, last)
    last = _grow(plant, raw, 45)
    large = _counts(plant, auditor, raw, last)
    assert large == small


def test_batch_record_costs_the_same_queries_for_one_input_and_six(plant):
    lots = [plant.receive(plant.api) for _ in range(6)]
    small, _ = _run(plant, plant.product_a, [(lots[0], "1")], equipment=[plant.tank])
    mixer = Equipment.objects.create(
        code="MIX-1", name="Mixer 1", kind="mixer", qualified_until=plant.tank.qualified_until
    )
    inputs = [(lot, "1") for lot in lots]
    large, output = _run(plant, plant.product_a, inputs, equipment=[plant.tank, mixer])
    for test in ("Assay", "Water", "Dissolution"):
        services.lab_result_record(
            lot=output, test=test, method="Ph. Eur.", value="1", high_limit="2", analyst=plant.qa
        )
    url = "api:batch-detail"
    assert _count(plant.qa, reverse(url, args=[large.number])) == _count(
        plant.qa, reverse(url, args=[small.number])
    )


# --- OpenAPI schema -----------------------------------------------------------------------

VIEWSETS = [
    "MaterialViewSet",
    "LotViewSet",
    "BatchViewSet",
    "MasterBatchRecordViewSet",
    "EquipmentViewSet",
    "ShipmentViewSet",
]


def test_openapi_schema_has_the_manufacturing_record_paths():
    response = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/materials/",
        "/api/v1/materials/{code}/",
        "/api/v1/lots/",
        "/api/v1/lots/{lot_number}/",
        "/api/v1/lots/{lot_number}/recall-scope/",
        "/api/v1/lots/{lot_number}/trace/",
        "/api/v1/batches/",
        "/api/v1/batches/{number}/",
        "/api/v1/master-batch-records/",
        "/api/v1/master-batch-records/{id}/",
        "/api/v1/equipment/",
        "/api/v1/equipment/{code}/",
        "/api/v1/shipments/",
        "/api/v1/shipments/{id}/",
    ):
        assert path in paths, path
        assert "404" in paths[path]["get"]["responses"], path
    scope = paths["/api/v1/lots/{lot_number}/recall-scope/"]["get"]
    assert scope["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Genealogy"
    }
    [parameter] = scope["parameters"]
    assert (parameter["name"], parameter["in"], parameter["schema"]["type"]) == (
        "lot_number",
        "path",
        "string",
    )
    lot_filters = {p["name"] for p in paths["/api/v1/lots/"]["get"]["parameters"]}
    assert {"material__code", "status", "sponsor__code", "page"} <= lot_filters


def test_openapi_schema_generates_without_warnings_about_these_endpoints():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    messages = list(GENERATOR_STATS._warn_cache) + list(GENERATOR_STATS._error_cache)
    ours = [m for m in messages if "batches/api.py" in m or any(v in m for v in VIEWSETS)]
    assert ours == []
