"""The demo keeps the product's own rules. `seed_demo` is loaded once and its records are walked:
each test checks one rule from the records' own times and signatures and names every record that
breaks it."""

from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone

from batches.disposition import release_check
from batches.models import (
    Batch,
    CleaningRecord,
    Consumption,
    Equipment,
    ExecutedStep,
    LabResult,
    Lot,
    Shipment,
)
from deviations.models import Deviation
from qms.models import Signature
from qms.signatures import signatures_of
from sponsors.models import AccessGrant, Role

pytestmark = pytest.mark.django_db

# the time each signed model's record came into being, where it is not `created_at`
CREATED_AT = {
    "batches.batch": "planned_at",
    "batches.executedstep": "performed_at",
    "batches.cleaningrecord": "performed_at",
    "deviations.deviation": "recorded_at",
    "deviations.capa": "opened_at",
    "documents.trainingrecord": "completed_at",
}


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker, tmp_path_factory):
    """`seed_demo` once for the module, in a transaction rolled back at its end."""
    fast = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MEDIA_ROOT=tmp_path_factory.mktemp("demo-media"),
    )
    with django_db_blocker.unblock(), fast, transaction.atomic():
        call_command("seed_demo", stdout=StringIO())
        yield
        transaction.set_rollback(True)


def _released(record) -> list[Signature]:
    return [s for s in signatures_of(record) if s.meaning == Signature.Meaning.RELEASED]


def _release_time(lot: Lot) -> datetime | None:
    """When the lot was released: a produced lot when its batch's last release signature (the
    one that released it) was signed, a received lot at its own disposition's signature."""
    if lot.produced_by_id is not None:
        if lot.produced_by.status != Batch.Status.RELEASED:
            return None
        signatures = _released(lot.produced_by)
    else:
        if lot.status != Lot.Status.RELEASED:
            return None
        signatures = _released(lot)
    return max((s.signed_at for s in signatures), default=None)


def _organisation(user) -> int | None:
    """The sponsor a user belongs to; None for CMO staff."""
    return getattr(getattr(user, "profile", None), "sponsor_id", None)


def _held_role(user, sponsor_id: int, role: str, at: datetime) -> bool:
    return (
        AccessGrant.objects.filter(user=user, sponsor_id=sponsor_id, role=role)
        .active(at=at)
        .exists()
    )


def _created_at(record) -> datetime:
    label = record._meta.label_lower
    if label == "batches.packagingrecord":
        return record.batch.started_at
    field = CREATED_AT.get(label, "created_at")
    if not hasattr(record, field):
        pytest.fail(f"No creation time is known for {label}: add it to CREATED_AT.")
    return getattr(record, field)


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def _report(failures: list[str]) -> str:
    return f"{len(failures)} record(s) break the rule:\n" + "\n".join(failures)


def test_the_demo_has_records_to_walk(loaded):
    assert Shipment.objects.count() >= 30
    assert Batch.objects.filter(status=Batch.Status.RELEASED).count() >= 15
    assert Batch.objects.filter(status=Batch.Status.REJECTED).exists()
    assert Batch.objects.filter(cmo_released_at__isnull=False).exclude(status="released").exists()
    assert Deviation.objects.filter(status=Deviation.Status.CLOSED).exists()


def test_every_shipment_follows_its_lots_release(loaded):
    failures = []
    for shipment in Shipment.objects.select_related("lot__produced_by").order_by("reference"):
        released_at = _release_time(shipment.lot)
        if released_at is None:
            failures.append(f"shipment {shipment.reference}: lot {shipment.lot} was never released")
        elif shipment.shipped_at <= released_at:
            failures.append(
                f"shipment {shipment.reference} of lot {shipment.lot} at "
                f"{shipment.shipped_at:%Y-%m-%d %H:%M}, before its release signed "
                f"{released_at:%Y-%m-%d %H:%M}"
            )
    assert not failures, _report(failures)


