"""Business actions on deviations: recording (with cross-sponsor impact and the deadlines each
sponsor's agreement sets), investigation, severity changes, sponsor acknowledgement, closure by
e-signature and the sponsor's approval where the agreement reserves it.

Who writes: CMO staff record, investigate and change severity (`change`), CMO QA approvers close
(`approve`); on the sponsor's side only its approver acknowledges and decides
(`sponsor_approve`). A sponsor auditor's access is read-only; anything undecidable is refused."""

from datetime import datetime, timedelta
from enum import StrEnum

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from batches.models import Consumption, Equipment, EquipmentUse, LabResult, Lot
from qms.audit import audit_context
from qms.bounds import FUTURE_TOLERANCE, date_check, text_check, title_check
from qms.errors import RuleViolation
from qms.models import Deadline, Signature
from qms.notifications import deadline_cancel, deadline_mark_met, deadline_schedule
from qms.numbering import next_number
from qms.signatures import signature_apply, signer_verify
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.models import QualityAgreement, Role, Severity, Sponsor
from sponsors.selectors import agreement_in_force

from .calendar import add_business_days
from .models import Deviation
from .reasons import edits, require_reason
from .selectors import deadlines_of


class DeviationError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "invalid"
    MIXED_SPONSORS = "deviation_mixed_sponsors"
    STATUS = "deviation_status_invalid"
    REASON_REQUIRED = "reason_required"
    INCOMPLETE = "deviation_incomplete"
    IMPACTS_OPEN = "deviation_impacts_open"


TRANSITIONS = {
    Deviation.Status.OPEN: {Deviation.Status.UNDER_INVESTIGATION},
    Deviation.Status.UNDER_INVESTIGATION: {
        Deviation.Status.PENDING_SPONSOR_APPROVAL,
        Deviation.Status.CLOSED,
    },
    Deviation.Status.PENDING_SPONSOR_APPROVAL: {
        Deviation.Status.CLOSED,
        Deviation.Status.UNDER_INVESTIGATION,
    },
    Deviation.Status.CLOSED: set(),
}

NOTICE_RECIPIENTS = [Role.SPONSOR_APPROVER, Role.SPONSOR_AUDITOR]
ESCALATION_RECIPIENTS = [Role.CMO_QA_APPROVER]
CLOSURE_APPROVAL = "deviation_closure_approval"
# The agreement sets no time for the sponsor's decision on a reserved closure: the request is
# due in this many business days, so that a closure left waiting shows as overdue.
CLOSURE_DECISION_BUSINESS_DAYS = 10
INVESTIGATION_FIELDS = {
    "impact_assessment": "impact assessment",
    "root_cause": "root cause",
    "immediate_action": "immediate action",
    "disposition": "disposition",
}


def _move(deviation: Deviation, target: str) -> None:
    if target not in TRANSITIONS[deviation.status]:
        raise RuleViolation(
            DeviationError.STATUS,
            f"{deviation} is {deviation.get_status_display().lower()}; it cannot become "
            f"{Deviation.Status(target).label.lower()}.",
        )
    deviation.status = target


def _require(user, sponsor_id: int | None, action: str, what: str) -> None:
    """CMO writes (`change`, `approve`): a sponsor's people never make them, whatever they hold."""
    if user.is_superuser:
        return
    ids = sponsor_ids_for(user, action)
    if not (ids if sponsor_id is None else sponsor_id in ids) or not is_cmo_user(user):
        raise RuleViolation(DeviationError.NOT_PERMITTED, f"{user.get_username()} may not {what}.")


def _next_number(year: int) -> str:
    """DEV-YYYY-NNNN; impact records carry their site deviation's number with a suffix."""
    return next_number(Deviation.objects.filter(source__isnull=True), f"DEV-{year}-")


# --- who is affected ----------------------------------------------------------------------


