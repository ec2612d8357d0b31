"""The recall flow in Chromium: CMO QA follows a shared raw lot to both sponsors' goods and
downloads a backward trace; a sponsor auditor follows their own batch to its recall scope and
never meets the other sponsor."""

import csv
import re

import pytest
from playwright.sync_api import expect

from batches.selectors import ROW_FIELDS
from sponsors.models import Role
from tests.batches.conftest import plant  # noqa: F401
from tests.batches.test_pages import MARKER, build_site
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(settings, plant):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    site = build_site(plant)
    make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="audrey")
    return site


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_cmo_qa_follows_a_shared_raw_lot_and_downloads_a_backward_trace(page, live_server, site):
    raw, lot_a, lot_b = site.raw.lot_number, site.lot_a.lot_number, site.lot_b.lot_number
    _login(page, live_server.url, "plant-qa")
    expect(page.get_by_role("heading", name="Sponsors")).to_be_visible()

    page.get_by_role("link", name="Lots", exact=True).click()
    expect(page.get_by_role("heading", name="Lots")).to_be_visible()
    page.locator("#lot-table").get_by_role("link", name=raw, exact=True).click()
    expect(page.get_by_role("heading", name=f"Lot {raw}")).to_be_visible()

    page.get_by_role("link", name="Recall scope (forward)").click()
    expect(page.get_by_role("heading", name=f"Forward recall scope of lot {raw}")).to_be_visible()
    groups = page.locator("section.sponsor-group")
    alpha = groups.filter(has=page.get_by_role("heading", name="Alpha Therapeutics"))
    other = groups.filter(has=page.get_by_role("heading", name=f"{MARKER} Biologics"))
    expect(alpha).to_contain_text(lot_a)
    expect(alpha).not_to_contain_text(lot_b)
    expect(other).to_contain_text(lot_b)
    expect(page.locator("ul.customers")).to_contain_text("Northwind Wholesale")
    expect(page.locator("ul.customers")).to_contain_text(f"{MARKER} Pharmacy Chain")

    alpha.get_by_role("link", name=lot_a, exact=True).first.click()
    expect(page.get_by_role("heading", name=f"Lot {lot_a}")).to_be_visible()
    page.get_by_role("link", name="Trace (backward)").click()
    expect(page.get_by_role("heading", name=f"Backward trace of lot {lot_a}")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Chemco GmbH")
    expect(page.locator("main")).not_to_contain_text(lot_b)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"recall-{lot_a}-backward.csv"
    with open(download.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ROW_FIELDS
    lots = {row[3] for row in rows[1:] if row[0] == "lot"}
    assert lots == {lot_a, raw, site.excipient.lot_number}


def test_sponsor_auditor_follows_own_batch_to_its_recall_scope(page, live_server, site):
    batch_a, lot_a, raw = site.batch_a.number, site.lot_a.lot_number, site.raw.lot_number
    body = page.locator("body")
    _login(page, live_server.url, "audrey")

    expect(page).to_have_url(f"{live_server.url}/portal/")
    expect(page.get_by_role("heading", name="Alpha Therapeutics")).to_be_visible()
    page.get_by_role("link", name="Batches", exact=True).click()
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    expect(page.locator("#batch-table")).to_contain_text(batch_a)
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("link", name=batch_a, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/portal/batches/{batch_a}/$"))
    expect(page.get_by_role("heading", name=f"Batch {batch_a}")).to_be_visible()
    expect(body).to_contain_text("100 issued = 90 used + 6 destroyed + 4 returned")
    expect(page.locator("#audit-trail")).to_contain_text("consumption")
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("heading", level=3).get_by_role("link", name=lot_a).click()
    expect(page).to_have_url(re.compile(rf"/portal/lots/{lot_a}/$"))
    expect(body).to_contain_text("HPLC-12")
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("link", name="Recall scope (forward)").click()
    expect(page).to_have_url(re.compile(rf"/portal/lots/{lot_a}/recall/$"))
    expect(page.get_by_role("heading", name=f"Forward recall scope of lot {lot_a}")).to_be_visible()
    expect(body).to_contain_text("Northwind Wholesale")
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("link", name="Show backward trace").click()
    expect(body).to_contain_text(raw)
    page.get_by_role("link", name=raw, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/portal/lots/{raw}/$"))
    expect(body).to_contain_text("Consumed by your batches")
    expect(body).not_to_contain_text("Remaining")
    expect(body).not_to_contain_text(MARKER)
    expect(body).not_to_contain_text(site.lot_b.lot_number)

    response = page.goto(f"{live_server.url}/portal/batches/{site.batch_b.number}/")
    assert response.status == 404
    response = page.goto(f"{live_server.url}/lots/")
    assert response.status == 403
