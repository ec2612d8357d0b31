"""Business actions on change requests: drafting, the ICH Q9 risk assessment, submission (one
obligation per affected sponsor from its agreement in force, notices through the deadline
kernel), the sponsor approver's e-signed decision (which may accept an effective date earlier
than the lead time allows), re-scoping, effectiveness (lead times, a recorded reason for an
effective date before the proposed one; a carried document or master batch record version is put
in force), implementation tasks, closure, rejection and cancellation."""

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from batches.models import Equipment, MasterBatchRecord
from qms.audit import audit_context
from qms.bounds import TEXT_MAX, TITLE_MAX, date_check, text_check
from qms.errors import RuleViolation
from qms.models import Deadline, Signature
from qms.notifications import deadline_cancel, deadline_mark_met, deadline_schedule
from qms.numbering import next_number
from qms.signatures import printed_name, signature_apply, signer_verify
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.models import ChangeCategory, Obligation, Product, Role, Sponsor
from sponsors.selectors import agreement_in_force
from suppliers.models import Supplier

from .models import ChangeProduct, ChangeRequest, ChangeTask, RiskLevel, SponsorObligation


class ChangeError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "invalid"
    STATUS = "change_status_invalid"
    REASON_REQUIRED = "reason_required"
    SUBJECT = "change_subject_invalid"
    NO_AGREEMENT = "change_no_agreement_in_force"
    OBLIGATIONS_UNMET = "change_obligations_unmet"
    OBLIGATION_STATUS = "obligation_status_invalid"
    TASKS_OPEN = "change_tasks_open"
    TASK_STATUS = "change_task_status_invalid"


class ObligationsUnmet(RuleViolation):
    """The change cannot become effective; `unmet` lists each unmet obligation by sponsor."""

    def __init__(self, detail: str, unmet: list[dict]):
        super().__init__(ChangeError.OBLIGATIONS_UNMET, detail)
        self.unmet = unmet


Status = ChangeRequest.Status

TRANSITIONS = {
    Status.DRAFT: {Status.ASSESSMENT, Status.CANCELLED},
    Status.ASSESSMENT: {
        Status.AWAITING_SPONSORS,
        Status.APPROVED,
        Status.REJECTED,
        Status.CANCELLED,
    },
    Status.AWAITING_SPONSORS: {
        Status.APPROVED,
        Status.EFFECTIVE,
        Status.REJECTED,
        Status.CANCELLED,
    },
    Status.APPROVED: {Status.EFFECTIVE, Status.REJECTED, Status.CANCELLED},
    Status.EFFECTIVE: {Status.CLOSED},
    Status.CLOSED: set(),
    Status.REJECTED: set(),
    Status.CANCELLED: set(),
}

OPEN_STATUSES = (Status.DRAFT, Status.ASSESSMENT, Status.AWAITING_SPONSORS, Status.APPROVED)
FINISHED_STATUSES = (Status.EFFECTIVE, Status.CLOSED, Status.REJECTED, Status.CANCELLED)
EDITABLE_MBR = (
    MasterBatchRecord.Status.DRAFT,
    MasterBatchRecord.Status.REVIEWED,
    MasterBatchRecord.Status.APPROVED,
)
NOTICE_RECIPIENTS = [Role.SPONSOR_AUDITOR, Role.SPONSOR_APPROVER]

# ICH Q9: risk priority number = severity × probability × detectability (each 1–5).
MEDIUM_FROM = 20
HIGH_FROM = 60


def risk_level(severity: int, probability: int, detectability: int) -> str:
    """ICH Q9 risk level from the three scores: RPN < 20 low, 20–59 medium, ≥ 60 high; a
    severity of 5 is never low."""
    priority = severity * probability * detectability
    if priority >= HIGH_FROM:
        level = RiskLevel.HIGH
    elif priority >= MEDIUM_FROM:
        level = RiskLevel.MEDIUM
    else:
        level = RiskLevel.LOW
    if severity == 5 and level == RiskLevel.LOW:
        level = RiskLevel.MEDIUM
    return level


def _move(change: ChangeRequest, target: str) -> None:
    if target not in TRANSITIONS[change.status]:
        raise RuleViolation(
            ChangeError.STATUS,
            f"Change {change.number} is {change.get_status_display().lower()}; it cannot become "
            f"{Status(target).label.lower()}.",
        )
    change.status = target


def _active_sponsor_ids(change: ChangeRequest) -> set[int]:
    return set(
        change.affected_products.filter(removed_at__isnull=True).values_list(
            "sponsor_id", flat=True
        )
    )


