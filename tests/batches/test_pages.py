"""The manufacturing-record pages: each renders its facts for CMO staff, out-of-scope records are
404s, another sponsor's records never show, and list and record pages cost constant queries."""

from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse

from batches import services
from sponsors.models import Role
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

MARKER = "ZZOTHER"


@dataclass
class Site:
    plant: object
    raw: object
    excipient: object
    batch_a: object
    lot_a: object
    batch_b: object
    lot_b: object
    user_a: object


def run_full_batch(plant, product, inputs, *, equipment=None, ship_to=None, ship_quantity="4"):
    """A batch with everything its record page shows: equipment use, consumption, verified
    steps, the output lot with a lab result, packaging with line clearance and reconciled labels,
    release and (optionally) a shipment."""
    batch = services.batch_plan(product=product, number=plant.next("B"), by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    if equipment is not None:
        services.equipment_use_start(batch=batch, equipment=equipment, by=plant.operator)
    for lot, quantity in inputs:
        services.batch_consume(batch=batch, lot=lot, quantity=quantity, by=plant.operator)
    for step in batch.mbr.steps.all():
        executed = services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    lot = services.batch_complete(
        batch=batch, output_lot_number=plant.next("L"), quantity="9", by=plant.operator
    )
    services.lab_result_record(
        lot=lot,
        test="Assay",
        method="HPLC-12",
        value="99.1",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.qa,
    )
    packaging = services.packaging_start(batch=batch, label_version="LBL-7", by=plant.operator)
    services.packaging_clear_line(packaging=packaging, user=plant.qa, password=PASSWORD)
    services.packaging_reconcile(
        packaging=packaging, issued=100, used=90, destroyed=6, returned=4, by=plant.operator
    )
    plant.release(batch)
    lot.refresh_from_db()
    if ship_to is not None:
        services.shipment_create(
            lot=lot, customer=ship_to, quantity=ship_quantity, by=plant.operator
        )
    return batch, lot


def build_site(plant) -> Site:
    """Sponsor A and sponsor B (ZZOTHER) both consume one shared raw lot on Tank 4, with a
    verified cleaning in between; each ships to a customer."""
    raw = plant.receive(plant.api)
    excipient = plant.receive(plant.excipient)
    northwind, zzother_pharmacy = plant.customers
    batch_a, lot_a = run_full_batch(
        plant,
        plant.product_a,
        [(raw, "5"), (excipient, "5")],
        equipment=plant.tank,
        ship_to=northwind,
    )
    cleaning = services.cleaning_record(
        equipment=plant.tank, method="CIP caustic wash", performed_by=plant.operator
    )
    services.cleaning_verify(cleaning=cleaning, verified_by=plant.verifier, password=PASSWORD)
    batch_b, lot_b = run_full_batch(
        plant, plant.product_b, [(raw, "5")], equipment=plant.tank, ship_to=zzother_pharmacy
    )
    user_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="only-alpha")
    return Site(plant, raw, excipient, batch_a, lot_a, batch_b, lot_b, user_a)


@pytest.fixture
def site(plant):
    return build_site(plant)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


# --- each page renders its facts ------------------------------------------------------------


def test_lot_list_shows_lots_of_every_sponsor_in_scope(site):
    html = _get(_client(site.plant.qa), reverse("batches:lots"))
    for lot in (site.raw, site.lot_a, site.lot_b):
        assert lot.lot_number in html
    assert "Chemco GmbH" in html


def test_lot_list_filters_by_material_status_and_sponsor(site):
    client = _client(site.plant.qa)
    html = _get(client, reverse("batches:lots") + f"?material={site.plant.finished_a.pk}")
    assert site.lot_a.lot_number in html and site.raw.lot_number not in html
    html = _get(client, reverse("batches:lots") + f"?sponsor={site.plant.sponsor_a.pk}")
    assert site.lot_a.lot_number in html and site.raw.lot_number in html
    assert site.lot_b.lot_number not in html
    quarantined = site.plant.receive(site.plant.api, release=False)
    html = _get(client, reverse("batches:lots") + "?status=quarantine")
    assert quarantined.lot_number in html and site.raw.lot_number not in html


