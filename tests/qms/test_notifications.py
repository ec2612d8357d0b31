"""Deadlines and notifications: scheduled once per key, notified exactly once per recipient by the
beat sweep (also when sweeps race, on a real worker and across a worker restart), e-mailed at
most once, read only by their recipient."""

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from threading import Barrier

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from qms.audit import checkpoint_file, history_for
from qms.celery import app as celery_app
from qms.errors import RuleViolation
from qms.models import AuditEvent, Deadline, Notification
from qms.notifications import (
    deadline_cancel,
    deadline_mark_met,
    deadline_schedule,
    deadlines_send_due,
    notification_mark_read,
    notifications_for,
    notifications_send_email,
)
from qms.tasks import send_due_notifications, write_audit_checkpoint
from sponsors import services
from sponsors.models import Role
from tests.factories import ProductFactory, UserFactory, make_user
from tests.workers import running_worker

CMO_ROLES = (Role.CMO_STAFF, Role.CMO_QA_APPROVER)


def schedule(sponsor, key="DEV-0007/sponsor-notice", *, due_in=timedelta(minutes=-1), **kw):
    kw.setdefault("recipient_roles", CMO_ROLES)
    return deadline_schedule(
        sponsor=sponsor,
        key=key,
        kind="deviation_notice",
        title=f"Notify {sponsor.code} of DEV-0007",
        due_at=timezone.now() + due_in,
        body="Critical deviation DEV-0007 must be notified to the sponsor.",
        url="/deviations/DEV-0007/",
        **kw,
    )


def sweep(capture, **kw) -> int:
    with capture(execute=True):
        return deadlines_send_due(**kw)


def sent_to() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


@pytest.fixture
def recipients(cmo_staff, qa_approver):
    return [cmo_staff, qa_approver]


@pytest.fixture
def lapsed_user(sponsor_a):
    user = UserFactory(username="lapsed-a")
    now = timezone.now()
    services.access_grant_create(
        user=user,
        sponsor=sponsor_a,
        role=Role.CMO_STAFF,
        starts_at=now - timedelta(days=30),
        expires_at=now - timedelta(days=1),
    )
    return user


@pytest.fixture
def revoked_user(sponsor_a):
    user = make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="revoked-a")
    services.access_grant_revoke(grant=user.access_grants.get(), reason="left the site")
    return user


@pytest.fixture
def other_sponsor_user(sponsor_b):
    return make_user(sponsor=sponsor_b, role=Role.CMO_QA_APPROVER, username="approver-b")


# --- scheduling ---------------------------------------------------------------------------


def test_scheduling_is_idempotent_on_key(sponsor_a):
    first = schedule(sponsor_a, due_in=timedelta(hours=24))

    again = deadline_schedule(
        sponsor=sponsor_a,
        key=first.key,
        kind="other",
        title="A different title",
        due_at=timezone.now() + timedelta(hours=1),
    )

    assert again.pk == first.pk
    assert (again.title, again.due_at, again.kind) == (first.title, first.due_at, first.kind)
    assert Deadline.objects.filter(key=first.key).count() == 1


def test_notify_at_defaults_to_due_at(sponsor_a):
    deadline = schedule(sponsor_a, due_in=timedelta(hours=24))

    assert deadline.notify_at == deadline.due_at
    assert deadline.status == Deadline.Status.PENDING


def test_explicit_notify_at_is_kept(sponsor_a):
    due_at = timezone.now() + timedelta(hours=24)
    deadline = deadline_schedule(
        sponsor=sponsor_a,
        key="DEV-0008/reminder",
        kind="deviation_notice",
        title="Remind",
        due_at=due_at,
        notify_at=due_at - timedelta(hours=4),
    )

    assert deadline.notify_at == due_at - timedelta(hours=4)


def test_schedule_refuses_a_key_used_by_another_sponsor(sponsor_a, sponsor_b):
    schedule(sponsor_a, key="shared-key")

    with pytest.raises(RuleViolation) as refused:
        schedule(sponsor_b, key="shared-key")

    assert refused.value.code == "deadline_key_taken"
    assert str(refused.value) == (
        "Deadline key 'shared-key' is already used by another sponsor's deadline; it cannot be "
        "scheduled for sponsor zzother."
    )


def test_schedule_refuses_unknown_recipient_role(sponsor_a):
    with pytest.raises(RuleViolation) as refused:
        schedule(sponsor_a, recipient_roles=["janitor"])

    assert str(refused.value).startswith(
        "Deadline “Notify alpha of DEV-0007” (DEV-0007/sponsor-notice) names unknown recipient "
        "roles ['janitor']"
    )
    assert not Deadline.objects.exists()


