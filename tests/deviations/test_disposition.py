"""Batch disposition: release refused naming every blocking reason, who must sign under each
release authority, rejection, one disposition when two approvers race, and the time to a
complete evidence set."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone

from batches import services as bs
from batches.disposition import batch_disposition, release_check
from batches.models import Batch, Lot
from deviations import services as ds
from deviations.models import Deviation
from qms.errors import RuleViolation
from qms.models import Signature
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

CONDITIONAL_REASON = (
    "agreement v1: conditional release, and the batch has a major/critical deviation or an OOS "
    "result"
)


def agreement(plant, release_authority="cmo", sponsor=None):
    draft = quality_agreement_create_draft(
        sponsor=sponsor or plant.sponsor_a,
        by=plant.qa,
        major_deviation_notice_hours=48,
        critical_deviation_notice_hours=24,
        sponsor_closes_major=False,
        sponsor_closes_critical=False,
        release_authority=release_authority,
    )
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return draft


def made(plant, *, verify=True, package=True, clear=True, reconcile=True, product=None):
    """A completed batch (output lot in quarantine) with the evidence asked for."""
    raw = plant.receive(plant.api)
    batch = bs.batch_plan(
        product=product or plant.product_a, number=plant.next("B"), by=plant.operator
    )
    bs.batch_start(batch=batch, by=plant.operator)
    bs.batch_consume(batch=batch, lot=raw, quantity="5", by=plant.operator)
    for step in batch.mbr.steps.all():
        executed = bs.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        if verify:
            bs.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    bs.batch_complete(
        batch=batch, output_lot_number=plant.next("L"), quantity="10", by=plant.operator
    )
    if package:
        packaging = bs.packaging_start(batch=batch, label_version="LBL-1", by=plant.operator)
        if clear:
            bs.packaging_clear_line(packaging=packaging, user=plant.operator, password=PASSWORD)
        if reconcile:
            bs.packaging_reconcile(
                packaging=packaging, issued=10, used=8, destroyed=1, returned=1, by=plant.operator
            )
    batch.refresh_from_db()
    return batch


def deviation(plant, batch, severity="major", link="batch"):
    now = timezone.now()
    links = {"batches": [batch]} if link == "batch" else {"lots": list(batch.output_lots.all())}
    return ds.deviation_record(
        title="Blend time exceeded",
        description="17 min against 10–15 min.",
        category="deviation",
        severity=severity,
        occurred_at=now,
        discovered_at=now,
        by=plant.qa,
        **links,
    )


def closed(plant, record):
    ds.deviation_investigate(
        deviation=record,
        by=plant.qa,
        impact_assessment="None.",
        root_cause="Timer fault.",
        disposition="use_as_is",
    )
    ds.deviation_close(deviation=record, user=plant.qa, password=PASSWORD)
    assert record.status == Deviation.Status.CLOSED
    return record


def oos(plant, batch):
    return bs.lab_result_record(
        lot=batch.output_lots.get(),
        test="Assay",
        method="HPLC",
        value="90",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.qa,
    )


def release(batch, user):
    return batch_disposition(batch=batch, user=user, password=PASSWORD, release=True)


def refused_release(batch, user) -> str:
    with pytest.raises(RuleViolation) as refused:
        release(batch, user)
    batch.refresh_from_db()
    assert batch.status in (Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW)
    return refused.value.detail


def released_signatures(batch):
    return Signature.objects.filter(
        content_type=ContentType.objects.get_for_model(Batch),
        object_id=str(batch.pk),
        meaning=Signature.Meaning.RELEASED,
    )


@pytest.fixture
def approver_b(plant):
    return make_user(sponsor=plant.sponsor_b, role=Role.SPONSOR_APPROVER, username="sp-approver-b")


# --- refusals -----------------------------------------------------------------------------


def test_release_refused_while_a_deviation_is_open(plant):
    agreement(plant)
    batch = made(plant)
    open_one = deviation(plant, batch, severity="minor", link="lot")

    detail = refused_release(batch, plant.qa)

    assert detail == f"Batch {batch} cannot be released: deviation {open_one} (minor) is open."


def test_release_refused_for_an_oos_result_without_a_closed_investigation(plant):
    agreement(plant)
    batch = made(plant)
    result = oos(plant, batch)
    investigation = Deviation.objects.get(lab_result=result)
    lot = batch.output_lots.get()

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {investigation} (major) is open; Assay on "
        f"lot {lot} is out of specification without a closed investigation."
    )
    closed(plant, investigation)
    assert release_check(batch).blockers == []


def test_release_refused_while_steps_are_not_verified(plant):
    agreement(plant)
    batch = made(plant, verify=False)

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: step 1 (Dispense) is not verified by a second "
        "person; step 2 (Blend) is not verified by a second person."
    )


def test_release_refused_without_line_clearance(plant):
    agreement(plant)
    batch = made(plant, clear=False)

    detail = refused_release(batch, plant.qa)

    assert detail == f"Batch {batch} cannot be released: line clearance is not signed."


def test_release_refused_without_label_reconciliation(plant):
    agreement(plant)
    batch = made(plant, reconcile=False)

    detail = refused_release(batch, plant.qa)

    assert detail == f"Batch {batch} cannot be released: label reconciliation is not recorded."


def test_release_refused_without_packaging_evidence(plant):
    agreement(plant)
    batch = made(plant, package=False)

    detail = refused_release(batch, plant.qa)

    assert detail == f"Batch {batch} cannot be released: packaging evidence is not recorded."


def test_release_refusal_names_every_reason_at_once(plant):
    agreement(plant)
    batch = made(plant, verify=False, clear=False)
    open_one = deviation(plant, batch, severity="critical")

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {open_one} (critical) is open; step 1 "
        "(Dispense) is not verified by a second person; step 2 (Blend) is not verified by a "
        "second person; line clearance is not signed."
    )


def test_release_refused_while_the_batch_is_in_progress(plant):
    agreement(plant)
    batch = bs.batch_plan(product=plant.product_a, number=plant.next("B"), by=plant.operator)
    bs.batch_start(batch=batch, by=plant.operator)

    with pytest.raises(RuleViolation) as refused:
        release(batch, plant.qa)

    assert refused.value.detail.startswith(
        f"Batch {batch} cannot be released: the batch is in progress; step 1 (Dispense) is not "
        "recorded;"
    )


def test_sponsor_release_required_and_absent_keeps_the_batch_unreleased(plant, sponsor_approver_a):
    # given: the agreement leaves release to the sponsor
    agreement(plant, release_authority="sponsor")
    batch = made(plant)
    lot = batch.output_lots.get()
    assert release_check(batch).sponsor_release_reason == "agreement v1: the sponsor releases"

    # when: the sponsor tries first, then CMO QA releases (twice)
    with pytest.raises(RuleViolation) as sponsor_first:
        release(batch, sponsor_approver_a)
    release(batch, plant.qa)
    with pytest.raises(RuleViolation) as cmo_again:
        release(batch, plant.qa)

    # then: the batch awaits the sponsor
    assert sponsor_first.value.detail == (
        f"Batch {batch} cannot be released by the sponsor before CMO QA releases it."
    )
    assert cmo_again.value.detail == (
        f"Batch {batch} is already released by CMO QA; it awaits the sponsor's release."
    )
    batch.refresh_from_db()
    lot.refresh_from_db()
    assert (batch.status, lot.status) == (Batch.Status.UNDER_REVIEW, Lot.Status.QUARANTINE)
    assert batch.cmo_released_at is not None

    signature = release(batch, sponsor_approver_a)

    batch.refresh_from_db()
    lot.refresh_from_db()
    assert (batch.status, lot.status) == (Batch.Status.RELEASED, Lot.Status.RELEASED)
    assert (signature.signer, signature.meaning) == (sponsor_approver_a, "released")
    assert list(released_signatures(batch).values_list("signer__username", flat=True)) == [
        "plant-qa",
        "sp-approver-a",
    ]


def test_cmo_release_authority_needs_no_sponsor(plant, sponsor_approver_a):
    agreement(plant, release_authority="cmo")
    batch = made(plant)

    with pytest.raises(RuleViolation) as sponsor_refused:
        release(batch, sponsor_approver_a)
    release(batch, plant.qa)

    assert sponsor_refused.value.detail == (
        f"Batch {batch} is released by the CMO under the quality agreement; the sponsor's "
        "release is not required."
    )
    batch.refresh_from_db()
    assert batch.status == Batch.Status.RELEASED
    assert list(batch.output_lots.values_list("status", flat=True)) == [Lot.Status.RELEASED]


def test_sponsor_approver_of_another_sponsor_cannot_release(plant, approver_b):
    agreement(plant, release_authority="sponsor")
    batch = made(plant)
    release(batch, plant.qa)

    detail = refused_release(batch, approver_b)

    assert detail == f"sp-approver-b may not dispose of batch {batch}."


@pytest.mark.parametrize(
    ("event", "required"),
    [
        ("none", False),
        ("minor deviation", False),
        ("major deviation", True),
        ("critical deviation", True),
        ("major deviation on the lot", True),
        ("major deviation of another batch", False),
        ("oos", True),
    ],
)
def test_conditional_release_requires_the_sponsor_after_a_grave_event(plant, event, required):
    agreement(plant, release_authority="conditional")
    batch = made(plant)
    if event == "oos":
        investigation = Deviation.objects.get(lab_result=oos(plant, batch))
        ds.deviation_change_severity(
            deviation=investigation, severity="minor", reason="lab error suspected", by=plant.qa
        )
        closed(plant, investigation)
    elif event == "major deviation of another batch":
        closed(plant, deviation(plant, made(plant)))
    elif event != "none":
        severity, _, rest = event.partition(" deviation")
        closed(plant, deviation(plant, batch, severity, link="lot" if rest else "batch"))

    check = release_check(batch)
    release(batch, plant.qa)

    assert check.blockers == []
    assert check.sponsor_release_required is required
    assert check.sponsor_release_reason == (CONDITIONAL_REASON if required else "")
    batch.refresh_from_db()
    assert batch.status == (Batch.Status.UNDER_REVIEW if required else Batch.Status.RELEASED)


def test_reject_is_signed_and_rejects_the_output_lots(plant):
    agreement(plant)
    batch = made(plant, verify=False)
    deviation(plant, batch, severity="critical")

    signature = batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=False)

    batch.refresh_from_db()
    assert (signature.meaning, batch.status) == (Signature.Meaning.REJECTED, Batch.Status.REJECTED)
    assert list(batch.output_lots.values_list("status", flat=True)) == [Lot.Status.REJECTED]
    with pytest.raises(RuleViolation) as again:
        release(batch, plant.qa)
    assert again.value.detail == f"Batch {batch} is already rejected."


def test_reject_refused_before_the_batch_is_completed(plant):
    agreement(plant)
    batch = bs.batch_plan(product=plant.product_a, number=plant.next("B"), by=plant.operator)
    bs.batch_start(batch=batch, by=plant.operator)

    with pytest.raises(RuleViolation) as refused:
        batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=False)

    assert refused.value.detail == (
        f"Batch {batch} is in progress: it can be rejected once completed."
    )


# --- one disposition when two approvers race ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_approvers_releasing_at_once_make_one_disposition(plant):
    # given: two CMO QA approvers and a batch ready for release
    agreement(plant)
    second = make_user(sponsor=plant.sponsor_a, role=Role.CMO_QA_APPROVER, username="plant-qa-2")
    batch = made(plant)
    barrier = Barrier(2)

    def sign(user):
        try:
            barrier.wait(timeout=10)
            return release(Batch.objects.get(pk=batch.pk), user)
        except RuleViolation as refused:
            return refused
        finally:
            connection.close()

    # when: each signs on its own connection at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [
            f.result(timeout=60) for f in [pool.submit(sign, u) for u in (plant.qa, second)]
        ]

    # then
    signed = [o for o in outcomes if isinstance(o, Signature)]
    refusals = [o for o in outcomes if isinstance(o, RuleViolation)]
    assert (len(signed), len(refusals)) == (1, 1)
    assert refusals[0].detail == f"Batch {batch} is already released."
    assert released_signatures(batch).count() == 1
    batch.refresh_from_db()
    assert batch.status == Batch.Status.RELEASED


# --- evidence hand-off --------------------------------------------------------------------


def test_evidence_complete_at_is_recorded_when_the_evidence_set_is_first_complete(plant):
    agreement(plant)
    batch = made(plant, package=False)
    assert batch.evidence_complete_at is None
    packaging = bs.packaging_start(batch=batch, label_version="LBL-1", by=plant.operator)
    bs.packaging_clear_line(packaging=packaging, user=plant.operator, password=PASSWORD)
    batch.refresh_from_db()
    assert batch.evidence_complete_at is None

    bs.packaging_reconcile(
        packaging=packaging, issued=10, used=8, destroyed=1, returned=1, by=plant.operator
    )
    batch.refresh_from_db()
    first = batch.evidence_complete_at
    release(batch, plant.qa)

    batch.refresh_from_db()
    assert first is not None and batch.completed_at <= first <= timezone.now()
    assert batch.evidence_complete_at == first
    assert batch.evidence_handoff == first - batch.completed_at


def test_evidence_completed_by_a_late_verification_is_recorded_then(plant):
    agreement(plant)
    batch = made(plant, verify=False)
    assert batch.evidence_complete_at is None

    for executed in batch.executed_steps.all():
        bs.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)

    batch.refresh_from_db()
    assert batch.evidence_complete_at is not None
    assert release_check(batch).evidence == []
