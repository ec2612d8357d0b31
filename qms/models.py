"""Kernel records: the audit trail, e-signatures, deadlines and notifications."""

from datetime import timedelta

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from .audit import audited
from .tenancy import SponsorOwned, SponsorScopedManager, SponsorScopedQuerySet


class AuditEvent(models.Model):
    """One captured change. Written only by the database trigger; append-only and hash-chained
    (the table, its functions and triggers are created in migration 0001)."""

    class Action(models.TextChoices):
        CREATE = "create", "created"
        UPDATE = "update", "changed"
        DELETE = "delete", "deleted"

    seq = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True)
    actor_username = models.TextField()
    model = models.TextField()
    object_id = models.TextField()
    action = models.TextField(choices=Action.choices)
    changes = models.JSONField()
    reason = models.TextField()
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    prev_hash = models.TextField()
    hash = models.TextField()

    sponsor_lookup = "sponsor_id"
    objects = SponsorScopedManager()

    class Meta:
        managed = False
        db_table = "qms_audit_event"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.model}:{self.object_id} {self.action}"

    @property
    def actor_display(self) -> str:
        return self.actor_username or "system"

    @property
    def model_name(self) -> str:
        return self.model.split(".", 1)[-1]

    def change_rows(self) -> list[tuple[str, object, object]]:
        return [(field, pair[0], pair[1]) for field, pair in sorted(self.changes.items())]


@audited
class Signature(models.Model):
    """An electronic signature (21 CFR 11.50/11.70): who, when (UTC), what it means, bound to a
    hash of the signed record's content and sealed with the server key."""

    class Meaning(models.TextChoices):
        AUTHORED = "authored", "Authored"
        REVIEWED = "reviewed", "Reviewed"
        APPROVED = "approved", "Approved"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"
        CLOSED = "closed", "Closed"
        TRAINED = "trained", "Trained (read and understood)"
        VERIFIED = "verified", "Verified (second person)"

    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.CharField(max_length=64)
    record = GenericForeignKey("content_type", "object_id")
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, db_index=True
    )
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    printed_name = models.CharField(max_length=300)
    meaning = models.CharField(max_length=20, choices=Meaning.choices)
    signed_at = models.DateTimeField()
    content_hash = models.CharField(max_length=64)
    seal = models.CharField(max_length=64)

    sponsor_lookup = "sponsor_id"
    objects = SponsorScopedManager()

    class Meta:
        ordering = ["signed_at", "id"]
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def __str__(self) -> str:
        meaning = self.get_meaning_display().lower()
        return f"{self.printed_name} — {meaning} — {self.signed_at:%Y-%m-%d %H:%M} UTC"


UNMET_STATUSES = ("pending", "notified")


class DeadlineQuerySet(SponsorScopedQuerySet):
    def unmet(self):
        """Not yet met nor cancelled, whatever reminders were sent."""
        return self.filter(status__in=UNMET_STATUSES)

    def overdue(self, at=None):
        """Unmet past the due time (pending or notified alike)."""
        return self.unmet().filter(due_at__lt=at or timezone.now())


def _whole_minutes(delta: timedelta) -> timedelta:
    return timedelta(minutes=int(delta.total_seconds() // 60))


@audited
class Deadline(SponsorOwned):
    """Something that must happen by a time, e.g. "notify the sponsor of DEV-0007 within 24 h".
    Lives in PostgreSQL so a worker restart loses nothing; the beat sweep notifies once.

    A reminder does not meet a deadline: it stays unmet (and overdue once past due) until the
    obligation is fulfilled (`met_at`), except where sending the notice is the obligation
    itself (`is_met_by_notice`: a sponsor notice, an escalation), which the sweep meets when it
    sends. A deadline met after its due time stays late, by `late_by`."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        NOTIFIED = "notified", "Notified"
        MET = "met", "Met"
        CANCELLED = "cancelled", "Cancelled"

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=60)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    due_at = models.DateTimeField()
    notify_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    notified_at = models.DateTimeField(null=True, blank=True)
    met_at = models.DateTimeField(
        null=True, blank=True, help_text="When the obligation was fulfilled."
    )
    is_met_by_notice = models.BooleanField(
        default=False,
        help_text="Sending the notice is what the deadline asks for (a sponsor notice, an "
        "escalation): the sweep marks it met when it sends it.",
    )
    recipient_roles = models.JSONField(default=list, blank=True)
    notify_sponsor_contact = models.BooleanField(default=False)
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.PROTECT)
    object_id = models.CharField(max_length=64, blank=True)
    url = models.CharField(max_length=300, blank=True)
    escalates = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="escalations",
        help_text="An escalation fires only if this deadline is still pending when it falls due.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = DeadlineQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["status", "notify_at"])]

    def __str__(self) -> str:
        return self.title

    @property
    def is_unmet(self) -> bool:
        return self.status in UNMET_STATUSES

    @property
    def is_overdue(self) -> bool:
        """Unmet past its due time, whether or not a reminder was sent."""
        return self.is_unmet and self.due_at < timezone.now()

    @property
    def late_by(self) -> timedelta | None:
        """How late, in whole minutes (the resolution deadlines are stated in): for a deadline
        met late, from its due time to when it was met; for an overdue one, to now. None when
        on time, open and not yet due, or cancelled."""
        if self.is_overdue:
            return _whole_minutes(timezone.now() - self.due_at)
        if self.status == self.Status.MET and self.met_at is not None:
            late = _whole_minutes(self.met_at - self.due_at)
            return late if late > timedelta(0) else None
        return None

    @property
    def is_late(self) -> bool:
        """Met after its due time: a deadline met late stays late."""
        return self.status == self.Status.MET and self.late_by is not None


@audited(exclude=("read_at",))
class Notification(SponsorOwned):
    """A message sent because a deadline fell due: one row per recipient, shown in-app and
    e-mailed once."""

    deadline = models.ForeignKey(
        Deadline, null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="notifications",
    )
    email = models.EmailField(blank=True)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["deadline", "recipient"],
                condition=models.Q(recipient__isnull=False),
                name="notification_once_per_recipient",
            ),
            models.UniqueConstraint(
                fields=["deadline", "email"],
                condition=models.Q(recipient__isnull=True),
                name="notification_once_per_address",
            ),
        ]

    def __str__(self) -> str:
        return self.subject


class IdempotencyKey(models.Model):
    """The first successful answer to an API write sent with an `Idempotency-Key` header, kept
    so that a retry of the same request answers the same and writes nothing (`qms.idempotency`).
    The request is kept only as a keyed hash; passwords in it are never stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.key})"
