"""A batch walked at the line in Chromium on a 768 px tablet: the operator plans and starts it,
scans the input lots' GS1 labels as a keyboard-wedge scanner types them (symbology identifier,
FNC1 as the GS character, Enter), records the steps one at a time, a second person verifies
them on their own tablet, and the operator completes the batch, records the packaging evidence
and submits it for review. Every control at the line is touch-sized."""

from datetime import date

import pytest
from playwright.sync_api import expect

from batches.models import Batch, ExecutedStep, Lot
from tests.batches.conftest import plant  # noqa: F401
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TABLET = {"viewport": {"width": 768, "height": 1024}, "has_touch": True}
API_GTIN = "00614141000012"
EXCIPIENT_GTIN = "00614141000029"
GS = "\x1d"


@pytest.fixture
def line(settings, plant):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    plant.api.gtin = API_GTIN
    plant.api.save()
    plant.excipient.gtin = EXCIPIENT_GTIN
    plant.excipient.save()
    return {
        "plant": plant,
        "api": plant.receive(plant.api),
        "excipient": plant.receive(plant.excipient),
    }


def _tablet(browser, base, username):
    context = browser.new_context(**TABLET)
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return context, page


def _scan(field, text):
    """Type `text` key by key, as a keyboard-wedge scanner does, ending with its Enter."""
    field.click()
    field.press_sequentially(text, delay=5)
    assert field.input_value() == text
    field.press("Enter")


def _assert_touch_sized(page):
    small = page.evaluate(
        """() => [...document.querySelectorAll(
                '.line button, .line input, .line select, .line textarea')]
            .filter(el => el.type !== 'hidden' && el.type !== 'checkbox' && el.type !== 'radio')
            .filter(el => el.offsetParent !== null)
            .map(el => [el.name || el.textContent.trim(), el.getBoundingClientRect().height])
            .filter(([, height]) => height < 44)"""
    )
    assert small == [], f"controls under 44 px: {small}"
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 768, f"the page scrolls sideways: {width} px"


