"""Quality events: deviations (incl. OOS investigations and complaints), their per-sponsor
impact records, and the site calendar that business-day deadlines count on."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from qms.audit import audited
from qms.tenancy import SharedManager
from sponsors.models import Severity


@audited(sponsor=None)
class SiteHoliday(models.Model):
    """A day the site does not count as a business day (besides weekends and the country's
    public holidays, which come from the `holidays` calendar of QMS_SITE_COUNTRY)."""

    day = models.DateField(unique=True)
    name = models.CharField(max_length=100)
    is_working_day = models.BooleanField(
        default=False,
        help_text="Tick to make a public holiday a working day at this site instead.",
    )

    class Meta:
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.name}"


@audited
class Deviation(models.Model):
    """A departure from an approved instruction or specification. A deviation on something
    shared (a raw-material lot, equipment) is a site record; each affected sponsor gets its own
    impact record (`source` → the site deviation) with its own deadlines."""

    class Category(models.TextChoices):
        DEVIATION = "deviation", "Deviation"
        OOS = "oos", "OOS investigation"
        COMPLAINT = "complaint", "Complaint"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        UNDER_INVESTIGATION = "under_investigation", "Under investigation"
        PENDING_SPONSOR_APPROVAL = "pending_sponsor_approval", "Pending sponsor approval"
        CLOSED = "closed", "Closed"

    class Disposition(models.TextChoices):
        NONE = "", "—"
        USE_AS_IS = "use_as_is", "Use as is"
        REWORK = "rework", "Rework"
        REJECT = "reject", "Reject"

    number = models.CharField(max_length=50, unique=True)
    sponsor = models.ForeignKey(
        "sponsors.Sponsor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty for a site deviation on shared material or equipment.",
    )
    source = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="impacts"
    )
    title = models.CharField(max_length=200)
    description = models.TextField()
    category = models.CharField(max_length=20, choices=Category.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.OPEN)
    occurred_at = models.DateTimeField()
    discovered_at = models.DateTimeField()
    agreement = models.ForeignKey(
        "sponsors.QualityAgreement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The agreement version in force at discovery, which set the deadlines.",
    )
    lots = models.ManyToManyField("batches.Lot", blank=True, related_name="deviations")
    batches = models.ManyToManyField("batches.Batch", blank=True, related_name="deviations")
    equipment = models.ManyToManyField("batches.Equipment", blank=True, related_name="deviations")
    lab_result = models.ForeignKey(
        "batches.LabResult",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="investigations",
    )
    immediate_action = models.TextField(blank=True)
    impact_assessment = models.TextField(blank=True)
    root_cause = models.TextField(blank=True)
    disposition = models.CharField(
        max_length=20, choices=Disposition.choices, blank=True, default=Disposition.NONE
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(default=timezone.now)
    sponsor_acknowledged_at = models.DateTimeField(null=True, blank=True)
    sponsor_acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = SharedManager()

    class Meta:
        ordering = ["-discovered_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__isnull=True) | Q(sponsor__isnull=False),
                name="impact_record_has_sponsor",
            ),
            models.CheckConstraint(
                condition=Q(occurred_at__lte=models.F("discovered_at")),
                name="deviation_occurs_before_discovery",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("deviations:detail", args=[self.number])

    @staticmethod
    def sponsor_link(ids):
        """A sponsor's people never see a site deviation itself, only their impact record."""
        return Q(pk__in=[])

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.CLOSED

    @property
    def is_site_record(self) -> bool:
        return self.sponsor_id is None

    @property
    def time_to_acknowledge(self):
        if self.sponsor_acknowledged_at is None:
            return None
        return self.sponsor_acknowledged_at - self.recorded_at

    def signature_content(self) -> dict:
        return {
            "number": self.number,
            "sponsor": self.sponsor_id,
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "severity": self.severity,
            "occurred_at": self.occurred_at,
            "discovered_at": self.discovered_at,
            "immediate_action": self.immediate_action,
            "impact_assessment": self.impact_assessment,
            "root_cause": self.root_cause,
            "disposition": self.disposition,
            "lots": sorted(self.lots.values_list("pk", flat=True)),
            "batches": sorted(self.batches.values_list("pk", flat=True)),
        }


