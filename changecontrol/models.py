"""Change control across sponsors.

A change request (CC-YYYY-NNNN) lists the products it affects, which may belong to several
sponsors. On submission each affected sponsor gets one obligation derived from its quality
agreement in force for the change's category: none, notify (with a lead time) or approve. The
change cannot become effective until every approve obligation is approved and every notify
obligation was sent at least its lead time before the effective date; the lead time holds for an
approval too unless the sponsor's signed approval accepts an earlier date. A sponsor sees only its
own slice: the change itself (text, risk assessment, tasks, what it carries when that is the
sponsor's own or the site's), its own products and its own obligation."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from qms.audit import audited
from qms.tenancy import SponsorOwned, is_cmo_user, sponsor_ids_for
from sponsors.models import ChangeCategory, Obligation

SCORE = [MinValueValidator(1), MaxValueValidator(5)]


class RiskLevel(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class ChangeRequestQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """CMO users see a change that affects a product of a sponsor in their scope, and changes
        with no product yet; a sponsor's people see submitted changes that affect their products."""
        ids = sponsor_ids_for(user, action)
        if not ids:
            return self.none()
        touches = Q(
            Exists(
                ChangeProduct.objects.filter(
                    change=OuterRef("pk"), sponsor_id__in=ids, removed_at__isnull=True
                )
            )
        )
        if is_cmo_user(user):
            unscoped = ~Q(Exists(ChangeProduct.objects.filter(change=OuterRef("pk"))))
            return self.filter(touches | unscoped)
        hidden = [ChangeRequest.Status.DRAFT, ChangeRequest.Status.ASSESSMENT]
        return self.filter(touches).exclude(status__in=hidden)


@audited(sponsor=None)
class ChangeRequest(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ASSESSMENT = "assessment", "Assessment"
        AWAITING_SPONSORS = "awaiting_sponsors", "Awaiting sponsors"
        APPROVED = "approved", "Approved"
        EFFECTIVE = "effective", "Effective"
        CLOSED = "closed", "Closed"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    number = models.CharField(max_length=20, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField()
    category = models.CharField(max_length=30, choices=ChangeCategory.choices)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.DRAFT)
    # what it changes: one of these, or free text
    document_version = models.ForeignKey(
        "documents.DocumentVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_requests",
    )
    mbr = models.ForeignKey(
        "batches.MasterBatchRecord",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_requests",
        verbose_name="master batch record version",
    )
    equipment = models.ForeignKey(
        "batches.Equipment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_requests",
    )
    supplier = models.ForeignKey(
        "suppliers.Supplier",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_requests",
    )
    subject_text = models.CharField(
        max_length=300, blank=True, help_text="What changes, when it is not a record above."
    )
    # ICH Q9 risk assessment
    risk_severity = models.PositiveSmallIntegerField(null=True, blank=True, validators=SCORE)
    risk_probability = models.PositiveSmallIntegerField(null=True, blank=True, validators=SCORE)
    risk_detectability = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=SCORE,
        help_text="1 = certain to be detected, 5 = unlikely to be detected.",
    )
    risk_level = models.CharField(max_length=10, choices=RiskLevel.choices, blank=True)
    risk_rationale = models.TextField(blank=True)
    proposed_effective_date = models.DateField(null=True, blank=True)
    effective_at = models.DateTimeField(null=True, blank=True)
    early_effective_reason = models.TextField(
        blank=True,
        help_text="Why the change became effective before its proposed effective date.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.TextField(
        blank=True, help_text="Why the change was rejected or cancelled."
    )
    products = models.ManyToManyField(
        "sponsors.Product", through="ChangeProduct", related_name="change_requests"
    )

    objects = ChangeRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("changecontrol:detail", args=[self.number])

    @property
    def risk_priority(self) -> int | None:
        scores = (self.risk_severity, self.risk_probability, self.risk_detectability)
        if None in scores:
            return None
        return scores[0] * scores[1] * scores[2]


@audited
class ChangeProduct(SponsorOwned):
    """A product the change affects. Re-scoping removes it with a reason; the row stays."""

    change = models.ForeignKey(
        ChangeRequest, on_delete=models.CASCADE, related_name="affected_products"
    )
    product = models.ForeignKey("sponsors.Product", on_delete=models.PROTECT, related_name="+")
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    removed_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["change", "product__code"]
        constraints = [
            models.UniqueConstraint(fields=["change", "product"], name="change_product_once")
        ]

    def __str__(self) -> str:
        return f"{self.change} affects {self.product.code}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.product.sponsor_id
        super().save(*args, **kwargs)


@audited
class SponsorObligation(SponsorOwned):
    """What the change owes one affected sponsor under its agreement in force at submission."""

    class Status(models.TextChoices):
        NOT_REQUIRED = "not_required", "Not required"
        PENDING = "pending", "Pending"
        NOTIFIED = "notified", "Notified"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn (sponsor no longer affected)"

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="obligations")
    agreement = models.ForeignKey(
        "sponsors.QualityAgreement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The agreement version in force at submission, which set the obligation.",
    )
    kind = models.CharField(max_length=10, choices=Obligation.choices)
    lead_time_days = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    notice = models.ForeignKey(
        "qms.Deadline", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    accepts_effective_from = models.DateField(
        null=True,
        blank=True,
        verbose_name="earliest accepted effective date",
        help_text="An approval may accept an effective date earlier than the lead time allows; "
        "the signature covers it.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["change", "sponsor__code"]
        constraints = [
            models.UniqueConstraint(fields=["change", "sponsor"], name="one_obligation_per_sponsor")
        ]

    def __str__(self) -> str:
        return f"{self.change} → {self.sponsor.code}: {self.get_kind_display()}"

    @property
    def sent_at(self):
        """When the notice went out: the notification sweep records it on the notice."""
        if self.notice_id is not None and self.notice.notified_at is not None:
            return self.notice.notified_at
        return self.notified_at

    @property
    def noticed_at(self):
        """Where the lead time of an approval starts: its notice, or the submission when the
        sponsor decided before the notice went out (the portal showed the change from then)."""
        return self.sent_at or self.created_at

    @property
    def state_display(self) -> str:
        if self.status == self.Status.PENDING:
            if self.kind == Obligation.NOTIFY:
                return "Notice sent" if self.sent_at else "Notice not sent yet"
            return "Approval pending"
        return self.get_status_display()

    def signature_content(self) -> dict:
        """What the sponsor's decision signs; an accepted earlier effective date is part of it
        when one is given."""
        change = self.change
        content = {
            "change": change.number,
            "title": change.title,
            "description": change.description,
            "category": change.category,
            "proposed_effective_date": change.proposed_effective_date,
            "products": sorted(
                change.affected_products.filter(
                    sponsor_id=self.sponsor_id, removed_at__isnull=True
                ).values_list("product__code", flat=True)
            ),
            "status": self.status,
            "comment": self.comment,
        }
        if self.accepts_effective_from is not None:
            content["accepts_effective_from"] = self.accepts_effective_from
        return content


@audited(sponsor=None)
class ChangeTask(models.Model):
    """An implementation task of a change (update the SOP, retrain, revalidate)."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="tasks")
    description = models.CharField(max_length=300)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["change", "due_date", "id"]

    def __str__(self) -> str:
        return f"{self.change}: {self.description}"
