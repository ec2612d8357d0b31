"""Business actions of the manufacturing record. Each is one transaction, attributed in the audit
trail; each refusal names the rule and the record."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from qms.audit import audit_context
from qms.bounds import (
    FUTURE_TOLERANCE,
    date_check,
    date_problem,
    identifier_check,
    text_check,
    title_check,
)
from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import signature_apply, signatures_of, signer_verify
from qms.tenancy import sponsor_ids_for
from sponsors.models import Product
from suppliers.models import Supplier

from .models import (
    Batch,
    BomLine,
    CleaningRecord,
    Consumption,
    Customer,
    Equipment,
    EquipmentUse,
    ExecutedStep,
    LabResult,
    Lot,
    MasterBatchRecord,
    Material,
    MbrStep,
    PackagingRecord,
    Shipment,
)
from .selectors import lot_balance


class BatchError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "invalid"
    SUPPLIER_NOT_APPROVED = "supplier_not_approved"
    LOT_NOT_RELEASED = "lot_not_released"
    LOT_INSUFFICIENT = "lot_insufficient"
    LOT_STATUS = "lot_status_invalid"
    LOT_OOS = "lot_out_of_specification"
    LOT_NOT_SHIPPABLE = "lot_not_shippable"
    LOT_PRODUCED = "lot_released_through_batch"
    LOT_OPEN_ISSUE = "lot_open_quality_issue"
    MBR_NOT_DRAFT = "mbr_not_draft"
    MBR_STATUS = "mbr_status_invalid"
    MBR_MISSING = "mbr_not_effective"
    MBR_CARRIED = "mbr_carried_by_change"
    BATCH_STATUS = "batch_status_invalid"
    STEP_INVALID = "step_invalid"
    SECOND_PERSON = "second_person_required"
    EQUIPMENT_UNQUALIFIED = "equipment_not_qualified"
    EQUIPMENT_UNAVAILABLE = "equipment_unavailable"
    CLEANING_REQUIRED = "cleaning_required"
    RECONCILIATION = "label_reconciliation_unbalanced"
    COMMENT_REQUIRED = "comment_required"
    NOT_IN_BOM = "material_not_in_bill_of_materials"
    TIME = "time_out_of_order"


BATCH_TRANSITIONS = {
    Batch.Status.PLANNED: {Batch.Status.IN_PROGRESS},
    Batch.Status.IN_PROGRESS: {Batch.Status.COMPLETED},
    Batch.Status.COMPLETED: {Batch.Status.UNDER_REVIEW},
    Batch.Status.UNDER_REVIEW: {Batch.Status.RELEASED, Batch.Status.REJECTED},
    Batch.Status.RELEASED: set(),
    Batch.Status.REJECTED: set(),
}

MBR_TRANSITIONS = {
    MasterBatchRecord.Status.DRAFT: {MasterBatchRecord.Status.REVIEWED},
    MasterBatchRecord.Status.REVIEWED: {MasterBatchRecord.Status.APPROVED},
    MasterBatchRecord.Status.APPROVED: {MasterBatchRecord.Status.EFFECTIVE},
    MasterBatchRecord.Status.EFFECTIVE: {MasterBatchRecord.Status.SUPERSEDED},
    MasterBatchRecord.Status.SUPERSEDED: set(),
}


def _move(record, target: str, table: dict, what: str) -> None:
    if target not in table[record.status]:
        name = f"{what} {record}".strip()
        raise RuleViolation(
            BatchError.BATCH_STATUS if isinstance(record, Batch) else BatchError.MBR_STATUS,
            f"{name} is {record.get_status_display().lower()}; it cannot become "
            f"{dict(type(record).Status.choices)[target].lower()}.",
        )
    record.status = target


def _require(user, sponsor_id: int | None, action: str, what: str) -> None:
    """Acting on a sponsor's record needs the action on that sponsor; on a site-wide record, on
    at least one sponsor (CMO staff)."""
    if user is None or user.is_superuser:
        return
    ids = sponsor_ids_for(user, action)
    allowed = bool(ids) if sponsor_id is None else sponsor_id in ids
    if not allowed:
        raise RuleViolation(BatchError.NOT_PERMITTED, f"{user.get_username()} may not {what}.")


def _lot_state(lot: Lot) -> str:
    if lot.status == Lot.Status.QUARANTINE:
        return "in quarantine"
    return lot.get_status_display().lower()


def _note_evidence(batch: Batch) -> None:
    from .disposition import note_evidence

    note_evidence(batch)


def _moment(
    at: datetime | None, what: str, *, not_before: datetime | None = None, after=""
) -> datetime:
    """The time an act is recorded for: now unless given; within the plausible date range, never
    in the future, and never before what it follows (`after` names that)."""
    now = timezone.now()
    at = at or now
    problem = date_problem(at)
    if problem:
        raise RuleViolation(BatchError.TIME, f"{what}: {problem}")
    if at > now + FUTURE_TOLERANCE:
        raise RuleViolation(BatchError.TIME, f"{what}: {at:%Y-%m-%d %H:%M} UTC is in the future.")
    if not_before is not None and at < not_before:
        raise RuleViolation(
            BatchError.TIME,
            f"{what}: {at:%Y-%m-%d %H:%M} UTC is before {after} ({not_before:%Y-%m-%d %H:%M} UTC).",
        )
    return at


def released_at(lot: Lot) -> datetime | None:
    """When `lot` was released: its own release signature (a received lot) or its batch's last
    (a produced lot, released when the last required signature was made)."""
    record = lot.produced_by if lot.produced_by_id is not None else lot
    signatures = signatures_of(record).filter(meaning=Signature.Meaning.RELEASED)
    latest = signatures.order_by("-signed_at").first()
    return latest.signed_at if latest is not None else None


def _positive(quantity, what: str) -> Decimal:
    quantity = Decimal(quantity)
    if quantity <= 0:
        raise RuleViolation(BatchError.INVALID, f"{what}: the quantity must be positive.")
    return quantity


# --- lots ---------------------------------------------------------------------------------


def lot_receive(
    *,
    material: Material,
    lot_number: str,
    quantity,
    supplier: Supplier,
    by,
    supplier_lot_number: str = "",
    receipt_reference: str = "",
    received_at: datetime | None = None,
    expires_on=None,
) -> Lot:
    """Book a delivered lot in, in quarantine."""
    identifier_check(lot_number, "Lot number", BatchError.INVALID)
    _require(by, None, "change", f"receive lot {lot_number}")
    for value, what in (
        (supplier_lot_number, "supplier lot number"),
        (receipt_reference, "receipt reference"),
    ):
        text_check(
            value,
            f"Lot {lot_number}: the {what}",
            max_length=60,
            multiline=False,
            code=BatchError.INVALID,
        )
    date_check(expires_on, f"Expiry date of lot {lot_number}", BatchError.INVALID)
    quantity = _positive(quantity, f"Lot {lot_number}")
    received_at = _moment(received_at, f"Receipt of lot {lot_number}")
    if material.kind in Material.SPONSOR_KINDS:
        kind = material.get_kind_display().lower()
        article = "an" if kind[0] in "aeiou" else "a"
        raise RuleViolation(
            BatchError.INVALID,
            f"Lot {lot_number}: {material} is {article} {kind}, made here, not received.",
        )
    if not supplier.may_supply:
        raise RuleViolation(
            BatchError.SUPPLIER_NOT_APPROVED,
            f"Lot {lot_number} cannot be received: supplier {supplier.code} is not approved "
            f"({supplier.get_status_display().lower()}).",
        )
    with transaction.atomic(), audit_context(actor=by):
        if Lot.objects.filter(lot_number=lot_number).exists():
            raise RuleViolation(BatchError.INVALID, f"Lot number {lot_number} is already used.")
        return Lot.objects.create(
            lot_number=lot_number,
            material=material,
            quantity=quantity,
            unit=material.unit,
            supplier=supplier,
            supplier_lot_number=supplier_lot_number,
            receipt_reference=receipt_reference,
            received_at=received_at,
            expires_on=expires_on,
        )


def oos_results(results):
    """The out-of-specification results among `results`, each annotated `is_investigated`:
    whether its OOS investigation is closed."""
    from deviations.models import Deviation

    closed = Deviation.objects.filter(lab_result=OuterRef("pk"), status=Deviation.Status.CLOSED)
    return results.filter(outcome=LabResult.Outcome.OOS).annotate(is_investigated=Exists(closed))


def lot_open_issues(lot: Lot) -> list[str]:
    """What stands against releasing or shipping `lot` now: a linked deviation (of the lot or
    of the batch that made it) that is not closed, and an out-of-specification result without a
    closed investigation; in words a reviewer acts on."""
    from deviations.models import Deviation

    own = Q(sponsor__isnull=True) | Q(sponsor_id=lot.sponsor_id)
    linked = Deviation.objects.filter(own, lots=lot)
    if lot.produced_by_id is not None:
        linked = linked | Deviation.objects.filter(own, batches=lot.produced_by_id)
    issues = [
        f"deviation {deviation.number} ({deviation.get_severity_display().lower()}) is "
        f"{deviation.get_status_display().lower()}"
        for deviation in linked.exclude(status=Deviation.Status.CLOSED)
        .distinct()
        .order_by("number")
    ]
    for result in oos_results(lot.lab_results.all()).order_by("tested_at", "id"):
        if not result.is_investigated:
            issues.append(f"{result.test} is out of specification without a closed investigation")
    return issues


def lot_disposition(*, lot: Lot, user, password: str, release: bool, request=None) -> Signature:
    """Release or reject a received lot in quarantine by e-signature. A produced lot is released
    or rejected only through its batch's disposition (one release path); a received lot with an
    out-of-specification result or an open deviation cannot be released."""
    _require(user, lot.sponsor_id, "approve", f"release or reject lot {lot}")
    if lot.produced_by_id is not None:
        raise RuleViolation(
            BatchError.LOT_PRODUCED,
            f"Lot {lot} was made by batch {lot.produced_by}: it is released or rejected through "
            "that batch's disposition.",
        )
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = Lot.objects.select_for_update().get(pk=lot.pk)
        if locked.status != Lot.Status.QUARANTINE:
            raise RuleViolation(
                BatchError.LOT_STATUS,
                f"Lot {locked} is {locked.get_status_display().lower()}; only a lot in quarantine "
                "can be released or rejected.",
            )
        if release:
            failing = list(locked.lab_results.filter(outcome=LabResult.Outcome.OOS))
            if failing:
                tests = ", ".join(result.test for result in failing)
                raise RuleViolation(
                    BatchError.LOT_OOS,
                    f"Lot {locked} cannot be released: out-of-specification result ({tests}).",
                )
            issues = lot_open_issues(locked)
            if issues:
                raise RuleViolation(
                    BatchError.LOT_OPEN_ISSUE,
                    f"Lot {locked} cannot be released: " + "; ".join(issues) + ".",
                )
        locked.status = Lot.Status.RELEASED if release else Lot.Status.REJECTED
        locked.save(update_fields=["status"])
        meaning = Signature.Meaning.RELEASED if release else Signature.Meaning.REJECTED
        signature = signature_apply(record=locked, user=user, meaning=meaning)
    lot.refresh_from_db()
    return signature


def lab_result_record(
    *,
    lot: Lot,
    test: str,
    method: str,
    value,
    analyst,
    low_limit=None,
    high_limit=None,
    unit: str = "",
    tested_at: datetime | None = None,
) -> LabResult:
    _require(analyst, lot.sponsor_id, "change", f"record lab results on lot {lot}")
    value = Decimal(value)
    low = None if low_limit is None else Decimal(low_limit)
    high = None if high_limit is None else Decimal(high_limit)
    if low is None and high is None:
        raise RuleViolation(
            BatchError.INVALID, f"Lot {lot}, {test}: a specification limit is needed."
        )
    if low is not None and high is not None and low > high:
        raise RuleViolation(
            BatchError.INVALID,
            f"Lot {lot}, {test}: the low limit {low.normalize():f} is above the high limit "
            f"{high.normalize():f}.",
        )
    in_spec = (low is None or value >= low) and (high is None or value <= high)
    tested_at = _moment(
        tested_at,
        f"Lot {lot}, {test}",
        not_before=lot.received_at or lot.created_at,
        after="the lot was received" if lot.is_received else "the lot was made",
    )
    with transaction.atomic(), audit_context(actor=analyst):
        result = LabResult.objects.create(
            lot=lot,
            test=test,
            method=method,
            low_limit=low,
            high_limit=high,
            unit=unit,
            value=value,
            outcome=LabResult.Outcome.PASS if in_spec else LabResult.Outcome.OOS,
            tested_at=tested_at,
            analyst=analyst,
        )
        if not in_spec:
            from deviations.services import deviation_open_for_oos

            deviation_open_for_oos(lab_result=result, by=analyst)
        return result


# --- master batch records -----------------------------------------------------------------


MbrBom = list[tuple[Material, object, str]]

STEP_FIELDS = (
    "title",
    "instruction",
    "parameter",
    "unit",
    "low_limit",
    "high_limit",
    "requires_verification",
    "sop_reference",
    "opens_deviation",
)


def _mbr_content_check(
    product: Product, bom: MbrBom, steps: list[dict], what: str, title: str = ""
) -> None:
    title_check(title, f"{what}: the title")
    if not steps:
        raise RuleViolation(BatchError.INVALID, f"{what}: it needs at least one step.")
    seen = set()
    for material, quantity, _unit in bom:
        if material.pk in seen:
            raise RuleViolation(
                BatchError.INVALID, f"{what}: {material.code} is listed twice in the bill."
            )
        seen.add(material.pk)
        if material.sponsor_id is not None and material.sponsor_id != product.sponsor_id:
            raise RuleViolation(
                BatchError.INVALID,
                f"{what}: {material.code} belongs to another sponsor's product.",
            )
        if Decimal(quantity) <= 0:
            raise RuleViolation(
                BatchError.INVALID, f"{what}: the quantity of {material.code} must be positive."
            )
    for sequence, step in enumerate(steps, start=1):
        unknown = set(step) - set(STEP_FIELDS)
        if unknown:
            raise RuleViolation(
                BatchError.INVALID, f"{what}, step {sequence}: unknown fields {sorted(unknown)}."
            )
        if not str(step.get("title", "")).strip():
            raise RuleViolation(BatchError.INVALID, f"{what}, step {sequence}: name the step.")
        for key in ("title", "parameter", "unit", "sop_reference"):
            title_check(step.get(key, ""), f"{what}, step {sequence}: the {key.replace('_', ' ')}")
        text_check(step.get("instruction", ""), f"{what}, step {sequence}: the instruction")
        low, high = step.get("low_limit"), step.get("high_limit")
        if low not in (None, "") and high not in (None, "") and Decimal(low) > Decimal(high):
            raise RuleViolation(
                BatchError.INVALID,
                f"{what}, step {sequence} ({step['title']}): the low limit {low} is above the "
                f"high limit {high}.",
            )


def _mbr_write_content(mbr: MasterBatchRecord, bom: MbrBom, steps: list[dict]) -> None:
    for material, quantity, unit in bom:
        BomLine.objects.create(mbr=mbr, material=material, quantity=Decimal(quantity), unit=unit)
    for sequence, step in enumerate(steps, start=1):
        values = {
            key: (None if key.endswith("_limit") and value in ("", None) else value)
            for key, value in step.items()
        }
        MbrStep.objects.create(mbr=mbr, sequence=sequence, **values)


def mbr_create_draft(
    *,
    product: Product,
    title: str,
    batch_size,
    batch_unit: str,
    theoretical_yield,
    bom: MbrBom,
    steps: list[dict],
    by,
    based_on: MasterBatchRecord | None = None,
) -> MasterBatchRecord:
    """A new draft version of the product's master batch record, numbered after the latest."""
    _require(by, product.sponsor_id, "change", f"write master batch records for {product.code}")
    _mbr_content_check(product, bom, steps, f"MBR for {product.code}", title)
    with transaction.atomic(), audit_context(actor=by):
        latest = (
            MasterBatchRecord.objects.select_for_update()
            .filter(product=product)
            .order_by("-version")
            .first()
        )
        mbr = MasterBatchRecord.objects.create(
            product=product,
            version=(latest.version + 1) if latest else 1,
            title=title,
            batch_size=_positive(batch_size, f"MBR for {product.code}, batch size"),
            batch_unit=batch_unit,
            theoretical_yield=_positive(
                theoretical_yield, f"MBR for {product.code}, theoretical yield"
            ),
            created_by=by,
            based_on=based_on,
        )
        _mbr_write_content(mbr, bom, steps)
    return mbr


