"""Recall scope forward and trace backward over a genealogy four lots deep with branching, a raw
lot shared by two sponsors, and a finished lot shipped to two customers; exact sets per user."""

from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from batches import services
from batches.models import Customer, Material
from batches.selectors import recall_scope_forward, recall_trace_backward
from sponsors.models import Role
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ALPHA, ZZOTHER, SITE = "Alpha Therapeutics", "ZZOTHER Biologics", "Site materials"


@dataclass
class Genealogy:
    """Lot and batch numbers by name:

    R1 (api, shared) ─BA1─▶ I1 ─BA2 (+RC)─▶ I2 ─BA3─▶ F1 ─▶ C1, C2 (two customers)
    R2 (excipient)   ─BA1┘   └─BA4──────────▶ F2
    R1 ─BB1 (+R3)─▶ IB ─BB2─▶ FB ─▶ C3        R2 ─BA5─▶ F3 ─▶ C1 (not reached from R1)
    """

    lots: dict
    batches: dict
    customers: dict
    shipments: dict

    def lot_numbers(self, *names):
        return {self.lots[name].lot_number for name in names}

    def batch_numbers(self, *names):
        return {self.batches[name].number for name in names}


def _make(plant, product, inputs, material=None, quantity="50"):
    batch = services.batch_plan(product=product, number=plant.next("B"), by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    for lot, used in inputs:
        services.batch_consume(batch=batch, lot=lot, quantity=used, by=plant.operator)
    for step in batch.mbr.steps.all():
        executed = services.batch_record_step(
            batch=batch, step=step, performed_by=plant.operator, value=step.low_limit
        )
        services.batch_verify_step(executed=executed, verified_by=plant.verifier, password=PASSWORD)
    lot = services.batch_complete(
        batch=batch,
        output_lot_number=plant.next("L"),
        quantity=quantity,
        by=plant.operator,
        material=material,
    )
    plant.release(batch)
    lot.refresh_from_db()
    return batch, lot


@pytest.fixture
def genealogy(plant):
    coating = Material.objects.create(code="RM-COAT", name="Film coating", kind="raw")
    granulate = Material.objects.create(
        code="INT-ALP-GRAN",
        name="Alphacillin granulate",
        kind="intermediate",
        product=plant.product_a,
    )
    cores = Material.objects.create(
        code="INT-ALP-CORE",
        name="Alphacillin coated cores",
        kind="intermediate",
        product=plant.product_a,
    )
    bulk = Material.objects.create(
        code="INT-ZZ-BULK", name="ZZOTHER bulk blend", kind="intermediate", product=plant.product_b
    )
    plant.with_bom(coating, granulate, cores)
    plant.with_bom(bulk, plant.excipient, product=plant.product_b)
    second = Customer.objects.create(code="CUST-4", name="Southside Hospital Group")
    only_b = Customer.objects.create(code="CUST-3", name="ZZOTHER Direct Pharmacy")
    lots = {
        "R1": plant.receive(plant.api),
        "R2": plant.receive(plant.excipient),
        "R3": plant.receive(plant.excipient),
        "RC": plant.receive(coating),
    }
    batches = {}
    batches["BA1"], lots["I1"] = _make(
        plant, plant.product_a, [(lots["R1"], "10"), (lots["R2"], "10")], granulate
    )
    batches["BA2"], lots["I2"] = _make(
        plant, plant.product_a, [(lots["I1"], "20"), (lots["RC"], "2")], cores
    )
    batches["BA3"], lots["F1"] = _make(plant, plant.product_a, [(lots["I2"], "10")])
    batches["BA4"], lots["F2"] = _make(plant, plant.product_a, [(lots["I1"], "20")])
    batches["BB1"], lots["IB"] = _make(
        plant, plant.product_b, [(lots["R1"], "10"), (lots["R3"], "10")], bulk
    )
    batches["BB2"], lots["FB"] = _make(plant, plant.product_b, [(lots["IB"], "10")])
    batches["BA5"], lots["F3"] = _make(plant, plant.product_a, [(lots["R2"], "5")])
    c1, c2 = plant.customers[0], second
    shipments = {}
    for name, lot, customer in (
        ("F1-C1", "F1", c1),
        ("F1-C2", "F1", c2),
        ("FB-C3", "FB", only_b),
        ("F3-C1", "F3", c1),
    ):
        shipments[name] = services.shipment_create(
            lot=lots[lot], customer=customer, quantity="5", by=plant.operator, reference=name
        )
    return Genealogy(lots, batches, {"C1": c1, "C2": c2, "C3": only_b}, shipments)


@pytest.fixture
def cmo_a_only(plant):
    return make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="cmo-a-only")


