"""The deviation list of the API filters by lot, batch and product: a deviation concerns a lot
when linked to it or to the batch that made it, a batch when linked to it or to one of its
output lots, a product through its batches and lots; a filter never reveals another sponsor's
rows."""

from dataclasses import dataclass

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from sponsors.models import Role
from tests.deviations.test_deviations import agreement, record
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@dataclass
class Linked:
    plant: object
    raw: object
    batch_a1: object
    lot_a1: object
    batch_a2: object
    lot_a2: object
    batch_b: object
    lot_b: object
    on_batch: object
    on_lot: object
    site: object
    impact_a: object
    impact_b: object
    on_batch_b: object


@pytest.fixture
def linked(plant):
    """Alpha: a deviation on batch A1, one on lot A2 (made by batch A2), and the impact record
    of a site deviation on a raw lot that batch A1 and ZZOTHER's batch consumed; ZZOTHER: its
    impact record and a deviation on its batch."""
    agreement(plant, plant.sponsor_a)
    agreement(plant, plant.sponsor_b)
    raw = plant.receive(plant.api)
    batch_a1, lot_a1 = plant.run_batch(plant.product_a, [(raw, "5")], release=False)
    batch_a2, lot_a2 = plant.run_batch(plant.product_a, [], release=False)
    batch_b, lot_b = plant.run_batch(plant.product_b, [(raw, "5")], release=False)
    site = record(plant, lots=[raw])
    impacts = {impact.sponsor_id: impact for impact in site.impacts.all()}
    return Linked(
        plant,
        raw,
        batch_a1,
        lot_a1,
        batch_a2,
        lot_a2,
        batch_b,
        lot_b,
        on_batch=record(plant, batches=[batch_a1]),
        on_lot=record(plant, lots=[lot_a2]),
        site=site,
        impact_a=impacts[plant.sponsor_a.pk],
        impact_b=impacts[plant.sponsor_b.pk],
        on_batch_b=record(plant, batches=[batch_b]),
    )


def _numbers(user, **params) -> set[str]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(reverse("api:deviation-list"), params)
    assert response.status_code == 200, response.content
    return {row["number"] for row in response.json()["results"]}


def _set(*deviations) -> set[str]:
    return {deviation.number for deviation in deviations}


def test_lot_filter_finds_deviations_on_the_lot_and_on_the_batch_that_made_it(linked):
    qa = linked.plant.qa

    assert _numbers(qa, lot=linked.lot_a2.lot_number) == _set(linked.on_lot)
    assert _numbers(qa, lot=linked.lot_a1.lot_number) == _set(linked.on_batch, linked.impact_a)
    assert _numbers(qa, lot=linked.raw.lot_number) == _set(linked.site)


def test_batch_filter_finds_deviations_on_the_batch_and_on_its_output_lots(linked):
    qa = linked.plant.qa

    assert _numbers(qa, batch=linked.batch_a1.number) == _set(linked.on_batch, linked.impact_a)
    assert _numbers(qa, batch=linked.batch_a2.number) == _set(linked.on_lot)


def test_product_filter_finds_deviations_through_batches_and_lots(linked):
    qa = linked.plant.qa

    assert _numbers(qa, product=linked.plant.product_a.code) == _set(
        linked.on_batch, linked.on_lot, linked.impact_a
    )
    assert _numbers(qa, product=linked.plant.product_b.code) == _set(
        linked.impact_b, linked.on_batch_b
    )


def test_filters_combine_with_each_other(linked):
    qa = linked.plant.qa

    found = _numbers(qa, product=linked.plant.product_a.code, batch=linked.batch_a2.number)

    assert found == _set(linked.on_lot)


def test_unknown_lot_matches_nothing(linked):
    assert _numbers(linked.plant.qa, lot="NO-SUCH-LOT") == set()


def test_filters_never_reveal_another_sponsors_deviations_to_a_sponsor_user(linked, auditor_a):
    assert _numbers(auditor_a, batch=linked.batch_b.number) == set()
    assert _numbers(auditor_a, lot=linked.lot_b.lot_number) == set()
    assert _numbers(auditor_a, product=linked.plant.product_b.code) == set()
    assert _numbers(auditor_a, lot=linked.raw.lot_number) == set()
    assert _numbers(auditor_a, product=linked.plant.product_a.code) == _set(
        linked.on_batch, linked.on_lot, linked.impact_a
    )


def test_filters_never_reveal_another_sponsors_deviations_to_cmo_staff_of_one_sponsor(linked):
    staff = make_user(sponsor=linked.plant.sponsor_a, role=Role.CMO_STAFF, username="only-a")

    assert _numbers(staff, batch=linked.batch_b.number) == set()
    assert _numbers(staff, product=linked.plant.product_b.code) == set()
    assert _numbers(staff, lot=linked.raw.lot_number) == _set(linked.site)


def test_openapi_schema_documents_the_lot_batch_and_product_filters():
    response = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json")

    operation = response.json()["paths"]["/api/v1/deviations/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"lot", "batch", "product", "sponsor__code", "severity", "status"} <= names