def mbr_content(mbr: MasterBatchRecord) -> dict:
    """The editable content of an MBR version, in the shape `mbr_create_draft` takes."""
    return {
        "title": mbr.title,
        "batch_size": mbr.batch_size,
        "batch_unit": mbr.batch_unit,
        "theoretical_yield": mbr.theoretical_yield,
        "bom": [(line.material, line.quantity, line.unit) for line in mbr.bom_lines.all()],
        "steps": [
            {key: getattr(step, key) for key in STEP_FIELDS}
            for step in mbr.steps.order_by("sequence")
        ],
    }


def mbr_draft_new_version(*, product: Product, by) -> MasterBatchRecord:
    """Start the next version of a product's MBR as a copy of the version in force (or of the
    latest version when none is in force yet), to be edited, reviewed and approved. One draft
    at a time: an open draft or reviewed version is edited instead."""
    _require(by, product.sponsor_id, "change", f"write master batch records for {product.code}")
    open_draft = (
        MasterBatchRecord.objects.filter(
            product=product,
            status__in=[MasterBatchRecord.Status.DRAFT, MasterBatchRecord.Status.REVIEWED],
        )
        .order_by("-version")
        .first()
    )
    if open_draft is not None:
        raise RuleViolation(
            BatchError.MBR_STATUS,
            f"{open_draft} is {open_draft.get_status_display().lower()}: finish or edit it "
            "before drafting another version.",
        )
    source = mbr_in_force(product) or (
        MasterBatchRecord.objects.filter(product=product).order_by("-version").first()
    )
    if source is None:
        raise RuleViolation(
            BatchError.MBR_MISSING,
            f"{product.code} has no master batch record to copy: write the first version.",
        )
    return mbr_create_draft(product=product, by=by, based_on=source, **mbr_content(source))


