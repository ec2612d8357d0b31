"""The manufacturing record: materials and lots, master batch records, batches with their
executed steps, consumption, equipment use and cleaning, lab results, packaging evidence, and
shipments. Lots form the genealogy graph that recall scope walks."""

from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from qms.audit import audited
from qms.bounds import identifier_validator
from qms.tenancy import SharedManager, SponsorOwned


class Unit(models.TextChoices):
    KG = "kg", "kg"
    G = "g", "g"
    MG = "mg", "mg"
    L = "L", "L"
    ML = "mL", "mL"
    EACH = "ea", "units"


@audited
class Material(models.Model):
    """A raw material, component, packaging item, intermediate or finished product. Raw,
    component and packaging materials are site-wide; intermediates and finished goods belong to
    a sponsor's product."""

    class Kind(models.TextChoices):
        RAW = "raw", "Raw material"
        COMPONENT = "component", "Component"
        PACKAGING = "packaging", "Packaging"
        INTERMEDIATE = "intermediate", "Intermediate"
        FINISHED = "finished", "Finished product"

    SPONSOR_KINDS = (Kind.INTERMEDIATE, Kind.FINISHED)

    code = models.CharField(max_length=40, unique=True, validators=[identifier_validator])
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    unit = models.CharField(max_length=5, choices=Unit.choices, default=Unit.KG)
    gtin = models.CharField(
        max_length=14, blank=True, help_text="GS1 GTIN, for EPCIS class-level lot identifiers."
    )
    product = models.ForeignKey(
        "sponsors.Product",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="materials",
    )
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )

    objects = SharedManager()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.product.sponsor_id if self.product_id else None
        super().save(*args, **kwargs)

    @staticmethod
    def sponsor_link(ids):
        used = Consumption.objects.filter(lot__material=OuterRef("pk"), batch__sponsor_id__in=ids)
        return Q(Exists(used))

    def clean(self) -> None:
        if self.kind in self.SPONSOR_KINDS and self.product_id is None:
            raise ValidationError(
                {"product": f"A {self.get_kind_display().lower()} belongs to a product."}
            )
        if self.kind not in self.SPONSOR_KINDS and self.product_id is not None:
            raise ValidationError(
                {"product": f"A {self.get_kind_display().lower()} is site-wide; it has no product."}
            )


@audited(sponsor=None)
class Customer(models.Model):
    """Who receives shipments; site-wide (a wholesaler may take several sponsors' goods)."""

    code = models.CharField(max_length=40, unique=True, validators=[identifier_validator])
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, blank=True)
    gln = models.CharField(max_length=13, blank=True, help_text="GS1 location number.")

    objects = SharedManager()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def sponsor_link(ids):
        shipped = Shipment.objects.filter(customer=OuterRef("pk"), sponsor_id__in=ids)
        return Q(Exists(shipped))


