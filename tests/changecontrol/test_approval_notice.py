"""Sponsor approvers are told, in-app and by e-mail, exactly once, when a change decision awaits
them: the approve obligation's notice goes out through the deadline sweep with only the sponsor's
own slice, and it is met when the sponsor decides."""

import pytest
from django.core import mail
from django.utils import timezone

from changecontrol import services as cs
from qms.models import Deadline, Notification
from qms.notifications import deadlines_send_due
from sponsors.models import Role

pytestmark = pytest.mark.django_db

FOREIGN = {
    "acme": ("Acme", "acme", "ACM-IBU200", "Ibuprofen"),
    "borealis": ("Borealis", "borealis", "BOR-CATH7", "catheter"),
}
PRODUCT = {"acme": "ACM-IBU200", "borealis": "BOR-CATH7"}


def _sweep(capture) -> int:
    with capture(execute=True):
        return deadlines_send_due(now=timezone.now())


def _to(user):
    return [message for message in mail.outbox if message.to == [user.email]]


def test_each_affected_sponsors_approver_is_notified_once_with_only_its_slice(
    three, django_capture_on_commit_callbacks
):
    # given: a process-parameter change both Acme and Borealis must approve
    change = three.submitted(category="process_parameter", codes=("acme", "borealis"))
    # when
    first = _sweep(django_capture_on_commit_callbacks)
    second = _sweep(django_capture_on_commit_callbacks)
    # then
    assert (first, second) == (2, 0)
    for code, other in (("acme", "borealis"), ("borealis", "acme")):
        approver = three.approvers[code]
        obligation = three.obligation(change, code)
        assert obligation.notice.recipient_roles.count(Role.SPONSOR_APPROVER) == 1
        [notification] = Notification.objects.filter(recipient=approver)
        assert notification.deadline_id == obligation.notice_id
        assert notification.subject == (
            f"Change {change.number}: your approval is requested — {change.title}"
        )
        assert notification.url == f"/portal/changes/{change.number}/"
        assert notification.emailed_at is not None
        [message] = _to(approver)
        assert message.subject == notification.subject
        assert PRODUCT[code] in message.body
        assert f"{obligation.lead_time_days} days after this notice" in message.body
        for foreign in FOREIGN[other]:
            assert foreign not in message.body and foreign not in message.subject
            assert foreign not in notification.body


def test_the_decision_notice_is_met_when_the_sponsor_decides_and_then_sends_nothing(
    three, django_capture_on_commit_callbacks
):
    # given
    change = three.submitted(category="process_parameter", codes=("acme", "borealis"))
    # when: Acme decides before the sweep ran
    three.decide(change, "acme")
    sent = _sweep(django_capture_on_commit_callbacks)
    # then: only Borealis's approver is told
    assert sent == 1
    assert three.obligation(change, "acme").notice.status == Deadline.Status.MET
    assert not Notification.objects.filter(recipient=three.approvers["acme"]).exists()
    assert _to(three.approvers["acme"]) == []
    assert len(_to(three.approvers["borealis"])) == 1


def test_a_withdrawn_obligation_cancels_the_decision_notice(three):
    change = three.submitted(category="process_parameter", codes=("acme", "borealis"))
    cs.change_cancel(change=change, by=three.staff, reason="Superseded by another change.")
    for code in ("acme", "borealis"):
        assert three.obligation(change, code).notice.status == Deadline.Status.CANCELLED
    assert deadlines_send_due(now=timezone.now()) == 0