def mbr_update_draft(
    *,
    mbr: MasterBatchRecord,
    by,
    title: str,
    batch_size,
    batch_unit: str,
    theoretical_yield,
    bom: MbrBom,
    steps: list[dict],
    reason: str = "",
) -> MasterBatchRecord:
    """Edit a draft: its title, sizes, bill of materials and steps are replaced as given. Only
    a draft is edited; a reviewed or approved version is signed and stays as signed."""
    _require(by, mbr.sponsor_id, "change", f"edit {mbr}")
    _mbr_content_check(mbr.product, bom, steps, str(mbr), title)
    with transaction.atomic(), audit_context(actor=by, reason=reason or f"{mbr} draft edited"):
        locked = MasterBatchRecord.objects.select_for_update().get(pk=mbr.pk)
        if locked.status != MasterBatchRecord.Status.DRAFT:
            raise RuleViolation(
                BatchError.MBR_NOT_DRAFT,
                f"{locked} is {locked.get_status_display().lower()}: only a draft can be edited; "
                "draft a new version instead.",
            )
        locked.title = title
        locked.batch_size = _positive(batch_size, f"{locked}, batch size")
        locked.batch_unit = batch_unit
        locked.theoretical_yield = _positive(theoretical_yield, f"{locked}, theoretical yield")
        locked.save(update_fields=["title", "batch_size", "batch_unit", "theoretical_yield"])
        locked.bom_lines.all().delete()
        locked.steps.all().delete()
        _mbr_write_content(locked, bom, steps)
    mbr.refresh_from_db()
    return mbr


