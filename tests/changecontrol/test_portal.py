"""The portal's change control: a sponsor sees a multi-sponsor change only through its own slice
(never another sponsor's name, product or decision), its pending approvals first, and its
approver signs the decision with a password and a comment."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from changecontrol.models import SponsorObligation
from qms.notifications import deadlines_send_due
from qms.signatures import signatures_for
from tests.factories import PASSWORD
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

FOREIGN_TO_ACME = (
    "Borealis",
    "borealis",
    "BOR-CATH7",
    "Central venous catheter",
    "Cygnus",
    "cygnus",
    "CYG-VITD3",
    "Vitamin D3",
    "Borealis has concerns",
)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _detail(change) -> str:
    return reverse("portal_changecontrol:detail", args=[change.number])


def _decide(change) -> str:
    return reverse("portal_changecontrol:decide", args=[change.number])


def _assert_only_acme(html: str) -> None:
    for text in FOREIGN_TO_ACME:
        assert text not in html, text


@pytest.fixture
def contested(three):
    """A process-parameter change of all three sponsors that Borealis already rejected."""
    change = three.submitted(category="process_parameter", title="Granulation end point by NIR")
    deadlines_send_due(now=timezone.now())
    three.decide(change, "borealis", approve=False, comment="Borealis has concerns.")
    return change


def test_a_sponsor_sees_only_its_slice_of_a_multi_sponsor_change(three, contested):
    # given
    for user in (three.approvers["acme"], three.auditors["acme"]):
        client = _client(user)
        # when
        html = client.get(_detail(contested)).content.decode()
        # then
        assert "Granulation end point by NIR" in html
        assert "Adds a second-person check of the line." in html
        assert "ACM-IBU200" in html and "Sponsor approval required" in html
        assert "Approval pending" in html and "quality agreement v1" in html
        _assert_only_acme(html)
        listing = client.get(reverse("portal_changecontrol:list")).content.decode()
        assert contested.number in listing
        _assert_only_acme(listing)


def test_pending_approvals_come_first_and_notified_changes_are_listed(three, contested):
    notified = three.submitted(codes=("acme", "borealis"), category="sop", title="SOP rev 5")
    approved = three.submitted(codes=("borealis",), title="Borealis only")
    html = _client(three.approvers["acme"]).get(reverse("portal_changecontrol:list"))
    html = html.content.decode()
    awaiting = html.split('id="awaiting"')[1].split("</section>")[0]
    assert contested.number in awaiting and notified.number in awaiting
    assert approved.number not in html
    _assert_only_acme(html)


def test_the_approver_signs_the_decision_in_the_portal(three, contested):
    # given
    client = _client(three.approvers["acme"])
    html = client.get(_detail(contested)).content.decode()
    assert 'id="decide"' in html
    # when: a wrong password first
    response = client.post(
        _decide(contested), {"decision": "approve", "comment": "", "password": "wrong"}
    )
    assert response.status_code == 400
    assert "Signature refused: the password for acme-approver is not correct." in (
        response.content.decode()
    )
    response = client.post(
        _decide(contested), {"decision": "reject", "comment": "", "password": PASSWORD}
    )
    assert f"Say why change {contested.number} is rejected." in response.content.decode()
    response = client.post(
        _decide(contested),
        {"decision": "approve", "comment": "Acme agrees.", "password": PASSWORD},
    )
    # then
    assert response.status_code == 302
    html = client.get(_detail(contested)).content.decode()
    assert "Approved by Arthur Acme" in html and "Acme agrees." in html
    assert "— approved —" in html
    assert 'id="decide"' not in html
    _assert_only_acme(html)
    acme = contested.obligations.get(sponsor=three.sponsors["acme"])
    assert acme.status == SponsorObligation.Status.APPROVED
    [(signature, check)] = signatures_for(acme)
    assert signature.meaning == "approved" and check.is_valid


def test_an_auditor_reads_but_does_not_decide(three, contested):
    client = _client(three.auditors["acme"])
    html = client.get(_detail(contested)).content.decode()
    assert 'id="decide"' not in html
    assert "The change awaits the sponsor approver's signature." in html
    response = client.post(
        _decide(contested), {"decision": "approve", "comment": "", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "Your access is read-only: you may not change records." in response.content.decode()
    assert contested.obligations.get(sponsor=three.sponsors["acme"]).status == "pending"


def test_drafts_and_other_sponsors_changes_are_not_found(three):
    draft = three.draft(codes=("acme",))
    borealis_only = three.submitted(codes=("borealis",))
    client = _client(three.approvers["acme"])
    assert client.get(_detail(draft)).status_code == 404
    assert client.get(_detail(borealis_only)).status_code == 404
    assert client.post(_decide(borealis_only), {}).status_code == 404


def test_a_sponsor_removed_by_rescoping_no_longer_sees_the_change(three, contested):
    from changecontrol import services as cs

    cs.change_rescope(
        change=contested,
        sponsor=three.sponsors["borealis"],
        reason="Borealis keeps its process.",
        by=three.qa,
    )
    assert _client(three.approvers["borealis"]).get(_detail(contested)).status_code == 404
    html = _client(three.approvers["acme"]).get(_detail(contested)).content.decode()
    _assert_only_acme(html)
    assert "keeps its process" not in html


def test_portal_list_costs_the_same_queries_for_5_and_50_changes(three):
    from tests.changecontrol.test_api import _grow

    client = _client(three.approvers["acme"])
    url = reverse("portal_changecontrol:list")

    assert_constant_queries(client, url, lambda n: _grow(three, n))