def test_schedule_refuses_a_subject_of_another_sponsor(sponsor_a, product_b):
    with pytest.raises(RuleViolation) as refused:
        schedule(sponsor_a, subject=product_b)

    assert str(refused.value) == (
        "Deadline “Notify alpha of DEV-0007” (DEV-0007/sponsor-notice) is for sponsor alpha, "
        f"but {product_b} belongs to another sponsor."
    )


def test_schedule_records_its_subject(sponsor_a):
    product = ProductFactory(sponsor=sponsor_a)

    deadline = schedule(sponsor_a, subject=product)

    assert deadline.content_type.model_class() is type(product)
    assert deadline.object_id == str(product.pk)


def test_cancel_requires_a_reason(sponsor_a, qa_approver):
    deadline = schedule(sponsor_a)

    with pytest.raises(RuleViolation) as refused:
        deadline_cancel(deadline=deadline, by=qa_approver, reason="  ")

    assert refused.value.code == "reason_required"
    assert str(refused.value) == (
        "Deadline “Notify alpha of DEV-0007” (DEV-0007/sponsor-notice) cannot be cancelled "
        "without a reason."
    )
    deadline.refresh_from_db()
    assert deadline.status == Deadline.Status.PENDING


def test_cancel_is_recorded_with_its_reason(sponsor_a, qa_approver):
    deadline = schedule(sponsor_a)
    before = AuditEvent.objects.aggregate(seq=Max("seq"))["seq"] or 0

    deadline_cancel(deadline=deadline, by=qa_approver, reason="deviation voided")

    event = history_for(deadline).filter(seq__gt=before).get()
    assert event.changes["status"] == ["pending", "cancelled"]
    assert (event.actor_id, event.reason) == (qa_approver.pk, "deviation voided")


def test_met_deadline_cannot_be_cancelled(sponsor_a, qa_approver):
    deadline = schedule(sponsor_a)
    deadline_mark_met(deadline=deadline, by=qa_approver, reason="sponsor notified by phone")

    with pytest.raises(RuleViolation) as refused:
        deadline_cancel(deadline=deadline, by=qa_approver, reason="duplicate")

    assert refused.value.code == "deadline_transition_invalid"
    assert str(refused.value) == (
        "Deadline “Notify alpha of DEV-0007” (DEV-0007/sponsor-notice) is met; it cannot be "
        "cancelled."
    )


# --- the sweep ----------------------------------------------------------------------------


def test_due_deadline_notifies_each_recipient_once_with_one_email(
    sponsor_a, recipients, auditor_a, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a)

    notified = sweep(django_capture_on_commit_callbacks)

    assert notified == 1
    rows = Notification.objects.filter(deadline=deadline)
    assert sorted(rows.values_list("recipient__username", flat=True)) == [
        "approver-a",
        "staff-a",
    ]
    assert sent_to() == sorted(user.email for user in recipients)
    assert all(row.emailed_at is not None for row in rows)
    message = mail.outbox[0]
    assert message.subject == "Notify alpha of DEV-0007"
    assert "Critical deviation DEV-0007" in message.body
    assert "/deviations/DEV-0007/" in message.body
    deadline.refresh_from_db()
    assert deadline.status == Deadline.Status.NOTIFIED
    assert deadline.notified_at is not None


def test_not_yet_due_deadline_notifies_nobody(
    sponsor_a, recipients, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a, due_in=timedelta(hours=24))

    assert sweep(django_capture_on_commit_callbacks) == 0

    assert not Notification.objects.exists()
    assert mail.outbox == []
    deadline.refresh_from_db()
    assert deadline.status == Deadline.Status.PENDING


def test_second_sweep_sends_nothing_more(sponsor_a, recipients, django_capture_on_commit_callbacks):
    schedule(sponsor_a)
    assert sweep(django_capture_on_commit_callbacks) == 1

    assert sweep(django_capture_on_commit_callbacks) == 0
    assert sweep(django_capture_on_commit_callbacks, now=timezone.now() + timedelta(days=2)) == 0

    assert Notification.objects.count() == 2
    assert len(mail.outbox) == 2


def test_sponsor_contact_gets_one_address_notification(
    sponsor_a, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a, recipient_roles=(), notify_sponsor_contact=True)

    sweep(django_capture_on_commit_callbacks)
    sweep(django_capture_on_commit_callbacks)

    row = Notification.objects.get(deadline=deadline)
    assert (row.recipient, row.email) == (None, "quality@alpha.example")
    assert sent_to() == ["quality@alpha.example"]