def _require(user, sponsor_ids, action: str, what: str) -> None:
    """The user holds `action` on every sponsor concerned (on at least one when none is yet)."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise RuleViolation(ChangeError.NOT_PERMITTED, f"Nobody signed in may {what}.")
    if user.is_superuser:
        return
    allowed = sponsor_ids_for(user, action)
    wanted = set(sponsor_ids)
    if not is_cmo_user(user) or not allowed:
        raise RuleViolation(ChangeError.NOT_PERMITTED, f"{user.get_username()} may not {what}.")
    if not wanted <= allowed:
        raise RuleViolation(
            ChangeError.NOT_PERMITTED,
            f"{user.get_username()} may not {what}: it affects products of a sponsor outside "
            "your permissions.",
        )


def _locked(change: ChangeRequest) -> ChangeRequest:
    return ChangeRequest.objects.select_for_update().get(pk=change.pk)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _text(value: str, what: str, change_name: str) -> str:
    value = (value or "").strip()
    if not value:
        raise RuleViolation(ChangeError.INVALID, f"{change_name} needs {what}.")
    is_title = what == "a title"
    text_check(
        value,
        f"{change_name}: {what}",
        max_length=TITLE_MAX if is_title else TEXT_MAX,
        multiline=not is_title,
        code=ChangeError.INVALID,
    )
    return value


def _proposed_date(value: date | None, change_name: str) -> date | None:
    return date_check(value, f"{change_name}: the proposed effective date", ChangeError.INVALID)


# --- what the change carries --------------------------------------------------------------


def _check_subject(
    *,
    change: ChangeRequest | None,
    name: str,
    products: list[Product],
    document_version,
    mbr: MasterBatchRecord | None,
    equipment: Equipment | None,
    supplier: Supplier | None,
    subject_text: str,
) -> None:
    records = [r for r in (document_version, mbr, equipment, supplier) if r is not None]
    if len(records) > 1:
        raise RuleViolation(
            ChangeError.SUBJECT,
            f"{name} can carry one record (a document version, an MBR version, equipment or a "
            "supplier); describe anything else in the subject text.",
        )
    if not records and not subject_text.strip():
        raise RuleViolation(
            ChangeError.SUBJECT,
            f"{name} must say what it changes: a document version, an MBR version, equipment, "
            "a supplier, or a subject text.",
        )
    others = ChangeRequest.objects.filter(status__in=OPEN_STATUSES)
    if change is not None:
        others = others.exclude(pk=change.pk)
    product_ids = {p.pk for p in products}
    sponsor_ids = {p.sponsor_id for p in products}
    if mbr is not None:
        if mbr.status not in EDITABLE_MBR:
            raise RuleViolation(
                ChangeError.SUBJECT,
                f"{name} cannot carry {mbr}: it is {mbr.get_status_display().lower()}; only a "
                "draft, reviewed or approved version can be put in force by a change.",
            )
        if mbr.product_id not in product_ids:
            raise RuleViolation(
                ChangeError.SUBJECT,
                f"{name} cannot carry {mbr}: its product {mbr.product.code} is not among the "
                "affected products.",
            )
        taken = others.filter(mbr=mbr).first()
        if taken is not None:
            raise RuleViolation(
                ChangeError.SUBJECT, f"{mbr} is already carried by change {taken.number}."
            )
    if document_version is not None:
        from documents.models import DocumentVersion

        editable = (
            DocumentVersion.Status.DRAFT,
            DocumentVersion.Status.IN_REVIEW,
            DocumentVersion.Status.APPROVED,
        )
        if document_version.status not in editable:
            raise RuleViolation(
                ChangeError.SUBJECT,
                f"{name} cannot carry {document_version}: it is "
                f"{document_version.get_status_display().lower()}.",
            )
        if document_version.sponsor_id is not None and document_version.sponsor_id not in (
            sponsor_ids
        ):
            raise RuleViolation(
                ChangeError.SUBJECT,
                f"{name} cannot carry {document_version}: it is a document of a sponsor none of "
                "whose products the change affects.",
            )
        taken = others.filter(document_version=document_version).first()
        if taken is not None:
            raise RuleViolation(
                ChangeError.SUBJECT,
                f"{document_version} is already carried by change {taken.number}.",
            )


def _hold(version, by, held: bool) -> None:
    from documents.services import version_hold

    version_hold(version=version, by=by, held=held)


def _set_products(change: ChangeRequest, products: list[Product]) -> None:
    wanted = {p.pk: p for p in products}
    current = {row.product_id: row for row in change.affected_products.all()}
    for product_id, row in current.items():
        if product_id not in wanted:
            row.delete()
    for product_id, product in wanted.items():
        if product_id not in current:
            ChangeProduct.objects.create(change=change, product=product)


def _check_products(products: list[Product], name: str) -> list[Product]:
    products = list(dict.fromkeys(products))
    inactive = sorted(p.code for p in products if not p.is_active)
    if inactive:
        raise RuleViolation(
            ChangeError.INVALID, f"{name} cannot affect inactive products: {', '.join(inactive)}."
        )
    return products


# --- drafting -----------------------------------------------------------------------------


def change_create(
    *,
    title: str,
    description: str,
    category: str,
    by,
    products=(),
    document_version=None,
    mbr: MasterBatchRecord | None = None,
    equipment: Equipment | None = None,
    supplier: Supplier | None = None,
    subject_text: str = "",
    proposed_effective_date: date | None = None,
) -> ChangeRequest:
    """Draft a change request CC-YYYY-NNNN affecting products of one or several sponsors."""
    name = "A change request"
    title = _text(title, "a title", name)
    description = _text(description, "a description", name)
    text_check(subject_text, f"{name}: the subject", code=ChangeError.INVALID)
    _proposed_date(proposed_effective_date, name)
    if category not in ChangeCategory.values:
        raise RuleViolation(ChangeError.INVALID, f"Unknown change category {category!r}.")
    products = _check_products(list(products), name)
    _require(by, {p.sponsor_id for p in products}, "change", "draft this change request")
    _check_subject(
        change=None,
        name=name,
        products=products,
        document_version=document_version,
        mbr=mbr,
        equipment=equipment,
        supplier=supplier,
        subject_text=subject_text,
    )
    with transaction.atomic(), audit_context(actor=by):
        number = next_number(ChangeRequest.objects.all(), f"CC-{timezone.now().year}-")
        change = ChangeRequest.objects.create(
            number=number,
            title=title,
            description=description,
            category=category,
            document_version=document_version,
            mbr=mbr,
            equipment=equipment,
            supplier=supplier,
            subject_text=subject_text.strip(),
            proposed_effective_date=proposed_effective_date,
            created_by=by,
        )
        _set_products(change, products)
        if document_version is not None:
            _hold(document_version, by, True)
    return change


EDITABLE_FIELDS = (
    "title",
    "description",
    "category",
    "products",
    "document_version",
    "mbr",
    "equipment",
    "supplier",
    "subject_text",
    "proposed_effective_date",
)


def change_update(*, change: ChangeRequest, by, reason: str = "", **fields) -> ChangeRequest:
    """Edit a draft: its text, category, affected products, what it carries, proposed date."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise RuleViolation(
            ChangeError.INVALID, f"Unknown change request fields {sorted(unknown)}."
        )
    _proposed_date(fields.get("proposed_effective_date"), f"Change {change.number}")
    text_check(
        fields.get("subject_text"), f"Change {change.number}: the subject", code=ChangeError.INVALID
    )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip() or None):
        locked = _locked(change)
        _require(by, _active_sponsor_ids(locked), "change", f"edit change request {locked.number}")
        if locked.status != Status.DRAFT:
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: only a draft "
                "can be edited.",
            )
        name = f"Change {locked.number}"
        products = (
            _check_products(list(fields["products"]), name)
            if "products" in fields
            else [row.product for row in locked.affected_products.select_related("product")]
        )
        if "products" in fields:
            _require(
                by,
                {p.sponsor_id for p in products},
                "change",
                f"edit change request {locked.number}",
            )
        values = {
            key: fields.get(key, getattr(locked, key))
            for key in ("document_version", "mbr", "equipment", "supplier")
        }
        subject_text = fields.get("subject_text", locked.subject_text) or ""
        _check_subject(
            change=locked, name=name, products=products, subject_text=subject_text, **values
        )
        if "category" in fields and fields["category"] not in ChangeCategory.values:
            raise RuleViolation(
                ChangeError.INVALID, f"Unknown change category {fields['category']!r}."
            )
        old_version = locked.document_version
        for key in ("title", "description"):
            if key in fields:
                setattr(locked, key, _text(fields[key], f"a {key}", name))
        for key in ("category", "proposed_effective_date"):
            if key in fields:
                setattr(locked, key, fields[key])
        for key, value in values.items():
            setattr(locked, key, value)
        locked.subject_text = subject_text.strip()
        locked.save()
        if "products" in fields:
            _set_products(locked, products)
        new_version = locked.document_version
        if old_version != new_version:
            if old_version is not None:
                _hold(old_version, by, False)
            if new_version is not None:
                _hold(new_version, by, True)
    change.refresh_from_db()
    return change


