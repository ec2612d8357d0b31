"""Every rule of the manufacturing record: each refusal with its exact message, and nothing
written when an action is refused."""

from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import services
from batches.disposition import batch_disposition
from batches.models import (
    Batch,
    CleaningRecord,
    Consumption,
    Equipment,
    EquipmentUse,
    ExecutedStep,
    Lot,
    MasterBatchRecord,
    Material,
    PackagingRecord,
    Shipment,
)
from batches.services import BatchError
from qms.errors import KernelError, RuleViolation
from qms.models import AuditEvent, Signature
from qms.signatures import signatures_for
from sponsors.models import Role
from suppliers.models import Supplier
from tests.factories import PASSWORD, ProductFactory, make_user

pytestmark = pytest.mark.django_db


def _head() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@contextmanager
def refused(message: str, code: str | None = None):
    """The action raises RuleViolation with exactly `message`, and the audit trail (which
    records every write to a GxP table) has not grown."""
    before = _head()
    with pytest.raises(RuleViolation) as info:
        yield info
    assert info.value.detail == message
    if code is not None:
        assert info.value.code == code
    assert _head() == before


def _in_progress(plant, product=None, at=None) -> Batch:
    batch = services.batch_plan(
        product=product or plant.product_a, number=plant.next("B"), by=plant.operator
    )
    return services.batch_start(batch=batch, by=plant.operator, started_at=at)


def _record_all_steps(plant, batch) -> None:
    for step in batch.mbr.steps.all():
        executed = services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)


def _produce(plant, product, inputs, material=None, quantity="10", release=True):
    batch = _in_progress(plant, product)
    for lot, used in inputs:
        services.batch_consume(batch=batch, lot=lot, quantity=used, by=plant.operator)
    _record_all_steps(plant, batch)
    lot = services.batch_complete(
        batch=batch,
        output_lot_number=plant.next("L"),
        quantity=quantity,
        by=plant.operator,
        material=material,
    )
    if release:
        plant.release(batch)
        lot.refresh_from_db()
    return batch, lot


def _v2_draft(plant, product=None):
    return services.mbr_create_draft(
        product=product or plant.product_a,
        title="Alphacillin manufacture, revised blend time",
        batch_size="100",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[(plant.api, "5", "kg")],
        steps=[{"title": "Blend", "parameter": "Time", "unit": "min", "low_limit": "12"}],
        by=plant.operator,
    )


# --- lot receipt ---------------------------------------------------------------------------


def test_receipt_books_the_lot_in_quarantine_with_supplier_and_receipt(plant):
    lot = services.lot_receive(
        material=plant.api,
        lot_number="R-NEW",
        quantity="25.5",
        supplier=plant.supplier,
        by=plant.operator,
        supplier_lot_number="CHEM-7781",
        receipt_reference="GRN-0042",
    )

    lot.refresh_from_db()
    assert (lot.status, lot.quantity, lot.unit) == ("quarantine", Decimal("25.5"), "kg")
    assert (lot.supplier, lot.supplier_lot_number, lot.receipt_reference) == (
        plant.supplier,
        "CHEM-7781",
        "GRN-0042",
    )
    assert lot.sponsor_id is None and lot.is_received


@pytest.mark.parametrize(
    ("status", "shown"),
    [("disqualified", "disqualified"), ("pending", "qualification pending")],
)
def test_receipt_refused_from_a_supplier_not_approved(plant, status, shown):
    supplier = Supplier.objects.create(code="SUP-X", name="Shady Chemicals", status=status)

    with refused(
        f"Lot R-BAD cannot be received: supplier SUP-X is not approved ({shown}).",
        BatchError.SUPPLIER_NOT_APPROVED,
    ):
        services.lot_receive(
            material=plant.api,
            lot_number="R-BAD",
            quantity="1",
            supplier=supplier,
            by=plant.operator,
        )
    assert not Lot.objects.filter(lot_number="R-BAD").exists()


def test_receipt_accepted_from_a_conditionally_approved_supplier(plant):
    supplier = Supplier.objects.create(code="SUP-C", name="Probation Ltd", status="conditional")

    lot = services.lot_receive(
        material=plant.api, lot_number="R-C", quantity="1", supplier=supplier, by=plant.operator
    )

    assert lot.supplier == supplier


def test_receipt_refused_for_a_finished_material(plant):
    with refused(
        "Lot R-FG: FG-ALP-100 Alphacillin 100 mg is a finished product, made here, not received.",
        BatchError.INVALID,
    ):
        services.lot_receive(
            material=plant.finished_a,
            lot_number="R-FG",
            quantity="1",
            supplier=plant.supplier,
            by=plant.operator,
        )
    assert not Lot.objects.filter(lot_number="R-FG").exists()