def _sponsors_of_site_lot(lot: Lot) -> dict[int, dict]:
    """The sponsors whose batches consumed a site lot, with their batches and output lots."""
    affected: dict[int, dict] = {}
    for use in Consumption.objects.filter(lot=lot).select_related("batch"):
        slot = affected.setdefault(use.batch.sponsor_id, {"batches": set(), "lots": set()})
        slot["batches"].add(use.batch_id)
        slot["lots"].update(use.batch.output_lots.values_list("pk", flat=True))
    return affected


def _sponsors_of_equipment(equipment: Equipment, since: datetime, until: datetime) -> dict:
    affected: dict[int, dict] = {}
    uses = EquipmentUse.objects.filter(equipment=equipment, started_at__lte=until).exclude(
        ended_at__lt=since
    )
    for use in uses.select_related("batch"):
        slot = affected.setdefault(use.sponsor_id, {"batches": set(), "lots": set()})
        slot["batches"].add(use.batch_id)
        slot["lots"].update(use.batch.output_lots.values_list("pk", flat=True))
    return affected


def _merge(into: dict, more: dict) -> None:
    for sponsor_id, found in more.items():
        slot = into.setdefault(sponsor_id, {"batches": set(), "lots": set()})
        slot["batches"] |= found["batches"]
        slot["lots"] |= found["lots"]


# --- deadlines ----------------------------------------------------------------------------


def _notice_hours(agreement: QualityAgreement | None, category: str, severity: str) -> int | None:
    if agreement is None:
        return None
    hours = [agreement.notice_hours(severity)]
    if category == Deviation.Category.OOS:
        hours.append(agreement.oos_notice_hours)
    known = [h for h in hours if h is not None]
    return min(known) if known else None


def _schedule_deadlines(deviation: Deviation, by) -> list[Deadline]:
    """The sponsor notice (sent at once, due by the agreement's hours for the severity, met when
    sent; if still unsent when due it escalates to CMO QA approvers) and the investigation
    summary due date in business days (met when CMO QA signs the investigation closed), from the
    agreement version in force at discovery."""
    agreement = deviation.agreement
    made = []
    hours = _notice_hours(agreement, deviation.category, deviation.severity)
    url = f"/portal/deviations/{deviation.number}/"
    if hours is not None:
        due = deviation.discovered_at + timedelta(hours=hours)
        earlier = deadlines_of(deviation).filter(kind="deviation_notice").count()
        revision = f":{earlier}" if earlier else ""
        notice = deadline_schedule(
            sponsor=deviation.sponsor,
            key=f"deviation:{deviation.pk}:notice:{deviation.severity}{revision}",
            kind="deviation_notice",
            title=f"{deviation.get_severity_display()} {deviation.get_category_display().lower()} "
            f"{deviation.number}: notify {deviation.sponsor.name} within {hours} h",
            body=f"{deviation.title}\n\n{deviation.description}\n\nNotice due by "
            f"{due:%Y-%m-%d %H:%M} UTC under quality agreement v{agreement.version}.",
            due_at=due,
            notify_at=timezone.now(),
            recipient_roles=NOTICE_RECIPIENTS,
            notify_sponsor_contact=True,
            subject=deviation,
            url=url,
            is_met_by_notice=True,
            by=by,
        )
        made.append(notice)
        made.append(
            deadline_schedule(
                sponsor=deviation.sponsor,
                key=f"deviation:{deviation.pk}:notice-escalation:{deviation.severity}{revision}",
                kind="deviation_notice_escalation",
                title=f"Sponsor notice of {deviation.number} is overdue",
                body=f"The notice to {deviation.sponsor.name} was due {due:%Y-%m-%d %H:%M} UTC.",
                due_at=due,
                notify_at=due,
                recipient_roles=ESCALATION_RECIPIENTS,
                subject=deviation,
                url=f"/deviations/{deviation.number}/",
                escalates=notice,
                is_met_by_notice=True,
                by=by,
            )
        )
    if agreement is not None:
        due = add_business_days(
            deviation.discovered_at, agreement.investigation_summary_business_days
        )
        made.append(
            deadline_schedule(
                sponsor=deviation.sponsor,
                key=f"deviation:{deviation.pk}:investigation-summary",
                kind="investigation_summary",
                title=f"Investigation summary of {deviation.number} due to "
                f"{deviation.sponsor.name}",
                due_at=due,
                notify_at=due - timedelta(days=1),
                recipient_roles=ESCALATION_RECIPIENTS,
                subject=deviation,
                url=f"/deviations/{deviation.number}/",
                by=by,
            )
        )
    return made