def _lots(result):
    return {lot.lot_number for lot in result.lots}


def _batches(result):
    return {batch.number for batch in result.batches}


def _shipments(result):
    return {shipment.reference for shipment in result.shipments}


def _customers(result):
    return {customer.name for customer in result.customers}


def _groups(result):
    return [
        (
            group.label,
            {lot.lot_number for lot in group.lots},
            {batch.number for batch in group.batches},
            {shipment.reference for shipment in group.shipments},
        )
        for group in result.groups
    ]


def test_forward_scope_of_a_shared_raw_lot_for_a_cmo_user_on_both_sponsors(plant, genealogy):
    g = genealogy

    scope = recall_scope_forward(lot=g.lots["R1"], user=plant.qa)

    assert _lots(scope) == g.lot_numbers("R1", "I1", "I2", "F1", "F2", "IB", "FB")
    assert {lot.lot_number: lot.depth for lot in scope.lots} == {
        g.lots["R1"].lot_number: 0,
        g.lots["I1"].lot_number: 1,
        g.lots["IB"].lot_number: 1,
        g.lots["I2"].lot_number: 2,
        g.lots["F2"].lot_number: 2,
        g.lots["FB"].lot_number: 2,
        g.lots["F1"].lot_number: 3,
    }
    assert _batches(scope) == g.batch_numbers("BA1", "BA2", "BA3", "BA4", "BB1", "BB2")
    assert _shipments(scope) == {"F1-C1", "F1-C2", "FB-C3"}
    assert _customers(scope) == {
        "Northwind Wholesale",
        "Southside Hospital Group",
        "ZZOTHER Direct Pharmacy",
    }
    assert _groups(scope) == [
        (
            ALPHA,
            g.lot_numbers("I1", "I2", "F1", "F2"),
            g.batch_numbers("BA1", "BA2", "BA3", "BA4"),
            {"F1-C1", "F1-C2"},
        ),
        (ZZOTHER, g.lot_numbers("IB", "FB"), g.batch_numbers("BB1", "BB2"), {"FB-C3"}),
        (SITE, g.lot_numbers("R1"), set(), set()),
    ]


def test_forward_scope_from_the_middle_of_the_graph(plant, genealogy):
    g = genealogy

    scope = recall_scope_forward(lot=g.lots["I1"], user=plant.qa)

    assert _lots(scope) == g.lot_numbers("I1", "I2", "F1", "F2")
    assert _batches(scope) == g.batch_numbers("BA2", "BA3", "BA4")
    assert _shipments(scope) == {"F1-C1", "F1-C2"}


def test_forward_scope_of_a_finished_lot_is_itself_and_its_shipments(plant, genealogy):
    g = genealogy

    scope = recall_scope_forward(lot=g.lots["F1"], user=plant.qa)

    assert _lots(scope) == g.lot_numbers("F1")
    assert _batches(scope) == set()
    assert _shipments(scope) == {"F1-C1", "F1-C2"}
    assert _customers(scope) == {"Northwind Wholesale", "Southside Hospital Group"}


@pytest.mark.parametrize("who", ["auditor_a", "cmo_a_only"])
def test_forward_scope_for_sponsor_a_users_leaves_sponsor_b_out(genealogy, request, who):
    g = genealogy
    user = request.getfixturevalue(who)

    scope = recall_scope_forward(lot=g.lots["R1"], user=user)

    assert _lots(scope) == g.lot_numbers("R1", "I1", "I2", "F1", "F2")
    assert _batches(scope) == g.batch_numbers("BA1", "BA2", "BA3", "BA4")
    assert _shipments(scope) == {"F1-C1", "F1-C2"}
    assert _customers(scope) == {"Northwind Wholesale", "Southside Hospital Group"}
    assert _groups(scope) == [
        (
            ALPHA,
            g.lot_numbers("I1", "I2", "F1", "F2"),
            g.batch_numbers("BA1", "BA2", "BA3", "BA4"),
            {"F1-C1", "F1-C2"},
        ),
        (SITE, g.lot_numbers("R1"), set(), set()),
    ]
    flat = repr(scope.rows())
    for hidden in ("IB", "FB"):
        assert g.lots[hidden].lot_number not in flat
    for hidden in ("BB1", "BB2"):
        assert g.batches[hidden].number not in flat
    assert "zzother" not in flat.lower()