def _not_author(mbr: MasterBatchRecord, user, act: str) -> None:
    if mbr.created_by_id is not None and mbr.created_by_id == user.pk:
        raise RuleViolation(
            BatchError.SECOND_PERSON,
            f"{mbr} was written by {user.get_username()}; a second person must {act} it.",
        )


def mbr_review(*, mbr: MasterBatchRecord, user, password: str, request=None) -> Signature:
    """The independent check of a draft, signed "reviewed" by someone other than the author."""
    _require(user, mbr.sponsor_id, "change", f"review {mbr}")
    _not_author(mbr, user, "review")
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = MasterBatchRecord.objects.select_for_update().get(pk=mbr.pk)
        _move(locked, MasterBatchRecord.Status.REVIEWED, MBR_TRANSITIONS, "")
        locked.save(update_fields=["status"])
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.REVIEWED)
    mbr.refresh_from_db()
    return signature


def mbr_approve(*, mbr: MasterBatchRecord, user, password: str, request=None) -> Signature:
    """QA approval of a reviewed version, signed "approved" by someone other than the author."""
    _require(user, mbr.sponsor_id, "approve", f"approve {mbr}")
    _not_author(mbr, user, "approve")
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = MasterBatchRecord.objects.select_for_update().get(pk=mbr.pk)
        if locked.status == MasterBatchRecord.Status.DRAFT:
            raise RuleViolation(
                BatchError.MBR_STATUS,
                f"{locked} is a draft: it is reviewed by a second person before approval.",
            )
        _move(locked, MasterBatchRecord.Status.APPROVED, MBR_TRANSITIONS, "")
        locked.save(update_fields=["status"])
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.APPROVED)
    mbr.refresh_from_db()
    return signature


def mbr_make_effective(
    *, mbr: MasterBatchRecord, by, effective_from: datetime | None = None, change=None
) -> MasterBatchRecord:
    """Put an approved MBR in force; the version it follows is superseded. A version carried by
    an open change request becomes effective only through that change (`change`)."""
    _require(by, mbr.sponsor_id, "approve", f"make {mbr} effective")
    if change is not None and change.mbr_id != mbr.pk:
        raise RuleViolation(
            BatchError.MBR_STATUS, f"{mbr} is not carried by change {change.number}."
        )
    if change is None:
        carrier = (
            mbr.change_requests.exclude(status__in=["effective", "closed", "rejected", "cancelled"])
            .order_by("number")
            .first()
        )
        if carrier is not None:
            raise RuleViolation(
                BatchError.MBR_CARRIED,
                f"{mbr} is carried by change {carrier.number}; it becomes effective when that "
                "change does.",
            )
    effective_from = effective_from or timezone.now()
    date_check(effective_from, f"Effective date of {mbr}", BatchError.TIME)
    with transaction.atomic(), audit_context(actor=by, reason=f"{mbr} made effective"):
        locked = MasterBatchRecord.objects.select_for_update().get(pk=mbr.pk)
        _move(locked, MasterBatchRecord.Status.EFFECTIVE, MBR_TRANSITIONS, "")
        locked.effective_from = effective_from
        locked.save(update_fields=["status", "effective_from"])
        for older in (
            MasterBatchRecord.objects.select_for_update()
            .filter(product=locked.product, status=MasterBatchRecord.Status.EFFECTIVE)
            .exclude(pk=locked.pk)
        ):
            older.status = MasterBatchRecord.Status.SUPERSEDED
            older.save(update_fields=["status"])
    mbr.refresh_from_db()
    return mbr


