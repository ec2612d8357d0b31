"""Accessibility of the pages people work in, checked with axe-core in Chromium: the
manufacturing pages at the line and in the office, and the sponsor portal. A serious or critical
violation fails the test, naming the rule and the elements."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse

from batches import services
from sponsors.models import Role
from tests.batches.conftest import plant  # noqa: F401
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRAVE = {"serious", "critical"}


@pytest.fixture
def site(settings, plant):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    raw = plant.receive(plant.api)
    done, lot = plant.run_batch(plant.product_a, [(raw, "5")])
    running = services.batch_plan(product=plant.product_a, number="B-A11Y", by=plant.operator)
    services.batch_start(batch=running, by=plant.operator)
    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)
    approver = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_APPROVER, username="a11y-sp")
    return {
        "plant": plant,
        "lot": lot,
        "batch": done,
        "running": running,
        "draft": draft,
        "approver": approver,
    }


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()


def _grave_violations(axe, page, url):
    page.goto(url)
    results = axe.run(page)
    return [
        f"{url}: {violation['id']} ({violation['impact']}) on "
        + ", ".join(node["target"][0] for node in violation["nodes"][:3])
        for violation in results.response["violations"]
        if violation["impact"] in GRAVE
    ]


def test_manufacturing_and_portal_pages_have_no_serious_violations(browser, live_server, site):
    base = live_server.url
    axe = Axe()
    cmo_pages = [
        reverse("batches:lots"),
        reverse("batches:lot", args=[site["lot"].lot_number]),
        reverse("batches:batches"),
        reverse("batches:batch", args=[site["batch"].number]),
        reverse("batches:mbr", args=[site["draft"].pk]),
        reverse("batches:equipment", args=["TANK-4"]),
        reverse("batches:shipments"),
        f"/batches/{site['running'].number}/execution/",
        "/lots/receive/",
        "/batches/new/",
        f"/mbrs/{site['draft'].pk}/edit/",
    ]
    portal_pages = ["/portal/", "/portal/batches/", f"/portal/lots/{site['lot'].lot_number}/"]
    failures = []
    for username, urls, viewport in (
        ("plant-operator", cmo_pages, {"width": 1280, "height": 900}),
        ("plant-operator", [cmo_pages[7]], {"width": 768, "height": 1024}),
        ("a11y-sp", portal_pages, {"width": 1280, "height": 900}),
    ):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            _login(page, base, username)
            for url in urls:
                failures.extend(_grave_violations(axe, page, f"{base}{url}"))
        finally:
            context.close()
    assert not failures, "\n".join(failures)