def change_assess(
    *,
    change: ChangeRequest,
    by,
    severity: int,
    probability: int,
    detectability: int,
    rationale: str,
    proposed_effective_date: date | None = None,
) -> ChangeRequest:
    """Record the ICH Q9 risk assessment (the level is computed, not chosen); a draft moves to
    assessment, an assessment may be revised until submission."""
    scores = {"severity": severity, "probability": probability, "detectability": detectability}
    for label, score in scores.items():
        if not isinstance(score, int) or not 1 <= score <= 5:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {change.number}: the {label} score must be 1 to 5, not {score!r}.",
            )
    rationale = (rationale or "").strip()
    if not rationale:
        raise RuleViolation(
            ChangeError.REASON_REQUIRED,
            f"Change {change.number}: the risk assessment needs a rationale.",
        )
    text_check(rationale, f"Change {change.number}: the rationale", code=ChangeError.INVALID)
    _proposed_date(proposed_effective_date, f"Change {change.number}")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked(change)
        _require(by, _active_sponsor_ids(locked), "change", f"assess change {locked.number}")
        if locked.status == Status.DRAFT:
            _move(locked, Status.ASSESSMENT)
        elif locked.status != Status.ASSESSMENT:
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: its risk "
                "assessment can no longer change.",
            )
        locked.risk_severity = severity
        locked.risk_probability = probability
        locked.risk_detectability = detectability
        locked.risk_level = risk_level(severity, probability, detectability)
        locked.risk_rationale = rationale
        if proposed_effective_date is not None:
            locked.proposed_effective_date = proposed_effective_date
        locked.save()
    change.refresh_from_db()
    return change