def test_every_shipped_lot_is_released(loaded):
    failures = [
        f"shipment {shipment.reference}: lot {shipment.lot} is {shipment.lot.status}"
        + (
            f", batch {shipment.lot.produced_by} is {shipment.lot.produced_by.status}"
            if shipment.lot.produced_by_id
            else ""
        )
        for shipment in Shipment.objects.select_related("lot__produced_by").order_by("reference")
        if shipment.lot.status != Lot.Status.RELEASED
        or (
            shipment.lot.produced_by_id is not None
            and shipment.lot.produced_by.status != Batch.Status.RELEASED
        )
    ]
    assert not failures, _report(failures)


def test_released_batches_carry_cmo_qa_and_required_sponsor_release(loaded):
    failures = []
    released = Batch.objects.filter(status=Batch.Status.RELEASED).select_related("sponsor")
    for batch in released.order_by("number"):
        signatures = _released(batch)
        cmo = [s for s in signatures if _organisation(s.signer) is None]
        sponsor = [s for s in signatures if _organisation(s.signer) == batch.sponsor_id]
        strangers = [s for s in signatures if s not in cmo and s not in sponsor]
        if not cmo:
            failures.append(f"batch {batch}: no CMO QA release signature")
        for signature in cmo:
            if not _held_role(
                signature.signer, batch.sponsor_id, Role.CMO_QA_APPROVER, signature.signed_at
            ):
                failures.append(
                    f"batch {batch}: released by {signature.signer}, not a CMO QA approver of "
                    f"{batch.sponsor.code} at {signature.signed_at:%Y-%m-%d %H:%M}"
                )
        for signature in strangers:
            failures.append(
                f"batch {batch}: released by {signature.signer}, who belongs to another sponsor"
            )
        check = release_check(batch)
        if not check.sponsor_release_required:
            continue
        if not sponsor:
            failures.append(
                f"batch {batch}: no release by {batch.sponsor.code}'s approver although "
                f"{check.sponsor_release_reason}"
            )
            continue
        for signature in sponsor:
            if not _held_role(
                signature.signer, batch.sponsor_id, Role.SPONSOR_APPROVER, signature.signed_at
            ):
                failures.append(
                    f"batch {batch}: released by {signature.signer}, not {batch.sponsor.code}'s "
                    f"approver at {signature.signed_at:%Y-%m-%d %H:%M}"
                )
        if cmo and min(s.signed_at for s in sponsor) < min(s.signed_at for s in cmo):
            failures.append(f"batch {batch}: the sponsor released before CMO QA")
    assert not failures, _report(failures)


def test_no_produced_lot_is_released_without_its_batch(loaded):
    failures = []
    produced = Lot.objects.filter(produced_by__isnull=False).select_related("produced_by")
    for lot in produced.order_by("lot_number"):
        if lot.status == Lot.Status.RELEASED and lot.produced_by.status != Batch.Status.RELEASED:
            failures.append(f"lot {lot}: released while batch {lot.produced_by} is {lot.status}")
        for signature in signatures_of(lot):
            failures.append(
                f"lot {lot}: {signature.meaning} by {signature.signer} on the lot itself, not "
                f"through batch {lot.produced_by}'s disposition"
            )
    assert not failures, _report(failures)


def test_no_batch_is_released_while_a_linked_deviation_or_oos_is_open(loaded):
    failures = []
    released = Batch.objects.filter(status=Batch.Status.RELEASED)
    for batch in released.order_by("number"):
        first_release = min(s.signed_at for s in _released(batch))
        linked = Deviation.objects.filter(
            Q(batches=batch) | Q(lots__produced_by=batch) | Q(lab_result__lot__produced_by=batch)
        ).distinct()
        for deviation in linked.order_by("number"):
            if deviation.closed_at is None or deviation.closed_at > first_release:
                failures.append(
                    f"batch {batch}: released {first_release:%Y-%m-%d %H:%M} while deviation "
                    f"{deviation.number} was open (closed {_when(deviation.closed_at)})"
                )
            elif deviation.disposition != Deviation.Disposition.USE_AS_IS:
                failures.append(
                    f"batch {batch}: released although deviation {deviation.number} decided "
                    f"{deviation.disposition or 'nothing'}"
                )
        for result in LabResult.objects.filter(lot__produced_by=batch, outcome="oos"):
            closed = result.investigations.filter(
                status=Deviation.Status.CLOSED, closed_at__lte=first_release
            )
            if not closed.exists():
                failures.append(
                    f"batch {batch}: released with {result.test} on lot {result.lot} out of "
                    "specification and no investigation closed before"
                )
    assert not failures, _report(failures)


