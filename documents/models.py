"""Controlled documents and training.

A document (SOP, method, specification, protocol, artwork, form) is site-wide or belongs to one
sponsor. Its versions go draft → in review → approved → effective → superseded / obsolete, with
at most one effective version at a time. Training requirements say who must be trained on a
document; a training record is one person's signed training on one version, so a new effective
version leaves the earlier records out of date. A batch records the document versions in force
when it started (`BatchDocument`), so "which lots were made under which version" is a query."""

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from qms.audit import audited
from qms.tenancy import SharedManager, SponsorOwned
from sponsors.models import Role


class DocumentType(models.TextChoices):
    SOP = "sop", "SOP"
    ANALYTICAL_METHOD = "analytical_method", "Analytical method"
    SPECIFICATION = "specification", "Specification"
    PROTOCOL = "protocol", "Protocol"
    LABEL_ARTWORK = "label_artwork", "Label artwork"
    FORM = "form", "Form"


def _governs(ids, number_ref: str):
    """A site-wide document governs a sponsor's products when a step of one of their master batch
    records names it."""
    from batches.models import MbrStep

    return Q(Exists(MbrStep.objects.filter(sop_reference=OuterRef(number_ref), sponsor_id__in=ids)))


@audited
class Document(models.Model):
    number = models.CharField(
        max_length=60,
        unique=True,
        help_text="The reference batch steps and other documents cite, e.g. SOP-QA-001.",
    )
    title = models.CharField(max_length=200)
    doc_type = models.CharField(max_length=30, choices=DocumentType.choices)
    sponsor = models.ForeignKey(
        "sponsors.Sponsor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty for a site-wide document.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = SharedManager()

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("documents:detail", args=[self.number])

    @staticmethod
    def sponsor_link(ids):
        return _governs(ids, "number")


@audited
class DocumentVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        EFFECTIVE = "effective", "Effective"
        SUPERSEDED = "superseded", "Superseded"
        OBSOLETE = "obsolete", "Obsolete"

    IN_FORCE = (Status.EFFECTIVE, Status.SUPERSEDED, Status.OBSOLETE)
    RELEASED = (Status.APPROVED, Status.EFFECTIVE, Status.SUPERSEDED, Status.OBSOLETE)
    UNFINISHED = (Status.DRAFT, Status.IN_REVIEW, Status.APPROVED)

    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    change_summary = models.TextField(blank=True)
    file = models.FileField(upload_to="documents/%Y/", blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    effective_from = models.DateTimeField(
        null=True, blank=True, help_text="Set on approval; the version is in force from then."
    )
    held_by_change = models.BooleanField(
        default=False,
        help_text="A change request carries this version: it becomes effective only when the "
        "change does.",
    )
    superseded_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, help_text="When the version was made obsolete (document withdrawn)."
    )
    status_reason = models.TextField(
        blank=True, help_text="Why the version was returned to draft or made obsolete."
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    objects = SharedManager()

    class Meta:
        ordering = ["document__number", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["document", "version"], name="document_version_once"),
            models.UniqueConstraint(
                fields=["document"],
                condition=Q(status="effective"),
                name="one_effective_version_per_document",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["effective", "superseded", "obsolete"])
                | Q(effective_from__isnull=False),
                name="version_in_force_has_effective_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document.number} v{self.version}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.document.sponsor_id
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("documents:version", args=[self.document.number, self.version])

    @staticmethod
    def sponsor_link(ids):
        return _governs(ids, "document__number")

    @property
    def label(self) -> str:
        return f"{self.document.number} v{self.version}"

    @property
    def has_file(self) -> bool:
        return bool(self.file and self.sha256)

    @property
    def is_released(self) -> bool:
        return self.status in self.RELEASED

    def signature_content(self) -> dict:
        """What review, approval and training signatures cover: the document's identity and the
        exact file (by its SHA-256). The effective date is not part of it: change control may set
        it after approval."""
        return {
            "document": self.document.number,
            "title": self.document.title,
            "doc_type": self.document.doc_type,
            "version": self.version,
            "change_summary": self.change_summary,
            "file_name": self.file_name,
            "sha256": self.sha256,
        }


@audited
class TrainingRequirement(models.Model):
    """Who must be trained on a document: everyone holding a role, or one named person."""

    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="training_requirements"
    )
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    role = models.CharField(max_length=30, choices=Role.choices, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_requirements",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = SharedManager()

    class Meta:
        ordering = ["document", "role", "user"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(role="") & Q(user__isnull=False))
                | (~Q(role="") & Q(user__isnull=True)),
                name="training_requirement_role_or_person",
            ),
            models.UniqueConstraint(
                fields=["document", "role"],
                condition=~Q(role=""),
                name="training_requirement_role_once",
            ),
            models.UniqueConstraint(
                fields=["document", "user"],
                condition=Q(user__isnull=False),
                name="training_requirement_person_once",
            ),
        ]

    def __str__(self) -> str:
        who = self.get_role_display() if self.role else self.user.get_username()
        return f"{self.document.number} → {who}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.document.sponsor_id
        super().save(*args, **kwargs)

    @staticmethod
    def sponsor_link(ids):
        return _governs(ids, "document__number")


def _worked_on(ids, user_ref: str):
    """The trainee performed or verified a step of one of the sponsors' batches."""
    from batches.models import ExecutedStep

    steps = ExecutedStep.objects.filter(sponsor_id__in=ids)
    return Q(Exists(steps.filter(performed_by=OuterRef(user_ref)))) | Q(
        Exists(steps.filter(verified_by=OuterRef(user_ref)))
    )


@audited
class TrainingRecord(models.Model):
    """One person's signed training on one document version."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_records"
    )
    version = models.ForeignKey(
        DocumentVersion, on_delete=models.PROTECT, related_name="training_records"
    )
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    completed_at = models.DateTimeField(default=timezone.now)
    trainer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True)

    objects = SharedManager()

    class Meta:
        ordering = ["-completed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "version"], name="trained_once_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.user.get_username()} trained on {self.version}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.version.sponsor_id
        super().save(*args, **kwargs)

    @staticmethod
    def sponsor_link(ids):
        return _worked_on(ids, "user")

    def signature_content(self) -> dict:
        return {
            "user": self.user_id,
            "version": str(self.version),
            "sha256": self.version.sha256,
            "completed_at": self.completed_at,
        }


@audited
class BatchDocument(SponsorOwned):
    """A document version in force when a batch started: the batch ran under it."""

    batch = models.ForeignKey(
        "batches.Batch", on_delete=models.PROTECT, related_name="document_versions"
    )
    version = models.ForeignKey(
        DocumentVersion, on_delete=models.PROTECT, related_name="batch_uses"
    )

    class Meta:
        ordering = ["batch", "version"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "version"], name="batch_document_once")
        ]

    def __str__(self) -> str:
        return f"{self.batch} under {self.version}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.batch.sponsor_id
        super().save(*args, **kwargs)