# --- submission and the sponsors' obligations ---------------------------------------------


def _portal_url(change: ChangeRequest) -> str:
    return reverse("portal_changecontrol:detail", args=[change.number])


def _notice(change: ChangeRequest, obligation: SponsorObligation, products, by) -> Deadline:
    """The sponsor's notice: only its own slice of the change (never another sponsor)."""
    sponsor = obligation.sponsor
    lead = obligation.lead_time_days
    proposed = change.proposed_effective_date
    due_day = proposed - timedelta(days=lead)
    codes = ", ".join(f"{p.code} {p.name}" for p in products)
    if obligation.kind == Obligation.APPROVE:
        title = f"Change {change.number}: your approval is requested — {change.title}"
        needed = (
            f"Your approval is required under quality agreement v{obligation.agreement.version} "
            f"before the change can become effective; requested by {due_day:%Y-%m-%d} "
            f"({lead} days lead time). The change does not become effective earlier than {lead} "
            "days after this notice unless your signed approval accepts an earlier date."
        )
    else:
        title = f"Change {change.number}: notice of change — {change.title}"
        needed = (
            f"This is the notice required by quality agreement v{obligation.agreement.version}, "
            f"at least {lead} days before the change becomes effective. No action is required."
        )
    body = "\n".join(
        [
            f"Change {change.number}: {change.title}",
            f"Category: {change.get_category_display()}",
            f"Your products affected: {codes}",
            f"Proposed effective date: {proposed:%Y-%m-%d}",
            f"Risk (ICH Q9): {change.get_risk_level_display().lower()} — severity "
            f"{change.risk_severity}, probability {change.risk_probability}, detectability "
            f"{change.risk_detectability}",
            "",
            change.description,
            "",
            needed,
        ]
    )
    return deadline_schedule(
        sponsor=sponsor,
        key=f"change:{change.number}:{sponsor.code}",
        kind="change_notice",
        title=title,
        body=body,
        due_at=_day_start(due_day),
        notify_at=timezone.now(),
        recipient_roles=NOTICE_RECIPIENTS,
        notify_sponsor_contact=True,
        subject=obligation,
        url=_portal_url(change),
        is_met_by_notice=obligation.kind == Obligation.NOTIFY,
        by=by,
    )


def change_submit(*, change: ChangeRequest, by) -> ChangeRequest:
    """Derive one obligation per affected sponsor from the rule of the change's category in the
    agreement version in force now (no rule: none); send notify and approve notices. Without an
    agreement in force for an affected sponsor nothing governs the change, so it is refused."""
    now = timezone.now()
    with transaction.atomic(), audit_context(actor=by, reason="change submitted to sponsors"):
        locked = _locked(change)
        rows = list(
            locked.affected_products.filter(removed_at__isnull=True)
            .select_related("product", "sponsor")
            .order_by("sponsor__code", "product__code")
        )
        _require(by, {r.sponsor_id for r in rows}, "change", f"submit change {locked.number}")
        if locked.status != Status.ASSESSMENT:
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: only a change "
                "with a recorded risk assessment can be submitted.",
            )
        if not rows:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {locked.number} cannot be submitted: it affects no product.",
            )
        if locked.proposed_effective_date is None:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {locked.number} cannot be submitted without a proposed effective date.",
            )
        _proposed_date(locked.proposed_effective_date, f"Change {locked.number}")
        by_sponsor: dict[int, tuple[Sponsor, list[Product]]] = {}
        for row in rows:
            by_sponsor.setdefault(row.sponsor_id, (row.sponsor, []))[1].append(row.product)
        agreements = {
            sponsor_id: agreement_in_force(sponsor=sponsor, at=now)
            for sponsor_id, (sponsor, _) in by_sponsor.items()
        }
        ungoverned = [
            f"{sponsor.name} ({', '.join(p.code for p in products)})"
            for sponsor_id, (sponsor, products) in by_sponsor.items()
            if agreements[sponsor_id] is None
        ]
        if ungoverned:
            raise RuleViolation(
                ChangeError.NO_AGREEMENT,
                f"Change {locked.number} cannot be submitted: no quality agreement is in force "
                f"for {'; '.join(ungoverned)}.",
            )
        needs_approval = False
        for sponsor_id, (sponsor, products) in by_sponsor.items():
            agreement = agreements[sponsor_id]
            rule = next(
                (r for r in agreement.change_rules.all() if r.category == locked.category), None
            )
            kind = rule.obligation if rule is not None else Obligation.NONE
            obligation = SponsorObligation.objects.create(
                change=locked,
                sponsor=sponsor,
                agreement=agreement,
                kind=kind,
                lead_time_days=rule.lead_time_days if rule is not None else 0,
                status=(
                    SponsorObligation.Status.NOT_REQUIRED
                    if kind == Obligation.NONE
                    else SponsorObligation.Status.PENDING
                ),
                created_at=now,
            )
            if kind != Obligation.NONE:
                obligation.notice = _notice(locked, obligation, products, by)
                obligation.save(update_fields=["notice"])
            needs_approval = needs_approval or kind == Obligation.APPROVE
        _move(locked, Status.AWAITING_SPONSORS if needs_approval else Status.APPROVED)
        locked.submitted_at = now
        locked.save(update_fields=["status", "submitted_at"])
    change.refresh_from_db()
    return change