def test_receipt_refused_for_an_intermediate_material(plant):
    granulate = Material.objects.create(
        code="INT-ALP", name="Alphacillin granulate", kind="intermediate", product=plant.product_a
    )

    with refused(
        "Lot R-INT: INT-ALP Alphacillin granulate is an intermediate, made here, not received.",
        BatchError.INVALID,
    ):
        services.lot_receive(
            material=granulate,
            lot_number="R-INT",
            quantity="1",
            supplier=plant.supplier,
            by=plant.operator,
        )
    assert not Lot.objects.filter(lot_number="R-INT").exists()


def test_receipt_refused_for_a_duplicate_lot_number(plant):
    first = plant.receive(plant.api, release=False)

    with refused(f"Lot number {first.lot_number} is already used.", BatchError.INVALID):
        services.lot_receive(
            material=plant.excipient,
            lot_number=first.lot_number,
            quantity="5",
            supplier=plant.supplier,
            by=plant.operator,
        )
    assert Lot.objects.filter(lot_number=first.lot_number).count() == 1


def test_receipt_refused_for_a_sponsor_auditor(plant, auditor_a):
    with refused("auditor-a may not receive lot R-AUD.", BatchError.NOT_PERMITTED):
        services.lot_receive(
            material=plant.api,
            lot_number="R-AUD",
            quantity="1",
            supplier=plant.supplier,
            by=auditor_a,
        )


# --- lot disposition -----------------------------------------------------------------------


def test_release_is_an_e_signature_with_meaning_released(plant):
    lot = plant.receive(plant.api, release=False)

    signature = services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)

    assert lot.status == Lot.Status.RELEASED
    [(stored, check)] = signatures_for(lot)
    assert stored == signature and check.is_valid
    assert (stored.meaning, stored.signer) == (Signature.Meaning.RELEASED, plant.qa)


def test_reject_is_an_e_signature_with_meaning_rejected(plant):
    lot = plant.receive(plant.api, release=False)

    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=False)

    assert lot.status == Lot.Status.REJECTED
    [(stored, check)] = signatures_for(lot)
    assert stored.meaning == Signature.Meaning.REJECTED and check.is_valid


def test_disposition_refused_with_a_wrong_password(plant):
    lot = plant.receive(plant.api, release=False)

    with refused(
        "Signature refused: the password for plant-qa is not correct.",
        KernelError.SIGNATURE_PASSWORD,
    ):
        services.lot_disposition(lot=lot, user=plant.qa, password="wrong", release=True)

    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE
    assert signatures_for(lot) == []


def test_disposition_refused_without_the_approve_right(plant):
    lot = plant.receive(plant.api, release=False)

    with refused(f"plant-operator may not release or reject lot {lot}.", BatchError.NOT_PERMITTED):
        services.lot_disposition(lot=lot, user=plant.operator, password=PASSWORD, release=True)


@pytest.mark.parametrize(("first", "state"), [(True, "released"), (False, "rejected")])
def test_disposition_only_from_quarantine(plant, first, state):
    lot = plant.receive(plant.api, release=False)
    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=first)

    for again in (True, False):
        with refused(
            f"Lot {lot} is {state}; only a lot in quarantine can be released or rejected.",
            BatchError.LOT_STATUS,
        ):
            services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=again)

    lot.refresh_from_db()
    assert lot.status == state
    assert len(signatures_for(lot)) == 1


def test_release_refused_with_an_oos_result_naming_the_test(plant):
    lot = plant.receive(plant.api, release=False)
    passing = services.lab_result_record(
        lot=lot,
        test="Assay",
        method="HPLC",
        value="99.1",
        low_limit="98",
        high_limit="102",
        unit="%",
        analyst=plant.verifier,
    )
    failing = services.lab_result_record(
        lot=lot,
        test="Water content",
        method="Karl Fischer",
        value="0.9",
        high_limit="0.5",
        unit="%",
        analyst=plant.verifier,
    )
    assert (passing.outcome, failing.outcome) == ("pass", "oos")

    with refused(
        f"Lot {lot} cannot be released: out-of-specification result (Water content).",
        BatchError.LOT_OOS,
    ):
        services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)

    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE
    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=False)
    assert lot.status == Lot.Status.REJECTED


def test_lab_result_needs_a_specification_limit(plant):
    lot = plant.receive(plant.api, release=False)

    with refused(f"Lot {lot}, Assay: a specification limit is needed.", BatchError.INVALID):
        services.lab_result_record(
            lot=lot, test="Assay", method="HPLC", value="99", analyst=plant.verifier
        )
    assert not lot.lab_results.exists()


# --- consumption ---------------------------------------------------------------------------


