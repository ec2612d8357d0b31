"""The demo manufacturing record: loaded after `seed_demo`, idempotent, with a raw lot consumed
by two sponsors' products, Tank 4 cleaned between two sponsors' batches, and lots released only
through their batch's disposition (the sponsor's release too where its agreement requires it).
The rules every demo record keeps are walked in test_demo_rules.py."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from batches import demo
from batches.models import (
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
from batches.selectors import recall_scope_forward
from batches.services import mbr_in_force
from qms.models import AuditEvent, Signature
from qms.signatures import signatures_for
from sponsors.models import Product
from suppliers.models import Supplier

pytestmark = pytest.mark.django_db

MODELS = [
    Supplier,
    Material,
    Equipment,
    Customer,
    MasterBatchRecord,
    BomLine,
    MbrStep,
    Batch,
    Lot,
    Consumption,
    ExecutedStep,
    EquipmentUse,
    CleaningRecord,
    LabResult,
    PackagingRecord,
    Shipment,
    Signature,
]


def _counts() -> dict[str, int]:
    counts = {model.__name__: model.objects.count() for model in MODELS}
    counts["audit head"] = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)[0]
    return counts


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker, tmp_path_factory):
    """Load once for the module inside a transaction rolled back at its end; each test runs in
    a savepoint within it."""
    fast = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MEDIA_ROOT=tmp_path_factory.mktemp("demo-media"),
    )
    with django_db_blocker.unblock(), fast, transaction.atomic():
        call_command("seed_demo", stdout=StringIO())
        demo.load()
        yield
        transaction.set_rollback(True)


def _user(username):
    return get_user_model().objects.get(username=username)


def test_demo_counts(loaded):
    counts = _counts()
    del counts["audit head"]

    assert {name: n for name, n in counts.items() if name != "Signature"} == {
        "Supplier": 4,
        "Material": 22,
        "Equipment": 7,
        "Customer": 6,
        "MasterBatchRecord": 5,
        "BomLine": 15,
        "MbrStep": 18,
        "Batch": 20,
        "Lot": 32,
        "Consumption": 60,
        "ExecutedStep": 72,
        "EquipmentUse": 28,
        "CleaningRecord": 28,
        "LabResult": 48,
        "PackagingRecord": 20,
        "Shipment": 36,
    }
    statuses = {s: Lot.objects.filter(status=s).count() for s in Lot.Status.values}
    assert statuses == {"released": 30, "rejected": 1, "quarantine": 1}
    batches = {s: Batch.objects.filter(status=s).count() for s in Batch.Status.values}
    assert {s: n for s, n in batches.items() if n} == {
        "released": 18,
        "rejected": 1,
        "under_review": 1,
    }
    assert not ExecutedStep.objects.filter(verified_by__isnull=True).exists()
    assert not ExecutedStep.objects.filter(is_in_limits=False).exists()
    assert not PackagingRecord.objects.filter(reconciled_at__isnull=True).exists()
    assert not PackagingRecord.objects.filter(line_cleared_at__isnull=True).exists()


def test_second_load_creates_and_changes_nothing(loaded):
    before = _counts()

    assert demo.load(stdout=StringIO()) == []

    assert _counts() == before


def test_each_sponsor_has_a_product_with_an_effective_mbr_and_months_of_batches(loaded):
    for code in ("acme", "borealis", "cygnus", "draco", "eos"):
        [mbr] = MasterBatchRecord.objects.filter(sponsor__code=code)
        assert mbr.status == "effective"
        assert mbr_in_force(mbr.product) == mbr
        signed = [
            (s.meaning, s.signer.username, check.is_valid) for s, check in signatures_for(mbr)
        ]
        assert signed == [("reviewed", "operator", True), ("approved", "qa-approver", True)]
        assert mbr.created_by.username == "qa"
        batches = Batch.objects.filter(sponsor__code=code).order_by("started_at")
        assert batches.count() == 4
        span = batches.last().started_at - batches.first().started_at
        assert span.days >= 85
        assert all(b.mbr == mbr and 90 <= b.yield_percent <= 100 for b in batches)
    finished = Material.objects.filter(kind="finished")
    assert finished.count() == Product.objects.count() == 10
    assert all(len(m.gtin) == 14 and m.gtin.isdigit() for m in finished)
    assert all(demo.gs1_check_digit(m.gtin[:-1]) == m.gtin[-1] for m in finished)


def test_gs1_check_digit_of_known_identifiers():
    assert demo.gs1_check_digit("0061414112345") == "2"
    assert demo.gs1_check_digit("400638133393") == "1"


def test_shared_raw_lot_forward_scope_reaches_two_sponsors(loaded):
    shared = Lot.objects.get(lot_number=demo.SHARED_RAW_LOT)

    scope = recall_scope_forward(lot=shared, user=_user("qa"))

    assert {lot.sponsor.code for lot in scope.lots if lot.sponsor} == {"acme", "eos"}
    assert {batch.sponsor.code for batch in scope.batches} == {"acme", "eos"}
    assert [group.label for group in scope.groups] == [
        "Acme Pharmaceuticals",
        "Eos Consumer Health",
        "Site materials",
    ]
    assert len(scope.customers) >= 3
    acme_only = recall_scope_forward(lot=shared, user=_user("acme-auditor"))
    assert {batch.sponsor.code for batch in acme_only.batches} == {"acme"}
    assert {shipment.sponsor.code for shipment in acme_only.shipments} == {"acme"}


def test_tank_4_is_used_by_two_sponsors_with_a_verified_cleaning_between(loaded):
    tank = Equipment.objects.get(code="TANK-4")
    uses = list(tank.uses.select_related("batch").order_by("started_at"))
    assert {use.sponsor.code for use in uses} == {"acme", "eos"}

    switches = [
        (previous, use)
        for previous, use in zip(uses, uses[1:], strict=False)
        if previous.batch.product_id != use.batch.product_id
    ]
    assert switches
    for previous, use in switches:
        assert tank.cleanings.filter(
            performed_at__gte=previous.ended_at,
            performed_at__lte=use.started_at,
            verified_by__isnull=False,
        ).exists()


def test_demo_is_attributed_to_operator_qa_and_qa_approver(loaded):
    batch = Batch.objects.get(number="ACM-B001")
    events = AuditEvent.objects.filter(object_id=str(batch.pk), model="batches.batch")
    assert events.first().actor_username == "operator"
    assert events.first().reason == "demo data"
    step = batch.executed_steps.first()
    verified = AuditEvent.objects.get(
        model="batches.executedstep", object_id=str(step.pk), action="update"
    )
    assert verified.actor_username == "qa"
    released = Lot.objects.get(lot_number="ACM-L001")
    assert released.status == "released"
    assert signatures_for(released) == []
    [(signature, check)] = signatures_for(batch)
    assert (signature.meaning, signature.signer.username, check.is_valid) == (
        "released",
        "qa-approver",
        True,
    )
    rejected = Lot.objects.get(status="rejected")
    assert rejected.lab_results.filter(outcome="oos").exists()
    assert not rejected.shipments.exists()
    [(signature, check)] = signatures_for(rejected.produced_by)
    assert (signature.meaning, signature.signer.username, check.is_valid) == (
        "rejected",
        "qa-approver",
        True,
    )


def test_sponsor_release_lots_are_released_by_the_sponsor_after_cmo_qa(loaded):
    for number in ("BOR-B001", "BOR-B002", "EOS-B001"):
        batch = Batch.objects.get(number=number)
        signed = [(s.meaning, s.signer.username) for s, _check in signatures_for(batch)]
        sponsor = batch.sponsor.code
        assert signed == [("released", "qa-approver"), ("released", f"{sponsor}-approver")]
        assert batch.status == "released"
        assert batch.output_lots.get().status == "released"


def test_recent_batch_awaits_the_sponsors_release_and_is_not_shipped(loaded):
    batch = Batch.objects.get(number="EOS-B004")
    lot = batch.output_lots.get()

    assert (batch.status, lot.status) == ("under_review", "quarantine")
    assert batch.cmo_released_at is not None
    assert [s.signer.username for s, _check in signatures_for(batch)] == ["qa-approver"]
    assert not lot.shipments.exists()


def test_oos_investigation_is_closed_with_the_sponsors_approval_before_the_rejection(loaded):
    from deviations.models import Deviation

    rejected = Lot.objects.get(status="rejected")
    [investigation] = Deviation.objects.filter(lab_result__lot=rejected)
    [(rejection, _check)] = signatures_for(rejected.produced_by)

    assert (investigation.status, investigation.disposition) == ("closed", "reject")
    assert [(s.meaning, s.signer.username) for s, _check in signatures_for(investigation)] == [
        ("closed", "qa-approver"),
        ("approved", "draco-approver"),
    ]
    assert investigation.discovered_at < investigation.closed_at <= rejection.signed_at
