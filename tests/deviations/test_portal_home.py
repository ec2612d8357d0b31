"""The portal landing counts what awaits the signed-in sponsor user, each count linking to its
list: deviation closures awaiting the sponsor's approval, deviation notices awaiting
acknowledgement and change-control obligations awaiting the sponsor's decision; never another
sponsor's."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from changecontrol import services as change_services
from deviations import services as ds
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from tests.deviations.test_deviations import agreement, investigated, record
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

SOP_APPROVAL = {"sop": ("approve", 30)}


def _change(plant, *products):
    change = change_services.change_create(
        title="Line clearance revision",
        description="Adds a second-person check of the line.",
        category="sop",
        products=list(products),
        subject_text="SOP-QA-014 Line clearance, revision 5",
        proposed_effective_date=timezone.localdate() + timedelta(days=60),
        by=plant.qa,
    )
    change_services.change_assess(
        change=change,
        by=plant.qa,
        severity=3,
        probability=2,
        detectability=2,
        rationale="Procedural change, detected at line clearance.",
    )
    return change_services.change_submit(change=change, by=plant.qa)


def _awaiting_closure(plant, batch):
    deviation = investigated(plant, record(plant, batches=[batch]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    return deviation


@pytest.fixture
def awaiting(plant):
    """Alpha: three major deviations whose notices went out (one acknowledged, one awaiting
    closure approval), one recorded after the notices were sent, one SOP change awaiting its
    approval and one affecting both sponsors. ZZOTHER: a deviation awaiting closure approval,
    its unacknowledged notice and a change of its own."""
    agreement(plant, plant.sponsor_a, rules=SOP_APPROVAL)
    agreement(plant, plant.sponsor_b, rules=SOP_APPROVAL)
    batch_a = plant.run_batch(plant.product_a, [], release=False)[0]
    batch_b = plant.run_batch(plant.product_b, [], release=False)[0]
    approver_a = plant.sponsor_approver(plant.sponsor_a)
    acknowledged = record(plant, batches=[batch_a])
    record(plant, batches=[batch_a])
    _awaiting_closure(plant, batch_a)
    _awaiting_closure(plant, batch_b)
    deadlines_send_due()
    ds.deviation_acknowledge(deviation=acknowledged, user=approver_a)
    record(plant, batches=[batch_a])
    _change(plant, plant.product_a)
    _change(plant, plant.product_a, plant.product_b)
    _change(plant, plant.product_b)
    return plant


def _home(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("portal:home"))
    assert response.status_code == 200
    return response.content.decode()


def _count(html, name) -> str:
    return re.search(rf'<li class="awaiting-{name}"><a href="([^"]+)">([^<]+)</a></li>', html)


def test_portal_home_counts_what_awaits_the_sponsor_approver(awaiting):
    html = _home(awaiting.sponsor_approver(awaiting.sponsor_a))

    assert _count(html, "closures")[2] == "1 deviation closure awaiting approval"
    assert _count(html, "notices")[2] == "2 deviation notices awaiting acknowledgement"
    assert _count(html, "changes")[2] == "2 changes awaiting a decision"
    assert "Awaiting you" in html


def test_portal_home_counts_only_the_users_own_sponsor(awaiting):
    html = _home(awaiting.sponsor_approver(awaiting.sponsor_b))

    assert _count(html, "closures")[2] == "1 deviation closure awaiting approval"
    assert _count(html, "notices")[2] == "1 deviation notice awaiting acknowledgement"
    assert _count(html, "changes")[2] == "2 changes awaiting a decision"


def test_portal_home_shows_an_auditor_what_awaits_the_sponsors_approver(awaiting):
    auditor = make_user(sponsor=awaiting.sponsor_a, role=Role.SPONSOR_AUDITOR)

    html = _home(auditor)

    assert "Awaiting your sponsor's approver" in html
    assert _count(html, "closures")[2] == "1 deviation closure awaiting approval"


def test_portal_home_counts_link_to_lists_showing_the_same_rows(awaiting):
    approver = awaiting.sponsor_approver(awaiting.sponsor_a)
    client = Client()
    client.force_login(approver)
    html = _home(approver)

    closures = client.get(_count(html, "closures")[1].replace("&amp;", "&")).content.decode()
    notices = client.get(_count(html, "notices")[1].replace("&amp;", "&")).content.decode()

    assert _count(html, "changes")[1] == reverse("portal_changecontrol:list") + "#awaiting"
    rows = re.compile(r'<td><a href="/portal/deviations/[^"]+/">([^<]+)</a></td>')
    assert len(rows.findall(closures)) == 1
    assert len(rows.findall(notices)) == 2
    assert "ZZOTHER" not in closures + notices