@audited
class Capa(models.Model):
    """A corrective and preventive action plan, raised from a deviation, an audit finding, a
    supplier issue or otherwise; owned by a sponsor, or site-wide when its source is."""

    class SourceKind(models.TextChoices):
        DEVIATION = "deviation", "Deviation"
        AUDIT_FINDING = "audit_finding", "Audit finding"
        SUPPLIER_ISSUE = "supplier_issue", "Supplier issue"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        EFFECTIVENESS_CHECK = "effectiveness_check", "Effectiveness check"
        CLOSED = "closed", "Closed"

    number = models.CharField(max_length=50, unique=True)
    sponsor = models.ForeignKey(
        "sponsors.Sponsor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty for a site-wide CAPA.",
    )
    title = models.CharField(max_length=200)
    description = models.TextField()
    source_kind = models.CharField(max_length=20, choices=SourceKind.choices)
    deviation = models.ForeignKey(
        Deviation, null=True, blank=True, on_delete=models.PROTECT, related_name="capas"
    )
    source_reference = models.CharField(
        max_length=200, blank=True, help_text="The audit finding or supplier issue it answers."
    )
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.OPEN)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_capas"
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    opened_at = models.DateTimeField(default=timezone.now)
    agreement = models.ForeignKey(
        "sponsors.QualityAgreement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The agreement version in force at opening, which set the notice deadline.",
    )
    effectiveness_due = models.DateField(null=True, blank=True)
    effectiveness_criteria = models.TextField(blank=True)
    effectiveness_result = models.TextField(blank=True)
    is_effective = models.BooleanField(null=True, blank=True)
    effectiveness_checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    effectiveness_checked_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = SharedManager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(source_kind="deviation") | Q(deviation__isnull=False),
                name="capa_from_deviation_names_it",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("deviations:capa-detail", args=[self.number])

    @staticmethod
    def sponsor_link(ids):
        """A sponsor's people never see a site-wide CAPA."""
        return Q(pk__in=[])

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.CLOSED

    @property
    def source_display(self) -> str:
        if self.deviation_id:
            return f"{self.get_source_kind_display()} {self.deviation.number}"
        label = self.get_source_kind_display()
        return f"{label}: {self.source_reference}" if self.source_reference else label

    def signature_content(self) -> dict:
        return {
            "number": self.number,
            "sponsor": self.sponsor_id,
            "title": self.title,
            "description": self.description,
            "source_kind": self.source_kind,
            "deviation": self.deviation_id,
            "source_reference": self.source_reference,
            "effectiveness_due": self.effectiveness_due,
            "effectiveness_criteria": self.effectiveness_criteria,
            "effectiveness_result": self.effectiveness_result,
            "is_effective": self.is_effective,
            "actions": [
                [a.sequence, a.description, a.owner_id, a.due_date, a.completed_at]
                for a in self.actions.order_by("sequence")
            ],
        }


@audited
class CapaAction(models.Model):
    """One corrective or preventive action of a CAPA, with its owner and due date."""

    capa = models.ForeignKey(Capa, on_delete=models.PROTECT, related_name="actions")
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sequence = models.PositiveIntegerField()
    description = models.TextField()
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="capa_actions"
    )
    due_date = models.DateField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    completion_note = models.TextField(blank=True)

    objects = SharedManager()

    class Meta:
        ordering = ["capa", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["capa", "sequence"], name="capa_action_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.capa.number}/A{self.sequence}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.capa.sponsor_id
        super().save(*args, **kwargs)

    @staticmethod
    def sponsor_link(ids):
        return Q(pk__in=[])

    @property
    def label(self) -> str:
        return f"A{self.sequence}"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None
