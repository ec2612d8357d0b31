"""CAPA: business actions (open, corrections of the CAPA and its actions, actions, effectiveness
check, closure by e-signature) and the scoped, aging-annotated reads of CAPAs.

Only CMO staff working on the CAPA's sponsor write (`change`; closure `approve`); a sponsor's
people read CAPAs through the API and never write them. Changing a value already recorded on a
CAPA or an action needs a reason for the change (`deviations.reasons`)."""

from datetime import date, datetime, timedelta
from enum import StrEnum

from django.db import transaction
from django.db.models import (
    BooleanField,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Extract
from django.utils import timezone

from qms.audit import audit_context
from qms.bounds import FUTURE_TOLERANCE, date_check, text_check, title_check
from qms.errors import RuleViolation
from qms.models import Deadline, Signature
from qms.notifications import deadline_schedule
from qms.numbering import next_number
from qms.signatures import signature_apply, signer_verify
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.models import Role, Sponsor
from sponsors.selectors import agreement_in_force

from .models import Capa, CapaAction, Deviation
from .reasons import edits, require_reason


class CapaError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "capa_invalid"
    SOURCE = "capa_source_invalid"
    STATUS = "capa_status_invalid"
    ACTION_INVALID = "capa_action_invalid"
    ACTION_COMPLETED = "capa_action_already_completed"
    EFFECTIVENESS_MISSING = "capa_effectiveness_not_recorded"
    ACTIONS_OPEN = "capa_actions_open"
    REASON_REQUIRED = "reason_required"


TRANSITIONS = {
    Capa.Status.OPEN: {Capa.Status.IN_PROGRESS},
    Capa.Status.IN_PROGRESS: {Capa.Status.EFFECTIVENESS_CHECK},
    Capa.Status.EFFECTIVENESS_CHECK: {Capa.Status.IN_PROGRESS, Capa.Status.CLOSED},
    Capa.Status.CLOSED: set(),
}

NOTICE_RECIPIENTS = [Role.SPONSOR_APPROVER, Role.SPONSOR_AUDITOR]
CAPA_FIELDS = {
    "title": "title",
    "description": "description",
    "owner": "owner",
    "effectiveness_due": "effectiveness check due date",
    "effectiveness_criteria": "effectiveness criteria",
}
ACTION_FIELDS = {"description": "description", "owner": "owner", "due_date": "due date"}


def _move(capa: Capa, target: str) -> None:
    if target not in TRANSITIONS[capa.status]:
        raise RuleViolation(
            CapaError.STATUS,
            f"{capa} is {capa.get_status_display().lower()}; it cannot become "
            f"{Capa.Status(target).label.lower()}.",
        )
    capa.status = target


def _require(user, sponsor_id: int | None, action: str, what: str) -> None:
    if user.is_superuser:
        return
    ids = sponsor_ids_for(user, action)
    if not (ids if sponsor_id is None else sponsor_id in ids) or not is_cmo_user(user):
        raise RuleViolation(CapaError.NOT_PERMITTED, f"{user.get_username()} may not {what}.")


def _next_number(year: int) -> str:
    return next_number(Capa.objects.all(), f"CAPA-{year}-")


def _locked(capa: Capa) -> Capa:
    return Capa.objects.select_for_update().get(pk=capa.pk)


def _capa_bounds(title, description, criteria, due: date | None, what: str) -> None:
    title_check(title, f"{what}: the title", CapaError.INVALID)
    text_check(description, f"{what}: the description", code=CapaError.INVALID)
    text_check(criteria, f"{what}: the effectiveness criteria", code=CapaError.INVALID)
    date_check(due, f"{what}: the effectiveness check due date", CapaError.INVALID)


def _action_bounds(description, due: date | None, what: str) -> None:
    text_check(description, f"{what}: the description", code=CapaError.ACTION_INVALID)
    date_check(due, f"{what}: the due date", CapaError.ACTION_INVALID)


def _refuse_if_closed(capa: Capa, what: str) -> None:
    if not capa.is_open:
        raise RuleViolation(CapaError.STATUS, f"{capa} is closed: {what}.")


def _schedule_notice(capa: Capa, by) -> Deadline | None:
    """The sponsor notice of a CAPA, when the agreement in force at opening asks for one."""
    agreement = capa.agreement
    if agreement is None or agreement.capa_notice_hours is None:
        return None
    hours = agreement.capa_notice_hours
    due = capa.opened_at + timedelta(hours=hours)
    return deadline_schedule(
        sponsor=capa.sponsor,
        key=f"capa:{capa.pk}:notice",
        kind="capa_notice",
        title=f"CAPA {capa.number}: notify {capa.sponsor.name} within {hours} h",
        body=f"{capa.title}\n\n{capa.description}\n\nSource: {capa.source_display}.\n"
        f"Notice due by {due:%Y-%m-%d %H:%M} UTC under quality agreement v{agreement.version}.",
        due_at=due,
        notify_at=timezone.now(),
        recipient_roles=NOTICE_RECIPIENTS,
        notify_sponsor_contact=True,
        subject=capa,
        is_met_by_notice=True,
        by=by,
    )


# --- services -----------------------------------------------------------------------------


def capa_open(
    *,
    title: str,
    description: str,
    source_kind: str,
    by,
    owner=None,
    deviation: Deviation | None = None,
    source_reference: str = "",
    sponsor: Sponsor | None = None,
    opened_at: datetime | None = None,
    effectiveness_due: date | None = None,
    effectiveness_criteria: str = "",
) -> Capa:
    """Open a CAPA. One raised from a deviation takes the deviation's sponsor; one from an audit
    finding or a supplier issue names it in `source_reference`."""
    if source_kind not in Capa.SourceKind.values:
        raise RuleViolation(CapaError.INVALID, f"Unknown CAPA source {source_kind!r}.")
    if not title.strip() or not description.strip():
        raise RuleViolation(CapaError.INVALID, "A CAPA needs a title and a description.")
    _capa_bounds(title, description, effectiveness_criteria, effectiveness_due, "The CAPA")
    date_check(opened_at, "When the CAPA was opened", CapaError.INVALID)
    opened_at = opened_at or timezone.now()
    if opened_at > timezone.now() + FUTURE_TOLERANCE:
        raise RuleViolation(CapaError.INVALID, "A CAPA cannot be opened in the future.")
    if source_kind == Capa.SourceKind.DEVIATION:
        if deviation is None:
            raise RuleViolation(
                CapaError.SOURCE, "A CAPA from a deviation needs the deviation's number."
            )
        if sponsor is not None and sponsor.pk != deviation.sponsor_id:
            owner_code = deviation.sponsor.code if deviation.sponsor_id else "the site"
            raise RuleViolation(
                CapaError.SOURCE,
                f"A CAPA from {deviation} belongs to {owner_code}, the deviation's sponsor, "
                f"not to {sponsor.code}.",
            )
        sponsor = deviation.sponsor
    elif deviation is not None:
        raise RuleViolation(
            CapaError.SOURCE,
            f"Only a CAPA whose source is a deviation may name {deviation}.",
        )
    elif (
        source_kind in (Capa.SourceKind.AUDIT_FINDING, Capa.SourceKind.SUPPLIER_ISSUE)
        and not source_reference.strip()
    ):
        raise RuleViolation(
            CapaError.SOURCE,
            "A CAPA from "
            + (
                "an audit finding"
                if source_kind == Capa.SourceKind.AUDIT_FINDING
                else "a supplier issue"
            )
            + " needs its reference.",
        )
    sponsor_id = sponsor.pk if sponsor is not None else None
    _require(
        by, sponsor_id, "change", "open CAPAs for " + (sponsor.code if sponsor else "the site")
    )
    owner = owner or by
    _require_owner(owner, sponsor_id, "own the CAPA")
    with transaction.atomic(), audit_context(actor=by):
        capa = Capa.objects.create(
            number=_next_number(opened_at.year),
            sponsor=sponsor,
            title=title,
            description=description,
            source_kind=source_kind,
            deviation=deviation,
            source_reference=source_reference.strip(),
            owner=owner,
            opened_by=by,
            opened_at=opened_at,
            agreement=agreement_in_force(sponsor=sponsor, at=opened_at) if sponsor else None,
            effectiveness_due=effectiveness_due,
            effectiveness_criteria=effectiveness_criteria,
        )
        _schedule_notice(capa, by)
    return capa


def _require_owner(owner, sponsor_id: int | None, what: str) -> None:
    ids = sponsor_ids_for(owner, "change")
    if not owner.is_superuser and (
        not is_cmo_user(owner) or not (ids if sponsor_id is None else sponsor_id in ids)
    ):
        raise RuleViolation(
            CapaError.ACTION_INVALID,
            f"{owner.get_username()} cannot {what}: only CMO staff working on its sponsor can.",
        )


def capa_update(
    *,
    capa: Capa,
    by,
    reason: str = "",
    title: str | None = None,
    description: str | None = None,
    owner=None,
    effectiveness_due: date | None = None,
    effectiveness_criteria: str | None = None,
) -> Capa:
    """Correct what a CAPA records (None: leave as it is). A CAPA has no draft state: it is a GxP
    record, possibly notified to its sponsor, from the moment it is opened. So a value entered
    into an empty field (criteria left out at opening) needs no reason, while changing or
    clearing a recorded value (its title, description and owner always are) is refused without
    one (21 CFR 11.10(e)); the reason is kept in the audit event. A closed CAPA cannot change."""
    _require(by, capa.sponsor_id, "change", f"change {capa}")
    if (title is not None and not title.strip()) or (
        description is not None and not description.strip()
    ):
        raise RuleViolation(CapaError.INVALID, f"{capa} needs a title and a description.")
    _capa_bounds(title, description, effectiveness_criteria, effectiveness_due, str(capa))
    if owner is not None:
        _require_owner(owner, capa.sponsor_id, f"own {capa}")
    with transaction.atomic(), audit_context(actor=by, reason=(reason or "").strip() or None):
        locked = _locked(capa)
        _refuse_if_closed(locked, "it cannot change")
        changes, recorded = edits(
            locked,
            {
                "title": title,
                "description": description,
                "owner": owner,
                "effectiveness_due": effectiveness_due,
                "effectiveness_criteria": effectiveness_criteria,
            },
            CAPA_FIELDS,
        )
        require_reason(str(locked), recorded, reason, CapaError.REASON_REQUIRED)
        if changes:
            for name, value in changes.items():
                setattr(locked, name, value)
            locked.save(update_fields=list(changes))
    capa.refresh_from_db()
    return capa


def capa_action_update(
    *,
    action: CapaAction,
    by,
    reason: str = "",
    description: str | None = None,
    owner=None,
    due_date: date | None = None,
) -> CapaAction:
    """Correct an open action's description, owner or due date (None: leave as it is); each was
    recorded when the action was added, so every change needs a reason (21 CFR 11.10(e)). A
    completed action, or an action of a closed CAPA, cannot change."""
    capa = action.capa
    _require(by, capa.sponsor_id, "change", f"change actions of {capa}")
    if description is not None and not description.strip():
        raise RuleViolation(CapaError.ACTION_INVALID, f"Action {action} needs a description.")
    _action_bounds(description, due_date, f"Action {action}")
    if due_date is not None and due_date < capa.opened_at.date():
        raise RuleViolation(
            CapaError.ACTION_INVALID,
            f"Action {action} cannot be due before {capa} was opened ({capa.opened_at:%Y-%m-%d}).",
        )
    if owner is not None:
        _require_owner(owner, capa.sponsor_id, f"own action {action}")
    with transaction.atomic(), audit_context(actor=by, reason=(reason or "").strip() or None):
        locked_capa = _locked(capa)
        _refuse_if_closed(locked_capa, "its actions cannot change")
        locked = CapaAction.objects.select_for_update().get(pk=action.pk)
        if locked.completed_at is not None:
            raise RuleViolation(
                CapaError.ACTION_COMPLETED,
                f"Action {action} was completed on {locked.completed_at:%Y-%m-%d %H:%M} UTC: "
                "it cannot change.",
            )
        changes, recorded = edits(
            locked,
            {"description": description, "owner": owner, "due_date": due_date},
            ACTION_FIELDS,
        )
        require_reason(f"Action {action}", recorded, reason, CapaError.REASON_REQUIRED)
        if changes:
            for name, value in changes.items():
                setattr(locked, name, value)
            locked.save(update_fields=list(changes))
    action.refresh_from_db()
    return action


def capa_action_add(*, capa: Capa, description: str, owner, due_date: date | None, by):
    """An action needs a description, an owner and a due date; adding the first one starts the
    CAPA's work."""
    _require(by, capa.sponsor_id, "change", f"add actions to {capa}")
    if not description.strip():
        raise RuleViolation(CapaError.ACTION_INVALID, f"An action of {capa} needs a description.")
    if owner is None:
        raise RuleViolation(CapaError.ACTION_INVALID, f"An action of {capa} needs an owner.")
    if due_date is None:
        raise RuleViolation(CapaError.ACTION_INVALID, f"An action of {capa} needs a due date.")
    _action_bounds(description, due_date, f"An action of {capa}")
    if due_date < capa.opened_at.date():
        raise RuleViolation(
            CapaError.ACTION_INVALID,
            f"An action of {capa} cannot be due before the CAPA was opened "
            f"({capa.opened_at:%Y-%m-%d}).",
        )
    _require_owner(owner, capa.sponsor_id, f"own an action of {capa}")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked(capa)
        _refuse_if_closed(locked, "no action can be added")
        if locked.status == Capa.Status.EFFECTIVENESS_CHECK:
            raise RuleViolation(
                CapaError.STATUS,
                f"{locked} is in its effectiveness check: record the result first; an "
                "ineffective result reopens it for new actions.",
            )
        if locked.status == Capa.Status.OPEN:
            _move(locked, Capa.Status.IN_PROGRESS)
            locked.save(update_fields=["status"])
        last = locked.actions.order_by("-sequence").values_list("sequence", flat=True).first()
        action = CapaAction.objects.create(
            capa=locked,
            sequence=(last or 0) + 1,
            description=description.strip(),
            owner=owner,
            due_date=due_date,
            created_by=by,
        )
    capa.refresh_from_db()
    return action


def capa_action_complete(*, action: CapaAction, note: str, by) -> CapaAction:
    _require(by, action.capa.sponsor_id, "change", f"complete actions of {action.capa}")
    text_check(note, f"Completion of action {action}: the note", code=CapaError.ACTION_INVALID)
    if not note.strip():
        raise RuleViolation(
            CapaError.ACTION_INVALID, f"Say what was done to complete action {action}."
        )
    with transaction.atomic(), audit_context(actor=by):
        capa = _locked(action.capa)
        locked = CapaAction.objects.select_for_update().get(pk=action.pk)
        if locked.completed_at is not None:
            raise RuleViolation(
                CapaError.ACTION_COMPLETED,
                f"Action {locked} was already completed on {locked.completed_at:%Y-%m-%d %H:%M} "
                f"UTC by {locked.completed_by.get_username()}.",
            )
        _refuse_if_closed(capa, "its actions cannot change")
        locked.completed_at = timezone.now()
        locked.completed_by = by
        locked.completion_note = note.strip()
        locked.save(update_fields=["completed_at", "completed_by", "completion_note"])
    action.refresh_from_db()
    return action


def capa_effectiveness_start(
    *, capa: Capa, due_date: date | None, criteria: str, by, reason: str = ""
) -> Capa:
    """Move a CAPA whose actions are under way to its effectiveness check, with the check's due
    date and acceptance criteria. A due date or criteria already recorded (at opening, or for an
    earlier check) changes only with a reason (21 CFR 11.10(e)). Starting a new check after an
    ineffective result clears that result, which the audit trail keeps with the reason given
    when it was recorded."""
    _require(by, capa.sponsor_id, "change", f"start the effectiveness check of {capa}")
    if due_date is None or not criteria.strip():
        raise RuleViolation(
            CapaError.INVALID,
            f"The effectiveness check of {capa} needs a due date and its criteria.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=(reason or "").strip() or None):
        locked = _locked(capa)
        if not locked.actions.exists():
            raise RuleViolation(
                CapaError.STATUS,
                f"{locked} has no actions: add its actions before checking their effectiveness.",
            )
        _move(locked, Capa.Status.EFFECTIVENESS_CHECK)
        _, recorded = edits(
            locked,
            {"effectiveness_due": due_date, "effectiveness_criteria": criteria},
            CAPA_FIELDS,
        )
        require_reason(str(locked), recorded, reason, CapaError.REASON_REQUIRED)
        locked.effectiveness_due = due_date
        locked.effectiveness_criteria = criteria.strip()
        locked.effectiveness_result = ""
        locked.is_effective = None
        locked.effectiveness_checked_by = None
        locked.effectiveness_checked_at = None
        locked.save()
    capa.refresh_from_db()
    return capa


def capa_effectiveness_record(
    *, capa: Capa, result: str, is_effective: bool, by, reason: str = ""
) -> Capa:
    """Record the effectiveness check. An ineffective result needs a reason and sends the CAPA
    back to work (in progress) for further actions."""
    _require(by, capa.sponsor_id, "change", f"record the effectiveness check of {capa}")
    if not result.strip():
        raise RuleViolation(
            CapaError.INVALID, f"The effectiveness check of {capa} needs its result."
        )
    if not is_effective and not reason.strip():
        raise RuleViolation(
            CapaError.REASON_REQUIRED,
            f"Say why {capa} is not effective and what happens next: it stays open.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip() or None):
        locked = _locked(capa)
        if locked.status != Capa.Status.EFFECTIVENESS_CHECK:
            raise RuleViolation(
                CapaError.STATUS,
                f"{locked} is {locked.get_status_display().lower()}: its effectiveness check "
                "has not been started.",
            )
        locked.effectiveness_result = result.strip()
        locked.is_effective = is_effective
        locked.effectiveness_checked_by = by
        locked.effectiveness_checked_at = timezone.now()
        if not is_effective:
            _move(locked, Capa.Status.IN_PROGRESS)
        locked.save()
    capa.refresh_from_db()
    return capa


def capa_close(*, capa: Capa, user, password: str, request=None) -> Signature:
    """CMO QA closes by e-signature ("closed"), only once the effectiveness check found the CAPA
    effective and every action is complete."""
    _require(user, capa.sponsor_id, "approve", f"close {capa}")
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = _locked(capa)
        _refuse_if_closed(locked, "it cannot be closed again")
        if locked.is_effective is not True:
            raise RuleViolation(
                CapaError.EFFECTIVENESS_MISSING,
                f"{locked} cannot be closed: its effectiveness check is not recorded.",
            )
        still_open = [
            f"{a.label} {a.description} (due {a.due_date:%Y-%m-%d}, {a.owner.get_username()})"
            for a in locked.actions.filter(completed_at__isnull=True)
            .select_related("owner")
            .order_by("sequence")
        ]
        if still_open:
            raise RuleViolation(
                CapaError.ACTIONS_OPEN,
                f"{locked} cannot be closed while actions are open: {'; '.join(still_open)}.",
            )
        _move(locked, Capa.Status.CLOSED)
        locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "closed_at"])
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.CLOSED)
    capa.refresh_from_db()
    return signature