# --- recording ----------------------------------------------------------------------------


def deviation_record(
    *,
    title: str,
    description: str,
    category: str,
    severity: str,
    occurred_at: datetime,
    discovered_at: datetime,
    by,
    lots=(),
    batches=(),
    equipment=(),
    lab_result: LabResult | None = None,
    immediate_action: str = "",
) -> Deviation:
    """Record a deviation. Linked records of one sponsor make a sponsor deviation; shared records
    (a site lot, equipment) make a site deviation with one impact record per affected sponsor.
    Linking two sponsors' own records is refused: record two deviations."""
    if category not in Deviation.Category.values or severity not in Severity.values:
        raise RuleViolation(DeviationError.INVALID, f"Unknown category {category!r} or severity.")
    if not title.strip() or not description.strip():
        raise RuleViolation(DeviationError.INVALID, "A deviation needs a title and a description.")
    title_check(title, "The deviation's title", DeviationError.INVALID)
    text_check(description, "The deviation's description", code=DeviationError.INVALID)
    text_check(immediate_action, "The immediate action", code=DeviationError.INVALID)
    date_check(occurred_at, "When the deviation occurred", DeviationError.INVALID)
    date_check(discovered_at, "When the deviation was discovered", DeviationError.INVALID)
    if occurred_at > discovered_at:
        raise RuleViolation(
            DeviationError.INVALID, "A deviation cannot be discovered before it occurred."
        )
    if discovered_at > timezone.now() + FUTURE_TOLERANCE:
        raise RuleViolation(
            DeviationError.INVALID, "A deviation cannot be discovered in the future."
        )
    lots, batches, equipment = list(lots), list(batches), list(equipment)
    if not (lots or batches or equipment):
        raise RuleViolation(
            DeviationError.INVALID, "Link the deviation to at least one lot, batch or equipment."
        )
    owners = {lot.sponsor_id for lot in lots if lot.sponsor_id} | {b.sponsor_id for b in batches}
    if len(owners) > 1:
        codes = ", ".join(
            sorted(Sponsor.objects.filter(pk__in=owners).values_list("code", flat=True))
        )
        raise RuleViolation(
            DeviationError.MIXED_SPONSORS,
            f"The linked lots and batches belong to several sponsors ({codes}): record one "
            "deviation per sponsor.",
        )
    site_lots = [lot for lot in lots if lot.sponsor_id is None]
    is_site = not owners
    for sponsor_id in owners:
        _require(by, sponsor_id, "change", "record deviations for this sponsor")
    if is_site:
        _require(by, None, "change", "record site deviations")
    with transaction.atomic(), audit_context(actor=by):
        number = _next_number(discovered_at.year)
        common = {
            "title": title,
            "description": description,
            "category": category,
            "severity": severity,
            "occurred_at": occurred_at,
            "discovered_at": discovered_at,
            "lab_result": lab_result,
            "immediate_action": immediate_action,
            "recorded_by": by,
        }
        if not is_site:
            [sponsor_id] = owners
            sponsor = Sponsor.objects.get(pk=sponsor_id)
            deviation = Deviation.objects.create(
                number=number,
                sponsor=sponsor,
                agreement=agreement_in_force(sponsor=sponsor, at=discovered_at),
                **common,
            )
            deviation.lots.set(lots)
            deviation.batches.set(batches)
            deviation.equipment.set(equipment)
            _schedule_deadlines(deviation, by)
            return deviation
        site = Deviation.objects.create(number=number, sponsor=None, **common)
        site.lots.set(lots)
        site.equipment.set(equipment)
        affected: dict[int, dict] = {}
        for lot in site_lots:
            _merge(affected, _sponsors_of_site_lot(lot))
        for item in equipment:
            _merge(affected, _sponsors_of_equipment(item, occurred_at, discovered_at))
        for sponsor in Sponsor.objects.filter(pk__in=affected).order_by("code"):
            impact = Deviation.objects.create(
                number=f"{number}-{sponsor.code.upper()}",
                sponsor=sponsor,
                source=site,
                agreement=agreement_in_force(sponsor=sponsor, at=discovered_at),
                **{**common, "lab_result": None},
            )
            impact.batches.set(affected[sponsor.pk]["batches"])
            impact.lots.set(affected[sponsor.pk]["lots"])
            _schedule_deadlines(impact, by)
        return site