def test_users_without_an_active_grant_on_the_sponsor_get_nothing(
    sponsor_a,
    cmo_staff,
    lapsed_user,
    revoked_user,
    other_sponsor_user,
    auditor_a,
    django_capture_on_commit_callbacks,
):
    deadline = schedule(sponsor_a)

    sweep(django_capture_on_commit_callbacks)

    assert list(Notification.objects.values_list("recipient__username", flat=True)) == ["staff-a"]
    assert sent_to() == [cmo_staff.email]
    assert deadline.notifications.count() == 1


def test_met_or_cancelled_deadline_is_not_notified(
    sponsor_a, qa_approver, django_capture_on_commit_callbacks
):
    deadline_mark_met(deadline=schedule(sponsor_a, key="met"), by=qa_approver)
    deadline_cancel(deadline=schedule(sponsor_a, key="gone"), by=qa_approver, reason="voided")

    assert sweep(django_capture_on_commit_callbacks) == 0

    assert not Notification.objects.exists()
    assert mail.outbox == []


def test_notified_deadline_can_still_be_marked_met(
    sponsor_a, qa_approver, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a)
    sweep(django_capture_on_commit_callbacks)

    met = deadline_mark_met(deadline=deadline, by=qa_approver)

    assert met.status == Deadline.Status.MET


def test_reminder_leaves_the_deadline_unmet_and_overdue_once_past_due(
    sponsor_a, recipients, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a, due_in=timedelta(hours=-3))

    sweep(django_capture_on_commit_callbacks)

    deadline.refresh_from_db()
    assert (deadline.status, deadline.met_at) == (Deadline.Status.NOTIFIED, None)
    assert deadline.is_overdue and not deadline.is_late
    assert deadline.late_by >= timedelta(hours=3)
    assert list(Deadline.objects.overdue()) == [deadline]


def test_deadline_met_by_its_notice_is_met_when_sent(
    sponsor_a, recipients, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a, due_in=timedelta(hours=-3), is_met_by_notice=True)

    sweep(django_capture_on_commit_callbacks)

    deadline.refresh_from_db()
    assert deadline.status == Deadline.Status.MET
    assert deadline.met_at == deadline.notified_at is not None
    assert deadline.is_late and not deadline.is_overdue
    assert timedelta(hours=3) <= deadline.late_by < timedelta(hours=3, minutes=1)
    assert Notification.objects.filter(deadline=deadline).count() == 2
    assert not Deadline.objects.overdue().exists()


def test_marking_met_records_when_and_a_late_one_stays_late(sponsor_a, qa_approver):
    on_time = schedule(sponsor_a, key="on-time", due_in=timedelta(hours=1))
    late = schedule(sponsor_a, key="late", due_in=timedelta(days=-2))

    deadline_mark_met(deadline=on_time, by=qa_approver)
    deadline_mark_met(deadline=late, by=qa_approver)

    on_time.refresh_from_db()
    late.refresh_from_db()
    assert on_time.met_at is not None and (on_time.is_late, on_time.late_by) == (False, None)
    assert late.is_late and late.late_by == timedelta(days=2)
    assert not late.is_overdue


def test_escalation_of_a_notice_met_in_time_closes_with_the_notice_met_time(
    sponsor_a, recipients, qa_approver, django_capture_on_commit_callbacks
):
    notice = schedule(sponsor_a, due_in=timedelta(hours=1), notify_at=timezone.now())
    escalation = deadline_schedule(
        sponsor=sponsor_a,
        key="DEV-0007/escalation",
        kind="deviation_notice_escalation",
        title="Sponsor notice of DEV-0007 is overdue",
        due_at=notice.due_at,
        recipient_roles=[Role.CMO_QA_APPROVER],
        escalates=notice,
        is_met_by_notice=True,
    )
    deadline_mark_met(deadline=notice, by=qa_approver)

    sweep(django_capture_on_commit_callbacks, now=notice.due_at + timedelta(minutes=1))

    notice.refresh_from_db()
    escalation.refresh_from_db()
    assert escalation.status == Deadline.Status.MET
    assert escalation.met_at == notice.met_at
    assert not escalation.is_late
    assert not escalation.notifications.exists()


