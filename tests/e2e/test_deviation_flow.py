"""The deviation flow in Chromium: CMO QA records a major deviation on sponsor A's batch,
investigates it and signs its closure, which the quality agreement reserves to the sponsor; the
sponsor A approver acknowledges the notice in the portal and approves the closure, never meeting
the other sponsor."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from playwright.sync_api import expect

from deviations import services as ds
from deviations.models import Deviation
from qms.models import Signature
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.batches.conftest import plant  # noqa: F401
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MARKER = "ZZOTHER"
NOTICE_HOURS = 48
SIGNED_AT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"


@pytest.fixture
def site(settings, plant):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    draft = quality_agreement_create_draft(
        sponsor=plant.sponsor_a,
        by=plant.qa,
        major_deviation_notice_hours=NOTICE_HOURS,
        critical_deviation_notice_hours=24,
        sponsor_closes_major=True,
    )
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=datetime.now(UTC) - timedelta(days=30),
    )
    batch_a, _ = plant.run_batch(plant.product_a, [], release=False)
    batch_b, _ = plant.run_batch(plant.product_b, [], release=False)
    moment = datetime.now(UTC) - timedelta(days=1)
    ds.deviation_record(
        title=f"{MARKER} tablet press jam",
        description=f"{MARKER} press stopped.",
        category="deviation",
        severity="major",
        occurred_at=moment,
        discovered_at=moment,
        batches=[batch_b],
        by=plant.qa,
    )
    make_user(
        sponsor=plant.sponsor_a,
        role=Role.CMO_QA_APPROVER,
        username="priya",
        first_name="Priya",
        last_name="Raman",
    )
    make_user(
        sponsor=plant.sponsor_a,
        role=Role.SPONSOR_APPROVER,
        username="sam",
        first_name="Sam",
        last_name="Okafor",
    )
    return {"batch_a": batch_a, "batch_b": batch_b}


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _deadline(page, text):
    """The row of the deadlines table (not the notice history) whose title contains `text`."""
    table = page.locator("table", has=page.get_by_role("columnheader", name="Kind"))
    return table.locator("tbody tr", has_text=text)


def _fact(page, term):
    return page.locator("dl.facts dt", has_text=term).locator("xpath=following-sibling::dd[1]")


def test_major_deviation_is_closed_by_cmo_qa_then_approved_by_the_sponsor(page, live_server, site):
    base = live_server.url
    batch = site["batch_a"].number
    discovered = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    occurred = discovered - timedelta(hours=1)
    due = discovered + timedelta(hours=NOTICE_HOURS)

    # --- CMO QA approver records the deviation -------------------------------------------
    _login(page, base, "priya")
    expect(page.get_by_role("heading", name="Sponsors")).to_be_visible()
    page.locator("nav").get_by_role("link", name="Deviations", exact=True).click()
    page.get_by_role("link", name="Record a deviation").click()
    expect(page.get_by_role("heading", name="Record a deviation")).to_be_visible()

    form = page.locator("form.sign")
    form.get_by_label("Title").fill("Blend time exceeded")
    form.get_by_label("Description").fill("Blend ran 17 min against 10–15 min.")
    form.get_by_label("Category").select_option(label="Deviation")
    form.get_by_label("Severity").select_option(label="Major")
    form.get_by_label("Occurred (UTC)").fill(occurred.strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Discovered (UTC)").fill(discovered.strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Batches", exact=True).fill(batch)
    form.get_by_label("Immediate action").fill("Batch placed on hold.")
    form.get_by_role("button", name="Record").click()

    expect(page.locator(".messages")).to_contain_text("recorded.")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(re.compile(r"DEV-\d{4}-\d+"))
    expect(heading).to_contain_text("Alpha Therapeutics")
    number = re.search(r"DEV-\d{4}-\d+", heading.inner_text()).group(0)
    expect(page).to_have_url(f"{base}/deviations/{number}/")
    expect(_fact(page, "Status")).to_have_text("Open")
    expect(_fact(page, "Severity")).to_have_text("Major")
    expect(_fact(page, "Discovered (UTC)")).to_have_text(discovered.strftime("%Y-%m-%d %H:%M"))
    expect(_fact(page, "Quality agreement")).to_contain_text("v1 (in force at discovery)")
    expect(page.locator("main")).to_contain_text(f"Batch {batch}")

    notice = _deadline(page, f"notify Alpha Therapeutics within {NOTICE_HOURS} h")
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text(f"Major deviation {number}")
    expect(notice).to_contain_text(due.strftime("%Y-%m-%d %H:%M"))
    expect(notice).to_contain_text("Pending")
    expect(page.locator("#signatures")).to_contain_text("Not signed.")

    # --- investigation ---------------------------------------------------------------------
    investigation = page.locator("#investigation")
    investigation.get_by_label("Impact assessment").fill("No impact on the product quality.")
    investigation.get_by_label("Root cause").fill("Blender timer drifted.")
    investigation.get_by_label("Disposition").select_option(label="Use as is")
    investigation.get_by_role("button", name="Save investigation").click()

    expect(page.locator(".messages")).to_contain_text(f"Investigation of {number} saved.")
    expect(_fact(page, "Status")).to_have_text("Under investigation")
    expect(_fact(page, "Impact assessment")).to_have_text("No impact on the product quality.")
    expect(_fact(page, "Root cause")).to_have_text("Blender timer drifted.")
    expect(_fact(page, "Disposition")).to_have_text("Use as is")

    # --- closure: wrong password first, then the right one ---------------------------------
    close = page.locator("#close")
    close.get_by_label("Password").fill("wrong-password")
    close.get_by_role("button", name="Sign: close").click()
    expect(page.locator("#close .errors")).to_contain_text(
        "Signature refused: the password for priya is not correct."
    )
    expect(_fact(page, "Status")).to_have_text("Under investigation")
    expect(page.locator("#signatures")).to_contain_text("Not signed.")
    record = Deviation.objects.get(number=number)
    assert record.status == Deviation.Status.UNDER_INVESTIGATION
    deviation_type = ContentType.objects.get_for_model(Deviation)
    assert not Signature.objects.filter(
        content_type=deviation_type, object_id=str(record.pk)
    ).exists()

    page.locator("#close").get_by_label("Password").fill(PASSWORD)
    page.locator("#close").get_by_role("button", name="Sign: close").click()
    expect(page.locator(".messages")).to_contain_text(f"{number} signed: Pending sponsor approval.")
    expect(_fact(page, "Status")).to_have_text("Pending sponsor approval")
    expect(page.locator("#signatures")).to_contain_text(
        re.compile(rf"Priya Raman — closed — {SIGNED_AT}")
    )
    expect(page.locator("#close")).to_have_count(0)
    expect(page.locator("#investigation")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("User name")).to_be_visible()

    # --- the sponsor approver in the portal ------------------------------------------------
    body = page.locator("body")
    _login(page, base, "sam")
    expect(page).to_have_url(f"{base}/portal/")
    expect(page.get_by_role("heading", name="Alpha Therapeutics")).to_be_visible()
    expect(page.locator(".open-deviations")).to_have_text("1 open")
    expect(body).not_to_contain_text(MARKER)

    page.locator("main").get_by_role("link", name="Deviations", exact=True).click()
    expect(page).to_have_url(f"{base}/portal/deviations/")
    expect(page.get_by_role("heading", name="Deviations", exact=True)).to_be_visible()
    awaiting = page.locator("section.sign")
    expect(awaiting.get_by_role("heading", name="Awaiting your approval")).to_be_visible()
    expect(awaiting).to_contain_text(f"{number} — Blend time exceeded (major)")
    row = page.locator("tbody tr", has_text=number)
    expect(row).to_contain_text("Pending sponsor approval")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(body).not_to_contain_text(MARKER)

    row.get_by_role("link", name=number, exact=True).click()
    expect(page).to_have_url(f"{base}/portal/deviations/{number}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(number)
    expect(_fact(page, "Status")).to_have_text("Pending sponsor approval")
    expect(_fact(page, "Acknowledged by sponsor")).to_have_text("not yet")
    expect(page.locator("main")).to_contain_text(f"Batch {batch}")
    expect(_deadline(page, f"within {NOTICE_HOURS} h")).to_contain_text(
        due.strftime("%Y-%m-%d %H:%M")
    )
    expect(page.locator("#signatures")).to_contain_text(
        re.compile(rf"Priya Raman — closed — {SIGNED_AT}")
    )
    expect(body).not_to_contain_text(MARKER)

    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".messages")).to_contain_text(f"{number} acknowledged.")
    expect(_fact(page, "Acknowledged by sponsor")).to_have_text(
        re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC, after \d+ h \d+ min$")
    )
    expect(page.locator("#acknowledge")).to_have_count(0)
    expect(body).not_to_contain_text(MARKER)

    decide = page.locator("#decide")
    expect(decide.get_by_role("heading", name="Closure awaiting your approval")).to_be_visible()
    decide.get_by_label("Approve closure").check()
    decide.get_by_label("Comment").fill("Agreed: use as is, timer to be recalibrated.")
    decide.get_by_label("Password").fill(PASSWORD)
    decide.get_by_role("button", name="Sign").click()

    expect(page.locator(".messages")).to_contain_text(f"Closure of {number} approved.")
    expect(_fact(page, "Status")).to_have_text("Closed")
    expect(_fact(page, "Closed (UTC)")).to_have_text(re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"))
    signatures = page.locator("#signatures")
    expect(signatures).to_contain_text(re.compile(rf"Priya Raman — closed — {SIGNED_AT}"))
    expect(signatures).to_contain_text(re.compile(rf"Sam Okafor — approved — {SIGNED_AT}"))
    expect(page.locator("#decide")).to_have_count(0)
    expect(page.locator("#audit-trail")).to_contain_text(
        "Agreed: use as is, timer to be recalibrated."
    )
    expect(body).not_to_contain_text(MARKER)

    record.refresh_from_db()
    assert record.status == Deviation.Status.CLOSED
    assert record.sponsor_acknowledged_at is not None
    assert record.disposition == Deviation.Disposition.USE_AS_IS