def _approved_when_no_approval_outstanding(change: ChangeRequest) -> None:
    """An awaiting change is approved once no active approve obligation is pending or
    rejected."""
    if change.status != Status.AWAITING_SPONSORS:
        return
    outstanding = change.obligations.filter(
        kind=Obligation.APPROVE,
        status__in=[SponsorObligation.Status.PENDING, SponsorObligation.Status.REJECTED],
    )
    if not outstanding.exists():
        _move(change, Status.APPROVED)
        change.save(update_fields=["status"])


def obligation_decide(
    *,
    obligation: SponsorObligation,
    user,
    password: str,
    approve: bool,
    comment: str = "",
    accepts_effective_from: date | None = None,
    request=None,
) -> Signature:
    """The sponsor approver approves or rejects the change for their sponsor by e-signature
    (21 CFR 11.50: meaning approved / rejected). A rejection blocks the change until it is
    re-scoped without that sponsor, rejected or cancelled. An approval may accept an effective
    date earlier than the agreement's lead time after the notice allows (`accepts_effective_from`,
    covered by the signature)."""
    change = obligation.change
    what = f"the obligation of change {change.number}"
    if is_cmo_user(user) or obligation.sponsor_id not in sponsor_ids_for(user, "sponsor_approve"):
        raise RuleViolation(
            ChangeError.NOT_PERMITTED,
            f"{user.get_username()} may not decide on {what}: only the sponsor's approver "
            "decides for the sponsor.",
        )
    if obligation.kind != Obligation.APPROVE:
        raise RuleViolation(
            ChangeError.OBLIGATION_STATUS,
            f"Change {change.number} needs no approval from your sponsor "
            f"({obligation.get_kind_display().lower()}).",
        )
    comment = (comment or "").strip()
    if not approve and not comment:
        raise RuleViolation(
            ChangeError.REASON_REQUIRED, f"Say why change {change.number} is rejected."
        )
    text_check(comment, f"Change {change.number}: the comment", code=ChangeError.INVALID)
    date_check(
        accepts_effective_from,
        f"Change {change.number}: the accepted effective date",
        ChangeError.INVALID,
    )
    if accepts_effective_from is not None:
        _check_accepted_date(obligation, approve, accepts_effective_from)
    signer_verify(user=user, password=password, request=request)
    verb = "approved" if approve else "rejected"
    with (
        transaction.atomic(),
        audit_context(
            actor=user, reason=comment or f"change {change.number} {verb} by the sponsor"
        ),
    ):
        locked_change = _locked(change)
        locked = SponsorObligation.objects.select_for_update().get(pk=obligation.pk)
        if locked.status in (SponsorObligation.Status.APPROVED, SponsorObligation.Status.REJECTED):
            raise RuleViolation(
                ChangeError.OBLIGATION_STATUS,
                f"Your sponsor's decision on change {change.number} is already made: "
                f"{locked.get_status_display().lower()} by {printed_name(locked.decided_by)} on "
                f"{locked.decided_at:%Y-%m-%d}.",
            )
        if (
            locked_change.status != Status.AWAITING_SPONSORS
            or locked.status != SponsorObligation.Status.PENDING
        ):
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {change.number} is {locked_change.get_status_display().lower()}: it "
                "is not awaiting your decision.",
            )
        locked.status = (
            SponsorObligation.Status.APPROVED if approve else SponsorObligation.Status.REJECTED
        )
        locked.decided_by = user
        locked.decided_at = timezone.now()
        locked.comment = comment
        locked.accepts_effective_from = accepts_effective_from
        locked.save(
            update_fields=[
                "status",
                "decided_by",
                "decided_at",
                "comment",
                "accepts_effective_from",
            ]
        )
        meaning = Signature.Meaning.APPROVED if approve else Signature.Meaning.REJECTED
        signature = signature_apply(record=locked, user=user, meaning=meaning)
        if locked.notice_id:
            notice = Deadline.objects.get(pk=locked.notice_id)
            if notice.status in (Deadline.Status.PENDING, Deadline.Status.NOTIFIED):
                deadline_mark_met(deadline=notice, by=user, reason=f"sponsor {verb}")
        if approve:
            _approved_when_no_approval_outstanding(locked_change)
    obligation.refresh_from_db()
    return signature