@audited
class MasterBatchRecord(SponsorOwned):
    """The approved recipe of a product, versioned: draft → reviewed → approved → effective →
    superseded. Review and approval are e-signatures by people other than the author
    (21 CFR 211.186(a): prepared by one person, independently checked by a second)."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        REVIEWED = "reviewed", "Reviewed"
        APPROVED = "approved", "Approved"
        EFFECTIVE = "effective", "Effective"
        SUPERSEDED = "superseded", "Superseded"

    product = models.ForeignKey("sponsors.Product", on_delete=models.PROTECT, related_name="mbrs")
    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    batch_size = models.DecimalField(max_digits=14, decimal_places=3)
    batch_unit = models.CharField(max_length=5, choices=Unit.choices, default=Unit.EACH)
    theoretical_yield = models.DecimalField(
        max_digits=14, decimal_places=3, help_text="Expected output per batch, in the output unit."
    )
    effective_from = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The author; review and approval are signed by others.",
    )
    based_on = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version this draft was copied from.",
    )

    class Meta:
        ordering = ["product__code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["product", "version"], name="mbr_version_per_product")
        ]

    def __str__(self) -> str:
        return f"MBR {self.product.code} v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("batches:mbr", args=[self.pk])

    def save(self, *args, **kwargs):
        self.sponsor_id = self.product.sponsor_id
        super().save(*args, **kwargs)

    def signature_content(self) -> dict:
        return {
            "product": self.product_id,
            "version": self.version,
            "title": self.title,
            "batch_size": str(self.batch_size),
            "batch_unit": self.batch_unit,
            "theoretical_yield": str(self.theoretical_yield),
            "bom": [
                (line.material_id, str(line.quantity), line.unit)
                for line in self.bom_lines.order_by("id")
            ],
            "steps": [_step_content(s) for s in self.steps.order_by("sequence")],
        }


def _step_content(step) -> tuple:
    """What a signature on an MBR covers of a step; the flags are appended only when set, so
    signatures made before they existed stay valid."""
    content = (step.sequence, step.title, step.parameter, str(step.low_limit), str(step.high_limit))
    content += (step.unit,)
    if step.opens_deviation:
        content += ("opens_deviation",)
    return content


@audited
class BomLine(SponsorOwned):
    mbr = models.ForeignKey(MasterBatchRecord, on_delete=models.CASCADE, related_name="bom_lines")
    material = models.ForeignKey(Material, on_delete=models.PROTECT)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    unit = models.CharField(max_length=5, choices=Unit.choices)

    class Meta:
        ordering = ["mbr", "id"]

    def __str__(self) -> str:
        return f"{self.quantity} {self.unit} {self.material.code}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.mbr.sponsor_id
        super().save(*args, **kwargs)


@audited
class MbrStep(SponsorOwned):
    """One ordered instruction of a master batch record, with the parameter it records."""

    mbr = models.ForeignKey(MasterBatchRecord, on_delete=models.CASCADE, related_name="steps")
    sequence = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    instruction = models.TextField(blank=True)
    parameter = models.CharField(max_length=100, blank=True)
    unit = models.CharField(max_length=20, blank=True)
    low_limit = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    high_limit = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    requires_verification = models.BooleanField(default=True)
    sop_reference = models.CharField(max_length=60, blank=True)
    opens_deviation = models.BooleanField(
        default=False,
        help_text="A value outside the limits opens a deviation on the batch at once.",
    )

    class Meta:
        ordering = ["mbr", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["mbr", "sequence"], name="mbr_step_sequence"),
            models.CheckConstraint(
                condition=Q(low_limit__isnull=True)
                | Q(high_limit__isnull=True)
                | Q(low_limit__lte=models.F("high_limit")),
                name="mbr_step_limits_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sequence}. {self.title}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.mbr.sponsor_id
        super().save(*args, **kwargs)

    def in_limits(self, value: Decimal | None) -> bool:
        if value is None:
            return self.low_limit is None and self.high_limit is None
        if self.low_limit is not None and value < self.low_limit:
            return False
        return not (self.high_limit is not None and value > self.high_limit)

    @property
    def limits_display(self) -> str:
        if self.low_limit is None and self.high_limit is None:
            return "—"
        low = "" if self.low_limit is None else f"{self.low_limit.normalize():f}"
        high = "" if self.high_limit is None else f"{self.high_limit.normalize():f}"
        return f"{low}–{high} {self.unit}".strip()


@audited
class Batch(SponsorOwned):
    """One production run of a product under the MBR version in force when it started."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        UNDER_REVIEW = "under_review", "Under review"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"

    number = models.CharField(max_length=40, unique=True)
    product = models.ForeignKey(
        "sponsors.Product", on_delete=models.PROTECT, related_name="batches"
    )
    mbr = models.ForeignKey(MasterBatchRecord, on_delete=models.PROTECT, related_name="batches")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)
    planned_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    actual_yield = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    evidence_complete_at = models.DateTimeField(
        null=True, blank=True, help_text="When the evidence set for release was first complete."
    )
    cmo_released_at = models.DateTimeField(
        null=True, blank=True, help_text="CMO QA release; the sponsor's may still be required."
    )

    class Meta:
        ordering = ["-planned_at", "-id"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("batches:batch", args=[self.number])

    def save(self, *args, **kwargs):
        self.sponsor_id = self.product.sponsor_id
        super().save(*args, **kwargs)

    def signature_content(self) -> dict:
        """What a disposition signature covers: the batch record as made (the MBR it ran under,
        its times and yield, every step entry and verifier, the inputs consumed and the output
        lots), not its status, which the signatures themselves move along (CMO QA's release
        stays valid when the sponsor's follows)."""
        return {
            "number": self.number,
            "product": self.product_id,
            "mbr": self.mbr_id,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "actual_yield": str(self.actual_yield),
            "steps": [
                (e.step_id, str(e.value), e.is_in_limits, e.performed_by_id, e.verified_by_id)
                for e in self.executed_steps.order_by("step__sequence", "id")
            ],
            "consumptions": [(c.lot_id, str(c.quantity)) for c in self.consumptions.order_by("id")],
            "output_lots": [
                (lot.lot_number, str(lot.quantity)) for lot in self.output_lots.order_by("id")
            ],
        }

    @property
    def evidence_handoff(self):
        """Time from completion to a complete evidence set (the agreement's hand-off target)."""
        if self.completed_at is None or self.evidence_complete_at is None:
            return None
        return self.evidence_complete_at - self.completed_at

    @property
    def evidence_handoff_hours(self) -> Decimal | None:
        handoff = self.evidence_handoff
        if handoff is None:
            return None
        return Decimal(handoff.total_seconds() / 3600).quantize(Decimal("0.1"))

    @property
    def yield_percent(self) -> Decimal | None:
        if self.actual_yield is None or not self.mbr.theoretical_yield:
            return None
        return (self.actual_yield * 100 / self.mbr.theoretical_yield).quantize(Decimal("0.1"))


@audited
class Lot(models.Model):
    """A lot of a material: received from a supplier, or produced by a batch. Raw, component and
    packaging lots are site-wide; lots of intermediates and finished goods belong to a sponsor."""

    class Status(models.TextChoices):
        QUARANTINE = "quarantine", "Quarantine"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"

    lot_number = models.CharField(max_length=60, unique=True)
    material = models.ForeignKey(Material, on_delete=models.PROTECT, related_name="lots")
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUARANTINE)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    unit = models.CharField(max_length=5, choices=Unit.choices)
    produced_by = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="output_lots"
    )
    supplier = models.ForeignKey(
        "suppliers.Supplier", null=True, blank=True, on_delete=models.PROTECT, related_name="lots"
    )
    supplier_lot_number = models.CharField(max_length=60, blank=True)
    receipt_reference = models.CharField(max_length=60, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = SharedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0), name="lot_quantity_not_negative"),
            models.CheckConstraint(
                condition=Q(produced_by__isnull=True) | Q(supplier__isnull=True),
                name="lot_received_or_produced",
            ),
        ]

    def __str__(self) -> str:
        return self.lot_number

    def save(self, *args, **kwargs):
        self.sponsor_id = self.material.sponsor_id
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        """The lot's page; a lot number recorded before the identifier rule that no URL can
        carry (a slash) links to the lot list filtered on it, so one row never breaks a page."""
        try:
            return reverse("batches:lot", args=[self.lot_number])
        except NoReverseMatch:
            return f"{reverse('batches:lots')}?{urlencode({'q': self.lot_number})}"

    @staticmethod
    def sponsor_link(ids):
        used = Consumption.objects.filter(lot=OuterRef("pk"), batch__sponsor_id__in=ids)
        return Q(Exists(used))

    @property
    def is_received(self) -> bool:
        return self.produced_by_id is None