def test_consuming_a_quarantined_lot_refused(plant):
    lot = plant.receive(plant.api, release=False)
    batch = _in_progress(plant)

    with refused(
        f"Lot {lot} is in quarantine: it cannot be consumed.", BatchError.LOT_NOT_RELEASED
    ):
        services.batch_consume(batch=batch, lot=lot, quantity="1", by=plant.operator)
    assert not Consumption.objects.exists()


def test_consuming_a_rejected_lot_refused(plant):
    lot = plant.receive(plant.api, release=False)
    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=False)
    batch = _in_progress(plant)

    with refused(f"Lot {lot} is rejected: it cannot be consumed.", BatchError.LOT_NOT_RELEASED):
        services.batch_consume(batch=batch, lot=lot, quantity="1", by=plant.operator)
    assert not Consumption.objects.exists()


def test_consuming_more_than_remains_refused_showing_what_is_left(plant):
    lot = plant.receive(plant.api, quantity="100")
    first = _in_progress(plant)
    services.batch_consume(batch=first, lot=lot, quantity="60", by=plant.operator)
    second = _in_progress(plant, plant.product_b)
    services.batch_consume(batch=second, lot=lot, quantity="37.5", by=plant.operator)

    with refused(
        f"Lot {lot} has 2.5 kg left: 3 kg cannot be consumed.", BatchError.LOT_INSUFFICIENT
    ):
        services.batch_consume(batch=second, lot=lot, quantity="3", by=plant.operator)

    assert second.consumptions.count() == 1
    services.batch_consume(batch=second, lot=lot, quantity="2.5", by=plant.operator)


def test_consuming_more_than_a_whole_lot_shows_plain_numbers(plant):
    lot = plant.receive(plant.api, quantity="100")
    batch = _in_progress(plant)

    with refused(
        f"Lot {lot} has 100 kg left: 150 kg cannot be consumed.", BatchError.LOT_INSUFFICIENT
    ):
        services.batch_consume(batch=batch, lot=lot, quantity="150", by=plant.operator)


def test_consuming_another_sponsors_intermediate_refused(plant):
    bulk = Material.objects.create(
        code="INT-ZZ", name="ZZOTHER bulk", kind="intermediate", unit="kg", product=plant.product_b
    )
    _, bulk_lot = _produce(plant, plant.product_b, [], material=bulk)
    assert (bulk_lot.material, bulk_lot.sponsor) == (bulk, plant.sponsor_b)
    batch = _in_progress(plant, plant.product_a)

    with refused(
        f"Lot {bulk_lot} belongs to another sponsor's product: batch {batch} cannot consume it.",
        BatchError.INVALID,
    ):
        services.batch_consume(batch=batch, lot=bulk_lot, quantity="1", by=plant.operator)
    assert not batch.consumptions.exists()


def test_consuming_outside_an_in_progress_batch_refused(plant):
    lot = plant.receive(plant.api)
    planned = services.batch_plan(
        product=plant.product_a, number=plant.next("B"), by=plant.operator
    )
    completed, _ = _produce(plant, plant.product_a, [], release=False)

    with refused(f"Batch {planned} is planned: cannot consume lot {lot}.", BatchError.BATCH_STATUS):
        services.batch_consume(batch=planned, lot=lot, quantity="1", by=plant.operator)
    with refused(
        f"Batch {completed} is completed: cannot consume lot {lot}.", BatchError.BATCH_STATUS
    ):
        services.batch_consume(batch=completed, lot=lot, quantity="1", by=plant.operator)
    assert not Consumption.objects.exists()


def test_consumption_must_be_positive(plant):
    lot = plant.receive(plant.api)
    batch = _in_progress(plant)

    with refused(
        f"Consumption of lot {lot} by batch {batch}: the quantity must be positive.",
        BatchError.INVALID,
    ):
        services.batch_consume(batch=batch, lot=lot, quantity="0", by=plant.operator)


# --- master batch records ------------------------------------------------------------------


def test_mbr_goes_draft_approved_effective_then_superseded(plant):
    v1 = MasterBatchRecord.objects.get(product=plant.product_a)
    v2 = _v2_draft(plant)
    assert (v2.version, v2.status) == (2, MasterBatchRecord.Status.DRAFT)
    assert [s.title for s in v2.steps.all()] == ["Blend"]

    review = services.mbr_review(mbr=v2, user=plant.verifier, password=PASSWORD)
    assert v2.status == MasterBatchRecord.Status.REVIEWED
    signature = services.mbr_approve(mbr=v2, user=plant.qa, password=PASSWORD)
    assert v2.status == MasterBatchRecord.Status.APPROVED
    [(reviewed, first), (stored, check)] = signatures_for(v2)
    assert reviewed == review and reviewed.meaning == Signature.Meaning.REVIEWED
    assert stored == signature and stored.meaning == Signature.Meaning.APPROVED
    assert first.is_valid and check.is_valid

    services.mbr_make_effective(mbr=v2, by=plant.qa)
    v1.refresh_from_db()
    assert (v2.status, v1.status) == ("effective", "superseded")
    assert services.mbr_in_force(plant.product_a) == v2


