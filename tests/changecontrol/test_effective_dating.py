"""Effective dating against the sponsors' agreements: the lead time after the notice holds for an
approval too, unless the sponsor's signed approval accepts an earlier date (set on the portal form
or through the API, covered by the signature); an effective date before the proposed one needs a
reason, recorded on the change and in the audit trail and shown to the sponsor."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from changecontrol import services as cs
from changecontrol.models import ChangeRequest, SponsorObligation
from qms.audit import history_for
from qms.errors import RuleViolation
from qms.notifications import deadlines_send_due
from qms.signatures import signatures_for
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

Status = ChangeRequest.Status
REASON = "Acme's launch stock is needed before the annual shutdown."


def _refused(call, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        call(**kwargs)
    return caught.value


def _day(days: int = 0):
    return timezone.localdate() + timedelta(days=days)


def _noon(days: int) -> datetime:
    day = _day(days)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _acme_change(three, *, proposed_in=10, swept=True):
    """An SOP change of Acme's product (approve, 30 days lead time) proposed for `proposed_in`
    days from now; its notice sent today when `swept`."""
    change = three.submitted(codes=("acme",), proposed_effective_date=_day(proposed_in))
    if swept:
        deadlines_send_due(now=timezone.now())
    return change


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- the lead time holds for an approval --------------------------------------------------


def test_an_approval_does_not_shorten_the_agreed_lead_time(three):
    # given: Acme approved today, 30 days lead time after today's notice
    change = _acme_change(three)
    three.decide(change, "acme")
    # when
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(10))
    # then
    assert error.code == "change_obligations_unmet"
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        f"approved, notice sent {_day():%Y-%m-%d}, 30 days lead time needs it by "
        f"{_day(-20):%Y-%m-%d} for effective {_day(10):%Y-%m-%d}, and the signed approval "
        "accepts no earlier date."
    )
    assert [(u["sponsor"], u["kind"], u["status"]) for u in error.unmet] == [
        ("acme", "approve", "approved")
    ]
    assert ChangeRequest.objects.get(pk=change.pk).status == Status.APPROVED


def test_the_lead_time_of_an_approval_decided_before_its_notice_counts_from_submission(three):
    change = _acme_change(three, swept=False)
    three.decide(change, "acme")
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(29))
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        f"approved, submitted {_day():%Y-%m-%d}, 30 days lead time needs it by "
        f"{_day(-1):%Y-%m-%d} for effective {_day(29):%Y-%m-%d}, and the signed approval "
        "accepts no earlier date."
    )
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(30))
    assert change.status == Status.EFFECTIVE


def test_the_sponsors_signed_approval_may_accept_an_earlier_date(three):
    # given: Acme approves and accepts effective from day 10
    change = _acme_change(three)
    signature = three.decide(change, "acme", accepts_effective_from=_day(10))
    # then: the signature covers the accepted date
    acme = three.obligation(change, "acme")
    assert acme.accepts_effective_from == _day(10)
    assert acme.signature_content()["accepts_effective_from"] == _day(10)
    [(stored, check)] = signatures_for(acme)
    assert stored == signature and check.is_valid
    # when / then: one day earlier than accepted is refused
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(9))
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        f"approved, notice sent {_day():%Y-%m-%d}, 30 days lead time needs it by "
        f"{_day(-21):%Y-%m-%d} for effective {_day(9):%Y-%m-%d}, and the signed approval "
        f"accepts effective from {_day(10):%Y-%m-%d} at the earliest."
    )
    # when / then: the accepted date is enough
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(10))
    assert (change.status, change.effective_at) == (Status.EFFECTIVE, _noon(10))


def test_an_accepted_date_goes_with_an_approval_earlier_than_the_lead_time_allows(three):
    change = _acme_change(three)
    error = _refused(
        three.decide,
        change=change,
        code="acme",
        approve=False,
        comment="No.",
        accepts_effective_from=_day(5),
    )
    assert error.detail == (
        f"A rejection of change {change.number} accepts no effective date; leave the earliest "
        "accepted effective date empty."
    )
    error = _refused(three.decide, change=change, code="acme", accepts_effective_from=_day(30))
    assert error.detail == (
        f"Change {change.number}: the earliest effective date you accept, {_day(30):%Y-%m-%d}, "
        f"is not earlier than the 30 days lead time already allows ({_day(30):%Y-%m-%d}); "
        "leave it empty."
    )
    assert three.obligation(change, "acme").status == SponsorObligation.Status.PENDING


# --- before the proposed date -------------------------------------------------------------


def test_effective_before_the_proposed_date_is_refused_without_a_reason(three):
    change = three.submitted(codes=("cygnus",), proposed_effective_date=_day(60))
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(5))
    assert error.code == "reason_required"
    assert error.detail == (
        f"Change {change.number} cannot become effective on {_day(5):%Y-%m-%d}, before its "
        f"proposed effective date {_day(60):%Y-%m-%d}, without a reason."
    )
    assert ChangeRequest.objects.get(pk=change.pk).status == Status.APPROVED


def test_effective_before_the_proposed_date_with_a_reason_is_recorded_and_audited(three):
    # given
    change = three.submitted(codes=("cygnus",), proposed_effective_date=_day(60))
    # when
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(5), reason=REASON)
    # then
    assert (change.status, change.early_effective_reason) == (Status.EFFECTIVE, REASON)
    [event] = [
        e
        for e in history_for(change)
        if e.action == "update" and "early_effective_reason" in e.changes
    ]
    assert event.changes["early_effective_reason"] == ["", REASON]
    assert event.actor_username == "quinn"
    assert event.reason == (
        f"change {change.number} effective {_day(5):%Y-%m-%d}, before its proposed effective "
        f"date {_day(60):%Y-%m-%d}: {REASON}"
    )


def test_effective_on_the_proposed_date_needs_no_reason(three):
    change = three.submitted(codes=("cygnus",), proposed_effective_date=_day(5))
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(5), reason="Planned.")
    assert (change.status, change.early_effective_reason) == (Status.EFFECTIVE, "")


# --- pages and API ------------------------------------------------------------------------


def test_the_approver_accepts_an_earlier_date_on_the_portal(three):
    # given
    change = _acme_change(three)
    client = Client()
    client.force_login(three.approvers["acme"])
    url = reverse("portal_changecontrol:decide", args=[change.number])
    # when: a later date than the lead time allows is refused inline
    response = client.post(
        url,
        {
            "decision": "approve",
            "accepts_effective_from": f"{_day(40):%Y-%m-%d}",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 400
    assert "is not earlier than the 30 days lead time already allows" in response.content.decode()
    # when
    response = client.post(
        url,
        {
            "decision": "approve",
            "accepts_effective_from": f"{_day(10):%Y-%m-%d}",
            "password": PASSWORD,
        },
    )
    # then
    assert response.status_code == 302
    assert three.obligation(change, "acme").accepts_effective_from == _day(10)
    html = client.get(reverse("portal_changecontrol:detail", args=[change.number])).content
    assert f'<dd id="accepts">{_day(10):%Y-%m-%d}</dd>' in html.decode()


def test_the_api_decision_accepts_an_earlier_date_and_make_effective_takes_a_reason(three):
    # given
    change = _acme_change(three)
    url = reverse("api:change-request-obligation-decision", args=[change.number, "acme"])
    response = _api(three.approvers["acme"]).post(
        url,
        {"approve": True, "password": PASSWORD, "accepts_effective_from": f"{_day(5):%Y-%m-%d}"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    qa = _api(three.qa)
    make_effective = reverse("api:change-request-make-effective", args=[change.number])
    # when: day 4 is before the accepted date
    response = qa.post(make_effective, {"effective_at": _noon(4).isoformat()}, format="json")
    # then
    assert response.status_code == 409
    body = response.json()
    assert [(u["sponsor"], u["kind"]) for u in body["unmet_obligations"]] == [("acme", "approve")]
    assert body["unmet_obligations"][0]["problem"].endswith(
        f"accepts effective from {_day(5):%Y-%m-%d} at the earliest"
    )
    # when: day 5 is accepted but before the proposed date (day 10), without a reason
    response = qa.post(make_effective, {"effective_at": _noon(5).isoformat()}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "reason_required"
    # when: with a reason
    response = qa.post(
        make_effective, {"effective_at": _noon(5).isoformat(), "reason": REASON}, format="json"
    )
    # then
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["early_effective_reason"]) == ("effective", REASON)
    assert body["obligations"][0]["accepts_effective_from"] == f"{_day(5):%Y-%m-%d}"


def test_the_reason_for_an_early_date_is_shown_to_the_sponsor(three):
    # given: effective on the date Acme accepted, five days before the proposed date
    change = _acme_change(three)
    three.decide(change, "acme", accepts_effective_from=_day(5))
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(5), reason=REASON)
    # when
    client = Client()
    client.force_login(three.auditors["acme"])
    html = client.get(reverse("portal_changecontrol:detail", args=[change.number])).content
    body = (
        _api(three.auditors["acme"])
        .get(reverse("api:change-request-detail", args=[change.number]))
        .json()
    )
    # then
    assert f'<dd id="early-reason">{REASON}</dd>' in html.decode().replace("&#x27;", "'")
    assert body["early_effective_reason"] == REASON
    assert body["obligation"]["accepts_effective_from"] == f"{_day(5):%Y-%m-%d}"


def test_the_cmo_page_makes_a_change_effective_early_with_a_reason(three):
    change = three.submitted(codes=("cygnus",), proposed_effective_date=_day(60))
    client = Client()
    client.force_login(three.qa)
    url = reverse("changecontrol:make-effective", args=[change.number])
    response = client.post(url, {})
    assert response.status_code == 400
    assert "before its proposed effective date" in response.content.decode()
    response = client.post(url, {"reason": "Line trial moved forward."})
    assert response.status_code == 302
    html = client.get(reverse("changecontrol:detail", args=[change.number])).content.decode()
    assert '<dd id="early-reason">Line trial moved forward.</dd>' in html