def test_sweep_is_recorded_in_the_audit_trail(
    sponsor_a, cmo_staff, django_capture_on_commit_callbacks
):
    deadline = schedule(sponsor_a)
    before = AuditEvent.objects.aggregate(seq=Max("seq"))["seq"] or 0

    sweep(django_capture_on_commit_callbacks)

    event = history_for(deadline).filter(seq__gt=before).get()
    assert event.changes["status"] == ["pending", "notified"]
    assert (event.actor_id, event.reason) == (None, "deadline notification due")
    notification = deadline.notifications.get()
    reasons = list(history_for(notification).values_list("reason", flat=True))
    assert reasons == ["deadline notification due", "notification e-mailed"]


def test_sweep_takes_at_most_limit_deadlines(
    sponsor_a, cmo_staff, django_capture_on_commit_callbacks
):
    for n in range(5):
        schedule(sponsor_a, key=f"DEV-{n}/notice")

    assert sweep(django_capture_on_commit_callbacks, limit=3) == 3
    assert sweep(django_capture_on_commit_callbacks, limit=3) == 2
    assert len(mail.outbox) == 5


class FailingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("SMTP server down")


def test_failed_email_is_sent_by_a_later_sweep(
    sponsor_a, cmo_staff, settings, django_capture_on_commit_callbacks
):
    schedule(sponsor_a)
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    sweep(django_capture_on_commit_callbacks)
    notification = Notification.objects.get()
    assert notification.emailed_at is None

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sweep(django_capture_on_commit_callbacks, now=timezone.now() + timedelta(minutes=6))
    sweep(django_capture_on_commit_callbacks, now=timezone.now() + timedelta(minutes=7))

    assert sent_to() == [cmo_staff.email]
    notification.refresh_from_db()
    assert notification.emailed_at is not None


# --- races: each sweep and each sender on its own connection --------------------------------


def run_concurrently(func, workers=2):
    barrier = Barrier(workers)

    def run():
        try:
            barrier.wait(timeout=10)
            return func()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run) for _ in range(workers)]
        return [future.result(timeout=60) for future in futures]


@pytest.mark.django_db(transaction=True)
def test_racing_sweeps_notify_each_recipient_once(sponsor_a, recipients, other_sponsor_user):
    deadlines = [schedule(sponsor_a, key=f"DEV-{n:04d}/notice") for n in range(12)]

    def sweep_until_done():
        total = 0
        while notified := deadlines_send_due(limit=5):
            total += notified
        return total

    results = run_concurrently(sweep_until_done)

    assert sum(results) == len(deadlines)
    assert Notification.objects.count() == len(deadlines) * len(recipients)
    for user in recipients:
        assert Notification.objects.filter(recipient=user).count() == len(deadlines)
    assert len(mail.outbox) == len(deadlines) * len(recipients)
    assert sorted(set(sent_to())) == sorted(user.email for user in recipients)
    assert not Deadline.objects.exclude(status=Deadline.Status.NOTIFIED).exists()


@pytest.mark.django_db(transaction=True)
def test_racing_email_senders_send_each_email_once(sponsor_a, recipients):
    schedule(sponsor_a, recipient_roles=CMO_ROLES, notify_sponsor_contact=True)
    with transaction_without_email():
        deadlines_send_due()
    ids = list(Notification.objects.values_list("id", flat=True))
    assert len(ids) == 3 and mail.outbox == []

    results = run_concurrently(lambda: notifications_send_email(ids=ids), workers=3)

    assert sum(results) == 3
    assert sent_to() == sorted([*(user.email for user in recipients), "quality@alpha.example"])


@contextmanager
def transaction_without_email():
    """Let a sweep commit its notifications but hold the e-mails back (as if its sender died)."""
    original = settings.EMAIL_BACKEND
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    try:
        yield
    finally:
        settings.EMAIL_BACKEND = original


# --- a real worker on the real Redis ------------------------------------------------------


@pytest.fixture
def celery_worker(celery_queue):
    with running_worker(celery_queue) as worker:
        yield worker


@pytest.mark.django_db(transaction=True)
def test_real_worker_sends_due_notifications_once(celery_worker, sponsor_a, recipients):
    assert settings.CELERY_BROKER_URL.startswith("redis")
    assert celery_worker.app.conf.broker_url == settings.CELERY_BROKER_URL
    assert celery_worker.consumer.connection.transport.driver_type == "redis"
    deadline = schedule(sponsor_a)

    assert send_due_notifications.delay().get(timeout=30) == 1
    assert send_due_notifications.delay().get(timeout=30) == 0

    assert sorted(deadline.notifications.values_list("recipient__username", flat=True)) == [
        "approver-a",
        "staff-a",
    ]
    assert sent_to() == sorted(user.email for user in recipients)
    deadline.refresh_from_db()
    assert deadline.status == Deadline.Status.NOTIFIED


