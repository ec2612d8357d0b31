"""Deadlines and the notifications they send: scheduling, the beat sweep that notifies what fell
due exactly once per recipient, e-mail sent at most once per notification, and the in-app list.

Deadlines are rows in PostgreSQL, not broker messages, so a worker restart loses none. The sweep
claims due rows with `select_for_update(skip_locked=True)`, the Notification unique constraints
make a second notification for the same recipient impossible, and each e-mail is claimed with a
conditional UPDATE on `emailed_at IS NULL` before it is sent.

A notification is a reminder, not the fulfilment: a deadline stays unmet (overdue once past due)
until the service of its record marks it met, except a deadline whose notice is the obligation
itself (`is_met_by_notice`), which the sweep marks met, at the time it sends, when it sends it."""

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from sponsors.models import AccessGrant, Role, Sponsor

from .audit import audit_context
from .errors import KernelError, RuleViolation
from .models import Deadline, Notification

logger = logging.getLogger(__name__)

# An e-mail whose sender died between the sweep's commit and the send (or whose send failed) is
# picked up again by a later sweep after this delay, for this long.
EMAIL_RETRY_AFTER = timedelta(minutes=5)
EMAIL_RETRY_WINDOW = timedelta(days=1)


class NotificationError(StrEnum):
    INVALID = "deadline_invalid"
    KEY_TAKEN = "deadline_key_taken"
    TRANSITION = "deadline_transition_invalid"
    NOT_RECIPIENT = "notification_not_recipient"


Status = Deadline.Status

ALLOWED: dict[str, set[str]] = {
    Status.PENDING: {Status.NOTIFIED, Status.MET, Status.CANCELLED},
    Status.NOTIFIED: {Status.MET, Status.CANCELLED},
    Status.MET: set(),
    Status.CANCELLED: set(),
}

_VERB = {Status.MET: "marked met", Status.CANCELLED: "cancelled"}


def _describe(deadline: Deadline) -> str:
    return f"Deadline “{deadline.title}” ({deadline.key})"


# --- scheduling ---------------------------------------------------------------------------


def deadline_schedule(
    *,
    sponsor: Sponsor,
    key: str,
    kind: str,
    title: str,
    due_at: datetime,
    notify_at: datetime | None = None,
    body: str = "",
    recipient_roles: Iterable[str] = (),
    notify_sponsor_contact: bool = False,
    subject=None,
    url: str = "",
    escalates: Deadline | None = None,
    is_met_by_notice: bool = False,
    by=None,
) -> Deadline:
    """Persist a deadline once per `key`: scheduling the same key again returns the existing row
    unchanged. `notify_at` (when the sweep notifies) defaults to `due_at`. `subject` is the record
    the deadline is about; it must belong to `sponsor` when it belongs to a sponsor.
    `is_met_by_notice`: sending the notice fulfils it (the sweep marks it met when it sends);
    otherwise the notice is a reminder and the deadline stays unmet until marked met."""
    roles = list(dict.fromkeys(recipient_roles))
    existing = Deadline.objects.filter(key=key).first()
    if existing is not None:
        return _same_sponsor(existing, sponsor)
    unknown = sorted(set(roles) - set(Role.values))
    if unknown:
        raise RuleViolation(
            NotificationError.INVALID,
            f"Deadline “{title}” ({key}) names unknown recipient roles {unknown}; "
            f"known roles are {sorted(Role.values)}.",
        )
    notify_at = notify_at or due_at
    for name, moment in (("due_at", due_at), ("notify_at", notify_at)):
        if moment is None or timezone.is_naive(moment):
            raise RuleViolation(
                NotificationError.INVALID,
                f"Deadline “{title}” ({key}): {name} must be a timezone-aware date and time.",
            )
    deadline = Deadline(
        sponsor=sponsor,
        key=key,
        kind=kind,
        title=title,
        body=body,
        due_at=due_at,
        notify_at=notify_at,
        recipient_roles=roles,
        notify_sponsor_contact=notify_sponsor_contact,
        url=url,
        escalates=escalates,
        is_met_by_notice=is_met_by_notice,
    )
    if subject is not None:
        subject_sponsor = getattr(subject, "sponsor_id", None)
        if subject_sponsor is not None and subject_sponsor != sponsor.pk:
            raise RuleViolation(
                NotificationError.INVALID,
                f"Deadline “{title}” ({key}) is for sponsor {sponsor.code}, but {subject} "
                "belongs to another sponsor.",
            )
        deadline.content_type = ContentType.objects.get_for_model(subject)
        deadline.object_id = str(subject.pk)
    try:
        deadline.full_clean(validate_unique=False)
    except ValidationError as error:
        raise RuleViolation(
            NotificationError.INVALID, f"Deadline “{title}” ({key}) is not valid — {error}"
        ) from error
    with transaction.atomic(), audit_context(actor=by, reason=f"deadline scheduled: {kind}"):
        try:
            with transaction.atomic():
                deadline.save()
        except IntegrityError:
            existing = Deadline.objects.filter(key=key).first()
            if existing is None:
                raise
            return _same_sponsor(existing, sponsor)
    return deadline