def test_backward_trace_of_a_finished_lot_reaches_every_ancestor_with_supplier(plant, genealogy):
    g = genealogy

    trace = recall_trace_backward(lot=g.lots["F1"], user=plant.qa)

    assert {lot.lot_number: lot.depth for lot in trace.lots} == {
        g.lots["F1"].lot_number: 0,
        g.lots["I2"].lot_number: 1,
        g.lots["I1"].lot_number: 2,
        g.lots["RC"].lot_number: 2,
        g.lots["R1"].lot_number: 3,
        g.lots["R2"].lot_number: 3,
    }
    assert _batches(trace) == g.batch_numbers("BA1", "BA2", "BA3")
    assert trace.shipments == [] and trace.customers == []
    received = {
        row["lot"]: (row["supplier"], row["receipt"]) for row in trace.rows() if row["supplier"]
    }
    assert received == {
        g.lots[name].lot_number: ("Chemco GmbH", g.lots[name].receipt_reference)
        for name in ("R1", "R2", "RC")
    }
    assert all(g.lots[name].receipt_reference for name in ("R1", "R2", "RC"))


def test_backward_trace_of_sponsor_b_lot_for_a_cmo_user_on_both(plant, genealogy):
    g = genealogy

    trace = recall_trace_backward(lot=g.lots["FB"], user=plant.qa)

    assert _lots(trace) == g.lot_numbers("FB", "IB", "R1", "R3")
    assert _batches(trace) == g.batch_numbers("BB1", "BB2")
    assert [group.label for group in trace.groups] == [ZZOTHER, SITE]


@pytest.mark.parametrize("who", ["auditor_a", "cmo_a_only"])
def test_backward_trace_for_sponsor_a_users(genealogy, request, who):
    g = genealogy
    user = request.getfixturevalue(who)

    trace = recall_trace_backward(lot=g.lots["F1"], user=user)

    assert _lots(trace) == g.lot_numbers("F1", "I2", "I1", "RC", "R1", "R2")
    assert _batches(trace) == g.batch_numbers("BA1", "BA2", "BA3")


def test_sponsor_a_auditor_sees_nothing_of_sponsor_b_genealogy(genealogy, auditor_a):
    g = genealogy

    trace = recall_trace_backward(lot=g.lots["FB"], user=auditor_a)
    scope = recall_scope_forward(lot=g.lots["IB"], user=auditor_a)

    assert _lots(trace) == g.lot_numbers("R1")
    assert _batches(trace) == set()
    assert (_lots(scope), _batches(scope), _shipments(scope)) == (set(), set(), set())


def test_the_walk_stops_on_a_cycle(plant, genealogy):
    g = genealogy
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '5s'")
        cursor.execute(
            "INSERT INTO batches_consumption (batch_id, lot_id, quantity, consumed_at, sponsor_id)"
            " VALUES (%s, %s, 1, now(), %s)",
            [g.batches["BA1"].pk, g.lots["F1"].pk, plant.sponsor_a.pk],
        )

    forward = recall_scope_forward(lot=g.lots["R1"], user=plant.qa)
    from_f1 = recall_scope_forward(lot=g.lots["F1"], user=plant.qa)
    backward = recall_trace_backward(lot=g.lots["F1"], user=plant.qa)

    assert _lots(forward) == g.lot_numbers("R1", "I1", "I2", "F1", "F2", "IB", "FB")
    assert {lot.lot_number: lot.depth for lot in from_f1.lots} == {
        g.lots["F1"].lot_number: 0,
        g.lots["I1"].lot_number: 1,
        g.lots["I2"].lot_number: 2,
        g.lots["F2"].lot_number: 2,
    }
    assert _lots(backward) == g.lot_numbers("F1", "I2", "I1", "RC", "R1", "R2")


def _recursive(queries) -> list[str]:
    return [q["sql"] for q in queries if "RECURSIVE" in q["sql"].upper()]


@pytest.mark.parametrize(
    ("walk", "shallow", "deep"),
    [(recall_scope_forward, "F1", "R1"), (recall_trace_backward, "R1", "F1")],
)
def test_each_direction_is_one_recursive_query_whatever_the_depth(
    plant, genealogy, walk, shallow, deep
):
    g = genealogy
    walk(lot=g.lots[shallow], user=plant.qa)

    with CaptureQueriesContext(connection) as at_one_level:
        walk(lot=g.lots[shallow], user=plant.qa)
    with CaptureQueriesContext(connection) as at_four_levels:
        result = walk(lot=g.lots[deep], user=plant.qa)
    with CaptureQueriesContext(connection) as reading:
        _ = (result.groups, result.customers, result.rows())

    assert len(result.lots) > 3
    for captured in (at_one_level, at_four_levels):
        [walk_sql] = _recursive(captured.captured_queries)
        assert walk_sql.upper().count("WITH RECURSIVE") == 1
    assert len(at_four_levels.captured_queries) == len(at_one_level.captured_queries)
    assert len(reading.captured_queries) == 0