def deviation_open_for_oos(*, lab_result: LabResult, by) -> Deviation:
    """An out-of-specification result opens an OOS investigation on its lot at once."""
    lot = lab_result.lot
    return deviation_record(
        title=f"OOS: {lab_result.test} on lot {lot}",
        description=(
            f"{lab_result.test} ({lab_result.method}) gave {lab_result.value.normalize():f} "
            f"{lab_result.unit}, specification {lab_result.spec_display}."
        ),
        category=Deviation.Category.OOS,
        severity=Severity.MAJOR,
        occurred_at=lab_result.tested_at,
        discovered_at=lab_result.tested_at,
        by=by,
        lots=[lot],
        lab_result=lab_result,
    )


def _records_of(deviation: Deviation) -> list[Deviation]:
    """A deviation and, for a site deviation, its impact records."""
    return [deviation, *deviation.impacts.all()] if deviation.is_site_record else [deviation]


def deviation_change_severity(*, deviation: Deviation, severity: str, reason: str, by) -> Deviation:
    """Escalating or lowering severity needs a reason and recomputes the sponsor deadlines."""
    if severity not in Severity.values:
        raise RuleViolation(DeviationError.INVALID, f"Unknown severity {severity!r}.")
    if not reason.strip():
        raise RuleViolation(
            DeviationError.REASON_REQUIRED,
            f"Changing the severity of {deviation} needs a reason.",
        )
    _require(by, deviation.sponsor_id, "change", f"change {deviation}")
    with transaction.atomic(), audit_context(actor=by, reason=reason):
        locked = Deviation.objects.select_for_update().get(pk=deviation.pk)
        if not locked.is_open:
            raise RuleViolation(DeviationError.STATUS, f"{locked} is closed.")
        if locked.severity == severity:
            raise RuleViolation(DeviationError.INVALID, f"{locked} is already {severity}.")
        for record in _records_of(locked):
            for deadline in deadlines_of(record).filter(
                status=Deadline.Status.PENDING, kind__startswith="deviation_notice"
            ):
                deadline_cancel(deadline=deadline, by=by, reason=f"severity changed: {reason}")
            record.severity = severity
            record.save(update_fields=["severity"])
            if record.sponsor_id is not None:
                _schedule_deadlines(record, by)
    deviation.refresh_from_db()
    return deviation


def deviation_investigate(
    *,
    deviation: Deviation,
    by,
    impact_assessment: str | None = None,
    root_cause: str | None = None,
    immediate_action: str | None = None,
    disposition: str | None = None,
    reason: str = "",
) -> Deviation:
    """Record investigation findings; the first edit moves an open deviation to investigation.

    Reason for change (21 CFR 11.10(e), see `deviations.reasons`): a deviation has no draft
    state, so a finding entered into an empty field is its first entry and needs no reason,
    while changing or clearing a finding already recorded (the immediate action recorded with
    the deviation included) is refused without one; the reason is kept in the audit event.
    Severity, the other field that can change, always needs a reason
    (`deviation_change_severity`)."""
    _require(by, deviation.sponsor_id, "change", f"investigate {deviation}")
    for value, what in (
        (impact_assessment, "impact assessment"),
        (root_cause, "root cause"),
        (immediate_action, "immediate action"),
    ):
        text_check(value, f"{deviation}: the {what}", code=DeviationError.INVALID)
    if disposition is not None and disposition not in Deviation.Disposition.values:
        raise RuleViolation(DeviationError.INVALID, f"Unknown disposition {disposition!r}.")
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip() or None):
        locked = Deviation.objects.select_for_update().get(pk=deviation.pk)
        if locked.status == Deviation.Status.OPEN:
            _move(locked, Deviation.Status.UNDER_INVESTIGATION)
        elif locked.status != Deviation.Status.UNDER_INVESTIGATION:
            raise RuleViolation(
                DeviationError.STATUS,
                f"{locked} is {locked.get_status_display().lower()}: its investigation cannot "
                "change now.",
            )
        changes, recorded = edits(
            locked,
            {
                "impact_assessment": impact_assessment,
                "root_cause": root_cause,
                "immediate_action": immediate_action,
                "disposition": disposition,
            },
            INVESTIGATION_FIELDS,
        )
        require_reason(str(locked), recorded, reason, DeviationError.REASON_REQUIRED)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
    deviation.refresh_from_db()
    return deviation


