"""The sponsor portal's view of the manufacturing record: a sponsor's auditors and approvers read
their own batches, lots and recall scope, and of a raw lot shared with another sponsor nothing
but their own use; everyone else is refused."""

import csv
import io
from datetime import timedelta

import pypdf
import pytest
from django.test import Client
from django.urls import reverse

from batches import services
from batches.selectors import ROW_FIELDS
from sponsors.models import Role
from tests.batches.test_pages import MARKER, build_site
from tests.factories import make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

SPONSOR_ROLES = [Role.SPONSOR_AUDITOR, Role.SPONSOR_APPROVER]


@pytest.fixture
def site(plant):
    return build_site(plant)


@pytest.fixture(params=SPONSOR_ROLES, ids=["auditor", "approver"])
def reader(request, plant):
    """A sponsor-A auditor or approver."""
    return make_user(sponsor=plant.sponsor_a, role=request.param, username="portal-reader")


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def _assert_nothing_of_b(site, text: str, where: str) -> None:
    assert MARKER not in text.upper(), where
    assert site.lot_b.lot_number not in text, where
    assert site.batch_b.number not in text, where


def _pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def _portal_pages(site):
    raw, lot_a = site.raw.lot_number, site.lot_a.lot_number
    return [
        reverse("portal:home"),
        reverse("portal:batches"),
        reverse("portal:batch", args=[site.batch_a.number]),
        reverse("portal:lot", args=[lot_a]),
        reverse("portal:lot", args=[raw]),
        reverse("portal:recall", args=[raw]),
        reverse("portal:recall", args=[raw]) + "?direction=backward",
        reverse("portal:recall", args=[lot_a]) + "?direction=backward",
        reverse("portal:recall-csv", args=[raw]),
        reverse("portal:recall-csv", args=[lot_a]) + "?direction=backward",
    ]


# --- own records -----------------------------------------------------------------------------


def test_portal_home_links_to_the_batches(site, reader):
    html = _get(_client(reader), reverse("portal:home"))
    assert reverse("portal:batches") in html


def test_batch_list_shows_only_own_batches(site, reader):
    html = _get(_client(reader), reverse("portal:batches"))
    assert site.batch_a.number in html and "ALP-100" in html and "90.0 %" in html
    assert reverse("portal:batch", args=[site.batch_a.number]) in html
    assert f'href="{reverse("batches:batch", args=[site.batch_a.number])}"' not in html
    _assert_nothing_of_b(site, html, "batch list")


def test_batch_list_filters_by_product_and_status(site, reader):
    client = _client(reader)
    plant = site.plant
    planned = services.batch_plan(product=plant.product_a, number="B-PLANNED", by=plant.operator)
    url = reverse("portal:batches")
    html = _get(client, url + "?status=planned")
    assert planned.number in html and site.batch_a.number not in html
    html = _get(client, url + f"?product={plant.product_a.pk}&status={site.batch_a.status}")
    assert site.batch_a.number in html and planned.number not in html


def test_batch_list_product_filter_offers_no_other_sponsors_product(site, reader):
    html = _get(_client(reader), reverse("portal:batches") + f"?product={site.plant.product_b.pk}")
    assert "Select a valid choice" in html
    _assert_nothing_of_b(site, html, "filtered batch list")