def test_mbr_cannot_become_effective_before_approval(plant):
    draft = _v2_draft(plant)

    with refused("MBR ALP-100 v2 is draft; it cannot become effective.", BatchError.MBR_STATUS):
        services.mbr_make_effective(mbr=draft, by=plant.qa)
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.effective_from is None


def test_mbr_approval_refused_once_approved(plant):
    draft = _v2_draft(plant)
    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)

    with refused("MBR ALP-100 v2 is approved; it cannot become approved.", BatchError.MBR_STATUS):
        services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)
    assert len(signatures_for(draft)) == 2


def test_mbr_approval_refused_with_a_wrong_password(plant):
    draft = _v2_draft(plant)

    with refused("Signature refused: the password for plant-qa is not correct."):
        services.mbr_approve(mbr=draft, user=plant.qa, password="nope")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_mbr_needs_at_least_one_step(plant):
    with refused("MBR for ALP-100: it needs at least one step.", BatchError.INVALID):
        services.mbr_create_draft(
            product=plant.product_a,
            title="Empty",
            batch_size="1",
            batch_unit="ea",
            theoretical_yield="1",
            bom=[],
            steps=[],
            by=plant.qa,
        )


def test_batch_plan_refused_without_an_effective_mbr(plant):
    newcomer = ProductFactory(sponsor=plant.sponsor_a, code="ALP-200", name="Alphacillin 200")
    message = "Batch B-NEW cannot be planned: ALP-200 has no effective master batch record."

    with refused(message, BatchError.MBR_MISSING):
        services.batch_plan(product=newcomer, number="B-NEW", by=plant.operator)

    draft = _v2_draft(plant, newcomer)
    services.mbr_review(mbr=draft, user=plant.verifier, password=PASSWORD)
    services.mbr_approve(mbr=draft, user=plant.qa, password=PASSWORD)
    with refused(message, BatchError.MBR_MISSING):
        services.batch_plan(product=newcomer, number="B-NEW", by=plant.operator)
    assert not Batch.objects.filter(number="B-NEW").exists()


def test_batch_start_refused_without_an_mbr_in_force_at_the_start(plant):
    batch = services.batch_plan(product=plant.product_a, number="B-EARLY", by=plant.operator)
    before_any_mbr = timezone.now() - timedelta(days=30)

    with refused(
        "Batch B-EARLY cannot start: ALP-100 has no effective master batch record.",
        BatchError.MBR_MISSING,
    ):
        services.batch_start(batch=batch, by=plant.operator, started_at=before_any_mbr)

    batch.refresh_from_db()
    assert (batch.status, batch.started_at) == ("planned", None)


def test_batch_start_refused_twice(plant):
    batch = _in_progress(plant)

    with refused(
        f"Batch {batch} is in progress; it cannot become in progress.", BatchError.BATCH_STATUS
    ):
        services.batch_start(batch=batch, by=plant.operator)


def test_batch_records_the_mbr_version_in_force_when_it_started(plant):
    v1 = services.mbr_in_force(plant.product_a)
    older = _in_progress(plant)
    waiting = services.batch_plan(product=plant.product_a, number="B-WAIT", by=plant.operator)
    backdated = services.batch_plan(product=plant.product_a, number="B-BACK", by=plant.operator)
    assert waiting.mbr == v1

    v2 = _v2_draft(plant)
    services.mbr_review(mbr=v2, user=plant.verifier, password=PASSWORD)
    services.mbr_approve(mbr=v2, user=plant.qa, password=PASSWORD)
    services.mbr_make_effective(mbr=v2, by=plant.qa)
    services.batch_start(batch=waiting, by=plant.operator)
    services.batch_start(
        batch=backdated, by=plant.operator, started_at=v2.effective_from - timedelta(hours=1)
    )
    newer = _in_progress(plant)

    older.refresh_from_db()
    assert (older.mbr, waiting.mbr, backdated.mbr, newer.mbr) == (v1, v2, v1, v2)
    assert set(v1.batches.values_list("number", flat=True)) == {older.number, "B-BACK"}


# --- executed steps ------------------------------------------------------------------------