def deviation_acknowledge(*, deviation: Deviation, user) -> Deviation:
    """The sponsor's approver acknowledges the notice (portal, API); the time to acknowledge is
    kept. Acknowledging is the sponsor QA approver's act (`sponsor_approve`): a sponsor auditor
    reads only."""
    if (
        deviation.sponsor_id is None
        or is_cmo_user(user)
        or deviation.sponsor_id not in sponsor_ids_for(user, "view")
    ):
        raise RuleViolation(
            DeviationError.NOT_PERMITTED,
            f"{user.get_username()} may not acknowledge {deviation}: only the sponsor's people "
            "acknowledge its notice.",
        )
    if deviation.sponsor_id not in sponsor_ids_for(user, "sponsor_approve"):
        raise RuleViolation(
            DeviationError.NOT_PERMITTED,
            f"{user.get_username()} may not acknowledge {deviation}: acknowledging the notice is "
            "the sponsor approver's act; a sponsor auditor's access is read-only.",
        )
    with transaction.atomic(), audit_context(actor=user):
        locked = Deviation.objects.select_for_update().get(pk=deviation.pk)
        if locked.sponsor_acknowledged_at is not None:
            raise RuleViolation(
                DeviationError.INVALID,
                f"{locked} was already acknowledged on "
                f"{locked.sponsor_acknowledged_at:%Y-%m-%d %H:%M} UTC.",
            )
        locked.sponsor_acknowledged_at = timezone.now()
        locked.sponsor_acknowledged_by = user
        locked.save(update_fields=["sponsor_acknowledged_at", "sponsor_acknowledged_by"])
    deviation.refresh_from_db()
    return deviation


def deviation_close(*, deviation: Deviation, user, password: str, request=None) -> Signature:
    """CMO QA closes by e-signature ("closed") once the investigation is complete, which meets
    the investigation summary deadline. Where the agreement in force at discovery reserves
    closure of this severity to the sponsor, the deviation waits for the sponsor approver's
    signature instead, and the sponsor's approvers are asked for it once (in-app and e-mail, by
    the deadline sweep)."""
    _require(user, deviation.sponsor_id, "approve", f"close {deviation}")
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = Deviation.objects.select_for_update().get(pk=deviation.pk)
        if locked.status != Deviation.Status.UNDER_INVESTIGATION:
            raise RuleViolation(
                DeviationError.STATUS,
                f"{locked} is {locked.get_status_display().lower()}: only a deviation under "
                "investigation can be closed.",
            )
        missing = [
            label
            for label, value in (
                ("impact assessment", locked.impact_assessment),
                ("root cause", locked.root_cause),
            )
            if not value.strip()
        ]
        if missing:
            raise RuleViolation(
                DeviationError.INCOMPLETE,
                f"{locked} cannot be closed: {' and '.join(missing)} missing.",
            )
        open_impacts = list(
            locked.impacts.exclude(status=Deviation.Status.CLOSED)
            .order_by("number")
            .values_list("number", flat=True)
        )
        if open_impacts:
            raise RuleViolation(
                DeviationError.IMPACTS_OPEN,
                f"{locked} cannot be closed while its sponsor impact records are open: "
                f"{', '.join(open_impacts)}.",
            )
        needs_sponsor = (
            locked.agreement is not None
            and locked.agreement.sponsor_must_approve_closure(locked.severity)
        )
        if needs_sponsor:
            _move(locked, Deviation.Status.PENDING_SPONSOR_APPROVAL)
        else:
            _move(locked, Deviation.Status.CLOSED)
            locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "closed_at"])
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.CLOSED)
        for summary in deadlines_of(locked).unmet().filter(kind="investigation_summary"):
            deadline_mark_met(
                deadline=summary, by=user, reason=f"investigation of {locked} signed closed"
            )
        if needs_sponsor:
            _ask_sponsor_to_decide(locked, user)
    deviation.refresh_from_db()
    return signature