def _same_sponsor(existing: Deadline, sponsor: Sponsor) -> Deadline:
    if existing.sponsor_id != sponsor.pk:
        raise RuleViolation(
            NotificationError.KEY_TAKEN,
            f"Deadline key {existing.key!r} is already used by another sponsor's deadline; "
            f"it cannot be scheduled for sponsor {sponsor.code}.",
        )
    return existing


def deadline_mark_met(*, deadline: Deadline, by, reason: str = "") -> Deadline:
    """The obligation was fulfilled now (`met_at`; after the due time it stays late): the sweep
    no longer notifies it. Callers (the service of the record the deadline is about) check that
    `by` may act on it."""
    return _transition(deadline, Status.MET, by=by, reason=reason.strip() or "deadline met")


def deadline_cancel(*, deadline: Deadline, by, reason: str) -> Deadline:
    """The obligation no longer applies; why must be recorded (21 CFR 11.10(e))."""
    if not (reason or "").strip():
        raise RuleViolation(
            KernelError.REASON_REQUIRED,
            f"{_describe(deadline)} cannot be cancelled without a reason.",
        )
    return _transition(deadline, Status.CANCELLED, by=by, reason=reason.strip())


def _transition(deadline: Deadline, target: str, *, by, reason: str) -> Deadline:
    with transaction.atomic(), audit_context(actor=by, reason=reason):
        locked = Deadline.objects.select_for_update().get(pk=deadline.pk)
        if target not in ALLOWED[locked.status]:
            raise RuleViolation(
                NotificationError.TRANSITION,
                f"{_describe(locked)} is {locked.get_status_display().lower()}; "
                f"it cannot be {_VERB[target]}.",
            )
        locked.status = target
        fields = ["status"]
        if target == Status.MET:
            locked.met_at = timezone.now()
            fields.append("met_at")
        locked.save(update_fields=fields)
    deadline.status, deadline.met_at = locked.status, locked.met_at
    return locked


# --- the sweep ----------------------------------------------------------------------------


def deadlines_send_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """Notify every pending deadline whose notify_at has passed, once: one in-app notification
    per user holding an active grant with one of its roles on its sponsor, plus the sponsor's
    contact address when asked. A deadline met by its notice is met when sent (late if sent
    after its due time); any other stays unmet, notified. An escalation whose deadline is no
    longer pending is closed as met, when that deadline was met, without a notice. E-mails go
    out after commit. Returns the deadlines notified."""
    now = now or timezone.now()
    with transaction.atomic(), audit_context(reason="deadline notification due"):
        due = list(
            Deadline.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("sponsor", "escalates")
            .filter(status=Status.PENDING, notify_at__lte=now)
            .order_by("notify_at", "id")[:limit]
        )
        moot = [d for d in due if d.escalates_id and d.escalates.status != Status.PENDING]
        if moot:
            escalated_met_at = Deadline.objects.filter(pk=OuterRef("escalates_id")).values(
                "met_at"
            )[:1]
            Deadline.objects.filter(pk__in=[d.pk for d in moot]).update(
                status=Status.MET, met_at=Subquery(escalated_met_at)
            )
            due = [d for d in due if d not in moot]
        if due:
            notifications = _notifications_for_deadlines(due, now=now)
            Notification.objects.bulk_create(notifications, ignore_conflicts=True)
            sent_at = timezone.now()
            reminded = [d.pk for d in due if not d.is_met_by_notice]
            fulfilled = [d.pk for d in due if d.is_met_by_notice]
            Deadline.objects.filter(pk__in=reminded).update(
                status=Status.NOTIFIED, notified_at=sent_at
            )
            Deadline.objects.filter(pk__in=fulfilled).update(
                status=Status.MET, notified_at=sent_at, met_at=sent_at
            )
        deadline_ids = [d.pk for d in due]
        transaction.on_commit(lambda: _email_after_sweep(deadline_ids, now=now))
    return len(due)


