"""Sponsor approvers are told, once, in-app and by e-mail, when CMO QA closes a deviation whose
severity their agreement reserves to their approval; the request is met when they decide."""

import pytest
from django.core import mail

from deviations import services as ds
from deviations.selectors import deadlines_of
from qms.models import Deadline, Notification
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from tests.deviations.test_deviations import agreement, investigated, record
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(plant):
    """Sponsor approvers and auditors of both sponsors; alpha reserves every closure, and asks
    no notice of a minor deviation."""
    agreement(plant, plant.sponsor_a, sponsor_closes_minor=True)
    agreement(plant, plant.sponsor_b, sponsor_closes_minor=True)
    return {
        "approver_a": plant.sponsor_approver(plant.sponsor_a),
        "auditor_a": make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR),
        "approver_b": plant.sponsor_approver(plant.sponsor_b),
        "auditor_b": make_user(sponsor=plant.sponsor_b, role=Role.SPONSOR_AUDITOR),
    }


@pytest.fixture
def closed_by_cmo(plant, people):
    batch = plant.run_batch(plant.product_a, [], release=False)[0]
    deviation = investigated(plant, record(plant, severity="minor", batches=[batch]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    return deviation


def _sweep(capture) -> int:
    with capture(execute=True):
        return deadlines_send_due()


def test_sponsor_approver_is_told_once_in_app_and_by_email_when_a_closure_awaits_them(
    plant, people, closed_by_cmo, django_capture_on_commit_callbacks
):
    # given: CMO QA signed the closure of a deviation the agreement reserves to the sponsor
    approver = people["approver_a"]
    assert closed_by_cmo.status == "pending_sponsor_approval"

    # when: the sweep runs twice
    first = _sweep(django_capture_on_commit_callbacks)
    second = _sweep(django_capture_on_commit_callbacks)

    # then: the sponsor's approver got one notification and one e-mail, nobody else anything
    assert (first, second) == (1, 0)
    notification = Notification.objects.get(recipient=approver)
    assert notification.subject == f"Closure of {closed_by_cmo.number} awaits your approval"
    assert notification.url == f"/portal/deviations/{closed_by_cmo.number}/"
    assert [message.to for message in mail.outbox] == [[approver.email]]
    assert mail.outbox[0].subject == notification.subject
    assert list(Notification.objects.values_list("recipient", flat=True)) == [approver.pk]


def test_users_of_another_sponsor_are_not_told(
    plant, people, closed_by_cmo, django_capture_on_commit_callbacks
):
    _sweep(django_capture_on_commit_callbacks)

    for name in ("approver_b", "auditor_b", "auditor_a"):
        assert not Notification.objects.filter(recipient=people[name]).exists(), name
    assert not [m for m in mail.outbox if people["approver_b"].email in m.to]


def test_closure_not_reserved_to_the_sponsor_tells_nobody(
    plant, django_capture_on_commit_callbacks
):
    agreement(plant, plant.sponsor_a)
    plant.sponsor_approver(plant.sponsor_a)
    batch = plant.run_batch(plant.product_a, [], release=False)[0]
    deviation = investigated(plant, record(plant, severity="minor", batches=[batch]))

    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    _sweep(django_capture_on_commit_callbacks)

    assert deviation.status == "closed"
    assert not deadlines_of(deviation).filter(kind=ds.CLOSURE_APPROVAL).exists()
    assert not Notification.objects.exists()


def test_sponsor_decision_meets_the_request(plant, people, closed_by_cmo):
    deadlines_send_due()

    ds.deviation_sponsor_decide(
        deviation=closed_by_cmo, user=people["approver_a"], password=PASSWORD, approve=True
    )

    request = deadlines_of(closed_by_cmo).get(kind=ds.CLOSURE_APPROVAL)
    assert request.status == Deadline.Status.MET
    assert request.met_at is not None and not request.is_late
    assert not request.is_overdue


def test_closure_signed_again_after_a_rejection_asks_again(
    plant, people, closed_by_cmo, django_capture_on_commit_callbacks
):
    approver = people["approver_a"]
    _sweep(django_capture_on_commit_callbacks)
    ds.deviation_sponsor_decide(
        deviation=closed_by_cmo,
        user=approver,
        password=PASSWORD,
        approve=False,
        comment="Root cause not shown.",
    )

    investigated(plant, closed_by_cmo, root_cause="Relay failed.", reason="Sponsor rejection.")
    ds.deviation_close(deviation=closed_by_cmo, user=plant.qa, password=PASSWORD)
    _sweep(django_capture_on_commit_callbacks)

    requests = deadlines_of(closed_by_cmo).filter(kind=ds.CLOSURE_APPROVAL).order_by("id")
    assert [r.status for r in requests] == [Deadline.Status.MET, Deadline.Status.NOTIFIED]
    assert Notification.objects.filter(recipient=approver).count() == 2
    assert [message.to for message in mail.outbox] == [[approver.email], [approver.email]]
