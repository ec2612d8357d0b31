import pytest

from batches.selectors import recall_scope_forward, recall_trace_backward

pytestmark = pytest.mark.django_db


def test_shared_raw_lot_forward_and_backward(plant):
    raw = plant.receive(plant.api)
    batch_a, lot_a = plant.run_batch(plant.product_a, [(raw, "5")])
    batch_b, lot_b = plant.run_batch(plant.product_b, [(raw, "5")])

    cmo = recall_scope_forward(lot=raw, user=plant.qa)
    assert {lot.lot_number for lot in cmo.lots} == {
        raw.lot_number,
        lot_a.lot_number,
        lot_b.lot_number,
    }
    assert {b.number for b in cmo.batches} == {batch_a.number, batch_b.number}

    back = recall_trace_backward(lot=lot_a, user=plant.qa)
    assert {lot.lot_number for lot in back.lots} == {raw.lot_number, lot_a.lot_number}
