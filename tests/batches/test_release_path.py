"""One release path and governed shipments: a produced lot is released only by its batch's
disposition; a lot ships only when released under its authority with nothing open against it;
step entries, verifications and consumption follow the master batch record."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import services
from batches.disposition import batch_disposition
from batches.models import Batch, ExecutedStep, Lot, MasterBatchRecord, Shipment
from batches.services import BatchError
from deviations.models import Deviation
from deviations.services import deviation_record
from qms.errors import KernelError, RuleViolation
from qms.models import Signature
from qms.signatures import signatures_for
from sponsors.models import QualityAgreement, ReleaseAuthority
from tests.batches.test_services import _in_progress, _v2_draft, refused
from tests.factories import PASSWORD, QualityAgreementFactory


def _ship(plant, lot, quantity="1"):
    return services.shipment_create(
        lot=lot, customer=plant.customers[0], quantity=quantity, by=plant.operator
    )


def _deviation_on(plant, batch, severity="major"):
    return deviation_record(
        title="Blend time exceeded",
        description="Blend ran 17 minutes.",
        category="deviation",
        severity=severity,
        occurred_at=timezone.now(),
        discovered_at=timezone.now(),
        by=plant.qa,
        batches=[batch],
    )


# --- one release path ---------------------------------------------------------------------


def test_a_produced_lot_is_not_released_by_lot_disposition(plant):
    batch, lot = plant.run_batch(plant.product_a, [], release=False)

    with refused(
        f"Lot {lot} was made by batch {batch}: it is released or rejected through that batch's "
        "disposition.",
        BatchError.LOT_PRODUCED,
    ):
        services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)
    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE


def test_a_received_lot_with_an_open_deviation_is_not_released(plant):
    lot = plant.receive(plant.api, release=False)
    deviation = deviation_record(
        title="Drum damaged on receipt",
        description="One drum dented.",
        category="deviation",
        severity="minor",
        occurred_at=timezone.now(),
        discovered_at=timezone.now(),
        by=plant.qa,
        lots=[lot],
    )

    with refused(
        f"Lot {lot} cannot be released: deviation {deviation.number} (minor) is open.",
        BatchError.LOT_OPEN_ISSUE,
    ):
        services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)


def test_a_received_lot_with_an_open_deviation_may_still_be_rejected(plant):
    lot = plant.receive(plant.api, release=False)
    deviation_record(
        title="Drum damaged on receipt",
        description="One drum dented.",
        category="deviation",
        severity="minor",
        occurred_at=timezone.now(),
        discovered_at=timezone.now(),
        by=plant.qa,
        lots=[lot],
    )

    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=False)
    assert lot.status == Lot.Status.REJECTED


# --- governed shipments -------------------------------------------------------------------


def test_shipping_a_lot_whose_batch_awaits_the_sponsors_release_refused(plant, sponsor_a):
    QualityAgreementFactory(
        sponsor=sponsor_a,
        status=QualityAgreement.Status.EFFECTIVE,
        release_authority=ReleaseAuthority.SPONSOR,
        effective_from=timezone.now() - timedelta(days=1),
    )
    batch, lot = plant.run_batch(plant.product_a, [], release=False)
    plant.package(batch)
    batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=True)

    with refused(
        f"Lot {lot} cannot be shipped: its batch {batch} is under review, released by CMO QA "
        "and awaits the sponsor's release.",
        BatchError.LOT_NOT_RELEASED,
    ):
        _ship(plant, lot)

    batch_disposition(
        batch=batch, user=plant.sponsor_approver(sponsor_a), password=PASSWORD, release=True
    )
    assert _ship(plant, lot).quantity == Decimal("1")


def test_shipping_a_released_lot_with_an_open_deviation_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [])
    assert lot.status == Lot.Status.RELEASED
    deviation = _deviation_on(plant, batch)

    with refused(
        f"Lot {lot} cannot be shipped: deviation {deviation.number} (major) is open.",
        BatchError.LOT_OPEN_ISSUE,
    ):
        _ship(plant, lot)
    assert not Shipment.objects.exists()


def test_shipping_a_lot_with_an_uninvestigated_oos_result_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [])
    services.lab_result_record(
        lot=lot,
        test="Assay",
        method="HPLC",
        value="80",
        low_limit="95",
        high_limit="105",
        unit="%",
        analyst=plant.verifier,
    )
    oos = Deviation.objects.get(lab_result__lot=lot)

    with refused(
        f"Lot {lot} cannot be shipped: deviation {oos.number} (major) is open; Assay is out of "
        "specification without a closed investigation.",
        BatchError.LOT_OPEN_ISSUE,
    ):
        _ship(plant, lot)


# --- step entries and verification -------------------------------------------------------


def test_an_out_of_limit_entry_needs_a_comment(plant):
    batch = _in_progress(plant)
    step = batch.mbr.steps.get(sequence=1)

    with refused(
        f"Step 1 of batch {batch}: 7 kg is outside the limits 5–6 kg; a comment is required.",
        BatchError.COMMENT_REQUIRED,
    ):
        services.batch_record_step(batch=batch, step=step, performed_by=plant.operator, value="7")

    executed = services.batch_record_step(
        batch=batch,
        step=step,
        performed_by=plant.operator,
        value="7",
        note="Scale recalibrated; re-weighed.",
    )
    assert executed.is_in_limits is False
    assert not Deviation.objects.exists()


def test_an_out_of_limit_entry_opens_a_deviation_when_the_mbr_says_so(plant):
    batch = _in_progress(plant)
    step = batch.mbr.steps.get(sequence=1)
    step.opens_deviation = True
    step.save()

    services.batch_record_step(
        batch=batch, step=step, performed_by=plant.operator, value="7", note="Overweight."
    )

    [deviation] = Deviation.objects.filter(batches=batch)
    assert deviation.title == f"Step 1 of batch {batch} outside its limits"
    assert deviation.severity == "minor" and deviation.sponsor_id == batch.sponsor_id


def test_verification_is_an_e_signature_meaning_verified(plant):
    batch = _in_progress(plant)
    executed = services.batch_record_step(
        batch=batch, step=batch.mbr.steps.first(), performed_by=plant.operator, value="5"
    )

    with refused(
        "Signature refused: the password for plant-verifier is not correct.",
        KernelError.SIGNATURE_PASSWORD,
    ):
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password="no")

    services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    executed.refresh_from_db()
    [(signature, check)] = signatures_for(executed)
    assert (signature.meaning, signature.signer) == (Signature.Meaning.VERIFIED, plant.verifier)
    assert check.is_valid and executed.verified_by == plant.verifier


def test_consuming_a_material_not_in_the_bill_of_materials_refused(plant):
    batch = _in_progress(plant, plant.product_b)
    excipient = plant.receive(plant.excipient)

    with refused(
        f"Lot {excipient} is RM-EXC, which is not in the bill of materials of "
        f"{batch.mbr} that batch {batch} runs under.",
        BatchError.NOT_IN_BOM,
    ):
        services.batch_consume(batch=batch, lot=excipient, quantity="1", by=plant.operator)


# --- master batch record versions --------------------------------------------------------


def test_a_new_version_is_drafted_as_a_copy_of_the_version_in_force(plant):
    v1 = services.mbr_in_force(plant.product_a)

    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)

    assert (draft.version, draft.status, draft.based_on) == (2, "draft", v1)
    assert draft.created_by == plant.operator
    assert services.mbr_content(draft)["steps"] == services.mbr_content(v1)["steps"]
    assert [(b.material, b.quantity) for b in draft.bom_lines.all()] == [
        (b.material, b.quantity) for b in v1.bom_lines.all()
    ]


def test_only_one_open_draft_per_product(plant):
    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)

    with refused(
        f"{draft} is draft: finish or edit it before drafting another version.",
        BatchError.MBR_STATUS,
    ):
        services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)


def test_a_draft_is_edited_and_a_reviewed_version_is_not(plant):
    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)
    content = services.mbr_content(draft)
    content["steps"][1]["high_limit"] = Decimal("20")
    content["title"] = "Longer blend"

    services.mbr_update_draft(mbr=draft, by=plant.operator, reason="Blend time study", **content)
    assert draft.title == "Longer blend"
    assert draft.steps.get(sequence=2).high_limit == Decimal("20")

    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    with refused(
        f"{draft} is reviewed: only a draft can be edited; draft a new version instead.",
        BatchError.MBR_NOT_DRAFT,
    ):
        services.mbr_update_draft(mbr=draft, by=plant.operator, **content)


def test_limits_out_of_order_refused_in_a_draft(plant):
    draft = services.mbr_draft_new_version(product=plant.product_a, by=plant.operator)
    content = services.mbr_content(draft)
    content["steps"][0]["low_limit"] = Decimal("9")

    with refused(
        f"{draft}, step 1 (Dispense): the low limit 9 is above the high limit 6.0000.",
        BatchError.INVALID,
    ):
        services.mbr_update_draft(mbr=draft, by=plant.operator, **content)


def test_the_author_neither_reviews_nor_approves(plant):
    draft = _v2_draft(plant)

    with refused(
        f"{draft} was written by plant-operator; a second person must review it.",
        BatchError.SECOND_PERSON,
    ):
        services.mbr_review(mbr=draft, user=plant.operator, password=PASSWORD)
    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    own = _v2_draft(plant, plant.product_b)
    own.created_by = plant.qa
    own.save()
    services.mbr_review(mbr=own, user=plant.verifier, password=PASSWORD)
    with refused(
        f"{own} was written by plant-qa; a second person must approve it.",
        BatchError.SECOND_PERSON,
    ):
        services.mbr_approve(mbr=own, user=plant.qa, password=PASSWORD)


def test_approval_needs_the_review_first(plant):
    draft = _v2_draft(plant)

    with refused(
        f"{draft} is a draft: it is reviewed by a second person before approval.",
        BatchError.MBR_STATUS,
    ):
        services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)
    draft.refresh_from_db()
    assert draft.status == MasterBatchRecord.Status.DRAFT


def test_a_released_batch_has_every_step_verified(plant):
    batch, _ = plant.run_batch(plant.product_a, [])
    assert batch.status == Batch.Status.RELEASED
    assert not ExecutedStep.objects.filter(batch=batch, verified_by__isnull=True).exists()


def test_an_mbr_without_a_bill_of_materials_consumes_nothing(plant):
    draft = services.mbr_create_draft(
        product=plant.product_a,
        title="No inputs",
        batch_size="1",
        batch_unit="ea",
        theoretical_yield="1",
        bom=[],
        steps=[{"title": "Inspect", "requires_verification": False}],
        by=plant.operator,
    )
    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)
    services.mbr_make_effective(mbr=draft, by=plant.qa)
    batch = _in_progress(plant)
    raw = plant.receive(plant.api)

    with refused(
        f"Lot {raw} is RM-API, which is not in the bill of materials of {draft} that batch "
        f"{batch} runs under.",
        BatchError.NOT_IN_BOM,
    ):
        services.batch_consume(batch=batch, lot=raw, quantity="1", by=plant.operator)


def test_lab_result_limits_out_of_order_refused(plant):
    lot = plant.receive(plant.api, release=False)

    with refused(
        f"Lot {lot}, Assay: the low limit 105 is above the high limit 95.", BatchError.INVALID
    ):
        services.lab_result_record(
            lot=lot,
            test="Assay",
            method="HPLC",
            value="99",
            low_limit="105",
            high_limit="95",
            analyst=plant.verifier,
        )


def test_packaging_is_not_started_on_a_released_batch(plant):
    batch, _ = plant.run_batch(plant.product_a, [])

    with refused(
        f"Batch {batch} is released: packaging is recorded while it is in progress or before "
        "its disposition.",
        BatchError.BATCH_STATUS,
    ):
        services.packaging_start(batch=batch, label_version="LBL-2", by=plant.operator)


def test_an_entry_dated_in_the_future_is_refused(plant):
    batch = _in_progress(plant)
    later = timezone.now() + timedelta(hours=1)

    with refused(
        f"Step 1 of batch {batch}: {later:%Y-%m-%d %H:%M} UTC is in the future.", BatchError.TIME
    ):
        services.batch_record_step(
            batch=batch,
            step=batch.mbr.steps.first(),
            performed_by=plant.operator,
            value="5",
            at=later,
        )


def test_a_shipment_dated_before_the_release_is_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [])
    before = timezone.now() - timedelta(days=1)
    released = services.released_at(lot)

    with refused(
        f"Shipment of lot {lot}: {before:%Y-%m-%d %H:%M} UTC is before the lot was released "
        f"({released:%Y-%m-%d %H:%M} UTC).",
        BatchError.TIME,
    ):
        services.shipment_create(
            lot=lot, customer=plant.customers[0], quantity="1", by=plant.operator, at=before
        )


def test_a_consumption_dated_before_the_batch_started_is_refused(plant):
    batch = _in_progress(plant)
    raw = plant.receive(plant.api)
    before = batch.started_at - timedelta(minutes=30)

    with refused(
        f"Consumption of lot {raw} by batch {batch}: {before:%Y-%m-%d %H:%M} UTC is before the "
        f"batch started ({batch.started_at:%Y-%m-%d %H:%M} UTC).",
        BatchError.TIME,
    ):
        services.batch_consume(batch=batch, lot=raw, quantity="1", by=plant.operator, at=before)


def test_the_cmo_release_signature_stays_valid_after_the_sponsor_releases(plant, sponsor_a):
    QualityAgreementFactory(
        sponsor=sponsor_a,
        status=QualityAgreement.Status.EFFECTIVE,
        release_authority=ReleaseAuthority.SPONSOR,
        effective_from=timezone.now() - timedelta(days=1),
    )
    batch, _ = plant.run_batch(plant.product_a, [])

    batch.refresh_from_db()
    checks = signatures_for(batch)
    assert batch.status == Batch.Status.RELEASED
    assert [signature.signer for signature, _ in checks] == [
        plant.qa,
        plant.sponsor_approver(sponsor_a),
    ]
    assert all(check.is_valid for _, check in checks), [check for _, check in checks]


def test_a_step_comment_with_control_characters_or_past_the_bound_is_refused(plant):
    batch = _in_progress(plant)
    step = batch.mbr.steps.first()

    with pytest.raises(RuleViolation) as refused_nul:
        services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value="7", note="bad\x00note"
        )
    with pytest.raises(RuleViolation) as refused_long:
        services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value="7", note="x" * 20_001
        )

    assert refused_nul.value.detail.startswith(f"Step 1 of batch {batch}: the comment ")
    assert refused_long.value.detail.startswith(f"Step 1 of batch {batch}: the comment ")
    assert not ExecutedStep.objects.filter(batch=batch).exists()


def test_a_shipment_reference_longer_than_a_line_is_refused(plant):
    _, lot = plant.run_batch(plant.product_a, [])

    with pytest.raises(RuleViolation) as refused_reference:
        services.shipment_create(
            lot=lot,
            customer=plant.customers[0],
            quantity="1",
            by=plant.operator,
            reference="R" * 201,
        )

    assert refused_reference.value.detail.startswith(f"Shipment of lot {lot}: the reference ")
    assert not Shipment.objects.exists()