def mbr_in_force(product: Product, at: datetime | None = None) -> MasterBatchRecord | None:
    return (
        MasterBatchRecord.objects.filter(
            product=product,
            status__in=[MasterBatchRecord.Status.EFFECTIVE, MasterBatchRecord.Status.SUPERSEDED],
            effective_from__lte=at or timezone.now(),
        )
        .order_by("-effective_from", "-version")
        .first()
    )


# --- batches ------------------------------------------------------------------------------


def batch_plan(*, product: Product, number: str, by, planned_at: datetime | None = None) -> Batch:
    identifier_check(number, "Batch number", BatchError.INVALID)
    date_check(planned_at, f"Planned start of batch {number}", BatchError.TIME)
    _require(by, product.sponsor_id, "change", f"plan batches of {product.code}")
    mbr = mbr_in_force(product, planned_at)
    if mbr is None:
        raise RuleViolation(
            BatchError.MBR_MISSING,
            f"Batch {number} cannot be planned: {product.code} has no effective master batch "
            "record.",
        )
    with transaction.atomic(), audit_context(actor=by):
        if Batch.objects.filter(number=number).exists():
            raise RuleViolation(BatchError.INVALID, f"Batch number {number} is already used.")
        return Batch.objects.create(
            number=number, product=product, mbr=mbr, planned_at=planned_at or timezone.now()
        )


def _locked_batch(batch: Batch) -> Batch:
    return (
        Batch.objects.select_related("mbr", "product")
        .select_for_update(of=("self",))
        .get(pk=batch.pk)
    )


def _require_in_progress(batch: Batch, action: str) -> None:
    if batch.status != Batch.Status.IN_PROGRESS:
        raise RuleViolation(
            BatchError.BATCH_STATUS,
            f"Batch {batch} is {batch.get_status_display().lower()}: cannot {action}.",
        )


def batch_start(*, batch: Batch, by, started_at: datetime | None = None) -> Batch:
    """Start a batch under the MBR version in force at that moment, and record the version in
    force then of every document its steps name (`documents.BatchDocument`)."""
    from documents.services import batch_documents_record

    _require(by, batch.sponsor_id, "change", f"start batch {batch}")
    started_at = _moment(started_at, f"Start of batch {batch}")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked_batch(batch)
        _move(locked, Batch.Status.IN_PROGRESS, BATCH_TRANSITIONS, "Batch")
        mbr = mbr_in_force(locked.product, started_at)
        if mbr is None:
            raise RuleViolation(
                BatchError.MBR_MISSING,
                f"Batch {locked} cannot start: {locked.product.code} has no effective master "
                "batch record.",
            )
        locked.mbr, locked.started_at = mbr, started_at
        locked.save(update_fields=["status", "mbr", "started_at"])
        batch_documents_record(batch=locked, at=started_at)
    batch.refresh_from_db()
    return batch


def batch_record_step(
    *, batch: Batch, step: MbrStep, performed_by, value=None, note: str = "", at=None
) -> ExecutedStep:
    """Record a step as performed. A step that names an SOP needs the performer trained on the
    SOP version in force at the step's time."""
    from documents.services import training_gate

    _require(performed_by, batch.sponsor_id, "change", f"record steps of batch {batch}")
    with transaction.atomic(), audit_context(actor=performed_by):
        locked = _locked_batch(batch)
        _require_in_progress(locked, f"record step {step.sequence}")
        at = _moment(
            at,
            f"Step {step.sequence} of batch {locked}",
            not_before=locked.started_at,
            after="the batch started",
        )
        if step.mbr_id != locked.mbr_id:
            raise RuleViolation(
                BatchError.STEP_INVALID,
                f"Step {step} is not a step of {locked.mbr}, which batch {locked} runs under.",
            )
        if ExecutedStep.objects.filter(batch=locked, step=step).exists():
            raise RuleViolation(
                BatchError.STEP_INVALID,
                f"Step {step.sequence} of batch {locked} is already recorded.",
            )
        if step.sop_reference:
            training_gate(
                user=performed_by,
                sop_reference=step.sop_reference,
                at=at,
                what=f"sign step {step.sequence} of batch {locked}",
            )
        text_check(note, f"Step {step.sequence} of batch {locked}: the comment")
        value = None if value in (None, "") else Decimal(value)
        in_limits = step.in_limits(value)
        if not in_limits and not note.strip():
            shown = "no value" if value is None else f"{value.normalize():f} {step.unit}".strip()
            raise RuleViolation(
                BatchError.COMMENT_REQUIRED,
                f"Step {step.sequence} of batch {locked}: {shown} is outside the limits "
                f"{step.limits_display}; a comment is required.",
            )
        executed = ExecutedStep.objects.create(
            batch=locked,
            step=step,
            value=value,
            note=note,
            is_in_limits=in_limits,
            performed_by=performed_by,
            performed_at=at,
        )
        if not in_limits and step.opens_deviation:
            from deviations.services import deviation_record

            deviation_record(
                title=f"Step {step.sequence} of batch {locked} outside its limits",
                description=(
                    f"{step.title}: {step.parameter or 'value'} "
                    f"{'not recorded' if value is None else f'{value.normalize():f}'} "
                    f"{step.unit}, limits {step.limits_display}. Operator's comment: {note}"
                ).strip(),
                category="deviation",
                severity="minor",
                occurred_at=at,
                discovered_at=min(at, timezone.now()),
                by=performed_by,
                batches=[locked],
            )
        return executed