def test_step_of_another_mbr_refused(plant):
    batch = _in_progress(plant, plant.product_a)
    foreign = MasterBatchRecord.objects.get(product=plant.product_b).steps.first()

    with refused(
        f"Step 1. Dispense is not a step of MBR ALP-100 v1, which batch {batch} runs under.",
        BatchError.STEP_INVALID,
    ):
        services.batch_record_step(batch=batch, step=foreign, performed_by=plant.operator)
    assert not ExecutedStep.objects.exists()


def test_step_recorded_twice_refused(plant):
    batch = _in_progress(plant)
    step = batch.mbr.steps.first()
    services.batch_record_step(batch=batch, step=step, performed_by=plant.operator, value="5.5")

    with refused(f"Step 1 of batch {batch} is already recorded.", BatchError.STEP_INVALID):
        services.batch_record_step(batch=batch, step=step, performed_by=plant.verifier, value="5.6")
    assert batch.executed_steps.get().value == Decimal("5.5")


def test_step_on_a_batch_not_in_progress_refused(plant):
    batch = services.batch_plan(product=plant.product_a, number="B-P", by=plant.operator)
    step = batch.mbr.steps.first()

    with refused("Batch B-P is planned: cannot record step 1.", BatchError.BATCH_STATUS):
        services.batch_record_step(batch=batch, step=step, performed_by=plant.operator)


def test_step_verified_by_its_performer_refused(plant):
    batch = _in_progress(plant)
    executed = services.batch_record_step(
        batch=batch, step=batch.mbr.steps.first(), performed_by=plant.operator, value="5"
    )

    with refused(
        f"Step 1 of batch {batch} was performed by plant-operator; a second person must verify it.",
        BatchError.SECOND_PERSON,
    ):
        services.batch_verify_step(executed=executed, verified_by=plant.operator, password=PASSWORD)
    executed.refresh_from_db()
    assert executed.verified_by is None

    services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    assert executed.verified_by == plant.verifier and executed.verified_at is not None


def test_step_verified_twice_refused(plant):
    batch = _in_progress(plant)
    executed = services.batch_record_step(
        batch=batch, step=batch.mbr.steps.first(), performed_by=plant.operator, value="5"
    )
    services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)

    with refused(f"Step 1 of batch {batch} is already verified.", BatchError.STEP_INVALID):
        services.batch_verify_step(executed=executed, verified_by=plant.qa, password=PASSWORD)
    executed.refresh_from_db()
    assert executed.verified_by == plant.verifier


@pytest.mark.parametrize(
    ("value", "in_limits"),
    [("5", True), ("6", True), ("5.5", True), ("4.99", False), ("6.2", False), (None, False)],
)
def test_step_value_outside_its_limits_is_flagged(plant, value, in_limits):
    batch = _in_progress(plant)

    executed = services.batch_record_step(
        batch=batch,
        step=batch.mbr.steps.first(),
        performed_by=plant.operator,
        value=value,
        note="" if in_limits else "Checked with the supervisor.",
    )

    executed.refresh_from_db()
    assert executed.is_in_limits is in_limits


def test_completing_with_unrecorded_steps_refused(plant):
    batch = _in_progress(plant)

    with refused(
        f"Batch {batch} cannot be completed: steps 1, 2 are not recorded.", BatchError.STEP_INVALID
    ):
        services.batch_complete(
            batch=batch, output_lot_number="L-X", quantity="10", by=plant.operator
        )

    first = batch.mbr.steps.first()
    services.batch_record_step(batch=batch, step=first, performed_by=plant.operator, value="5")
    with refused(
        f"Batch {batch} cannot be completed: step 2 is not recorded.", BatchError.STEP_INVALID
    ):
        services.batch_complete(
            batch=batch, output_lot_number="L-X", quantity="10", by=plant.operator
        )

    batch.refresh_from_db()
    assert (batch.status, batch.completed_at, batch.actual_yield) == ("in_progress", None, None)
    assert not Lot.objects.filter(lot_number="L-X").exists()


def test_completion_makes_a_quarantined_output_lot_and_records_the_yield(plant):
    batch = _in_progress(plant)
    _record_all_steps(plant, batch)

    lot = services.batch_complete(
        batch=batch, output_lot_number="L-OUT", quantity="9.5", by=plant.operator
    )

    assert (lot.material, lot.sponsor, lot.status, lot.produced_by) == (
        plant.finished_a,
        plant.sponsor_a,
        "quarantine",
        batch,
    )
    assert (batch.status, batch.actual_yield) == ("completed", Decimal("9.5"))
    assert batch.yield_percent == Decimal("95.0")