def test_signatures_are_not_earlier_than_their_records_nor_in_the_future(loaded):
    failures = []
    now = timezone.now()
    for signature in Signature.objects.select_related("content_type", "signer"):
        record = signature.record
        what = f"{signature.meaning} signature by {signature.signer} on {record!r}"
        if record is None:
            failures.append(f"{what}: the record does not exist")
            continue
        created_at = _created_at(record)
        if signature.signed_at < created_at.replace(microsecond=0):
            failures.append(
                f"{what}: signed {signature.signed_at:%Y-%m-%d %H:%M}, before the record was "
                f"created {created_at:%Y-%m-%d %H:%M}"
            )
        if signature.signed_at > now:
            failures.append(f"{what}: signed in the future ({signature.signed_at})")
    assert not failures, _report(failures)


def test_steps_are_performed_after_the_start_and_verified_after_performed(loaded):
    failures = []
    steps = ExecutedStep.objects.select_related("batch", "step").order_by(
        "batch__number", "step__sequence"
    )
    for executed in steps:
        what = f"batch {executed.batch}, step {executed.step.sequence}"
        if executed.performed_at < executed.batch.started_at:
            failures.append(
                f"{what}: performed {executed.performed_at:%Y-%m-%d %H:%M}, before the batch "
                f"started {executed.batch.started_at:%Y-%m-%d %H:%M}"
            )
        if executed.verified_at is not None and executed.verified_at < executed.performed_at:
            failures.append(
                f"{what}: verified {executed.verified_at:%Y-%m-%d %H:%M}, before it was "
                f"performed {executed.performed_at:%Y-%m-%d %H:%M}"
            )
    assert not failures, _report(failures)


def test_lots_are_consumed_only_after_their_release(loaded):
    failures = []
    consumptions = Consumption.objects.select_related("batch", "lot__produced_by").order_by(
        "batch__number", "lot__lot_number"
    )
    for consumption in consumptions:
        released_at = _release_time(consumption.lot)
        if released_at is None or consumption.consumed_at < released_at:
            failures.append(
                f"batch {consumption.batch} consumed lot {consumption.lot} at "
                f"{consumption.consumed_at:%Y-%m-%d %H:%M}; the lot was released "
                f"{_when(released_at)}"
            )
    assert not failures, _report(failures)


def test_equipment_changing_product_is_used_after_a_verified_cleaning(loaded):
    failures = []
    for equipment in Equipment.objects.order_by("code"):
        uses = list(equipment.uses.select_related("batch").order_by("started_at", "id"))
        for previous, use in zip(uses, uses[1:], strict=False):
            if previous.batch.product_id == use.batch.product_id:
                continue
            cleaned = CleaningRecord.objects.filter(
                equipment=equipment,
                performed_at__gte=previous.ended_at,
                performed_at__lte=use.started_at,
                verified_by__isnull=False,
                verified_at__lte=use.started_at,
            )
            if previous.ended_at is None or not cleaned.exists():
                failures.append(
                    f"{equipment.code}: batch {use.batch} started {use.started_at:%Y-%m-%d %H:%M} "
                    f"after batch {previous.batch} of another product without a verified cleaning"
                )
    assert not failures, _report(failures)


def test_no_deviation_is_closed_before_it_was_discovered(loaded):
    failures = []
    for deviation in Deviation.objects.order_by("number"):
        if deviation.discovered_at < deviation.occurred_at:
            failures.append(f"deviation {deviation.number}: discovered before it occurred")
        if deviation.closed_at is not None and deviation.closed_at < deviation.discovered_at:
            failures.append(
                f"deviation {deviation.number}: closed {deviation.closed_at:%Y-%m-%d %H:%M}, "
                f"before it was discovered {deviation.discovered_at:%Y-%m-%d %H:%M}"
            )
        if deviation.status == Deviation.Status.CLOSED and deviation.closed_at is None:
            failures.append(f"deviation {deviation.number}: closed without a closing time")
    assert not failures, _report(failures)