# --- selectors ----------------------------------------------------------------------------


def capa_list(*, user, action: str = "view", now: datetime | None = None):
    """CAPAs in the user's scope with their aging: `days_open` (to closure, or to now),
    `open_actions`, `overdue_actions` (due date passed, not completed) and `is_overdue` (an
    overdue action, or an effectiveness check past its due date), in one query."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    actions = CapaAction.objects.filter(capa=OuterRef("pk"), completed_at__isnull=True)

    def counted(queryset):
        return Coalesce(
            Subquery(
                queryset.order_by().values("capa").annotate(n=Count("pk")).values("n"),
                output_field=IntegerField(),
            ),
            0,
        )

    age = ExpressionWrapper(
        Coalesce(F("closed_at"), Value(now, output_field=DateTimeField())) - F("opened_at"),
        output_field=DurationField(),
    )
    return (
        Capa.objects.for_user(user, action)
        .select_related("sponsor", "deviation", "owner")
        .annotate(
            days_open=Extract(age, "day"),
            open_actions=counted(actions),
            overdue_actions=counted(actions.filter(due_date__lt=today)),
        )
        .annotate(
            is_overdue=ExpressionWrapper(
                Q(overdue_actions__gt=0)
                | Q(
                    status=Capa.Status.EFFECTIVENESS_CHECK,
                    is_effective__isnull=True,
                    effectiveness_due__lt=today,
                ),
                output_field=BooleanField(),
            )
        )
    )