def _ask_sponsor_to_decide(deviation: Deviation, by) -> Deadline:
    """One request per closure awaiting the sponsor (a closure rejected and signed again asks
    again), notified at once to the sponsor's approvers and met when they decide."""
    earlier = deadlines_of(deviation).filter(kind=CLOSURE_APPROVAL).count()
    now = timezone.now()
    return deadline_schedule(
        sponsor=deviation.sponsor,
        key=f"deviation:{deviation.pk}:closure-approval:{earlier + 1}",
        kind=CLOSURE_APPROVAL,
        title=f"Closure of {deviation.number} awaits your approval",
        body=f"{deviation.get_severity_display()} {deviation.get_category_display().lower()} "
        f"{deviation.number}: {deviation.title}\n\nCMO QA signed the investigation closed; "
        f"quality agreement v{deviation.agreement.version} reserves the closure of a "
        f"{deviation.get_severity_display().lower()} deviation to your approval.",
        due_at=add_business_days(now, CLOSURE_DECISION_BUSINESS_DAYS),
        notify_at=now,
        recipient_roles=[Role.SPONSOR_APPROVER],
        subject=deviation,
        url=reverse("portal_deviations:detail", args=[deviation.number]),
        by=by,
    )


def deviation_sponsor_decide(
    *, deviation: Deviation, user, password: str, approve: bool, comment: str = "", request=None
) -> Signature:
    """The sponsor approver approves (closes) or rejects (back to investigation) a closure the
    agreement reserves to the sponsor; either decision meets the request for it."""
    if deviation.sponsor_id is None or deviation.sponsor_id not in sponsor_ids_for(
        user, "sponsor_approve"
    ):
        raise RuleViolation(
            DeviationError.NOT_PERMITTED,
            f"{user.get_username()} may not decide on {deviation} for the sponsor.",
        )
    if not approve and not comment.strip():
        raise RuleViolation(
            DeviationError.REASON_REQUIRED, f"Say why the closure of {deviation} is rejected."
        )
    signer_verify(user=user, password=password, request=request)
    reason = comment.strip() or None
    with transaction.atomic(), audit_context(actor=user, reason=reason):
        locked = Deviation.objects.select_for_update().get(pk=deviation.pk)
        if locked.status != Deviation.Status.PENDING_SPONSOR_APPROVAL:
            raise RuleViolation(
                DeviationError.STATUS,
                f"{locked} is {locked.get_status_display().lower()}: it is not awaiting the "
                "sponsor's approval.",
            )
        if approve:
            _move(locked, Deviation.Status.CLOSED)
            locked.closed_at = timezone.now()
        else:
            _move(locked, Deviation.Status.UNDER_INVESTIGATION)
        locked.save(update_fields=["status", "closed_at"])
        meaning = Signature.Meaning.APPROVED if approve else Signature.Meaning.REJECTED
        signature = signature_apply(record=locked, user=user, meaning=meaning)
        verb = "approved" if approve else "rejected"
        for asked in deadlines_of(locked).unmet().filter(kind=CLOSURE_APPROVAL):
            deadline_mark_met(
                deadline=asked, by=user, reason=f"sponsor {verb} the closure of {locked}"
            )
    deviation.refresh_from_db()
    return signature