def batch_verify_step(
    *, executed: ExecutedStep, verified_by, password: str, at=None, request=None
) -> ExecutedStep:
    """The second-person check of a step (21 CFR 211.188(b)(11)), an e-signature with meaning
    "verified" by someone other than the performer. A step that names an SOP needs the verifier
    trained on the SOP version in force at the verification's time."""
    from documents.services import training_gate

    _require(verified_by, executed.sponsor_id, "change", f"verify steps of batch {executed.batch}")
    signer_verify(user=verified_by, password=password, request=request)
    with transaction.atomic(), audit_context(actor=verified_by):
        locked = (
            ExecutedStep.objects.select_for_update()
            .select_related("batch", "step")
            .get(pk=executed.pk)
        )
        at = _moment(
            at,
            f"Verification of step {locked.step.sequence} of batch {locked.batch}",
            not_before=locked.performed_at,
            after="the step was performed",
        )
        if locked.performed_by_id == verified_by.pk:
            raise RuleViolation(
                BatchError.SECOND_PERSON,
                f"Step {locked.step.sequence} of batch {locked.batch} was performed by "
                f"{verified_by.get_username()}; a second person must verify it.",
            )
        if locked.verified_by_id is not None:
            raise RuleViolation(
                BatchError.STEP_INVALID,
                f"Step {locked.step.sequence} of batch {locked.batch} is already verified.",
            )
        if locked.step.sop_reference:
            training_gate(
                user=verified_by,
                sop_reference=locked.step.sop_reference,
                at=at,
                what=f"verify step {locked.step.sequence} of batch {locked.batch}",
            )
        locked.verified_by, locked.verified_at = verified_by, at
        locked.save(update_fields=["verified_by", "verified_at"])
        signature_apply(record=locked, user=verified_by, meaning=Signature.Meaning.VERIFIED)
        _note_evidence(locked.batch)
    executed.refresh_from_db()
    return executed


def batch_consume(*, batch: Batch, lot: Lot, quantity, by, at=None) -> Consumption:
    """Consume an input lot: it must be released and hold enough."""
    _require(by, batch.sponsor_id, "change", f"record consumption for batch {batch}")
    quantity = _positive(quantity, f"Consumption of lot {lot} by batch {batch}")
    with transaction.atomic(), audit_context(actor=by):
        locked_batch = _locked_batch(batch)
        _require_in_progress(locked_batch, f"consume lot {lot}")
        locked = Lot.objects.select_for_update().get(pk=lot.pk)
        if locked.status != Lot.Status.RELEASED:
            raise RuleViolation(
                BatchError.LOT_NOT_RELEASED,
                f"Lot {locked} is {_lot_state(locked)}: it cannot be consumed.",
            )
        if locked.sponsor_id is not None and locked.sponsor_id != locked_batch.sponsor_id:
            raise RuleViolation(
                BatchError.INVALID,
                f"Lot {locked} belongs to another sponsor's product: batch {locked_batch} cannot "
                "consume it.",
            )
        bom = {line.material_id for line in locked_batch.mbr.bom_lines.all()}
        if locked.material_id not in bom:
            raise RuleViolation(
                BatchError.NOT_IN_BOM,
                f"Lot {locked} is {locked.material.code}, which is not in the bill of materials "
                f"of {locked_batch.mbr} that batch {locked_batch} runs under.",
            )
        remaining = lot_balance(locked)["remaining"]
        if quantity > remaining:
            raise RuleViolation(
                BatchError.LOT_INSUFFICIENT,
                f"Lot {locked} has {remaining.normalize():f} {locked.unit} left: "
                f"{quantity.normalize():f} {locked.unit} cannot be consumed.",
            )
        what = f"Consumption of lot {locked} by batch {locked_batch}"
        at = _moment(at, what, not_before=locked_batch.started_at, after="the batch started")
        at = _moment(at, what, not_before=released_at(locked), after="the lot was released")
        return Consumption.objects.create(
            batch=locked_batch,
            lot=locked,
            quantity=quantity,
            consumed_at=at,
            recorded_by=by,
        )


def batch_complete(
    *,
    batch: Batch,
    output_lot_number: str,
    quantity,
    by,
    at=None,
    expires_on=None,
    material: Material | None = None,
) -> Lot:
    """Close production: every step recorded, equipment released, the output lot created in
    quarantine, the yield recorded. The output is the product's finished material unless
    `material` names another intermediate or finished material of the same product."""
    _require(by, batch.sponsor_id, "change", f"complete batch {batch}")
    identifier_check(output_lot_number, f"Output lot number of batch {batch}", BatchError.INVALID)
    date_check(expires_on, f"Expiry date of lot {output_lot_number}", BatchError.INVALID)
    quantity = _positive(quantity, f"Output of batch {batch}")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked_batch(batch)
        _move(locked, Batch.Status.COMPLETED, BATCH_TRANSITIONS, "Batch")
        last = max(
            [locked.started_at, *locked.executed_steps.values_list("performed_at", flat=True)],
            default=None,
        )
        at = _moment(at, f"Completion of batch {locked}", not_before=last, after="its last entry")
        done = set(locked.executed_steps.values_list("step_id", flat=True))
        missing = [s.sequence for s in locked.mbr.steps.all() if s.pk not in done]
        if missing:
            which = (
                f"step {missing[0]} is"
                if len(missing) == 1
                else f"steps {', '.join(map(str, missing))} are"
            )
            raise RuleViolation(
                BatchError.STEP_INVALID,
                f"Batch {locked} cannot be completed: {which} not recorded.",
            )
        if material is not None and (
            material.product_id != locked.product_id or material.kind not in Material.SPONSOR_KINDS
        ):
            raise RuleViolation(
                BatchError.INVALID,
                f"Batch {locked} cannot make a lot of {material}: it is not an intermediate or "
                f"finished material of {locked.product.code}.",
            )
        material = material or (
            Material.objects.filter(product=locked.product, kind=Material.Kind.FINISHED).first()
        )
        if material is None:
            raise RuleViolation(
                BatchError.INVALID,
                f"Batch {locked} cannot be completed: {locked.product.code} has no finished "
                "material to make a lot of.",
            )
        if Lot.objects.filter(lot_number=output_lot_number).exists():
            raise RuleViolation(
                BatchError.INVALID, f"Lot number {output_lot_number} is already used."
            )
        locked.equipment_uses.filter(ended_at__isnull=True).update(ended_at=at)
        locked.completed_at, locked.actual_yield = at, quantity
        locked.save(update_fields=["status", "completed_at", "actual_yield"])
        lot = Lot.objects.create(
            lot_number=output_lot_number,
            material=material,
            quantity=quantity,
            unit=material.unit,
            produced_by=locked,
            expires_on=expires_on,
            created_at=at,
        )
    batch.refresh_from_db()
    _note_evidence(batch)
    return lot