def test_completion_refused_for_a_material_of_another_product(plant):
    batch = _in_progress(plant)
    _record_all_steps(plant, batch)

    with refused(
        f"Batch {batch} cannot make a lot of FG-ZZOTHER-1 ZZOTHER tablets: it is not an "
        "intermediate or finished material of ALP-100.",
        BatchError.INVALID,
    ):
        services.batch_complete(
            batch=batch,
            output_lot_number="L-X",
            quantity="1",
            by=plant.operator,
            material=plant.finished_b,
        )


# --- equipment -----------------------------------------------------------------------------


def _used_and_ended(plant, product, start):
    batch = _in_progress(plant, product, at=start)
    use = services.equipment_use_start(
        batch=batch, equipment=plant.tank, by=plant.operator, at=start
    )
    services.equipment_use_end(use=use, by=plant.operator, at=start + timedelta(hours=2))
    return use


def _clean(plant, at, verified=True):
    cleaning = services.cleaning_record(
        equipment=plant.tank, method="CIP, caustic + rinse", performed_by=plant.operator, at=at
    )
    if verified:
        services.cleaning_verify(
            cleaning=cleaning, verified_by=plant.verifier, password=PASSWORD, at=at
        )
    return cleaning


def test_equipment_past_its_qualification_date_refused(plant):
    expired = timezone.now().date() - timedelta(days=1)
    Equipment.objects.filter(pk=plant.tank.pk).update(qualified_until=expired)
    batch = _in_progress(plant)

    with refused(
        f"TANK-4 cannot be used: its qualification expired on {expired:%Y-%m-%d}.",
        BatchError.EQUIPMENT_UNQUALIFIED,
    ):
        services.equipment_use_start(batch=batch, equipment=plant.tank, by=plant.operator)
    assert not EquipmentUse.objects.exists()


def test_equipment_qualified_until_today_may_be_used(plant):
    Equipment.objects.filter(pk=plant.tank.pk).update(qualified_until=timezone.now().date())

    use = services.equipment_use_start(
        batch=_in_progress(plant), equipment=plant.tank, by=plant.operator
    )

    assert use.ended_at is None


def test_equipment_in_maintenance_refused(plant):
    Equipment.objects.filter(pk=plant.tank.pk).update(status=Equipment.Status.MAINTENANCE)
    batch = _in_progress(plant)

    with refused(
        "TANK-4 is under maintenance: it cannot be used.", BatchError.EQUIPMENT_UNAVAILABLE
    ):
        services.equipment_use_start(batch=batch, equipment=plant.tank, by=plant.operator)
    assert not EquipmentUse.objects.exists()


def test_equipment_still_in_use_refused(plant):
    services.equipment_use_start(batch=_in_progress(plant), equipment=plant.tank, by=plant.operator)
    second = _in_progress(plant)

    with refused(
        "TANK-4 is still in use by another batch; end that use first.",
        BatchError.EQUIPMENT_UNAVAILABLE,
    ):
        services.equipment_use_start(batch=second, equipment=plant.tank, by=plant.operator)
    assert EquipmentUse.objects.count() == 1


def test_equipment_use_ends_when_the_batch_completes(plant):
    batch = _in_progress(plant)
    use = services.equipment_use_start(batch=batch, equipment=plant.tank, by=plant.operator)
    _record_all_steps(plant, batch)

    services.batch_complete(batch=batch, output_lot_number="L-E", quantity="10", by=plant.operator)

    use.refresh_from_db()
    assert use.ended_at == batch.completed_at


def test_different_product_without_cleaning_refused(plant):
    start = timezone.now() - timedelta(hours=10)
    previous = _used_and_ended(plant, plant.product_a, start)
    batch = _in_progress(plant, plant.product_b, at=start + timedelta(hours=2))

    with refused(
        f"TANK-4 last ran another product (ended {previous.ended_at:%Y-%m-%d %H:%M} UTC): a "
        f"verified cleaning after that is required before batch {batch} uses it.",
        BatchError.CLEANING_REQUIRED,
    ):
        services.equipment_use_start(
            batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=4)
        )
    assert not batch.equipment_uses.exists()


def test_different_product_after_an_unverified_cleaning_refused(plant):
    start = timezone.now() - timedelta(hours=10)
    previous = _used_and_ended(plant, plant.product_a, start)
    _clean(plant, start + timedelta(hours=3), verified=False)
    batch = _in_progress(plant, plant.product_b, at=start + timedelta(hours=2))

    with refused(
        f"TANK-4 last ran another product (ended {previous.ended_at:%Y-%m-%d %H:%M} UTC): a "
        f"verified cleaning after that is required before batch {batch} uses it.",
        BatchError.CLEANING_REQUIRED,
    ):
        services.equipment_use_start(
            batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=4)
        )