def test_lot_list_sorts_by_lot_number(site):
    client = _client(site.plant.qa)
    ascending = _get(client, reverse("batches:lots") + "?sort=lot")
    descending = _get(client, reverse("batches:lots") + "?sort=-lot")
    first, last = site.lot_a.lot_number, site.raw.lot_number
    assert ascending.index(f">{first}<") < ascending.index(f">{last}<")
    assert descending.index(f">{last}<") < descending.index(f">{first}<")


def test_lot_list_htmx_request_gets_only_the_table(site):
    response = _client(site.plant.qa).get(reverse("batches:lots"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<table>" in html and "<html" not in html


def test_lot_page_shows_facts_balance_lab_results_and_genealogy(site):
    html = _get(_client(site.plant.qa), reverse("batches:lot", args=[site.lot_a.lot_number]))
    assert "FG-ALP-100" in html
    assert "Released" in html
    assert "Remaining</dt><dd><strong>5 ea" in html  # 9 made, 4 shipped
    assert "HPLC-12" in html and "99.1 %" in html
    assert site.raw.lot_number in html and site.excipient.lot_number in html
    assert site.batch_a.number in html
    assert "Northwind Wholesale" in html
    assert reverse("batches:recall", args=[site.lot_a.lot_number]) in html
    assert "released" in html  # the release signature's meaning
    assert 'id="audit-trail"' in html


def test_raw_lot_page_shows_supplier_receipt_and_remaining(site):
    html = _get(_client(site.plant.qa), reverse("batches:lot", args=[site.raw.lot_number]))
    assert "Chemco GmbH" in html
    assert site.raw.receipt_reference in html
    assert "Remaining</dt><dd><strong>90 kg" in html
    assert site.lot_a.lot_number in html and site.lot_b.lot_number in html


def test_recall_page_groups_forward_scope_by_sponsor(site):
    html = _get(_client(site.plant.qa), reverse("batches:recall", args=[site.raw.lot_number]))
    alpha, other, site_materials = (
        html.index("<h2>Alpha Therapeutics</h2>"),
        html.index(f"<h2>{MARKER} Biologics</h2>"),
        html.index("<h2>Site materials</h2>"),
    )
    assert alpha < other < site_materials
    assert site.lot_a.lot_number in html[alpha:other]
    assert site.batch_a.number in html[alpha:other]
    assert site.lot_b.lot_number in html[other:site_materials]
    assert "Northwind Wholesale" in html and f"{MARKER} Pharmacy Chain" in html
    assert "recall.csv?direction=forward" in html and "recall.pdf?direction=forward" in html


def test_recall_page_backward_traces_to_supplier(site):
    url = reverse("batches:recall", args=[site.lot_a.lot_number]) + "?direction=backward"
    html = _get(_client(site.plant.qa), url)
    assert "Backward trace" in html
    assert site.raw.lot_number in html and site.excipient.lot_number in html
    assert "Chemco GmbH" in html and site.raw.receipt_reference in html
    assert site.lot_b.lot_number not in html
    assert "recall.pdf?direction=backward" in html


def test_batch_list_shows_product_mbr_status_and_yield(site):
    html = _get(_client(site.plant.qa), reverse("batches:batches"))
    assert site.batch_a.number in html and site.batch_b.number in html
    assert "ALP-100" in html and "v1" in html and "90.0 %" in html


def test_batch_list_filters_by_product_status_and_sponsor(site):
    client = _client(site.plant.qa)
    html = _get(client, reverse("batches:batches") + f"?product={site.plant.product_a.pk}")
    assert site.batch_a.number in html and site.batch_b.number not in html
    html = _get(client, reverse("batches:batches") + f"?sponsor={site.plant.sponsor_b.pk}")
    assert site.batch_b.number in html and site.batch_a.number not in html
    html = _get(client, reverse("batches:batches") + "?status=planned")
    assert site.batch_a.number not in html


def test_batch_page_shows_the_executed_record(site):
    html = _get(_client(site.plant.qa), reverse("batches:batch", args=[site.batch_a.number]))
    operator, verifier = site.plant.operator.get_full_name(), site.plant.verifier.get_full_name()
    assert "Alphacillin 100 mg manufacture v1" in html
    assert "90.0 %" in html
    assert "Dispense" in html and "5–6 kg" in html and "5 kg" in html
    assert operator in html and verifier in html
    assert site.raw.lot_number in html and site.excipient.lot_number in html
    assert "TANK-4" in html
    assert site.lot_a.lot_number in html and "HPLC-12" in html
    assert "LBL-7" in html and "100 issued = 90 used + 6 destroyed + 4 returned" in html
    assert "balanced" in html and "cleared" in html
    assert "executedstep" in html and "consumption" in html  # related records' audit events


def test_batch_page_flags_a_step_out_of_limits(plant):
    raw = plant.receive(plant.api)
    batch = services.batch_plan(product=plant.product_a, number="B-OOL", by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    services.batch_consume(batch=batch, lot=raw, quantity="5", by=plant.operator)
    step = batch.mbr.steps.get(sequence=1)
    services.batch_record_step(
        batch=batch, step=step, performed_by=plant.operator, value="7.5", note="Re-weighed."
    )
    html = _get(_client(plant.qa), reverse("batches:batch", args=["B-OOL"]))
    assert "7.5 kg" in html and "no — out of limits" in html
    assert "not verified" in html and "not recorded" in html
    assert "No packaging recorded." in html and "No output lot yet." in html


def test_mbr_page_shows_bom_steps_versions_and_approval(site):
    mbr = site.batch_a.mbr
    html = _get(_client(site.plant.qa), reverse("batches:mbr", args=[mbr.pk]))
    assert "Alphacillin 100 mg manufacture" in html and "Effective" in html
    assert "RM-API" in html and "RM-EXC" in html
    assert "Blend" in html and "10–15 min" in html
    assert site.batch_a.number in html and site.lot_a.lot_number in html
    assert "approved" in html  # the approval signature


def test_mbr_page_lists_every_version_of_the_product(site):
    plant = site.plant
    draft = services.mbr_create_draft(
        product=plant.product_a,
        title="Alphacillin v2 draft",
        batch_size="100",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[(plant.api, "5", "kg")],
        steps=[{"title": "Dispense"}],
        by=plant.qa,
    )
    html = _get(_client(plant.qa), reverse("batches:mbr", args=[site.batch_a.mbr.pk]))
    assert reverse("batches:mbr", args=[draft.pk]) in html and "Draft" in html


def test_equipment_list_flags_expired_qualification(site):
    from datetime import date

    from batches.models import Equipment

    Equipment.objects.create(
        code="MIX-9", name="Old mixer", kind="mixer", qualified_until=date(2020, 1, 1)
    )
    html = _get(_client(site.plant.qa), reverse("batches:equipment-list"))
    assert "TANK-4" in html and "MIX-9" in html
    assert html.count("expired") == 1


def test_equipment_page_shows_use_and_cleaning_history(site):
    html = _get(_client(site.plant.qa), reverse("batches:equipment", args=["TANK-4"]))
    assert site.batch_a.number in html and site.batch_b.number in html
    assert "CIP caustic wash" in html
    assert site.plant.verifier.get_full_name() in html


# --- scope: another sponsor's records ----------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    ["batches:lot", "batches:recall", "batches:recall-csv", "batches:recall-pdf"],
)
def test_other_sponsors_lot_is_not_found(site, route):
    _get(_client(site.user_a), reverse(route, args=[site.lot_b.lot_number]), status=404)


def test_other_sponsors_batch_and_mbr_are_not_found(site):
    client = _client(site.user_a)
    _get(client, reverse("batches:batch", args=[site.batch_b.number]), status=404)
    _get(client, reverse("batches:mbr", args=[site.batch_b.mbr_id]), status=404)


def test_unknown_records_are_not_found(site):
    client = _client(site.plant.qa)
    _get(client, reverse("batches:lot", args=["NO-SUCH-LOT"]), status=404)
    _get(client, reverse("batches:batch", args=["NO-SUCH-BATCH"]), status=404)
    _get(client, reverse("batches:equipment", args=["NO-SUCH-TANK"]), status=404)


def _pages_of(site):
    return [
        reverse("batches:lots"),
        reverse("batches:lot", args=[site.raw.lot_number]),
        reverse("batches:lot", args=[site.lot_a.lot_number]),
        reverse("batches:recall", args=[site.raw.lot_number]),
        reverse("batches:recall", args=[site.lot_a.lot_number]) + "?direction=backward",
        reverse("batches:recall-csv", args=[site.raw.lot_number]),
        reverse("batches:batches"),
        reverse("batches:batch", args=[site.batch_a.number]),
        reverse("batches:mbr", args=[site.batch_a.mbr_id]),
        reverse("batches:equipment-list"),
        reverse("batches:equipment", args=["TANK-4"]),
    ]


def test_sponsor_a_user_never_sees_zzother(site):
    client = _client(site.user_a)
    for url in _pages_of(site):
        html = _get(client, url)
        assert MARKER not in html.upper(), url
        assert site.batch_b.number not in html, url
        assert site.lot_b.lot_number not in html, url


def test_shared_raw_lot_recall_shows_only_own_sponsor(site):
    html = _get(_client(site.user_a), reverse("batches:recall", args=[site.raw.lot_number]))
    assert site.lot_a.lot_number in html and site.batch_a.number in html
    assert "Northwind Wholesale" in html
    assert site.lot_b.lot_number not in html and site.batch_b.number not in html
    assert f"{MARKER} Pharmacy Chain" not in html
    assert MARKER not in html


def test_equipment_page_shows_only_own_sponsors_uses(site):
    html = _get(_client(site.user_a), reverse("batches:equipment", args=["TANK-4"]))
    assert site.batch_a.number in html
    assert site.batch_b.number not in html
    assert "CIP caustic wash" in html


def test_sponsor_users_are_refused_and_anonymous_sent_to_login(site):
    auditor = make_user(sponsor=site.plant.sponsor_a, role=Role.SPONSOR_AUDITOR)
    client, anonymous = _client(auditor), Client()
    for url in _pages_of(site):
        _get(client, url, status=403)
        response = anonymous.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


# --- query counts --------------------------------------------------------------------------


def test_lot_list_query_count_is_constant(plant):
    client = _client(plant.qa)

    def grow(n):
        for _ in range(n):
            plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")])

    def more(n):
        for _ in range(n):
            plant.receive(plant.api)

    assert_constant_queries(client, reverse("batches:lots"), grow, more=more)


def test_batch_list_query_count_is_constant(plant):
    client = _client(plant.qa)
    raw = plant.receive(plant.api, quantity="1000")

    def grow(n):
        for _ in range(n):
            plant.run_batch(plant.product_a, [(raw, "5")])

    def more(n):
        for _ in range(n):
            services.batch_plan(product=plant.product_b, number=plant.next("B"), by=plant.operator)

    assert_constant_queries(client, reverse("batches:batches"), grow, more=more)


def test_batch_page_query_count_is_constant(plant):
    client = _client(plant.qa)
    batch = services.batch_plan(product=plant.product_a, number="B-BIG", by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    url = reverse("batches:batch", args=["B-BIG"])

    def consume(n):
        for _ in range(n):
            lot = plant.receive(plant.api, quantity="1")
            services.batch_consume(batch=batch, lot=lot, quantity="1", by=plant.operator)

    assert_constant_queries(client, url, consume)


def test_recall_page_query_count_is_constant(plant):
    client = _client(plant.qa)
    raw = plant.receive(plant.api, quantity="1000")
    northwind = plant.customers[0]

    def grow(n):
        for index in range(n):
            product = plant.product_a if index % 2 else plant.product_b
            _, lot = plant.run_batch(product, [(raw, "1")])
            services.shipment_create(lot=lot, customer=northwind, quantity="1", by=plant.operator)

    assert_constant_queries(client, reverse("batches:recall", args=[raw.lot_number]), grow)