def batch_submit_for_review(*, batch: Batch, by) -> Batch:
    _require(by, batch.sponsor_id, "change", f"submit batch {batch} for review")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked_batch(batch)
        _move(locked, Batch.Status.UNDER_REVIEW, BATCH_TRANSITIONS, "Batch")
        locked.save(update_fields=["status"])
    batch.refresh_from_db()
    return batch


# --- equipment ----------------------------------------------------------------------------


def equipment_use_start(*, batch: Batch, equipment: Equipment, by, at=None) -> EquipmentUse:
    """Equipment past its qualification date cannot be used; equipment whose previous batch was
    another product needs a verified cleaning after that batch (21 CFR 211.67)."""
    _require(by, batch.sponsor_id, "change", f"record equipment use for batch {batch}")
    with transaction.atomic(), audit_context(actor=by):
        locked_batch = _locked_batch(batch)
        _require_in_progress(locked_batch, f"use {equipment.code}")
        at = _moment(
            at,
            f"Use of {equipment.code} by batch {locked_batch}",
            not_before=locked_batch.started_at,
            after="the batch started",
        )
        locked = Equipment.objects.select_for_update().get(pk=equipment.pk)
        if locked.status != Equipment.Status.AVAILABLE:
            raise RuleViolation(
                BatchError.EQUIPMENT_UNAVAILABLE,
                f"{locked.code} is {locked.get_status_display().lower()}: it cannot be used.",
            )
        if locked.qualified_until < at.date():
            raise RuleViolation(
                BatchError.EQUIPMENT_UNQUALIFIED,
                f"{locked.code} cannot be used: its qualification expired on "
                f"{locked.qualified_until:%Y-%m-%d}.",
            )
        previous = (
            EquipmentUse.objects.filter(equipment=locked)
            .select_related("batch")
            .order_by("-started_at", "-id")
            .first()
        )
        if previous is not None and previous.ended_at is None:
            raise RuleViolation(
                BatchError.EQUIPMENT_UNAVAILABLE,
                f"{locked.code} is still in use by another batch; end that use first.",
            )
        if previous is not None and previous.batch.product_id != locked_batch.product_id:
            cleaned = CleaningRecord.objects.filter(
                equipment=locked,
                performed_at__gte=previous.ended_at,
                performed_at__lte=at,
                verified_by__isnull=False,
            ).exists()
            if not cleaned:
                raise RuleViolation(
                    BatchError.CLEANING_REQUIRED,
                    f"{locked.code} last ran another product (ended "
                    f"{previous.ended_at:%Y-%m-%d %H:%M} UTC): a verified cleaning after that "
                    f"is required before batch {locked_batch} uses it.",
                )
        return EquipmentUse.objects.create(
            equipment=locked, batch=locked_batch, started_at=at, recorded_by=by
        )


def equipment_use_end(*, use: EquipmentUse, by, at=None) -> EquipmentUse:
    _require(by, use.sponsor_id, "change", f"record equipment use for batch {use.batch}")
    with transaction.atomic(), audit_context(actor=by):
        locked = EquipmentUse.objects.select_for_update().get(pk=use.pk)
        if locked.ended_at is not None:
            raise RuleViolation(BatchError.INVALID, f"{locked} already ended.")
        locked.ended_at = _moment(
            at, f"End of {locked}", not_before=locked.started_at, after="the use started"
        )
        locked.save(update_fields=["ended_at"])
    use.refresh_from_db()
    return use


def cleaning_record(*, equipment: Equipment, method: str, performed_by, at=None) -> CleaningRecord:
    _require(performed_by, None, "change", f"record cleaning of {equipment.code}")
    if not method.strip():
        raise RuleViolation(BatchError.INVALID, f"Cleaning of {equipment.code}: name the method.")
    title_check(method, f"Cleaning of {equipment.code}: the method")
    with transaction.atomic(), audit_context(actor=performed_by):
        return CleaningRecord.objects.create(
            equipment=equipment,
            method=method,
            performed_by=performed_by,
            performed_at=_moment(at, f"Cleaning of {equipment.code}"),
        )


def cleaning_verify(
    *, cleaning: CleaningRecord, verified_by, password: str, at=None, request=None
) -> CleaningRecord:
    """The second person's check of a cleaning (21 CFR 211.67(c)), an e-signature with meaning
    "verified"; only a verified cleaning clears equipment for another product."""
    _require(verified_by, None, "change", f"verify cleaning of {cleaning.equipment.code}")
    signer_verify(user=verified_by, password=password, request=request)
    with transaction.atomic(), audit_context(actor=verified_by):
        locked = CleaningRecord.objects.select_for_update().get(pk=cleaning.pk)
        if locked.performed_by_id == verified_by.pk:
            raise RuleViolation(
                BatchError.SECOND_PERSON,
                f"{locked} was performed by {verified_by.get_username()}; a second person must "
                "verify it.",
            )
        if locked.verified_by_id is not None:
            raise RuleViolation(BatchError.INVALID, f"{locked} is already verified.")
        locked.verified_by = verified_by
        locked.verified_at = _moment(
            at, f"Verification of {locked}", not_before=locked.performed_at, after="the cleaning"
        )
        locked.save(update_fields=["verified_by", "verified_at"])
        signature_apply(record=locked, user=verified_by, meaning=Signature.Meaning.VERIFIED)
    cleaning.refresh_from_db()
    return cleaning


# --- packaging ----------------------------------------------------------------------------