def _lead_time_allows(obligation: SponsorObligation) -> date:
    """The first effective day the agreement's lead time allows after the obligation's notice."""
    return timezone.localdate(obligation.noticed_at) + timedelta(days=obligation.lead_time_days)


def _check_accepted_date(obligation: SponsorObligation, approve: bool, accepted: date) -> None:
    number = obligation.change.number
    if not approve:
        raise RuleViolation(
            ChangeError.INVALID,
            f"A rejection of change {number} accepts no effective date; leave the earliest "
            "accepted effective date empty.",
        )
    allowed = _lead_time_allows(obligation)
    if accepted >= allowed:
        raise RuleViolation(
            ChangeError.INVALID,
            f"Change {number}: the earliest effective date you accept, {accepted:%Y-%m-%d}, is "
            f"not earlier than the {obligation.lead_time_days} days lead time already allows "
            f"({allowed:%Y-%m-%d}); leave it empty.",
        )


def change_rescope(*, change: ChangeRequest, sponsor: Sponsor, reason: str, by) -> ChangeRequest:
    """Take a sponsor's products out of a submitted change (typically after that sponsor
    rejected it): the rows stay, marked removed with who, when and why; the sponsor's obligation
    is withdrawn."""
    reason = (reason or "").strip()
    if not reason:
        raise RuleViolation(
            ChangeError.REASON_REQUIRED,
            f"Re-scoping change {change.number} needs a reason.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason):
        locked = _locked(change)
        active = _active_sponsor_ids(locked)
        _require(by, active, "change", f"re-scope change {locked.number}")
        if locked.status not in (Status.AWAITING_SPONSORS, Status.APPROVED):
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: only a "
                "submitted change that is not yet effective can be re-scoped.",
            )
        if sponsor.pk not in active:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {locked.number} does not affect any product of {sponsor.name}.",
            )
        if active == {sponsor.pk}:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {locked.number} affects only the products of {sponsor.name}: reject "
                "or cancel it instead of re-scoping.",
            )
        carried = [
            record
            for record in (locked.mbr, locked.document_version)
            if record is not None and record.sponsor_id == sponsor.pk
        ]
        if carried:
            raise RuleViolation(
                ChangeError.INVALID,
                f"Change {locked.number} carries {carried[0]}, which belongs to {sponsor.name}: "
                "it cannot be re-scoped without that sponsor.",
            )
        now = timezone.now()
        for row in locked.affected_products.filter(sponsor=sponsor, removed_at__isnull=True):
            row.removed_at, row.removed_by, row.removed_reason = now, by, reason
            row.save(update_fields=["removed_at", "removed_by", "removed_reason"])
        obligation = locked.obligations.filter(sponsor=sponsor).first()
        if obligation is not None:
            obligation.status = SponsorObligation.Status.WITHDRAWN
            obligation.save(update_fields=["status"])
            _cancel_notice(obligation, by, f"sponsor removed from the change: {reason}")
        _approved_when_no_approval_outstanding(locked)
    change.refresh_from_db()
    return change


def _cancel_notice(obligation: SponsorObligation, by, reason: str) -> None:
    if obligation.notice_id is None:
        return
    notice = Deadline.objects.get(pk=obligation.notice_id)
    if notice.status in (Deadline.Status.PENDING, Deadline.Status.NOTIFIED):
        deadline_cancel(deadline=notice, by=by, reason=reason)


# --- effectiveness ------------------------------------------------------------------------


def _unmet(change: ChangeRequest, obligations, effective_at: datetime) -> list[dict]:
    effective_day = timezone.localdate(effective_at)
    unmet = []
    for obligation in obligations:
        sponsor = obligation.sponsor
        problem = None
        if obligation.kind == Obligation.APPROVE:
            if obligation.status == SponsorObligation.Status.REJECTED:
                problem = (
                    f"approval required, rejected by {printed_name(obligation.decided_by)} on "
                    f"{obligation.decided_at:%Y-%m-%d}: {obligation.comment}"
                )
            elif obligation.status != SponsorObligation.Status.APPROVED:
                problem = "approval required, pending"
            else:
                problem = _approved_too_early(obligation, effective_day)
        elif obligation.kind == Obligation.NOTIFY:
            lead = obligation.lead_time_days
            needed_by = effective_day - timedelta(days=lead)
            sent_at = obligation.sent_at
            needs = (
                f"{lead} days lead time needs it by {needed_by:%Y-%m-%d} for effective "
                f"{effective_day:%Y-%m-%d}"
            )
            if sent_at is None:
                problem = f"notice not sent yet, {needs}"
            elif timezone.localdate(sent_at) > needed_by:
                problem = f"notice sent {timezone.localdate(sent_at):%Y-%m-%d}, {needs}"
        if problem is not None:
            unmet.append(
                {
                    "sponsor": sponsor.code,
                    "sponsor_name": sponsor.name,
                    "kind": obligation.kind,
                    "status": obligation.status,
                    "problem": f"Sponsor {sponsor.name}: {problem}",
                }
            )
    return unmet