def test_batch_walked_from_start_to_review_on_a_tablet(browser, live_server, line):
    base = live_server.url
    api, excipient = line["api"], line["excipient"]
    operator_context, page = _tablet(browser, base, "plant-operator")
    verifier_context, checker = _tablet(browser, base, "plant-verifier")
    try:
        # --- plan and start --------------------------------------------------------------
        page.goto(f"{base}/batches/")
        page.get_by_role("link", name="Plan a batch").click()
        page.get_by_label("Product").select_option(label="ALP-100 Alphacillin 100 mg")
        page.get_by_label("Batch number").fill("B-TAB-1")
        page.get_by_role("button", name="Plan batch").click()
        expect(page.locator(".messages")).to_contain_text("Batch B-TAB-1 planned")
        page.get_by_role("button", name="Start batch B-TAB-1").click()
        expect(page.locator(".messages")).to_contain_text("Batch B-TAB-1 started")
        expect(page.locator("#next-step h2")).to_have_text("Next: step 1 of 2 — Dispense")
        expect(page.locator("#progress")).to_have_text("0 of 2 steps recorded, 2 left")
        _assert_touch_sized(page)

        # --- input lots, scanned ---------------------------------------------------------
        consume = page.locator("#consume")
        consume.get_by_label("Quantity").fill("5")
        _scan(
            consume.get_by_label("Lot"),
            f"]C101{API_GTIN}10{api.lot_number}{GS}17{date.today():%y%m%d}",
        )
        expect(page.locator(".messages")).to_contain_text(f"5 kg of lot {api} (RM-API) consumed.")

        consume = page.locator("#consume")
        consume.get_by_label("Quantity").fill("5")
        _scan(consume.get_by_label("Lot"), f"]C101{API_GTIN}10{excipient.lot_number}")
        expect(page.locator("#consume .errors")).to_contain_text("wrong label or wrong lot")

        consume = page.locator("#consume")
        consume.get_by_label("Quantity").fill("5")
        consume.get_by_label("Lot").fill("")
        _scan(consume.get_by_label("Lot"), f"]d201{EXCIPIENT_GTIN}10{excipient.lot_number}")
        expect(page.locator(".messages")).to_contain_text(
            f"5 kg of lot {excipient} (RM-EXC) consumed."
        )
        expect(page.locator("#materials")).to_contain_text("2 consumptions recorded")

        # --- equipment and the steps, one at a time --------------------------------------
        page.locator("#equipment").get_by_label("Equipment").select_option(label="TANK-4 Tank 4")
        page.get_by_role("button", name="Start use").click()
        expect(page.locator(".messages")).to_contain_text("TANK-4 in use for batch B-TAB-1.")

        step = page.locator("#next-step")
        step.get_by_label("Weight (kg)").fill("5.4")
        step.get_by_role("button", name="Record step 1").click()
        expect(page.locator("#next-step h2")).to_have_text("Next: step 2 of 2 — Blend")
        expect(page.locator("#progress")).to_have_text("1 of 2 steps recorded, 1 left")

        step = page.locator("#next-step")
        step.get_by_label("Time (min)").fill("18")
        step.get_by_role("button", name="Record step 2").click()
        expect(step.locator(".errors")).to_contain_text("a comment is required")
        step = page.locator("#next-step")
        step.get_by_label("Time (min)").fill("14")
        step.get_by_role("button", name="Record step 2").click()
        expect(page.locator("#progress")).to_have_text("2 of 2 steps recorded")
        expect(page.locator("#awaiting-verification")).to_contain_text(
            "You recorded this step: a second person verifies it."
        )
        _assert_touch_sized(page)

        # --- the second person verifies on their own tablet ------------------------------
        checker.goto(f"{base}/batches/B-TAB-1/execution/")
        for sequence in (1, 2):
            card = checker.locator(".step-card").first
            card.get_by_label("Password").fill(PASSWORD)
            card.get_by_role("button", name=f"Verify step {sequence}").click()
            expect(checker.locator(".messages")).to_contain_text(f"Step {sequence} (")
        expect(checker.locator("#awaiting-verification")).to_have_count(0)
        assert (
            ExecutedStep.objects.filter(batch__number="B-TAB-1", verified_by__isnull=False).count()
            == 2
        )

        # --- completion, packaging evidence, submission ----------------------------------
        page.reload()
        complete = page.locator("#complete")
        complete.get_by_label("Output lot number").fill("L-TAB-1")
        complete.get_by_label("Quantity made").fill("9")
        complete.get_by_role("button", name="Complete batch B-TAB-1").click()
        expect(page.locator(".messages")).to_contain_text(
            "Batch B-TAB-1 completed: lot L-TAB-1, 9 ea, in quarantine."
        )

        packaging = page.locator("#packaging")
        packaging.get_by_label("Label version").fill("LBL-ALP-100 v4")
        packaging.get_by_role("button", name="Start packaging").click()
        page.locator("#line-clearance").get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign line clearance").click()
        expect(page.locator(".messages")).to_contain_text(
            "Line clearance for batch B-TAB-1 signed."
        )

        reconciliation = page.locator("#reconciliation")
        for label, count in (
            ("Issued", "100"),
            ("Used", "90"),
            ("Destroyed", "6"),
            ("Returned", "2"),
        ):
            reconciliation.get_by_label(label).fill(count)
        reconciliation.get_by_role("button", name="Reconcile labels").click()
        expect(page.locator("#reconciliation .errors")).to_contain_text(
            "does not balance: 100 issued, 98 accounted for"
        )
        page.locator("#reconciliation").get_by_label("Returned").fill("4")
        page.get_by_role("button", name="Reconcile labels").click()
        expect(page.locator("#packaging")).to_contain_text(
            "100 issued = 90 used + 6 destroyed + 4 returned"
        )
        _assert_touch_sized(page)

        page.get_by_role("button", name="Submit batch B-TAB-1 for review").click()
        expect(page.locator(".messages")).to_contain_text("Batch B-TAB-1 submitted for review.")
        expect(page.locator(".status-badge")).to_have_text("Under review")
        expect(page.get_by_role("link", name="Disposition of batch B-TAB-1")).to_be_visible()

        batch = Batch.objects.get(number="B-TAB-1")
        assert batch.status == Batch.Status.UNDER_REVIEW
        assert batch.evidence_complete_at is not None
        assert {c.lot_id for c in batch.consumptions.all()} == {api.pk, excipient.pk}
        assert Lot.objects.get(lot_number="L-TAB-1").status == Lot.Status.QUARANTINE
    finally:
        operator_context.close()
        verifier_context.close()
