"""Real user flows in Chromium against the live server."""

import re

import pytest
from playwright.sync_api import expect

from qms.models import Signature
from sponsors import services
from sponsors.models import QualityAgreement, Role
from tests.factories import PASSWORD, ProductFactory, SponsorFactory, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alpha = SponsorFactory(code="alpha", name="Alpha Therapeutics")
    other = SponsorFactory(code="zzother", name="ZZOTHER Biologics")
    ProductFactory(sponsor=alpha, code="ALP-100", name="Alphacillin 100 mg")
    ProductFactory(sponsor=other, code="ZZ-1", name="ZZOTHER secret product")
    approver = make_user(
        sponsor=alpha,
        role=Role.CMO_QA_APPROVER,
        username="priya",
        first_name="Priya",
        last_name="Raman",
    )
    auditor = make_user(sponsor=alpha, role=Role.SPONSOR_AUDITOR, username="audrey")
    draft = services.quality_agreement_create_draft(
        sponsor=alpha,
        by=approver,
        critical_deviation_notice_hours=24,
        major_deviation_notice_hours=72,
        rules={"sop": ("notify", 30)},
    )
    return {"alpha": alpha, "approver": approver, "auditor": auditor, "draft": draft}


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_qa_approver_signs_a_draft_agreement_into_force(page, live_server, world):
    _login(page, live_server.url, "priya")
    expect(page.get_by_role("heading", name="Sponsors")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("ZZOTHER")

    page.get_by_role("link", name="Alpha Therapeutics").click()
    page.get_by_role("link", name="v1").click()
    expect(
        page.get_by_role("heading", name=re.compile("Approve and make effective"))
    ).to_be_visible()

    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign: approve").click()
    expect(page.locator(".errors")).to_contain_text("the password for priya is not correct")
    assert not Signature.objects.exists()

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign: approve").click()

    expect(page.locator(".messages")).to_contain_text("approved and effective")
    expect(page.locator("#signatures")).to_contain_text(
        re.compile(r"Priya Raman — approved — \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
    )
    expect(page.locator("#audit-trail")).to_contain_text("draft → effective")
    world["draft"].refresh_from_db()
    assert world["draft"].status == QualityAgreement.Status.EFFECTIVE


def test_sponsor_auditor_sees_only_the_portal_of_their_sponsor(page, live_server, world):
    _login(page, live_server.url, "audrey")

    expect(page).to_have_url(f"{live_server.url}/portal/")
    expect(page.get_by_role("heading", name="Alpha Therapeutics")).to_be_visible()
    expect(page.locator("body")).to_contain_text("Alphacillin 100 mg")
    expect(page.locator("body")).not_to_contain_text("ZZOTHER")

    page.get_by_role("link", name="ALP-100").click()
    expect(page.locator("#audit-trail")).to_contain_text("product")

    response = page.goto(f"{live_server.url}/products/")
    assert response.status == 403


def test_product_list_filters_in_place(page, live_server, world):
    make_user(sponsor=world["alpha"], role=Role.CMO_STAFF, username="quinn")
    _login(page, live_server.url, "quinn")
    page.get_by_role("link", name="Products").click()
    expect(page.locator("#product-table")).to_contain_text("ALP-100")

    page.get_by_label("Search").fill("nothing-like-this")
    page.get_by_role("button", name="Filter").click()

    expect(page.locator("#product-table")).to_contain_text("No products match.")
    expect(page).to_have_url(re.compile(r"q=nothing-like-this"))