@audited
class Consumption(SponsorOwned):
    """An input lot consumed by a batch: the genealogy edge lot → batch → output lots."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="consumptions")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="consumptions")
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    consumed_at = models.DateTimeField(default=timezone.now)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT)

    class Meta:
        ordering = ["consumed_at", "id"]
        indexes = [models.Index(fields=["lot", "batch"])]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="consumption_positive")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.lot.unit} of {self.lot} into {self.batch}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.batch.sponsor_id
        super().save(*args, **kwargs)


@audited
class ExecutedStep(SponsorOwned):
    """An MBR step as performed on a batch: who did it, the value, whether it is within limits,
    and the second person who verified it."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="executed_steps")
    step = models.ForeignKey(MbrStep, on_delete=models.PROTECT)
    value = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    note = models.TextField(blank=True)
    is_in_limits = models.BooleanField()
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    performed_at = models.DateTimeField(default=timezone.now)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "step__sequence"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "step"], name="step_executed_once"),
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True) | ~Q(verified_by=models.F("performed_by")),
                name="step_verified_by_second_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch} step {self.step.sequence}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.batch.sponsor_id
        super().save(*args, **kwargs)


@audited(sponsor=None)
class Equipment(models.Model):
    """Shared, site-wide equipment (Tank 4). A sponsor's people see only their own batches on it."""

    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        MAINTENANCE = "maintenance", "Under maintenance"
        RETIRED = "retired", "Retired"

    code = models.CharField(max_length=40, unique=True, validators=[identifier_validator])
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=60)
    location = models.CharField(max_length=100, blank=True)
    qualified_until = models.DateField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AVAILABLE)

    objects = SharedManager()

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "equipment"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("batches:equipment", args=[self.code])

    @staticmethod
    def sponsor_link(ids):
        used = EquipmentUse.objects.filter(equipment=OuterRef("pk"), sponsor_id__in=ids)
        return Q(Exists(used))


