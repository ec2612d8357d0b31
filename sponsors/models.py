"""Sponsors (brand owners), their products, their quality agreements, and who may act for them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from qms.audit import audited
from qms.bounds import identifier_validator
from qms.tenancy import SponsorOwned, SponsorScopedManager, SponsorScopedQuerySet


@audited(sponsor="id")
class Sponsor(models.Model):
    code = models.SlugField(
        max_length=30,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9-]*$", "Lower-case letters, digits, dashes.")],
    )
    name = models.CharField(max_length=200)
    contact_email = models.EmailField(
        blank=True, help_text="Where quality notifications to the sponsor are sent."
    )
    is_active = models.BooleanField(default=True)

    sponsor_lookup = "id"
    objects = SponsorScopedManager()

    class Meta:
        ordering = ["code"]
        permissions = [
            ("approve_sponsor", "Sign CMO approvals for the sponsor's records"),
            ("sponsor_approve_sponsor", "Sign sponsor-side approvals"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("sponsors:detail", args=[self.code])


@audited
class Product(SponsorOwned):
    class RegulatoryBasis(models.TextChoices):
        DRUG = "drug", "Drug — 21 CFR 210/211"
        DEVICE = "device", "Device — 21 CFR 820 (QMSR)"
        SUPPLEMENT = "supplement", "Dietary supplement — 21 CFR 111"

    code = models.CharField(max_length=40, validators=[identifier_validator])
    name = models.CharField(max_length=200)
    regulatory_basis = models.CharField(max_length=20, choices=RegulatoryBasis.choices)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sponsor__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["sponsor", "code"], name="product_code_per_sponsor")
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("sponsors:product", args=[self.pk])


class Severity(models.TextChoices):
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


class ChangeCategory(models.TextChoices):
    SUPPLIER = "supplier", "Supplier"
    MATERIAL = "material", "Material"
    EQUIPMENT = "equipment", "Equipment"
    PROCESS_PARAMETER = "process_parameter", "Process parameter"
    SOP = "sop", "SOP"
    MASTER_BATCH_RECORD = "master_batch_record", "Master batch record"
    LABEL_ARTWORK = "label_artwork", "Label / artwork"
    TEST_METHOD = "test_method", "Test method"
    FACILITY = "facility", "Facility"


class Obligation(models.TextChoices):
    NONE = "none", "None"
    NOTIFY = "notify", "Notify the sponsor"
    APPROVE = "approve", "Sponsor approval required"


class ReleaseAuthority(models.TextChoices):
    CMO = "cmo", "CMO releases"
    SPONSOR = "sponsor", "Sponsor releases"
    CONDITIONAL = "conditional", "CMO, unless a major/critical deviation or an OOS"


hours = [MinValueValidator(1)]


class QualityAgreementQuerySet(SponsorScopedQuerySet):
    def in_force(self, at):
        return self.filter(
            status__in=[QualityAgreement.Status.EFFECTIVE, QualityAgreement.Status.SUPERSEDED],
            effective_from__lte=at,
        ).order_by("-effective_from", "-version")


@audited
class QualityAgreement(SponsorOwned):
    """The written agreement with one sponsor; the version in force at an event's time governs it.
    Draft → effective (signed) → superseded (by the next effective version)."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        EFFECTIVE = "effective", "Effective"
        SUPERSEDED = "superseded", "Superseded"

    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200, default="Quality agreement")
    reference = models.CharField(
        max_length=100, blank=True, help_text="The signed paper/PDF agreement's document number."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    effective_from = models.DateTimeField(null=True, blank=True)

    minor_deviation_notice_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=hours, help_text="Empty: no notice."
    )
    major_deviation_notice_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=hours, help_text="Empty: no notice."
    )
    critical_deviation_notice_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=hours, help_text="Empty: no notice."
    )
    oos_notice_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=hours, help_text="Empty: no notice."
    )
    investigation_summary_business_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)]
    )
    capa_notice_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=hours, help_text="Empty: no notice."
    )
    sponsor_closes_minor = models.BooleanField(
        default=False, help_text="Closing a minor deviation needs the sponsor's approval."
    )
    sponsor_closes_major = models.BooleanField(
        default=False, help_text="Closing a major deviation needs the sponsor's approval."
    )
    sponsor_closes_critical = models.BooleanField(
        default=True, help_text="Closing a critical deviation needs the sponsor's approval."
    )
    release_authority = models.CharField(
        max_length=20, choices=ReleaseAuthority.choices, default=ReleaseAuthority.CMO
    )
    evidence_handoff_hours = models.PositiveIntegerField(
        default=72,
        validators=hours,
        help_text="Hours from batch completion to a complete evidence pack.",
    )
    audit_notice_days = models.PositiveIntegerField(
        default=30, help_text="Days of notice the sponsor gives before an audit."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = QualityAgreementQuerySet.as_manager()

    class Meta:
        ordering = ["sponsor__code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["sponsor", "version"], name="agreement_version"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(effective_from__isnull=False),
                name="agreement_effective_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sponsor.code} quality agreement v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("sponsors:agreement", args=[self.sponsor.code, self.version])

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT

    def notice_hours(self, severity: str) -> int | None:
        return getattr(self, f"{severity}_deviation_notice_hours")

    def sponsor_must_approve_closure(self, severity: str) -> bool:
        return getattr(self, f"sponsor_closes_{severity}")

    def clean(self) -> None:
        errors = {}
        order = [Severity.MINOR, Severity.MAJOR, Severity.CRITICAL]
        for milder, graver in zip(order, order[1:], strict=False):
            mild_hours, grave_hours = self.notice_hours(milder), self.notice_hours(graver)
            field = f"{graver}_deviation_notice_hours"
            if mild_hours is not None and grave_hours is None:
                errors[field] = (
                    f"A {graver} deviation must be notified when a {milder} one is "
                    f"(within {mild_hours} h)."
                )
            elif mild_hours is not None and grave_hours is not None and grave_hours > mild_hours:
                errors[field] = (
                    f"A {graver} deviation notice ({grave_hours} h) cannot be longer than a "
                    f"{milder} one ({mild_hours} h)."
                )
        closes = [
            self.sponsor_closes_minor,
            self.sponsor_closes_major,
            self.sponsor_closes_critical,
        ]
        for index in range(len(closes) - 1):
            if closes[index] and not closes[index + 1]:
                errors[f"sponsor_closes_{order[index + 1]}"] = (
                    f"The sponsor approves closing {order[index]} deviations, so it must also "
                    f"approve closing {order[index + 1]} ones."
                )
        if errors:
            raise ValidationError(errors)

    def signature_content(self) -> dict:
        data = {
            field.attname: getattr(self, field.attname)
            for field in self._meta.concrete_fields
            if field.attname not in {"status", "created_at"}
        }
        data["change_rules"] = sorted(
            (rule.category, rule.obligation, rule.lead_time_days)
            for rule in self.change_rules.all()
        )
        return data


@audited
class ChangeRule(SponsorOwned):
    """What a change of one category obliges towards the sponsor under one agreement version."""

    agreement = models.ForeignKey(
        QualityAgreement, on_delete=models.CASCADE, related_name="change_rules"
    )
    category = models.CharField(max_length=30, choices=ChangeCategory.choices)
    obligation = models.CharField(
        max_length=10, choices=Obligation.choices, default=Obligation.NONE
    )
    lead_time_days = models.PositiveIntegerField(
        default=0, help_text="For notify: days before the effective date the notice must be sent."
    )

    class Meta:
        ordering = ["agreement", "category"]
        constraints = [
            models.UniqueConstraint(fields=["agreement", "category"], name="one_rule_per_category")
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.get_obligation_display()}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.agreement.sponsor_id
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.obligation == Obligation.NONE and self.lead_time_days:
            raise ValidationError(
                {"lead_time_days": "A lead time only applies to notify or approve obligations."}
            )


class Role(models.TextChoices):
    CMO_STAFF = "cmo_staff", "CMO staff"
    CMO_QA_APPROVER = "cmo_qa_approver", "CMO QA approver"
    SPONSOR_AUDITOR = "sponsor_auditor", "Sponsor auditor"
    SPONSOR_APPROVER = "sponsor_approver", "Sponsor approver"


ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    Role.CMO_STAFF: ("view", "change"),
    Role.CMO_QA_APPROVER: ("view", "change", "approve"),
    Role.SPONSOR_AUDITOR: ("view",),
    Role.SPONSOR_APPROVER: ("view", "sponsor_approve"),
}
SPONSOR_SIDE_ROLES = frozenset({Role.SPONSOR_AUDITOR, Role.SPONSOR_APPROVER})


class AccessGrantQuerySet(SponsorScopedQuerySet):
    def active(self, at=None):
        at = at or timezone.now()
        return self.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=at),
            starts_at__lte=at,
            revoked_at__isnull=True,
        )


@audited
class AccessGrant(SponsorOwned):
    """A user's role on one sponsor for a period. The guardian object permissions of the role
    are what `for_user` checks; the grant decides when they count."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_grants"
    )
    role = models.CharField(max_length=30, choices=Role.choices)
    starts_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)

    objects = AccessGrantQuerySet.as_manager()

    class Meta:
        ordering = ["sponsor__code", "user__username", "role"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("starts_at")),
                name="grant_expires_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} — {self.sponsor.code}"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return (
            self.revoked_at is None
            and self.starts_at <= now
            and (self.expires_at is None or self.expires_at > now)
        )


@audited(sponsor="sponsor_id", exclude=())
class UserProfile(models.Model):
    """Which organisation a user belongs to: the CMO (no sponsor) or one sponsor."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    sponsor = models.ForeignKey(
        Sponsor,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty for CMO staff; the sponsor's organisation for sponsor users.",
    )
    job_title = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.sponsor.code if self.sponsor_id else 'CMO'})"