@pytest.mark.django_db(transaction=True)
def test_worker_restart_loses_no_deadline(celery_queue, sponsor_a, recipients):
    # given: a worker that goes down before the deadline's sweep ran
    with running_worker(celery_queue):
        deadline = schedule(sponsor_a)
    # and the sweep queued while it was down is lost with the broker's messages
    send_due_notifications.delay()
    with celery_app.connection_for_write() as conn:
        assert conn.default_channel.queue_purge(celery_queue) == 1
    assert mail.outbox == []

    # when: the restarted worker runs the next beat ticks
    with running_worker(celery_queue):
        first = send_due_notifications.delay().get(timeout=30)
        second = send_due_notifications.delay().get(timeout=30)

    # then: the deadline, a row in PostgreSQL, was notified once
    assert (first, second) == (1, 0)
    assert deadline.notifications.count() == len(recipients)
    assert sent_to() == sorted(user.email for user in recipients)


def test_beat_runs_the_sweep_every_minute_and_the_checkpoint_every_five():
    schedule_ = celery_app.conf.beat_schedule

    assert schedule_["send-due-notifications"]["task"] == send_due_notifications.name
    assert send_due_notifications.name == "qms.tasks.send_due_notifications"
    assert schedule_["send-due-notifications"]["schedule"] == 60.0
    assert schedule_["audit-checkpoint"]["task"] == write_audit_checkpoint.name
    assert schedule_["audit-checkpoint"]["schedule"] == 300.0
    assert send_due_notifications.acks_late and write_audit_checkpoint.acks_late


def test_audit_checkpoint_task_is_safe_to_run_twice(sponsor_a, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path

    first = write_audit_checkpoint.apply().get()
    second = write_audit_checkpoint.apply().get()

    head = AuditEvent.objects.aggregate(seq=Max("seq"))["seq"]
    assert first == second == head
    assert len(checkpoint_file().read_text().splitlines()) == 1
    assert checkpoint_file().parent == tmp_path


# --- in-app -------------------------------------------------------------------------------


def test_only_the_recipient_marks_a_notification_read(
    sponsor_a, cmo_staff, qa_approver, django_capture_on_commit_callbacks
):
    schedule(sponsor_a)
    sweep(django_capture_on_commit_callbacks)
    notification = Notification.objects.get(recipient=cmo_staff)

    with pytest.raises(RuleViolation) as refused:
        notification_mark_read(notification=notification, user=qa_approver)

    assert refused.value.code == "notification_not_recipient"
    assert str(refused.value) == (
        f"Notification #{notification.pk} is addressed to someone else; only its recipient can "
        "mark it read."
    )
    notification.refresh_from_db()
    assert notification.read_at is None

    read = notification_mark_read(notification=notification, user=cmo_staff)
    first_read_at = read.read_at
    again = notification_mark_read(notification=notification, user=cmo_staff)
    assert first_read_at is not None and again.read_at == first_read_at


@pytest.mark.parametrize("rows", [5, 50])
def test_notifications_for_lists_own_newest_first_in_constant_queries(
    rows,
    sponsor_a,
    cmo_staff,
    qa_approver,
    django_capture_on_commit_callbacks,
    django_assert_num_queries,
):
    for n in range(rows):
        schedule(sponsor_a, key=f"DEV-{n:04d}/notice")
    sweep(django_capture_on_commit_callbacks)
    user = get_user_model().objects.get(pk=cmo_staff.pk)

    with django_assert_num_queries(2):
        listed = [
            (n.pk, n.recipient_id, n.deadline.key, n.sponsor.code) for n in notifications_for(user)
        ]

    assert len(listed) == rows
    assert {recipient for _, recipient, _, _ in listed} == {cmo_staff.pk}
    assert [pk for pk, *_ in listed] == sorted((pk for pk, *_ in listed), reverse=True)


def test_notifications_are_hidden_once_access_ends(
    sponsor_a, cmo_staff, django_capture_on_commit_callbacks
):
    schedule(sponsor_a)
    sweep(django_capture_on_commit_callbacks)
    assert notifications_for(cmo_staff).count() == 1

    services.access_grant_revoke(grant=cmo_staff.access_grants.get(), reason="left")
    user = get_user_model().objects.get(pk=cmo_staff.pk)

    assert notifications_for(user).count() == 0