@audited
class EquipmentUse(SponsorOwned):
    equipment = models.ForeignKey(Equipment, on_delete=models.PROTECT, related_name="uses")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="equipment_uses")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["equipment", "started_at"])]

    def __str__(self) -> str:
        return f"{self.equipment.code} for {self.batch}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.batch.sponsor_id
        super().save(*args, **kwargs)


@audited(sponsor=None)
class CleaningRecord(models.Model):
    """Cleaning of shared equipment, performed by one person and verified by a second."""

    equipment = models.ForeignKey(Equipment, on_delete=models.PROTECT, related_name="cleanings")
    method = models.CharField(max_length=200)
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    performed_at = models.DateTimeField(default=timezone.now)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-performed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True) | ~Q(verified_by=models.F("performed_by")),
                name="cleaning_verified_by_second_person",
            )
        ]

    def __str__(self) -> str:
        return f"{self.equipment.code} cleaned {self.performed_at:%Y-%m-%d %H:%M}"

    @property
    def is_verified(self) -> bool:
        return self.verified_by_id is not None


@audited
class LabResult(models.Model):
    """A test result on a lot against its specification."""

    class Outcome(models.TextChoices):
        PASS = "pass", "Pass"
        OOS = "oos", "Out of specification"

    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="lab_results")
    sponsor = models.ForeignKey(
        "sponsors.Sponsor", null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    test = models.CharField(max_length=120)
    method = models.CharField(max_length=120)
    low_limit = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    high_limit = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    unit = models.CharField(max_length=20, blank=True)
    value = models.DecimalField(max_digits=14, decimal_places=4)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    tested_at = models.DateTimeField(default=timezone.now)
    analyst = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    objects = SharedManager()

    class Meta:
        ordering = ["lot", "tested_at", "id"]

    def __str__(self) -> str:
        return f"{self.lot} {self.test}: {self.value} {self.unit} ({self.outcome})"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.lot.sponsor_id
        super().save(*args, **kwargs)

    @staticmethod
    def sponsor_link(ids):
        used = Consumption.objects.filter(lot=OuterRef("lot"), batch__sponsor_id__in=ids)
        return Q(Exists(used))

    @property
    def spec_display(self) -> str:
        low = "" if self.low_limit is None else f"{self.low_limit.normalize():f}"
        high = "" if self.high_limit is None else f"{self.high_limit.normalize():f}"
        return f"{low}–{high} {self.unit}".strip()


@audited
class PackagingRecord(SponsorOwned):
    """Packaging evidence of a batch: line clearance (signed) and label reconciliation."""

    batch = models.OneToOneField(Batch, on_delete=models.PROTECT, related_name="packaging")
    label_version = models.CharField(max_length=60)
    line_cleared_at = models.DateTimeField(null=True, blank=True)
    labels_issued = models.PositiveIntegerField(null=True, blank=True)
    labels_used = models.PositiveIntegerField(null=True, blank=True)
    labels_destroyed = models.PositiveIntegerField(null=True, blank=True)
    labels_returned = models.PositiveIntegerField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch"]

    def __str__(self) -> str:
        return f"Packaging of {self.batch}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.batch.sponsor_id
        super().save(*args, **kwargs)

    @property
    def is_reconciled(self) -> bool:
        return self.reconciled_at is not None

    def signature_content(self) -> dict:
        return {"batch": self.batch_id, "label_version": self.label_version}


@audited
class Shipment(SponsorOwned):
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="shipments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="shipments")
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    shipped_at = models.DateTimeField(default=timezone.now)
    reference = models.CharField(max_length=60, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT)

    class Meta:
        ordering = ["-shipped_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="shipment_positive")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.lot.unit} of {self.lot} to {self.customer}"

    def save(self, *args, **kwargs):
        self.sponsor_id = self.lot.sponsor_id
        super().save(*args, **kwargs)
