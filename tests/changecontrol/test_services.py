"""Change requests across three sponsors: drafting, the ICH Q9 risk matrix, obligations derived
from each sponsor's agreement in force at submission, notices through the real sweep, the
sponsor's e-signed decision, effectiveness refused while any obligation is unmet (each refusal's
text), re-scoping after a rejection (audited), tasks, closure, rejection and cancellation."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from changecontrol import services as cs
from changecontrol.models import ChangeProduct, ChangeRequest, SponsorObligation
from qms.audit import history_for
from qms.errors import RuleViolation
from qms.models import Deadline, Notification
from qms.notifications import deadlines_send_due
from qms.signatures import signatures_for
from sponsors.models import ChangeRule, Role
from sponsors.services import (
    access_grant_create,
    quality_agreement_create_draft,
    quality_agreement_make_effective,
)
from tests.factories import PASSWORD, ProductFactory, SponsorFactory, make_user

pytestmark = pytest.mark.django_db

Status = ChangeRequest.Status
OStatus = SponsorObligation.Status


def _refused(call, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        call(**kwargs)
    return caught.value


def _noon(days_from_today: int) -> datetime:
    day = timezone.localdate() + timedelta(days=days_from_today)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _today(days: int = 0) -> str:
    return f"{timezone.localdate() + timedelta(days=days):%Y-%m-%d}"


# --- drafting -------------------------------------------------------------------------------


def test_draft_is_numbered_per_year_and_affects_products_of_three_sponsors(three):
    # when
    first = three.draft()
    second = three.draft(codes=("cygnus",))
    # then
    year = timezone.now().year
    assert (first.number, second.number) == (f"CC-{year}-0001", f"CC-{year}-0002")
    assert first.status == Status.DRAFT
    assert sorted(first.affected_products.values_list("product__code", flat=True)) == [
        "ACM-IBU200",
        "BOR-CATH7",
        "CYG-VITD3",
    ]
    assert not first.obligations.exists()


def test_draft_must_say_what_it_changes(three):
    error = _refused(three.draft, subject_text="  ")
    assert error.code == "change_subject_invalid"
    assert error.detail == (
        "A change request must say what it changes: a document version, an MBR version, "
        "equipment, a supplier, or a subject text."
    )


def test_draft_carries_at_most_one_record(three, plant):
    error = _refused(
        three.draft,
        equipment=plant.tank,
        supplier=plant.supplier,
    )
    assert error.detail == (
        "A change request can carry one record (a document version, an MBR version, equipment "
        "or a supplier); describe anything else in the subject text."
    )


def test_draft_needs_a_title_and_a_known_category(three):
    assert _refused(three.draft, title=" ").detail == "A change request needs a title."
    assert _refused(three.draft, category="paint").detail == "Unknown change category 'paint'."


def test_draft_edit_only_while_draft(three):
    # given
    change = three.draft()
    # when
    cs.change_update(
        change=change,
        by=three.staff,
        title="Line clearance rev 6",
        products=[three.products["acme"]],
    )
    # then
    assert change.title == "Line clearance rev 6"
    assert list(change.affected_products.values_list("product__code", flat=True)) == ["ACM-IBU200"]
    cs.change_assess(
        change=change, by=three.staff, severity=1, probability=1, detectability=1, rationale="x"
    )
    error = _refused(cs.change_update, change=change, by=three.staff, title="Again")
    assert error.detail == (f"Change {change.number} is assessment: only a draft can be edited.")


def test_staff_without_every_affected_sponsor_may_not_draft_it(three):
    acme_only = make_user(sponsor=three.sponsors["acme"], role=Role.CMO_STAFF, username="ana")
    error = _refused(three.draft, by=acme_only)
    assert error.code == "not_permitted"
    assert error.detail == (
        "ana may not draft this change request: it affects products of a sponsor outside your "
        "permissions."
    )


def test_sponsor_users_may_not_draft(three):
    error = _refused(three.draft, codes=("acme",), by=three.approvers["acme"])
    assert error.detail == "acme-approver may not draft this change request."


# --- ICH Q9 risk --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "level"),
    [
        ((1, 1, 1), "low"),
        ((4, 4, 1), "low"),  # RPN 16
        ((1, 4, 4), "low"),  # RPN 16
        ((2, 2, 5), "medium"),  # RPN 20: the medium band starts here
        ((3, 4, 4), "medium"),  # RPN 48
        ((3, 4, 5), "high"),  # RPN 60: the high band starts here
        ((5, 5, 5), "high"),
        ((5, 1, 1), "medium"),  # severity 5 is never low
        ((5, 3, 1), "medium"),
        ((4, 3, 1), "low"),
    ],
)
def test_risk_level_from_severity_probability_detectability(scores, level):
    assert cs.risk_level(*scores) == level


def test_assessment_moves_a_draft_to_assessment_and_computes_the_level(three):
    change = three.draft()
    cs.change_assess(
        change=change,
        by=three.staff,
        severity=5,
        probability=1,
        detectability=2,
        rationale="Sterility assurance could be affected.",
    )
    assert change.status == Status.ASSESSMENT
    assert (change.risk_priority, change.risk_level) == (10, "medium")
    assert change.risk_rationale == "Sterility assurance could be affected."


def test_assessment_needs_a_rationale_and_scores_from_one_to_five(three):
    change = three.draft()
    common = {"change": change, "by": three.staff, "probability": 2, "detectability": 2}
    error = _refused(cs.change_assess, severity=3, rationale=" ", **common)
    assert error.detail == f"Change {change.number}: the risk assessment needs a rationale."
    error = _refused(cs.change_assess, severity=6, rationale="x", **common)
    assert error.detail == f"Change {change.number}: the severity score must be 1 to 5, not 6."


def test_assessment_is_fixed_once_submitted(three):
    change = three.submitted()
    error = _refused(
        cs.change_assess,
        change=change,
        by=three.staff,
        severity=1,
        probability=1,
        detectability=1,
        rationale="x",
    )
    assert error.detail == (
        f"Change {change.number} is awaiting sponsors: its risk assessment can no longer change."
    )


# --- submission ---------------------------------------------------------------------------


def test_submission_needs_a_risk_assessment(three):
    change = three.draft()
    error = _refused(cs.change_submit, change=change, by=three.staff)
    assert error.code == "change_status_invalid"
    assert error.detail == (
        f"Change {change.number} is draft: only a change with a recorded risk assessment can be "
        "submitted."
    )


def test_submission_derives_one_obligation_per_sponsor_from_its_agreement(three):
    # when
    change = three.submitted()
    # then
    rows = {
        o.sponsor.code: (
            o.kind,
            o.lead_time_days,
            o.status,
            o.agreement_id,
            o.notice_id is not None,
        )
        for o in change.obligations.select_related("sponsor")
    }
    assert rows == {
        "acme": ("approve", 30, OStatus.PENDING, three.agreements["acme"].pk, True),
        "borealis": ("notify", 30, OStatus.PENDING, three.agreements["borealis"].pk, True),
        "cygnus": ("none", 0, OStatus.NOT_REQUIRED, three.agreements["cygnus"].pk, False),
    }
    assert change.status == Status.AWAITING_SPONSORS
    assert change.submitted_at is not None


def test_a_category_without_a_rule_is_obligation_none(three):
    ChangeRule.objects.filter(agreement=three.agreements["borealis"], category="sop").delete()
    change = three.submitted()
    assert three.obligation(change, "borealis").kind == "none"


def test_a_change_needing_no_approval_is_approved_at_once(three):
    change = three.submitted(codes=("borealis", "cygnus"))
    assert change.status == Status.APPROVED


def test_submission_refused_when_no_agreement_is_in_force_for_a_sponsor(three):
    # given
    newcomer = SponsorFactory(code="draco", name="Draco Biotech")
    access_grant_create(user=three.staff, sponsor=newcomer, role=Role.CMO_STAFF)
    three.products["draco"] = ProductFactory(sponsor=newcomer, code="DRC-MAB10")
    change = three.assessed(codes=("acme", "draco"))
    # when
    error = _refused(cs.change_submit, change=change, by=three.staff)
    # then
    assert error.code == "change_no_agreement_in_force"
    assert error.detail == (
        f"Change {change.number} cannot be submitted: no quality agreement is in force for "
        "Draco Biotech (DRC-MAB10)."
    )
    assert not change.obligations.exists()
    assert ChangeRequest.objects.get(pk=change.pk).status == Status.ASSESSMENT


def test_submission_needs_a_proposed_effective_date(three):
    change = three.assessed(proposed_effective_date=None)
    error = _refused(cs.change_submit, change=change, by=three.staff)
    assert error.detail == (
        f"Change {change.number} cannot be submitted without a proposed effective date."
    )


def test_obligations_follow_the_agreement_in_force_at_submission(three):
    # given: a change submitted under Acme's v1 (SOP change: approve)
    change = three.submitted()
    # when: a later version makes SOP changes a 10-day notice
    later = quality_agreement_create_draft(
        sponsor=three.sponsors["acme"], by=three.qa, rules={"sop": ("notify", 10)}
    )
    quality_agreement_make_effective(agreement=later, user=three.qa, password=PASSWORD)
    # then: the submitted change keeps its obligation; a new one follows v2
    obligation = three.obligation(change, "acme")
    assert (obligation.kind, obligation.lead_time_days, obligation.agreement.version) == (
        "approve",
        30,
        1,
    )
    fresh = three.submitted(codes=("acme",))
    obligation = three.obligation(fresh, "acme")
    assert (obligation.kind, obligation.lead_time_days, obligation.agreement.version) == (
        "notify",
        10,
        2,
    )


# --- notices ------------------------------------------------------------------------------


def test_notices_go_out_through_the_sweep_with_only_the_sponsors_own_slice(three):
    # given
    change = three.submitted()
    # when
    sent = deadlines_send_due(now=timezone.now())
    # then
    assert sent == 2
    acme = three.obligation(change, "acme")
    borealis = three.obligation(change, "borealis")
    for obligation in (acme, borealis):
        obligation.notice.refresh_from_db()
        assert obligation.notice.kind == "change_notice"
        assert obligation.notice.key == f"change:{change.number}:{obligation.sponsor.code}"
        assert obligation.sent_at == obligation.notice.notified_at is not None
    to_acme = Notification.objects.filter(deadline=acme.notice)
    assert {n.recipient.username for n in to_acme if n.recipient} == {
        "acme-approver",
        "acme-auditor",
    }
    assert {n.email for n in to_acme if not n.recipient} == {"quality@acme.example"}
    message = to_acme.first()
    assert message.subject == (
        f"Change {change.number}: your approval is requested — {change.title}"
    )
    assert "ACM-IBU200" in message.body and "Add" in message.body
    assert f"/portal/changes/{change.number}/" in message.url
    for foreign in ("BOR-CATH7", "CYG-VITD3", "Borealis", "Cygnus"):
        assert foreign not in message.body and foreign not in message.subject
    to_borealis = Notification.objects.filter(deadline=borealis.notice).first()
    assert to_borealis.subject == f"Change {change.number}: notice of change — {change.title}"
    assert "at least 30 days before the change becomes effective" in to_borealis.body
    assert "ACM-IBU200" not in to_borealis.body and "Acme" not in to_borealis.body
    assert three.obligation(change, "cygnus").notice is None


# --- the sponsor's decision ---------------------------------------------------------------


def test_sponsor_approver_approves_by_e_signature_and_the_change_is_approved(three):
    # given
    change = three.submitted(category="process_parameter")
    # when
    signature = three.decide(change, "acme", comment="Fine for Acme.")
    # then
    acme = three.obligation(change, "acme")
    assert (acme.status, acme.decided_by, acme.comment) == (
        OStatus.APPROVED,
        three.approvers["acme"],
        "Fine for Acme.",
    )
    assert signature.meaning == "approved"
    [(stored, check)] = signatures_for(acme)
    assert stored == signature and check.is_valid
    assert acme.notice.status == Deadline.Status.MET
    change.refresh_from_db()
    assert change.status == Status.AWAITING_SPONSORS
    three.decide(change, "borealis")
    change.refresh_from_db()
    assert change.status == Status.APPROVED


def test_rejection_needs_a_comment_and_is_signed_rejected(three):
    change = three.submitted()
    error = _refused(three.decide, change=change, code="acme", approve=False)
    assert error.detail == f"Say why change {change.number} is rejected."
    signature = three.decide(change, "acme", approve=False, comment="Validation data missing.")
    assert signature.meaning == "rejected"
    assert three.obligation(change, "acme").status == OStatus.REJECTED


def test_only_the_sponsors_own_approver_decides(three):
    change = three.submitted(category="process_parameter")
    acme = three.obligation(change, "acme")
    for user, name in (
        (three.approvers["borealis"], "borealis-approver"),
        (three.auditors["acme"], "acme-auditor"),
        (three.qa, "quinn"),
    ):
        error = _refused(
            cs.obligation_decide, obligation=acme, user=user, password=PASSWORD, approve=True
        )
        assert error.code == "not_permitted"
        assert error.detail == (
            f"{name} may not decide on the obligation of change {change.number}: only the "
            "sponsor's approver decides for the sponsor."
        )


def test_a_notify_obligation_has_nothing_to_approve(three):
    change = three.submitted()
    error = _refused(three.decide, change=change, code="borealis")
    assert error.detail == (
        f"Change {change.number} needs no approval from your sponsor (notify the sponsor)."
    )


def test_a_decision_is_made_once(three):
    change = three.submitted()
    three.decide(change, "acme")
    error = _refused(three.decide, change=change, code="acme", approve=False, comment="No")
    assert error.code == "obligation_status_invalid"
    assert error.detail == (
        f"Your sponsor's decision on change {change.number} is already made: approved by "
        f"Arthur Acme on {_today()}."
    )


def test_a_wrong_password_signs_nothing(three):
    change = three.submitted()
    error = _refused(
        cs.obligation_decide,
        obligation=three.obligation(change, "acme"),
        user=three.approvers["acme"],
        password="wrong",
        approve=True,
    )
    assert error.detail == "Signature refused: the password for acme-approver is not correct."
    assert three.obligation(change, "acme").status == OStatus.PENDING


# --- effectiveness ------------------------------------------------------------------------


def test_not_effective_while_any_obligation_is_unmet_then_effective_once_met(three):
    # given: Acme (approve) pending, Borealis (notify 30 days) not yet sent
    change = three.submitted()
    # when / then: nothing met
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(20))
    assert error.code == "change_obligations_unmet"
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        "approval required, pending; Sponsor Borealis Medical Devices: notice not sent yet, "
        f"30 days lead time needs it by {_today(-10)} for effective {_today(20)}."
    )
    assert [(u["sponsor"], u["kind"]) for u in error.unmet] == [
        ("acme", "approve"),
        ("borealis", "notify"),
    ]
    # when / then: notices sent today, approval given, but 20 days is short of 30 for both
    deadlines_send_due(now=timezone.now())
    three.decide(change, "acme")
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(20))
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        f"approved, notice sent {_today()}, 30 days lead time needs it by {_today(-10)} for "
        f"effective {_today(20)}, and the signed approval accepts no earlier date; Sponsor "
        f"Borealis Medical Devices: notice sent {_today()}, 30 days lead time needs it by "
        f"{_today(-10)} for effective {_today(20)}."
    )
    assert ChangeRequest.objects.get(pk=change.pk).status == Status.APPROVED
    # when: effective 30 days after the notices (before the proposed date, with a reason)
    cs.change_make_effective(
        change=change, by=three.qa, effective_at=_noon(30), reason="Supplier deadline."
    )
    # then
    assert change.status == Status.EFFECTIVE
    assert change.effective_at == _noon(30)
    borealis = three.obligation(change, "borealis")
    assert borealis.status == OStatus.NOTIFIED
    assert borealis.notified_at == borealis.notice.notified_at
    assert borealis.notice.status == Deadline.Status.MET


def test_lead_time_exactly_met_is_enough_one_day_short_is_not(three):
    change = three.submitted(
        codes=("borealis",), proposed_effective_date=timezone.localdate() + timedelta(days=30)
    )
    deadlines_send_due(now=timezone.now())
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(29))
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Borealis Medical Devices: "
        f"notice sent {_today()}, 30 days lead time needs it by {_today(-1)} for effective "
        f"{_today(29)}."
    )
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(30))
    assert change.status == Status.EFFECTIVE


def test_a_sponsor_rejection_blocks_the_change(three):
    # given
    change = three.submitted(category="process_parameter")
    three.decide(change, "borealis")
    three.decide(change, "acme", approve=False, comment="Validation data missing.")
    # when
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=_noon(60))
    # then
    assert error.detail == (
        f"Change {change.number} cannot become effective: Sponsor Acme Pharmaceuticals: "
        f"approval required, rejected by Arthur Acme on {_today()}: Validation data missing."
    )
    assert ChangeRequest.objects.get(pk=change.pk).status == Status.AWAITING_SPONSORS


def test_rescoping_without_the_rejecting_sponsor_is_audited_and_unblocks(three):
    # given
    change = three.submitted(category="process_parameter")
    three.decide(change, "borealis")
    three.decide(change, "acme", approve=False, comment="Validation data missing.")
    reason = "Acme keeps the current process; change limited to Borealis and Cygnus."
    # when
    cs.change_rescope(change=change, sponsor=three.sponsors["acme"], reason=reason, by=three.qa)
    # then
    assert change.status == Status.APPROVED
    row = ChangeProduct.objects.get(change=change, product=three.products["acme"])
    assert (row.removed_by, row.removed_reason) == (three.qa, reason)
    assert row.removed_at is not None
    acme = three.obligation(change, "acme")
    assert acme.status == OStatus.WITHDRAWN
    product_events = [e for e in history_for(row) if e.action == "update"]
    assert [(e.actor_username, e.reason) for e in product_events] == [("quinn", reason)]
    assert set(product_events[0].changes) == {"removed_at", "removed_by_id", "removed_reason"}
    obligation_events = [e for e in history_for(acme) if e.changes.get("status")]
    assert obligation_events[-1].changes["status"] == ["rejected", "withdrawn"]
    assert obligation_events[-1].reason == reason
    cs.change_make_effective(change=change, by=three.qa, effective_at=_noon(60))
    assert change.status == Status.EFFECTIVE


def test_rescoping_needs_a_reason_and_leaves_at_least_one_sponsor(three):
    change = three.submitted(codes=("acme", "cygnus"))
    error = _refused(
        cs.change_rescope, change=change, sponsor=three.sponsors["acme"], reason="", by=three.qa
    )
    assert error.detail == f"Re-scoping change {change.number} needs a reason."
    cs.change_rescope(
        change=change, sponsor=three.sponsors["cygnus"], reason="Not affected.", by=three.qa
    )
    error = _refused(
        cs.change_rescope,
        change=change,
        sponsor=three.sponsors["acme"],
        reason="Neither.",
        by=three.qa,
    )
    assert error.detail == (
        f"Change {change.number} affects only the products of Acme Pharmaceuticals: reject or "
        "cancel it instead of re-scoping."
    )
    error = _refused(
        cs.change_rescope,
        change=change,
        sponsor=three.sponsors["cygnus"],
        reason="Again.",
        by=three.qa,
    )
    assert error.detail == (
        f"Change {change.number} does not affect any product of Cygnus Nutrition."
    )


def test_make_effective_needs_an_approved_change_and_qa_approval_rights(three):
    draft = three.draft()
    error = _refused(cs.change_make_effective, change=draft, by=three.qa)
    assert error.detail == (
        f"Change {draft.number} is draft: only an approved change can become effective."
    )
    change = three.submitted(codes=("cygnus",))
    error = _refused(cs.change_make_effective, change=change, by=three.staff)
    assert error.detail == f"oscar may not make change {change.number} effective."


def test_an_effective_date_cannot_be_in_the_past(three):
    change = three.submitted(codes=("cygnus",))
    past = _noon(-2)
    error = _refused(cs.change_make_effective, change=change, by=three.qa, effective_at=past)
    assert error.detail == (
        f"Change {change.number} cannot become effective on {past:%Y-%m-%d %H:%M} UTC: an "
        "effective date cannot be in the past."
    )


# --- tasks and closure --------------------------------------------------------------------


def test_closure_waits_for_every_task_and_an_effective_change(three):
    # given
    change = three.submitted(codes=("cygnus",), proposed_effective_date=timezone.localdate())
    due = timezone.localdate() + timedelta(days=7)
    task = cs.change_task_add(
        change=change,
        description="Retrain line operators",
        owner=three.staff,
        due_date=due,
        by=three.staff,
    )
    error = _refused(cs.change_close, change=change, by=three.qa)
    assert error.detail == (
        f"Change {change.number} is approved: only an effective change can be closed."
    )
    cs.change_make_effective(change=change, by=three.qa)
    # when / then
    error = _refused(cs.change_close, change=change, by=three.qa)
    assert error.code == "change_tasks_open"
    assert error.detail == (
        f"Change {change.number} cannot be closed: tasks still open: “Retrain line operators” "
        f"(due {due:%Y-%m-%d})."
    )
    cs.change_task_complete(task=task, by=three.staff)
    error = _refused(cs.change_task_complete, task=task, by=three.staff)
    assert error.detail == (
        f"Task “Retrain line operators” of change {change.number} was already completed on "
        f"{_today()}."
    )
    cs.change_close(change=change, by=three.qa)
    assert change.status == Status.CLOSED and change.closed_at is not None


def test_a_task_belongs_to_a_cmo_user(three):
    change = three.draft()
    error = _refused(
        cs.change_task_add,
        change=change,
        description="Sponsor review",
        owner=three.approvers["acme"],
        due_date=timezone.localdate(),
        by=three.staff,
    )
    assert error.detail == (
        f"A task of change {change.number} must be owned by an active CMO user."
    )


# --- rejection and cancellation -----------------------------------------------------------


def test_cancellation_needs_a_reason_withdraws_pending_obligations_and_cancels_notices(three):
    change = three.submitted()
    error = _refused(cs.change_cancel, change=change, by=three.staff, reason=" ")
    assert error.detail == f"Change {change.number} cannot be cancelled without a reason."
    cs.change_cancel(change=change, by=three.staff, reason="Superseded by CC-0099.")
    assert (change.status, change.status_reason) == (Status.CANCELLED, "Superseded by CC-0099.")
    for code in ("acme", "borealis"):
        obligation = three.obligation(change, code)
        assert obligation.status == OStatus.WITHDRAWN
        assert obligation.notice.status == Deadline.Status.CANCELLED
    assert deadlines_send_due(now=timezone.now()) == 0


def test_cmo_qa_rejects_a_change_and_nothing_more_happens_to_it(three):
    change = three.submitted()
    error = _refused(cs.change_reject, change=change, by=three.staff, reason="No")
    assert error.detail == f"oscar may not reject change {change.number}."
    cs.change_reject(change=change, by=three.qa, reason="Risk not acceptable.")
    assert change.status == Status.REJECTED
    error = _refused(cs.change_cancel, change=change, by=three.staff, reason="x")
    assert error.detail == f"Change {change.number} is rejected; it cannot become cancelled."
    error = _refused(cs.change_make_effective, change=change, by=three.qa)
    assert error.detail == (
        f"Change {change.number} is rejected: only an approved change can become effective."
    )


def test_a_decision_on_a_cancelled_change_is_refused(three):
    change = three.submitted()
    obligation = three.obligation(change, "acme")
    cs.change_cancel(change=change, by=three.staff, reason="Withdrawn.")
    error = _refused(
        cs.obligation_decide,
        obligation=obligation,
        user=three.approvers["acme"],
        password=PASSWORD,
        approve=True,
    )
    assert error.detail == (
        f"Change {change.number} is cancelled: it is not awaiting your decision."
    )