def test_batch_list_htmx_request_gets_only_the_table(site, reader):
    response = _client(reader).get(reverse("portal:batches"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<table>" in html and "<html" not in html and site.batch_a.number in html


def test_batch_record_shows_steps_consumption_equipment_lab_packaging_and_trail(site, reader):
    html = _get(_client(reader), reverse("portal:batch", args=[site.batch_a.number]))
    plant = site.plant
    assert "Alphacillin 100 mg manufacture v1" in html and "90.0 %" in html
    assert "Dispense" in html and "5–6 kg" in html
    assert plant.operator.get_full_name() in html and plant.verifier.get_full_name() in html
    assert reverse("portal:lot", args=[site.raw.lot_number]) in html
    assert reverse("portal:lot", args=[site.lot_a.lot_number]) in html
    assert "TANK-4" in html and "HPLC-12" in html
    assert "LBL-7" in html and "100 issued = 90 used + 6 destroyed + 4 returned" in html
    assert "released" in html and 'id="audit-trail"' in html and "consumption" in html
    assert "/lots/" not in html.replace("/portal/lots/", "")
    assert f'href="{reverse("batches:equipment", args=["TANK-4"])}"' not in html
    _assert_nothing_of_b(site, html, "batch record")


def test_own_lot_page_shows_facts_balance_lab_results_genealogy_and_shipments(site, reader):
    html = _get(_client(reader), reverse("portal:lot", args=[site.lot_a.lot_number]))
    assert "FG-ALP-100" in html and "Released" in html
    assert "Remaining</dt><dd><strong>5 ea" in html  # 9 made, 4 shipped
    assert "HPLC-12" in html and "99.1 %" in html
    assert site.raw.lot_number in html and site.excipient.lot_number in html
    assert "Northwind Wholesale" in html
    assert reverse("portal:recall", args=[site.lot_a.lot_number]) in html
    _assert_nothing_of_b(site, html, "own lot")


def test_shared_raw_lot_page_shows_only_own_consumption(site, reader):
    html = _get(_client(reader), reverse("portal:lot", args=[site.raw.lot_number]))
    assert "Chemco GmbH" in html and site.raw.receipt_reference in html
    assert "Consumed by your batches</dt><dd>5 kg" in html
    assert "Remaining" not in html and "90 kg" not in html and "10 kg" not in html
    assert site.lot_a.lot_number in html and site.batch_a.number in html
    _assert_nothing_of_b(site, html, "shared raw lot")


def test_recall_scope_of_shared_raw_lot_holds_only_own_sponsor(site, reader):
    html = _get(_client(reader), reverse("portal:recall", args=[site.raw.lot_number]))
    assert "<h2>Alpha Therapeutics</h2>" in html and "<h2>Site materials</h2>" in html
    assert site.lot_a.lot_number in html and site.batch_a.number in html
    assert "Northwind Wholesale" in html
    assert "recall.csv?direction=forward" in html and "recall.pdf?direction=forward" in html
    assert reverse("portal:recall-csv", args=[site.raw.lot_number]) in html
    _assert_nothing_of_b(site, html, "recall scope")


def test_backward_trace_reaches_supplier_and_receipt(site, reader):
    url = reverse("portal:recall", args=[site.lot_a.lot_number]) + "?direction=backward"
    html = _get(_client(reader), url)
    assert "Backward trace" in html
    assert site.raw.lot_number in html and site.excipient.lot_number in html
    assert "Chemco GmbH" in html and site.raw.receipt_reference in html
    _assert_nothing_of_b(site, html, "backward trace")


def test_recall_csv_of_shared_raw_lot_holds_only_own_rows(site, reader):
    response = _client(reader).get(reverse("portal:recall-csv", args=[site.raw.lot_number]))
    text = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f'filename="recall-{site.raw.lot_number}-forward.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ROW_FIELDS
    assert {(r["record"], r["lot"] or r["batch"]) for r in rows} == {
        ("lot", site.raw.lot_number),
        ("lot", site.lot_a.lot_number),
        ("batch", site.batch_a.number),
        ("shipment", site.lot_a.lot_number),
    }
    _assert_nothing_of_b(site, text, "recall CSV")


def test_recall_pdf_of_shared_raw_lot_holds_only_own_sponsor(site, reader):
    response = _client(reader).get(reverse("portal:recall-pdf", args=[site.raw.lot_number]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = _pdf_text(response.content)
    assert site.lot_a.lot_number in text and "Alpha Therapeutics" in text
    assert reader.get_username() in text
    _assert_nothing_of_b(site, text, "recall PDF")


def test_every_portal_page_is_free_of_the_other_sponsor(site, reader):
    client = _client(reader)
    for url in _portal_pages(site):
        _assert_nothing_of_b(site, _get(client, url), url)


# --- other sponsors' records and other users -------------------------------------------------


@pytest.mark.parametrize(
    "route", ["portal:lot", "portal:recall", "portal:recall-csv", "portal:recall-pdf"]
)
def test_other_sponsors_lot_is_not_found(site, reader, route):
    _get(_client(reader), reverse(route, args=[site.lot_b.lot_number]), status=404)


def test_other_sponsors_batch_is_not_found(site, reader):
    _get(_client(reader), reverse("portal:batch", args=[site.batch_b.number]), status=404)


def test_a_site_lot_their_batches_never_used_is_not_found(site, reader):
    unused = site.plant.receive(site.plant.api)
    _get(_client(reader), reverse("portal:lot", args=[unused.lot_number]), status=404)


def test_expired_auditor_is_refused(site):
    expired = make_user(
        sponsor=site.plant.sponsor_a,
        role=Role.SPONSOR_AUDITOR,
        username="old-auditor",
        starts_ago=timedelta(days=30),
        expires_in=-timedelta(days=1),
    )
    client = _client(expired)
    for url in _portal_pages(site):
        html = _get(client, url, status=403)
        assert "ask the CMO to renew your access grant" in html, url


def test_cmo_users_are_refused(site):
    for user in (site.plant.qa, site.user_a):
        client = _client(user)
        for url in _portal_pages(site):
            html = _get(client, url, status=403)
            assert "The portal is for sponsor users." in html, url


def test_anonymous_is_sent_to_login(site):
    for url in _portal_pages(site):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


# --- query counts ----------------------------------------------------------------------------


def test_portal_batch_list_query_count_is_constant(plant):
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR)
    client = _client(auditor)

    def grow(own, other):
        for product, n in ((plant.product_a, own), (plant.product_b, other)):
            for _ in range(n):
                services.batch_plan(product=product, number=plant.next("B"), by=plant.operator)

    assert_constant_queries(client, reverse("portal:batches"), lambda n: grow(n, 5))


def test_portal_recall_page_query_count_is_constant(plant):
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR)
    client = _client(auditor)
    raw = plant.receive(plant.api, quantity="1000")
    northwind = plant.customers[0]

    def grow(own, other):
        for product, n in ((plant.product_a, own), (plant.product_b, other)):
            for _ in range(n):
                _, lot = plant.run_batch(product, [(raw, "1")])
                services.shipment_create(
                    lot=lot, customer=northwind, quantity="1", by=plant.operator
                )

    url = reverse("portal:recall", args=[raw.lot_number])
    assert_constant_queries(client, url, lambda n: grow(n, 2))


def test_portal_shared_lot_page_query_count_is_constant(plant):
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR)
    client = _client(auditor)
    raw = plant.receive(plant.api, quantity="1000")

    def grow(own, other):
        for product, n in ((plant.product_a, own), (plant.product_b, other)):
            for _ in range(n):
                batch = services.batch_plan(product=product, number=plant.next("B"), by=plant.qa)
                services.batch_start(batch=batch, by=plant.qa)
                services.batch_consume(batch=batch, lot=raw, quantity="1", by=plant.qa)

    url = reverse("portal:lot", args=[raw.lot_number])
    assert_constant_queries(client, url, lambda n: grow(n, 2))