def test_different_product_after_a_cleaning_before_the_previous_use_ended_refused(plant):
    start = timezone.now() - timedelta(hours=10)
    _clean(plant, start - timedelta(hours=1))
    _clean(plant, start + timedelta(hours=1))
    previous = _used_and_ended(plant, plant.product_a, start)
    batch = _in_progress(plant, plant.product_b, at=start + timedelta(hours=2))

    with refused(
        f"TANK-4 last ran another product (ended {previous.ended_at:%Y-%m-%d %H:%M} UTC): a "
        f"verified cleaning after that is required before batch {batch} uses it.",
        BatchError.CLEANING_REQUIRED,
    ):
        services.equipment_use_start(
            batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=4)
        )


def test_different_product_after_a_cleaning_later_than_the_new_use_refused(plant):
    start = timezone.now() - timedelta(hours=10)
    _used_and_ended(plant, plant.product_a, start)
    _clean(plant, start + timedelta(hours=5))
    batch = _in_progress(plant, plant.product_b, at=start + timedelta(hours=2))

    with pytest.raises(RuleViolation) as info:
        services.equipment_use_start(
            batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=4)
        )
    assert info.value.code == BatchError.CLEANING_REQUIRED


def test_different_product_after_a_verified_cleaning_accepted(plant):
    start = timezone.now() - timedelta(hours=10)
    _used_and_ended(plant, plant.product_a, start)
    _clean(plant, start + timedelta(hours=3))
    batch = _in_progress(plant, plant.product_b, at=start + timedelta(hours=2))

    use = services.equipment_use_start(
        batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=4)
    )

    assert (use.batch, use.sponsor) == (batch, plant.sponsor_b)


def test_same_product_needs_no_cleaning(plant):
    start = timezone.now() - timedelta(hours=10)
    _used_and_ended(plant, plant.product_a, start)
    batch = _in_progress(plant, plant.product_a, at=start + timedelta(hours=2))

    use = services.equipment_use_start(
        batch=batch, equipment=plant.tank, by=plant.operator, at=start + timedelta(hours=3)
    )

    assert use.batch == batch
    assert not CleaningRecord.objects.exists()


def test_cleaning_verified_by_its_performer_refused(plant):
    cleaning = _clean(plant, timezone.now(), verified=False)

    with refused(
        f"{cleaning} was performed by plant-operator; a second person must verify it.",
        BatchError.SECOND_PERSON,
    ):
        services.cleaning_verify(cleaning=cleaning, verified_by=plant.operator, password=PASSWORD)
    cleaning.refresh_from_db()
    assert not cleaning.is_verified


def test_cleaning_needs_a_method(plant):
    with refused("Cleaning of TANK-4: name the method.", BatchError.INVALID):
        services.cleaning_record(equipment=plant.tank, method="  ", performed_by=plant.operator)


# --- packaging -----------------------------------------------------------------------------


def test_line_clearance_is_signed_with_meaning_reviewed(plant):
    batch = _in_progress(plant)
    packaging = services.packaging_start(batch=batch, label_version="LBL-ALP-100 v3", by=plant.qa)

    signature = services.packaging_clear_line(
        packaging=packaging, user=plant.operator, password=PASSWORD
    )

    assert packaging.line_cleared_at is not None
    [(stored, check)] = signatures_for(packaging)
    assert stored == signature and check.is_valid
    assert (stored.meaning, stored.signer) == (Signature.Meaning.REVIEWED, plant.operator)


def test_line_clearance_refused_twice(plant):
    packaging = services.packaging_start(
        batch=_in_progress(plant), label_version="LBL v1", by=plant.qa
    )
    services.packaging_clear_line(packaging=packaging, user=plant.operator, password=PASSWORD)

    with refused(f"The line for {packaging.batch} is already cleared.", BatchError.INVALID):
        services.packaging_clear_line(packaging=packaging, user=plant.qa, password=PASSWORD)
    assert len(signatures_for(packaging)) == 1


def test_packaging_recorded_once_per_batch(plant):
    batch = _in_progress(plant)
    services.packaging_start(batch=batch, label_version="LBL v1", by=plant.qa)

    with refused(f"Packaging of {batch} is already recorded.", BatchError.INVALID):
        services.packaging_start(batch=batch, label_version="LBL v2", by=plant.qa)


def test_label_reconciliation_that_does_not_balance_refused_with_the_counts(plant):
    batch = _in_progress(plant)
    packaging = services.packaging_start(batch=batch, label_version="LBL v1", by=plant.qa)

    with refused(
        f"Label reconciliation of batch {batch} does not balance: 1000 issued, 998 accounted "
        "for (960 used + 30 destroyed + 8 returned).",
        BatchError.RECONCILIATION,
    ):
        services.packaging_reconcile(
            packaging=packaging, issued=1000, used=960, destroyed=30, returned=8, by=plant.operator
        )

    packaging.refresh_from_db()
    assert (packaging.labels_issued, packaging.reconciled_at) == (None, None)
    assert not packaging.is_reconciled


