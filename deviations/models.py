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