def _approved_too_early(obligation: SponsorObligation, effective_day: date) -> str | None:
    """The agreement's lead time after the notice holds for an approval too, unless the signed
    approval accepts an earlier effective date."""
    accepted = obligation.accepts_effective_from
    if effective_day >= _lead_time_allows(obligation):
        return None
    if accepted is not None and effective_day >= accepted:
        return None
    lead = obligation.lead_time_days
    noticed = "notice sent" if obligation.sent_at else "submitted"
    accepts = (
        f"the signed approval accepts effective from {accepted:%Y-%m-%d} at the earliest"
        if accepted is not None
        else "the signed approval accepts no earlier date"
    )
    return (
        f"approved, {noticed} {timezone.localdate(obligation.noticed_at):%Y-%m-%d}, {lead} days "
        f"lead time needs it by {effective_day - timedelta(days=lead):%Y-%m-%d} for effective "
        f"{effective_day:%Y-%m-%d}, and {accepts}"
    )


def change_unmet_obligations(
    *, change: ChangeRequest, effective_at: datetime | None = None
) -> list[dict]:
    """What still keeps the change from becoming effective at `effective_at` (default now)."""
    obligations = (
        change.obligations.exclude(status=SponsorObligation.Status.WITHDRAWN)
        .select_related("sponsor", "notice", "decided_by")
        .order_by("sponsor__code")
    )
    return _unmet(change, obligations, effective_at or timezone.now())


def change_make_effective(
    *, change: ChangeRequest, by, effective_at: datetime | None = None, reason: str = ""
) -> ChangeRequest:
    """The change takes effect at `effective_at` (default now; not in the past) once every
    approve obligation is approved and every notice (notify or approve) was sent at least its
    lead time before the effective date, or the sponsor's signed approval accepts that earlier
    date; a refusal lists each unmet obligation by sponsor. An effective date before the proposed
    one needs a reason, recorded on the change and in the audit trail. A carried document or MBR
    version becomes effective at the same moment, in the same transaction."""
    reason = (reason or "").strip()
    now = timezone.now()
    effective_at = effective_at or now
    if timezone.is_naive(effective_at):
        effective_at = timezone.make_aware(effective_at, UTC)
    date_check(effective_at, f"Change {change.number}: the effective date", ChangeError.INVALID)
    if effective_at < now - timedelta(minutes=5):
        raise RuleViolation(
            ChangeError.INVALID,
            f"Change {change.number} cannot become effective on {effective_at:%Y-%m-%d %H:%M} "
            "UTC: an effective date cannot be in the past.",
        )
    effective_day = timezone.localdate(effective_at)
    early = (
        change.proposed_effective_date is not None
        and effective_day < change.proposed_effective_date
    )
    audit_reason = f"change {change.number} effective"
    if early:
        audit_reason += (
            f" {effective_day:%Y-%m-%d}, before its proposed effective date "
            f"{change.proposed_effective_date:%Y-%m-%d}: {reason}"
        )
    with transaction.atomic(), audit_context(actor=by, reason=audit_reason):
        locked = _locked(change)
        _require(
            by, _active_sponsor_ids(locked), "approve", f"make change {locked.number} effective"
        )
        if locked.status not in (Status.AWAITING_SPONSORS, Status.APPROVED):
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: only an "
                "approved change can become effective.",
            )
        obligations = list(
            locked.obligations.exclude(status=SponsorObligation.Status.WITHDRAWN)
            .select_related("sponsor", "notice", "decided_by")
            .order_by("sponsor__code")
        )
        unmet = _unmet(locked, obligations, effective_at)
        if unmet:
            problems = "; ".join(item["problem"] for item in unmet)
            if not problems.endswith((".", "!", "?")):
                problems += "."
            raise ObligationsUnmet(
                f"Change {locked.number} cannot become effective: {problems}", unmet
            )
        if early and not reason:
            raise RuleViolation(
                ChangeError.REASON_REQUIRED,
                f"Change {locked.number} cannot become effective on {effective_day:%Y-%m-%d}, "
                f"before its proposed effective date {locked.proposed_effective_date:%Y-%m-%d}, "
                "without a reason.",
            )
        for obligation in obligations:
            if obligation.kind == Obligation.NOTIFY:
                obligation.status = SponsorObligation.Status.NOTIFIED
                obligation.notified_at = obligation.sent_at
                obligation.save(update_fields=["status", "notified_at"])
            if obligation.notice_id and obligation.notice.status in (
                Deadline.Status.PENDING,
                Deadline.Status.NOTIFIED,
            ):
                deadline_mark_met(deadline=obligation.notice, by=by, reason="change effective")
        _move(locked, Status.EFFECTIVE)
        locked.effective_at = effective_at
        locked.early_effective_reason = reason if early else ""
        locked.save(update_fields=["status", "effective_at", "early_effective_reason"])
        if locked.document_version_id:
            from documents.services import version_make_effective

            version_make_effective(
                version=locked.document_version, by=by, effective_from=effective_at, change=locked
            )
        if locked.mbr_id:
            from batches.services import mbr_make_effective

            mbr_make_effective(mbr=locked.mbr, by=by, effective_from=effective_at, change=locked)
    change.refresh_from_db()
    return change