def test_balanced_label_reconciliation_accepted(plant):
    packaging = services.packaging_start(
        batch=_in_progress(plant), label_version="LBL v1", by=plant.qa
    )

    services.packaging_reconcile(
        packaging=packaging, issued=1000, used=960, destroyed=30, returned=10, by=plant.operator
    )

    stored = PackagingRecord.objects.get(pk=packaging.pk)
    assert (
        stored.labels_issued,
        stored.labels_used,
        stored.labels_destroyed,
        stored.labels_returned,
    ) == (1000, 960, 30, 10)
    assert stored.is_reconciled


# --- shipments -----------------------------------------------------------------------------


def test_shipping_a_lot_in_quarantine_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [], release=False)

    with refused(
        f"Lot {lot} cannot be shipped: its batch {batch} is completed, not released.",
        BatchError.LOT_NOT_RELEASED,
    ):
        services.shipment_create(
            lot=lot, customer=plant.customers[0], quantity="1", by=plant.operator
        )
    assert not Shipment.objects.exists()


def test_shipping_a_rejected_lot_refused(plant):
    batch, lot = plant.run_batch(plant.product_a, [], release=False)
    batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=False)
    lot.refresh_from_db()

    with refused(
        f"Lot {lot} cannot be shipped: its batch {batch} is rejected, not released.",
        BatchError.LOT_NOT_RELEASED,
    ):
        services.shipment_create(
            lot=lot, customer=plant.customers[0], quantity="1", by=plant.operator
        )
    assert not Shipment.objects.exists()


def test_shipping_a_site_raw_lot_refused(plant):
    raw = plant.receive(plant.api)

    with refused(
        f"Lot {raw} is a site material, not a sponsor's product: it cannot be shipped.",
        BatchError.LOT_NOT_SHIPPABLE,
    ):
        services.shipment_create(
            lot=raw, customer=plant.customers[0], quantity="1", by=plant.operator
        )
    assert not Shipment.objects.exists()


def test_shipping_more_than_remains_refused(plant):
    _, lot = plant.run_batch(plant.product_a, [], output_quantity="10")
    services.shipment_create(lot=lot, customer=plant.customers[0], quantity="6", by=plant.operator)

    with refused(f"Lot {lot} has 4 ea left: 5 ea cannot be shipped.", BatchError.LOT_INSUFFICIENT):
        services.shipment_create(
            lot=lot, customer=plant.customers[1], quantity="5", by=plant.operator
        )

    assert lot.shipments.count() == 1
    shipment = services.shipment_create(
        lot=lot, customer=plant.customers[1], quantity="4", by=plant.operator
    )
    assert shipment.sponsor == plant.sponsor_a


# --- audit trail ---------------------------------------------------------------------------


def test_every_action_is_attributed_in_the_audit_trail(plant):
    before = _head()
    lot = plant.receive(plant.api, release=False)
    services.lot_disposition(lot=lot, user=plant.qa, password=PASSWORD, release=True)
    batch = _in_progress(plant)
    executed = services.batch_record_step(
        batch=batch, step=batch.mbr.steps.first(), performed_by=plant.operator, value="5"
    )
    services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    consumption = services.batch_consume(batch=batch, lot=lot, quantity="2", by=plant.operator)

    events = AuditEvent.objects.filter(seq__gt=before)

    def actions(record):
        found = events.filter(model=record._meta.label_lower, object_id=str(record.pk))
        return [(e.action, e.actor_username) for e in found]

    assert actions(lot) == [("create", "plant-operator"), ("update", "plant-qa")]
    assert actions(executed) == [("create", "plant-operator"), ("update", "plant-verifier")]
    assert actions(consumption) == [("create", "plant-operator")]
    step_update = events.get(model="batches.executedstep", action="update")
    assert step_update.actor_id == plant.verifier.pk
    assert step_update.sponsor_id == plant.sponsor_a.pk
    assert "verified_by_id" in step_update.changes
    release = events.get(model="batches.lot", object_id=str(lot.pk), action="update")
    assert release.changes["status"] == ["quarantine", "released"]


def test_a_user_without_a_grant_on_the_sponsor_may_not_act(plant, sponsor_b):
    outsider = make_user(sponsor=sponsor_b, role=Role.CMO_STAFF, username="only-b")
    batch = _in_progress(plant, plant.product_a)

    with refused(f"only-b may not start batch {batch}.", BatchError.NOT_PERMITTED):
        services.batch_start(batch=batch, by=outsider)
