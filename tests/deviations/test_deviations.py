"""Deviation rules: recording (one sponsor per deviation, cross-sponsor impact, gapless numbers),
OOS investigations opened by lab results, severity changes, closure and sponsor approval, the
sponsor's acknowledgement, and exactly-once notices on a real Celery worker."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from batches import services as bs
from deviations import services as ds
from deviations.models import Deviation
from deviations.selectors import deadlines_of
from qms.celery import app as celery_app
from qms.errors import RuleViolation
from qms.models import Deadline, Notification, Signature
from qms.notifications import deadlines_send_due
from qms.tasks import send_due_notifications
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD, make_user
from tests.workers import running_worker

pytestmark = pytest.mark.django_db

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
TERMS = {
    "minor_deviation_notice_hours": None,
    "major_deviation_notice_hours": 48,
    "critical_deviation_notice_hours": 24,
    "oos_notice_hours": 36,
    "sponsor_closes_minor": False,
    "sponsor_closes_major": True,
    "sponsor_closes_critical": True,
}


def agreement(plant, sponsor, effective_from=LONG_AGO, **terms):
    draft = quality_agreement_create_draft(sponsor=sponsor, by=plant.qa, **{**TERMS, **terms})
    quality_agreement_make_effective(
        agreement=draft, user=plant.qa, password=PASSWORD, effective_from=effective_from
    )
    draft.refresh_from_db()
    return draft


def record(plant, severity="major", discovered_at=None, occurred_at=None, **links):
    discovered_at = discovered_at or timezone.now()
    return ds.deviation_record(
        title="Blend time exceeded",
        description="The blend ran 17 min against 10–15 min.",
        category=links.pop("category", "deviation"),
        severity=severity,
        occurred_at=occurred_at or discovered_at,
        discovered_at=discovered_at,
        by=plant.qa,
        **links,
    )


def investigated(plant, deviation, **findings):
    findings = {"impact_assessment": "No impact on quality.", "root_cause": "Timer fault."} | (
        findings
    )
    return ds.deviation_investigate(deviation=deviation, by=plant.qa, **findings)


def refusal(call, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as refused:
        call(**kwargs)
    return refused.value


@pytest.fixture
def agreements(plant):
    return agreement(plant, plant.sponsor_a), agreement(
        plant, plant.sponsor_b, critical_deviation_notice_hours=72, major_deviation_notice_hours=96
    )


@pytest.fixture
def batch_a(plant):
    raw = plant.receive(plant.api)
    return plant.run_batch(plant.product_a, [(raw, "5")], release=False)[0]


@pytest.fixture
def batch_b(plant):
    raw = plant.receive(plant.api)
    return plant.run_batch(plant.product_b, [(raw, "5")], release=False)[0]


# --- recording ----------------------------------------------------------------------------


def test_linking_two_sponsors_records_is_refused(plant, agreements, batch_a, batch_b):
    refused = refusal(record, plant=plant, batches=[batch_a, batch_b])

    assert refused.code == "deviation_mixed_sponsors"
    assert refused.detail == (
        "The linked lots and batches belong to several sponsors (alpha, zzother): record one "
        "deviation per sponsor."
    )
    assert not Deviation.objects.exists()


def test_deviation_without_a_linked_record_is_refused(plant):
    refused = refusal(record, plant=plant)

    assert refused.detail == "Link the deviation to at least one lot, batch or equipment."


def test_deviation_discovered_before_it_occurred_is_refused(plant, batch_a):
    now = timezone.now()

    refused = refusal(
        record,
        plant=plant,
        discovered_at=now - timedelta(hours=1),
        occurred_at=now,
        batches=[batch_a],
    )

    assert refused.detail == "A deviation cannot be discovered before it occurred."


def test_sponsor_deviation_takes_the_agreement_in_force_at_discovery(plant, batch_a):
    old = agreement(plant, plant.sponsor_a)
    new = agreement(plant, plant.sponsor_a, effective_from=timezone.now() - timedelta(days=2))

    before = record(plant, discovered_at=timezone.now() - timedelta(days=3), batches=[batch_a])
    after = record(plant, batches=[batch_a])

    assert (before.sponsor, before.agreement) == (plant.sponsor_a, old)
    assert (after.sponsor, after.agreement) == (plant.sponsor_a, new)


def test_shared_site_lot_makes_a_site_record_and_one_impact_per_sponsor(plant, agreements):
    # given: one raw lot consumed by a batch of each sponsor
    raw = plant.receive(plant.api)
    batch_a, lot_a = plant.run_batch(plant.product_a, [(raw, "5")])
    batch_b, lot_b = plant.run_batch(plant.product_b, [(raw, "5")])
    now = timezone.now()

    # when
    site = record(plant, severity="critical", discovered_at=now, lots=[raw])

    # then
    assert (site.sponsor, site.agreement, site.source) == (None, None, None)
    assert list(site.lots.all()) == [raw]
    assert not deadlines_of(site).exists()
    impacts = {impact.sponsor.code: impact for impact in site.impacts.all()}
    assert set(impacts) == {"alpha", "zzother"}
    alpha, other = impacts["alpha"], impacts["zzother"]
    assert alpha.number == f"{site.number}-ALPHA"
    assert other.number == f"{site.number}-ZZOTHER"
    assert (list(alpha.batches.all()), list(alpha.lots.all())) == ([batch_a], [lot_a])
    assert (list(other.batches.all()), list(other.lots.all())) == ([batch_b], [lot_b])
    assert (alpha.agreement, other.agreement) == agreements
    due = {
        code: deadlines_of(impact).get(kind="deviation_notice").due_at - now
        for code, impact in impacts.items()
    }
    assert due == {"alpha": timedelta(hours=24), "zzother": timedelta(hours=72)}


def _batch_on_tank(plant, product, start):
    batch = bs.batch_plan(product=product, number=plant.next("B"), by=plant.operator)
    bs.batch_start(batch=batch, by=plant.operator, started_at=start)
    bs.equipment_use_start(batch=batch, equipment=plant.tank, by=plant.operator, at=start)
    for step in batch.mbr.steps.all():
        executed = bs.batch_record_step(
            batch=batch,
            step=step,
            performed_by=plant.operator,
            value=step.low_limit,
            at=start + timedelta(minutes=10),
        )
        bs.batch_verify_step(
            executed=executed,
            verified_by=plant.verifier,
            password=PASSWORD,
            at=start + timedelta(minutes=20),
        )
    lot = bs.batch_complete(
        batch=batch,
        output_lot_number=plant.next("L"),
        quantity="10",
        by=plant.operator,
        at=start + timedelta(hours=1),
    )
    cleaning = bs.cleaning_record(
        equipment=plant.tank,
        method="CIP",
        performed_by=plant.operator,
        at=start + timedelta(hours=2),
    )
    bs.cleaning_verify(
        cleaning=cleaning,
        verified_by=plant.verifier,
        password=PASSWORD,
        at=start + timedelta(hours=3),
    )
    return batch, lot


def test_shared_equipment_makes_one_impact_per_sponsor_that_used_it(plant, agreements):
    # given: tank 4 ran sponsor B, then A, then B again; the fault started before A's batch
    t0 = timezone.now() - timedelta(hours=20)
    early_b, _ = _batch_on_tank(plant, plant.product_b, t0)
    batch_a, lot_a = _batch_on_tank(plant, plant.product_a, t0 + timedelta(hours=4))
    late_b, late_lot_b = _batch_on_tank(plant, plant.product_b, t0 + timedelta(hours=8))

    # when
    site = record(
        plant,
        occurred_at=t0 + timedelta(hours=3),
        discovered_at=t0 + timedelta(hours=12),
        equipment=[plant.tank],
    )

    # then: each sponsor's record names only its batches that ran in the window
    assert site.sponsor is None and list(site.equipment.all()) == [plant.tank]
    impacts = {impact.sponsor.code: impact for impact in site.impacts.all()}
    assert set(impacts) == {"alpha", "zzother"}
    assert (list(impacts["alpha"].batches.all()), list(impacts["alpha"].lots.all())) == (
        [batch_a],
        [lot_a],
    )
    assert list(impacts["zzother"].batches.all()) == [late_b]
    assert list(impacts["zzother"].lots.all()) == [late_lot_b]
    notice_hours = {
        code: deadlines_of(impact).get(kind="deviation_notice").due_at - impact.discovered_at
        for code, impact in impacts.items()
    }
    assert notice_hours == {"alpha": timedelta(hours=48), "zzother": timedelta(hours=96)}


def test_numbers_are_gapless_per_year_of_discovery(plant, agreements, batch_a):
    raw = plant.receive(plant.api)
    plant.run_batch(plant.product_a, [(raw, "5")])
    year = timezone.now().year

    first = record(plant, batches=[batch_a])
    refusal(record, plant=plant, batches=[])
    site = record(plant, lots=[raw])
    third = record(plant, batches=[batch_a])
    last_year = record(
        plant, discovered_at=datetime(year - 1, 12, 31, 12, tzinfo=UTC), batches=[batch_a]
    )

    assert [first.number, site.number, third.number] == [
        f"DEV-{year}-0001",
        f"DEV-{year}-0002",
        f"DEV-{year}-0003",
    ]
    assert [impact.number for impact in site.impacts.all()] == [f"DEV-{year}-0002-ALPHA"]
    assert last_year.number == f"DEV-{year - 1}-0001"


# --- OOS ----------------------------------------------------------------------------------


def test_out_of_specification_result_opens_an_oos_investigation_on_the_lot(
    plant, agreements, batch_a
):
    lot = batch_a.output_lots.get()

    result = bs.lab_result_record(
        lot=lot,
        test="Assay",
        method="HPLC",
        value="91.5",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.qa,
    )

    oos = Deviation.objects.get(lab_result=result)
    assert (oos.category, oos.severity, oos.status) == ("oos", "major", "open")
    assert (oos.sponsor, list(oos.lots.all())) == (plant.sponsor_a, [lot])
    assert oos.title == f"OOS: Assay on lot {lot}"
    assert oos.description == "Assay (HPLC) gave 91.5 %, specification 95–105 %."
    assert oos.discovered_at == result.tested_at
    notice = deadlines_of(oos).get(kind="deviation_notice")
    assert notice.due_at - oos.discovered_at == timedelta(hours=36)


def test_in_specification_result_opens_nothing(plant, agreements, batch_a):
    bs.lab_result_record(
        lot=batch_a.output_lots.get(),
        test="Assay",
        method="HPLC",
        value="99",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.qa,
    )

    assert not Deviation.objects.exists()


# --- severity -----------------------------------------------------------------------------


def test_severity_change_needs_a_reason(plant, agreements, batch_a):
    deviation = record(plant, batches=[batch_a])

    refused = refusal(
        ds.deviation_change_severity,
        deviation=deviation,
        severity="critical",
        reason=" ",
        by=plant.qa,
    )

    assert refused.code == "reason_required"
    assert refused.detail == f"Changing the severity of {deviation} needs a reason."
    deviation.refresh_from_db()
    assert deviation.severity == "major"


def test_severity_change_cancels_the_old_notice_and_schedules_the_new_one(
    plant, agreements, batch_a
):
    deviation = record(plant, severity="major", batches=[batch_a])
    old = list(deadlines_of(deviation).filter(kind__startswith="deviation_notice"))

    ds.deviation_change_severity(
        deviation=deviation, severity="critical", reason="sterility impact", by=plant.qa
    )

    assert deviation.severity == "critical"
    for deadline in old:
        deadline.refresh_from_db()
        assert deadline.status == Deadline.Status.CANCELLED
    pending = deadlines_of(deviation).filter(status=Deadline.Status.PENDING)
    notice = pending.get(kind="deviation_notice")
    escalation = pending.get(kind="deviation_notice_escalation")
    assert notice.due_at - deviation.discovered_at == timedelta(hours=24)
    assert escalation.escalates == notice
    assert pending.filter(kind="investigation_summary").count() == 1


def test_severity_back_to_an_earlier_value_schedules_its_notice_again(plant, agreements, batch_a):
    deviation = record(plant, severity="major", batches=[batch_a])

    ds.deviation_change_severity(deviation=deviation, severity="critical", reason="a", by=plant.qa)
    ds.deviation_change_severity(deviation=deviation, severity="major", reason="b", by=plant.qa)

    notice = deadlines_of(deviation).get(kind="deviation_notice", status=Deadline.Status.PENDING)
    assert notice.due_at - deviation.discovered_at == timedelta(hours=48)


def test_severity_change_of_a_site_deviation_reschedules_each_impact(plant, agreements):
    raw = plant.receive(plant.api)
    plant.run_batch(plant.product_a, [(raw, "5")])
    plant.run_batch(plant.product_b, [(raw, "5")])
    site = record(plant, severity="major", lots=[raw])

    ds.deviation_change_severity(deviation=site, severity="critical", reason="worse", by=plant.qa)

    hours = {
        impact.sponsor.code: (
            impact.severity,
            deadlines_of(impact).get(kind="deviation_notice", status=Deadline.Status.PENDING).due_at
            - impact.discovered_at,
        )
        for impact in site.impacts.all()
    }
    assert hours == {
        "alpha": ("critical", timedelta(hours=24)),
        "zzother": ("critical", timedelta(hours=72)),
    }


# --- closure ------------------------------------------------------------------------------


@pytest.fixture
def approver_b(plant):
    return make_user(sponsor=plant.sponsor_b, role=Role.SPONSOR_APPROVER, username="sp-approver-b")


def test_closure_refused_until_the_investigation_is_complete(plant, agreements, batch_a):
    deviation = record(plant, severity="minor", batches=[batch_a])

    not_investigated = refusal(
        ds.deviation_close, deviation=deviation, user=plant.qa, password=PASSWORD
    )
    investigated(plant, deviation, impact_assessment="", root_cause="")
    nothing = refusal(ds.deviation_close, deviation=deviation, user=plant.qa, password=PASSWORD)
    investigated(plant, deviation, impact_assessment="None.", root_cause="")
    no_root_cause = refusal(
        ds.deviation_close, deviation=deviation, user=plant.qa, password=PASSWORD
    )

    assert not_investigated.detail == (
        f"{deviation} is open: only a deviation under investigation can be closed."
    )
    assert nothing.code == "deviation_incomplete"
    assert (
        nothing.detail == f"{deviation} cannot be closed: impact assessment and root cause missing."
    )
    assert no_root_cause.detail == f"{deviation} cannot be closed: root cause missing."
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.UNDER_INVESTIGATION


@pytest.mark.parametrize(
    ("severity", "status"),
    [
        ("minor", Deviation.Status.CLOSED),
        ("major", Deviation.Status.PENDING_SPONSOR_APPROVAL),
        ("critical", Deviation.Status.PENDING_SPONSOR_APPROVAL),
    ],
)
def test_sponsor_approval_is_required_exactly_where_the_agreement_reserves_it(
    plant, agreements, batch_a, severity, status
):
    deviation = investigated(plant, record(plant, severity=severity, batches=[batch_a]))

    signature = ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    assert deviation.status == status
    assert (deviation.closed_at is not None) == (status == Deviation.Status.CLOSED)
    assert (signature.meaning, signature.signer) == (Signature.Meaning.CLOSED, plant.qa)


def test_sponsor_approver_closes_a_reserved_deviation(
    plant, agreements, batch_a, sponsor_approver_a
):
    deviation = investigated(plant, record(plant, severity="major", batches=[batch_a]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    signature = ds.deviation_sponsor_decide(
        deviation=deviation, user=sponsor_approver_a, password=PASSWORD, approve=True
    )

    assert deviation.status == Deviation.Status.CLOSED and deviation.closed_at is not None
    assert (signature.meaning, signature.signer) == (Signature.Meaning.APPROVED, sponsor_approver_a)


def test_sponsor_approver_of_another_sponsor_cannot_decide(plant, agreements, batch_a, approver_b):
    deviation = investigated(plant, record(plant, severity="major", batches=[batch_a]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    refused = refusal(
        ds.deviation_sponsor_decide,
        deviation=deviation,
        user=approver_b,
        password=PASSWORD,
        approve=True,
    )

    assert refused.code == "not_permitted"
    assert refused.detail == f"sp-approver-b may not decide on {deviation} for the sponsor."
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL


def test_sponsor_rejection_needs_a_comment_and_reopens_the_investigation(
    plant, agreements, batch_a, sponsor_approver_a
):
    deviation = investigated(plant, record(plant, severity="critical", batches=[batch_a]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    silent = refusal(
        ds.deviation_sponsor_decide,
        deviation=deviation,
        user=sponsor_approver_a,
        password=PASSWORD,
        approve=False,
    )
    signature = ds.deviation_sponsor_decide(
        deviation=deviation,
        user=sponsor_approver_a,
        password=PASSWORD,
        approve=False,
        comment="Root cause not supported by data.",
    )

    assert silent.code == "reason_required"
    assert silent.detail == f"Say why the closure of {deviation} is rejected."
    assert signature.meaning == Signature.Meaning.REJECTED
    assert deviation.status == Deviation.Status.UNDER_INVESTIGATION
    assert deviation.closed_at is None
    investigated(
        plant,
        deviation,
        root_cause="Timer relay failed; replaced.",
        reason="Sponsor rejected the closure: relay data now attached.",
    )
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    assert deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL


def test_sponsor_cannot_decide_a_deviation_not_awaiting_it(
    plant, agreements, batch_a, sponsor_approver_a
):
    deviation = investigated(plant, record(plant, severity="major", batches=[batch_a]))

    refused = refusal(
        ds.deviation_sponsor_decide,
        deviation=deviation,
        user=sponsor_approver_a,
        password=PASSWORD,
        approve=True,
    )

    assert refused.detail == (
        f"{deviation} is under investigation: it is not awaiting the sponsor's approval."
    )


def test_site_deviation_cannot_close_while_impact_records_are_open(plant, agreements):
    raw = plant.receive(plant.api)
    plant.run_batch(plant.product_a, [(raw, "5")])
    plant.run_batch(plant.product_b, [(raw, "5")])
    site = investigated(plant, record(plant, severity="minor", lots=[raw]))
    alpha, other = site.impacts.order_by("number")

    refused = refusal(ds.deviation_close, deviation=site, user=plant.qa, password=PASSWORD)
    for impact in (alpha, other):
        ds.deviation_close(deviation=investigated(plant, impact), user=plant.qa, password=PASSWORD)
    ds.deviation_close(deviation=site, user=plant.qa, password=PASSWORD)

    assert refused.code == "deviation_impacts_open"
    assert refused.detail == (
        f"{site} cannot be closed while its sponsor impact records are open: "
        f"{alpha.number}, {other.number}."
    )
    assert site.status == Deviation.Status.CLOSED


def test_acknowledgement_is_recorded_once_with_the_time_to_acknowledge(
    plant, agreements, batch_a, sponsor_approver_a
):
    deviation = record(plant, batches=[batch_a])

    ds.deviation_acknowledge(deviation=deviation, user=sponsor_approver_a)
    again = refusal(ds.deviation_acknowledge, deviation=deviation, user=sponsor_approver_a)

    assert deviation.sponsor_acknowledged_by == sponsor_approver_a
    assert deviation.time_to_acknowledge == (
        deviation.sponsor_acknowledged_at - deviation.recorded_at
    )
    assert deviation.time_to_acknowledge >= timedelta(0)
    assert again.detail == (
        f"{deviation} was already acknowledged on "
        f"{deviation.sponsor_acknowledged_at:%Y-%m-%d %H:%M} UTC."
    )


def test_another_sponsors_user_cannot_acknowledge(plant, agreements, batch_a, approver_b):
    deviation = record(plant, batches=[batch_a])

    refused = refusal(ds.deviation_acknowledge, deviation=deviation, user=approver_b)

    assert refused.detail == (
        f"sp-approver-b may not acknowledge {deviation}: only the sponsor's people acknowledge "
        "its notice."
    )
    deviation.refresh_from_db()
    assert deviation.sponsor_acknowledged_at is None


def test_cmo_staff_cannot_acknowledge_for_the_sponsor(plant, agreements, batch_a):
    deviation = record(plant, batches=[batch_a])

    refused = refusal(ds.deviation_acknowledge, deviation=deviation, user=plant.qa)

    assert refused.detail == (
        f"plant-qa may not acknowledge {deviation}: only the sponsor's people acknowledge "
        "its notice."
    )


# --- notices ------------------------------------------------------------------------------


def test_unsent_notice_past_due_escalates_to_cmo_qa_approvers_once(
    plant, agreements, batch_a, sponsor_approver_a, django_capture_on_commit_callbacks
):
    # given: a critical deviation whose notice no sweep sent before it fell due
    other_qa = make_user(sponsor=plant.sponsor_b, role=Role.CMO_QA_APPROVER, username="qa-b")
    deviation = record(plant, severity="critical", batches=[batch_a])
    escalation = deadlines_of(deviation).get(kind="deviation_notice_escalation")
    late = escalation.due_at + timedelta(minutes=1)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        first = deadlines_send_due(now=late)
    with django_capture_on_commit_callbacks(execute=True):
        second = deadlines_send_due(now=late + timedelta(minutes=1))

    # then
    assert (first, second) == (2, 0)
    escalated = Notification.objects.filter(deadline=escalation)
    assert list(escalated.values_list("recipient__username", flat=True)) == ["plant-qa"]
    assert not Notification.objects.filter(recipient=other_qa).exists()
    assert escalated.get().subject == f"Sponsor notice of {deviation} is overdue"
    assert [m.to for m in mail.outbox if m.subject == escalated.get().subject] == [[plant.qa.email]]


@pytest.mark.django_db(transaction=True)
def test_notices_are_sent_exactly_once_across_a_worker_restart(
    celery_queue, plant, agreements, batch_a, sponsor_approver_a, auditor_a
):
    sponsor_people = [sponsor_approver_a, auditor_a]
    # given: a worker notifies a first critical deviation, then goes down
    with running_worker(celery_queue) as worker:
        assert worker.consumer.connection.transport.driver_type == "redis"
        first = record(plant, severity="critical", batches=[batch_a])
        assert send_due_notifications.delay().get(timeout=30) == 1
    # and a second deviation is recorded while it is down; the sweep queued meanwhile is lost
    second = record(plant, severity="critical", batches=[batch_a])
    send_due_notifications.delay()
    with celery_app.connection_for_write() as conn:
        assert conn.default_channel.queue_purge(celery_queue) == 1

    # when: a new worker runs the next beat ticks
    with running_worker(celery_queue):
        again = [send_due_notifications.delay().get(timeout=30) for _ in range(2)]

    # then: each notice went once to each sponsor approver and auditor, and once by e-mail
    assert again == [1, 0]
    for deviation in (first, second):
        notice = deadlines_of(deviation).get(kind="deviation_notice")
        assert notice.status == Deadline.Status.MET
        assert notice.met_at == notice.notified_at is not None
        assert not notice.is_late
        rows = Notification.objects.filter(deadline=notice)
        assert sorted(
            rows.exclude(recipient=None).values_list("recipient__username", flat=True)
        ) == [
            "auditor-a",
            "sp-approver-a",
        ]
        assert list(rows.filter(recipient=None).values_list("email", flat=True)) == [
            "quality@alpha.example"
        ]
        emailed = sorted(a for m in mail.outbox if m.subject == notice.title for a in m.to)
        assert emailed == sorted([*(u.email for u in sponsor_people), "quality@alpha.example"])
    assert not Notification.objects.filter(recipient=plant.qa).exists()
    # and the escalation does not fire once due, since the notice went out in time
    escalations = Deadline.objects.filter(kind="deviation_notice_escalation")
    late = max(escalations.values_list("due_at", flat=True)) + timedelta(minutes=1)
    assert deadlines_send_due(now=late) == 0
    assert set(escalations.values_list("status", flat=True)) == {Deadline.Status.MET}
    assert not Notification.objects.filter(deadline__in=escalations).exists()