# --- tasks, closure, rejection, cancellation ----------------------------------------------


def change_task_add(
    *, change: ChangeRequest, description: str, owner, due_date: date, by
) -> ChangeTask:
    description = (description or "").strip()
    if not description:
        raise RuleViolation(
            ChangeError.INVALID, f"A task of change {change.number} needs a description."
        )
    text_check(description, f"A task of change {change.number}", code=ChangeError.INVALID)
    date_check(due_date, f"A task of change {change.number}: the due date", ChangeError.INVALID)
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked(change)
        _require(by, _active_sponsor_ids(locked), "change", f"plan tasks of {locked.number}")
        if locked.status in (Status.CLOSED, Status.REJECTED, Status.CANCELLED):
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: no task can "
                "be added.",
            )
        if owner is None or not owner.is_active or not is_cmo_user(owner):
            raise RuleViolation(
                ChangeError.INVALID,
                f"A task of change {locked.number} must be owned by an active CMO user.",
            )
        return ChangeTask.objects.create(
            change=locked, description=description, owner=owner, due_date=due_date
        )


def change_task_complete(*, task: ChangeTask, by) -> ChangeTask:
    with transaction.atomic(), audit_context(actor=by):
        locked_change = _locked(task.change)
        _require(
            by,
            _active_sponsor_ids(locked_change),
            "change",
            f"complete tasks of {locked_change.number}",
        )
        locked = ChangeTask.objects.select_for_update().get(pk=task.pk)
        if locked.completed_at is not None:
            raise RuleViolation(
                ChangeError.TASK_STATUS,
                f"Task “{locked.description}” of change {locked_change.number} was already "
                f"completed on {locked.completed_at:%Y-%m-%d}.",
            )
        if locked_change.status in (Status.CLOSED, Status.REJECTED, Status.CANCELLED):
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked_change.number} is "
                f"{locked_change.get_status_display().lower()}: its tasks can no longer change.",
            )
        locked.completed_at, locked.completed_by = timezone.now(), by
        locked.save(update_fields=["completed_at", "completed_by"])
    task.refresh_from_db()
    return task


def change_close(*, change: ChangeRequest, by) -> ChangeRequest:
    """Close an effective change once every implementation task is completed."""
    with transaction.atomic(), audit_context(actor=by, reason=f"change {change.number} closed"):
        locked = _locked(change)
        _require(by, _active_sponsor_ids(locked), "approve", f"close change {locked.number}")
        if locked.status != Status.EFFECTIVE:
            raise RuleViolation(
                ChangeError.STATUS,
                f"Change {locked.number} is {locked.get_status_display().lower()}: only an "
                "effective change can be closed.",
            )
        open_tasks = list(locked.tasks.filter(completed_at__isnull=True).order_by("due_date"))
        if open_tasks:
            listed = ", ".join(f"“{t.description}” (due {t.due_date:%Y-%m-%d})" for t in open_tasks)
            raise RuleViolation(
                ChangeError.TASKS_OPEN,
                f"Change {locked.number} cannot be closed: tasks still open: {listed}.",
            )
        _move(locked, Status.CLOSED)
        locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "closed_at"])
    change.refresh_from_db()
    return change


def _end(
    change: ChangeRequest, *, target: str, by, reason: str, action: str, verb: str, done: str
) -> ChangeRequest:
    reason = (reason or "").strip()
    if not reason:
        raise RuleViolation(
            ChangeError.REASON_REQUIRED,
            f"Change {change.number} cannot be {done} without a reason.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason):
        locked = _locked(change)
        _require(by, _active_sponsor_ids(locked), action, f"{verb} change {locked.number}")
        _move(locked, target)
        locked.status_reason = reason
        locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "status_reason", "closed_at"])
        for obligation in locked.obligations.filter(status=SponsorObligation.Status.PENDING):
            obligation.status = SponsorObligation.Status.WITHDRAWN
            obligation.save(update_fields=["status"])
            _cancel_notice(obligation, by, f"change {done}: {reason}")
        if locked.document_version_id:
            _hold(locked.document_version, by, False)
    change.refresh_from_db()
    return change


def change_reject(*, change: ChangeRequest, by, reason: str) -> ChangeRequest:
    """CMO QA rejects the change (after assessment or a sponsor's rejection)."""
    return _end(
        change,
        target=Status.REJECTED,
        by=by,
        reason=reason,
        action="approve",
        verb="reject",
        done="rejected",
    )


def change_cancel(*, change: ChangeRequest, by, reason: str) -> ChangeRequest:
    """Withdraw a change that is not yet effective."""
    return _end(
        change,
        target=Status.CANCELLED,
        by=by,
        reason=reason,
        action="change",
        verb="cancel",
        done="cancelled",
    )
