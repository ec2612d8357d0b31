"""The change-control flow in Chromium: CMO QA drafts, assesses and submits an SOP change that
affects products of two sponsors, each of whose agreements requires its approval; sponsor A's
approver sees only sponsor A's slice in the portal and approves with the password; CMO QA then
tries to make the change effective and is shown the other sponsor's unmet obligation."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from changecontrol.models import ChangeRequest, SponsorObligation
from qms.signatures import signatures_for
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.batches.conftest import plant  # noqa: F401
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MARKER = "ZZOTHER"
SIGNED_AT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"


@pytest.fixture
def site(settings, plant):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for sponsor in (plant.sponsor_a, plant.sponsor_b):
        draft = quality_agreement_create_draft(
            sponsor=sponsor, by=plant.qa, rules={"sop": ("approve", 30)}
        )
        quality_agreement_make_effective(
            agreement=draft,
            user=plant.qa,
            password=PASSWORD,
            effective_from=datetime.now(UTC) - timedelta(days=30),
        )
    priya = make_user(
        sponsor=plant.sponsor_a,
        role=Role.CMO_QA_APPROVER,
        username="priya",
        first_name="Priya",
        last_name="Raman",
    )
    from sponsors.services import access_grant_create

    access_grant_create(user=priya, sponsor=plant.sponsor_b, role=Role.CMO_QA_APPROVER)
    make_user(
        sponsor=plant.sponsor_a,
        role=Role.SPONSOR_APPROVER,
        username="sam",
        first_name="Sam",
        last_name="Okafor",
    )
    return plant


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _fact(page, term):
    return page.locator("dl.facts dt", has_text=term).locator("xpath=following-sibling::dd[1]")


def test_two_sponsor_change_approved_by_one_and_blocked_by_the_other(page, live_server, site):
    base = live_server.url
    proposed = (datetime.now(UTC) + timedelta(days=45)).date()

    # --- CMO QA drafts the change ------------------------------------------------------------
    _login(page, base, "priya")
    page.goto(f"{base}/changes/")
    expect(page.get_by_role("heading", name="Change requests")).to_be_visible()
    page.get_by_role("link", name="Draft a change request").click()
    form = page.locator("form.sign")
    form.get_by_label("Title").fill("Line clearance: second-person check")
    form.get_by_label("Description").fill("SOP-QA-014 revision 5 adds a second-person check.")
    form.get_by_label("Category").select_option(label="SOP")
    form.get_by_label("Affected products").select_option(
        label=[
            "Alpha Therapeutics — ALP-100 Alphacillin 100 mg",
            f"{MARKER} Biologics — ZZOTHER-1 ZZOTHER secret product",
        ]
    )
    form.get_by_label("Subject").fill("SOP-QA-014 Line clearance, revision 5")
    form.get_by_label("Proposed effective date").fill(proposed.isoformat())
    form.get_by_role("button", name="Draft").click()

    expect(page.locator(".messages")).to_contain_text("drafted.")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(re.compile(r"CC-\d{4}-\d{4}"))
    number = re.search(r"CC-\d{4}-\d{4}", heading.inner_text()).group(0)
    expect(_fact(page, "Status")).to_have_text("Draft")
    expect(page.locator("#products")).to_contain_text("ALP-100")
    expect(page.locator("#products")).to_contain_text("ZZOTHER-1")

    # --- risk assessment and submission ---------------------------------------------------
    assess = page.locator("#assess")
    assess.get_by_label("Severity").select_option("3")
    assess.get_by_label("Probability").select_option("2")
    assess.get_by_label("Detectability").select_option("2")
    assess.get_by_label("Rationale").fill("Procedural; caught at batch record review.")
    assess.get_by_role("button", name="Record the assessment").click()
    expect(page.locator(".messages")).to_contain_text(f"Risk of {number} assessed: low.")
    expect(_fact(page, "Risk priority number")).to_have_text("12")

    page.locator("#submit").get_by_role("button", name="Submit").click()
    expect(page.locator(".messages")).to_contain_text(f"Change {number} submitted")
    expect(_fact(page, "Status")).to_have_text("Awaiting sponsors")
    obligations = page.locator("#obligations tbody tr")
    expect(obligations).to_have_count(2)
    expect(obligations.filter(has_text="Alpha Therapeutics")).to_contain_text("Approval pending")
    expect(obligations.filter(has_text=f"{MARKER} Biologics")).to_contain_text("Approval pending")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("User name")).to_be_visible()

    # --- sponsor A's approver in the portal -----------------------------------------------
    body = page.locator("body")
    _login(page, base, "sam")
    expect(page).to_have_url(f"{base}/portal/")
    page.goto(f"{base}/portal/changes/")
    awaiting = page.locator("#awaiting")
    expect(awaiting.get_by_role("heading", name="Awaiting your approval")).to_be_visible()
    expect(awaiting).to_contain_text(f"{number} — Line clearance: second-person check")
    expect(body).not_to_contain_text(MARKER)

    awaiting.get_by_role("link", name=number).click()
    expect(page).to_have_url(f"{base}/portal/changes/{number}/")
    expect(_fact(page, "Your products affected")).to_contain_text("ALP-100")
    expect(_fact(page, "Description")).to_contain_text("adds a second-person check")
    expect(page.locator("#obligation")).to_contain_text("Sponsor approval required")
    expect(body).not_to_contain_text(MARKER)

    decide = page.locator("#decide")
    decide.get_by_label("Approve the change").check()
    decide.get_by_label("Comment").fill("Agreed for Alpha.")
    decide.get_by_label("Password").fill("wrong-password")
    decide.get_by_role("button", name="Sign").click()
    expect(page.locator("#decide .errors")).to_contain_text(
        "Signature refused: the password for sam is not correct."
    )
    decide = page.locator("#decide")
    decide.get_by_label("Approve the change").check()
    decide.get_by_label("Comment").fill("Agreed for Alpha.")
    decide.get_by_label("Earliest effective date you accept").fill(f"{timezone.now():%Y-%m-%d}")
    decide.get_by_label("Password").fill(PASSWORD)
    decide.get_by_role("button", name="Sign").click()

    expect(page.locator(".messages")).to_contain_text(
        f"Change {number} approved for Alpha Therapeutics."
    )
    expect(_fact(page, "Decision")).to_contain_text("Approved by Sam Okafor")
    expect(page.locator("#signatures")).to_contain_text(
        re.compile(rf"Sam Okafor — approved — {SIGNED_AT}")
    )
    expect(page.locator("#decide")).to_have_count(0)
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("User name")).to_be_visible()

    # --- CMO QA tries to make it effective ------------------------------------------------
    _login(page, base, "priya")
    page.goto(f"{base}/changes/{number}/")
    expect(
        page.locator("#obligations tbody tr").filter(has_text="Alpha Therapeutics")
    ).to_contain_text("Approved by Sam Okafor")
    page.locator("#make-effective").get_by_role("button", name="Make effective").click()
    unmet = page.locator("#unmet li")
    expect(unmet).to_have_count(1)
    expect(unmet).to_have_text(f"Sponsor {MARKER} Biologics: approval required, pending")
    expect(page.locator("#make-effective .errors").first).to_contain_text(
        f"Change {number} cannot become effective."
    )
    expect(_fact(page, "Status")).to_have_text("Awaiting sponsors")

    change = ChangeRequest.objects.get(number=number)
    assert change.status == ChangeRequest.Status.AWAITING_SPONSORS
    alpha = change.obligations.get(sponsor=site.sponsor_a)
    assert alpha.status == SponsorObligation.Status.APPROVED
    [(signature, check)] = signatures_for(alpha)
    assert signature.meaning == "approved" and check.is_valid