def _notifications_for_deadlines(due: list[Deadline], *, now: datetime) -> list[Notification]:
    grants = (
        AccessGrant.objects.active(at=now)
        .filter(sponsor_id__in={d.sponsor_id for d in due}, user__is_active=True)
        .select_related("user")
        .order_by("user_id")
    )
    users_by_sponsor_role: dict[tuple[int, str], dict[int, object]] = defaultdict(dict)
    for grant in grants:
        users_by_sponsor_role[(grant.sponsor_id, grant.role)][grant.user_id] = grant.user
    notifications = []
    for deadline in due:
        subject, body = _message(deadline)
        recipients: dict[int, object] = {}
        for role in deadline.recipient_roles:
            recipients.update(users_by_sponsor_role.get((deadline.sponsor_id, role), {}))
        common = {
            "sponsor_id": deadline.sponsor_id,
            "deadline": deadline,
            "subject": subject,
            "body": body,
            "url": deadline.url,
        }
        for user in recipients.values():
            notifications.append(Notification(recipient=user, email=user.email, **common))
        if deadline.notify_sponsor_contact:
            if deadline.sponsor.contact_email:
                notifications.append(Notification(email=deadline.sponsor.contact_email, **common))
            else:
                logger.warning(
                    "%s should notify sponsor %s, which has no contact e-mail address.",
                    _describe(deadline),
                    deadline.sponsor.code,
                )
        if not recipients and not deadline.notify_sponsor_contact:
            logger.warning("%s fell due but nobody holds its roles.", _describe(deadline))
    return notifications


def _message(deadline: Deadline) -> tuple[str, str]:
    lines = [deadline.body.strip()] if deadline.body.strip() else []
    lines.append(f"Sponsor: {deadline.sponsor.name}")
    lines.append(f"Due: {deadline.due_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    if deadline.url:
        lines.append(deadline.url)
    return deadline.title, "\n".join(lines)


def _email_after_sweep(deadline_ids: list[int], *, now: datetime) -> None:
    unsent = Q(deadline_id__in=deadline_ids) | Q(
        created_at__lt=now - EMAIL_RETRY_AFTER, created_at__gte=now - EMAIL_RETRY_WINDOW
    )
    ids = list(
        Notification.objects.filter(unsent, emailed_at__isnull=True)
        .exclude(email="")
        .order_by("id")
        .values_list("id", flat=True)
    )
    notifications_send_email(ids=ids)


def notifications_send_email(*, ids: Iterable[int]) -> int:
    """E-mail each notification at most once, even when several senders race: each is claimed
    by a conditional UPDATE on `emailed_at IS NULL` committed before the send; a failed send
    releases its claim so a later sweep retries. Call it outside a transaction (on commit).
    Returns the e-mails sent."""
    pending = list(
        Notification.objects.filter(pk__in=list(ids), emailed_at__isnull=True)
        .exclude(email="")
        .order_by("id")
    )
    if not pending:
        return 0
    connection = get_connection()
    sent = 0
    try:
        for notification in pending:
            claimed_at = timezone.now()
            with transaction.atomic(), audit_context(reason="notification e-mailed"):
                claimed = Notification.objects.filter(
                    pk=notification.pk, emailed_at__isnull=True
                ).update(emailed_at=claimed_at)
            if claimed != 1:
                continue
            message = EmailMessage(
                subject=notification.subject,
                body=notification.body,
                to=[notification.email],
                connection=connection,
            )
            try:
                message.send()
            except OSError:
                logger.exception(
                    "E-mail of notification #%s to %s failed; released for retry.",
                    notification.pk,
                    notification.email,
                )
                with transaction.atomic(), audit_context(reason="notification e-mail failed"):
                    Notification.objects.filter(pk=notification.pk, emailed_at=claimed_at).update(
                        emailed_at=None
                    )
                continue
            sent += 1
    finally:
        connection.close()
    return sent


# --- in-app -------------------------------------------------------------------------------


def notification_mark_read(*, notification: Notification, user) -> Notification:
    """Only the recipient reads their notification; reading again keeps the first time."""
    if user is None or user.pk is None or notification.recipient_id != user.pk:
        raise RuleViolation(
            NotificationError.NOT_RECIPIENT,
            f"Notification #{notification.pk} is addressed to someone else; only its "
            "recipient can mark it read.",
        )
    with transaction.atomic(), audit_context(actor=user):
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
            read_at=timezone.now()
        )
    notification.refresh_from_db(fields=["read_at"])
    return notification


def notifications_for(user):
    """The user's own in-app notifications, newest first, limited to the sponsors the user may
    view now."""
    return (
        Notification.objects.for_user(user, "view")
        .filter(recipient_id=user.pk)
        .select_related("deadline", "sponsor")
        .order_by("-created_at", "-id")
    )