def packaging_start(*, batch: Batch, label_version: str, by) -> PackagingRecord:
    _require(by, batch.sponsor_id, "change", f"record packaging of batch {batch}")
    if not label_version.strip():
        raise RuleViolation(BatchError.INVALID, f"Packaging of {batch}: name the label version.")
    title_check(label_version, f"Packaging of {batch}: the label version")
    if batch.status not in (
        Batch.Status.IN_PROGRESS,
        Batch.Status.COMPLETED,
        Batch.Status.UNDER_REVIEW,
    ):
        raise RuleViolation(
            BatchError.BATCH_STATUS,
            f"Batch {batch} is {batch.get_status_display().lower()}: packaging is recorded while "
            "it is in progress or before its disposition.",
        )
    with transaction.atomic(), audit_context(actor=by):
        if PackagingRecord.objects.filter(batch=batch).exists():
            raise RuleViolation(BatchError.INVALID, f"Packaging of {batch} is already recorded.")
        return PackagingRecord.objects.create(batch=batch, label_version=label_version)


def packaging_clear_line(
    *, packaging: PackagingRecord, user, password: str, request=None, at=None
) -> Signature:
    """Line clearance before packaging, signed by the person who checked the line."""
    _require(user, packaging.sponsor_id, "change", f"clear the line for {packaging.batch}")
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = PackagingRecord.objects.select_for_update().get(pk=packaging.pk)
        if locked.line_cleared_at is not None:
            raise RuleViolation(
                BatchError.INVALID, f"The line for {locked.batch} is already cleared."
            )
        locked.line_cleared_at = _moment(
            at,
            f"Line clearance for {locked.batch}",
            not_before=locked.batch.started_at,
            after="the batch started",
        )
        locked.save(update_fields=["line_cleared_at"])
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.REVIEWED)
        _note_evidence(locked.batch)
    packaging.refresh_from_db()
    return signature


def packaging_reconcile(
    *,
    packaging: PackagingRecord,
    issued: int,
    used: int,
    destroyed: int,
    returned: int,
    by,
    at=None,
) -> PackagingRecord:
    """Label reconciliation must balance: issued = used + destroyed + returned."""
    _require(by, packaging.sponsor_id, "change", f"reconcile labels of {packaging.batch}")
    counts = {"issued": issued, "used": used, "destroyed": destroyed, "returned": returned}
    if any(value is None or int(value) < 0 for value in counts.values()):
        raise RuleViolation(
            BatchError.INVALID, f"Label reconciliation of {packaging.batch}: counts must be ≥ 0."
        )
    accounted = int(used) + int(destroyed) + int(returned)
    if int(issued) != accounted:
        raise RuleViolation(
            BatchError.RECONCILIATION,
            f"Label reconciliation of batch {packaging.batch} does not balance: {issued} issued, "
            f"{accounted} accounted for ({used} used + {destroyed} destroyed + {returned} "
            "returned).",
        )
    with transaction.atomic(), audit_context(actor=by):
        locked = PackagingRecord.objects.select_for_update().get(pk=packaging.pk)
        locked.labels_issued, locked.labels_used = issued, used
        locked.labels_destroyed, locked.labels_returned = destroyed, returned
        locked.reconciled_at = _moment(
            at,
            f"Label reconciliation of {locked.batch}",
            not_before=locked.line_cleared_at,
            after="the line clearance",
        )
        locked.save()
        _note_evidence(locked.batch)
    packaging.refresh_from_db()
    return packaging


# --- shipments ----------------------------------------------------------------------------


def shipment_create(
    *, lot: Lot, customer: Customer, quantity, by, reference: str = "", at=None
) -> Shipment:
    """Ship a sponsor's lot: only a lot released under its batch's release authority (the
    sponsor's release included where the agreement requires it), with no open deviation, no
    out-of-specification result without a closed investigation, and no more than remains."""
    _require(by, lot.sponsor_id, "change", f"ship lot {lot}")
    quantity = _positive(quantity, f"Shipment of lot {lot}")
    title_check(reference, f"Shipment of lot {lot}: the reference")
    with transaction.atomic(), audit_context(actor=by):
        locked = Lot.objects.select_for_update().get(pk=lot.pk)
        if locked.sponsor_id is None:
            raise RuleViolation(
                BatchError.LOT_NOT_SHIPPABLE,
                f"Lot {locked} is a site material, not a sponsor's product: it cannot be shipped.",
            )
        made_by = locked.produced_by
        if made_by is not None and made_by.status != Batch.Status.RELEASED:
            awaiting = (
                "released by CMO QA and awaits the sponsor's release"
                if made_by.cmo_released_at is not None
                else "not released"
            )
            raise RuleViolation(
                BatchError.LOT_NOT_RELEASED,
                f"Lot {locked} cannot be shipped: its batch {made_by} is "
                f"{made_by.get_status_display().lower()}, {awaiting}.",
            )
        if locked.status != Lot.Status.RELEASED:
            raise RuleViolation(
                BatchError.LOT_NOT_RELEASED,
                f"Lot {locked} is {_lot_state(locked)}: only a released lot can be shipped.",
            )
        issues = lot_open_issues(locked)
        if issues:
            raise RuleViolation(
                BatchError.LOT_OPEN_ISSUE,
                f"Lot {locked} cannot be shipped: " + "; ".join(issues) + ".",
            )
        if customer is None:
            raise RuleViolation(BatchError.INVALID, f"Shipment of lot {locked}: name the customer.")
        remaining = lot_balance(locked)["remaining"]
        if quantity > remaining:
            raise RuleViolation(
                BatchError.LOT_INSUFFICIENT,
                f"Lot {locked} has {remaining.normalize():f} {locked.unit} left: "
                f"{quantity.normalize():f} {locked.unit} cannot be shipped.",
            )
        at = _moment(
            at,
            f"Shipment of lot {locked}",
            not_before=released_at(locked),
            after="the lot was released",
        )
        return Shipment.objects.create(
            lot=locked,
            customer=customer,
            quantity=quantity,
            reference=reference,
            shipped_at=at,
            recorded_by=by,
        )
