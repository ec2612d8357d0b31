"""Release after a deviation: the batch as made is released only when every linked deviation
(by batch, by output lot, or a sponsor impact record) was closed with the disposition "use as
is"; "reject", "rework" or no disposition at all block release, naming the deviation."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches.disposition import release_check, release_checks
from batches.models import Batch
from deviations import services as ds
from deviations.models import Deviation
from tests.deviations.test_disposition import agreement, deviation, made, refused_release, release
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def closed_with(plant, record, disposition=None):
    findings = {"impact_assessment": "None.", "root_cause": "Timer fault."}
    if disposition is not None:
        findings["disposition"] = disposition
    ds.deviation_investigate(deviation=record, by=plant.qa, **findings)
    ds.deviation_close(deviation=record, user=plant.qa, password=PASSWORD)
    record.refresh_from_db()
    assert record.status == Deviation.Status.CLOSED
    return record


@pytest.mark.parametrize("link", ["batch", "lot"])
def test_release_allowed_after_a_deviation_closed_use_as_is(plant, link):
    agreement(plant)
    batch = made(plant)
    closed_with(plant, deviation(plant, batch, link=link), "use_as_is")

    release(batch, plant.qa)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.RELEASED
    assert release_check(batch).blockers == ["the batch is released"]


@pytest.mark.parametrize("link", ["batch", "lot"])
def test_release_refused_after_a_deviation_closed_with_disposition_reject(plant, link):
    agreement(plant)
    batch = made(plant)
    record = closed_with(plant, deviation(plant, batch, link=link), "reject")

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {record} was closed with disposition reject."
    )


def test_release_of_the_batch_as_made_refused_after_a_deviation_closed_for_rework(plant):
    agreement(plant)
    batch = made(plant)
    record = closed_with(plant, deviation(plant, batch), "rework")

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {record} was closed with disposition rework."
    )


def test_release_refused_after_a_deviation_closed_without_a_disposition(plant):
    agreement(plant)
    batch = made(plant)
    record = closed_with(plant, deviation(plant, batch))

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {record} is closed without a disposition "
        "for the batch."
    )


def test_release_refusal_names_every_deviation_without_use_as_is(plant):
    agreement(plant)
    batch = made(plant)
    fine = closed_with(plant, deviation(plant, batch), "use_as_is")
    rejected = closed_with(plant, deviation(plant, batch, link="lot"), "reject")
    undecided = closed_with(plant, deviation(plant, batch))
    still_open = deviation(plant, batch, severity="minor")

    detail = refused_release(batch, plant.qa)

    assert fine.number not in detail
    assert detail == (
        f"Batch {batch} cannot be released: deviation {rejected} was closed with disposition "
        f"reject; deviation {undecided} is closed without a disposition for the batch; "
        f"deviation {still_open} (minor) is open."
    )


def impact_record(plant, batch):
    """A site deviation on the raw-material lot the batch consumed, and its impact record."""
    now = timezone.now()
    site = ds.deviation_record(
        title="Supplier CoA error",
        description="Assay on the CoA transposed.",
        category="deviation",
        severity="minor",
        occurred_at=now,
        discovered_at=now,
        by=plant.qa,
        lots=[batch.consumptions.get().lot],
    )
    return site, site.impacts.get()


def test_release_refused_while_the_sponsor_impact_record_has_no_disposition(plant):
    agreement(plant)
    batch = made(plant)
    site, impact = impact_record(plant, batch)
    closed_with(plant, impact)
    ds.deviation_investigate(deviation=site, by=plant.qa, impact_assessment="Supplier only.")

    detail = refused_release(batch, plant.qa)

    assert detail == (
        f"Batch {batch} cannot be released: deviation {impact} is closed without a disposition "
        "for the batch."
    )
    assert site.status == Deviation.Status.UNDER_INVESTIGATION


def test_release_allowed_once_the_sponsor_impact_record_is_closed_use_as_is(plant):
    agreement(plant)
    batch = made(plant)
    _, impact = impact_record(plant, batch)
    closed_with(plant, impact, "use_as_is")

    release(batch, plant.qa)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.RELEASED


def test_release_check_and_the_release_queue_name_the_same_disposition_blockers(plant):
    agreement(plant)
    rejected_batch, rework_batch, ready_batch = made(plant), made(plant), made(plant)
    rejected = closed_with(plant, deviation(plant, rejected_batch), "reject")
    rework = closed_with(plant, deviation(plant, rework_batch, link="lot"), "rework")
    closed_with(plant, deviation(plant, ready_batch), "use_as_is")
    batches = [rejected_batch, rework_batch, ready_batch]

    checks = release_checks(batches)
    client = Client()
    client.force_login(plant.qa)
    html = client.get(reverse("deviations:release-queue")).content.decode()

    assert {pk: check.blockers for pk, check in checks.items()} == {
        batch.pk: release_check(batch).blockers for batch in batches
    }
    assert checks[rejected_batch.pk].blockers == [
        f"deviation {rejected} was closed with disposition reject"
    ]
    assert checks[rework_batch.pk].blockers == [
        f"deviation {rework} was closed with disposition rework"
    ]
    assert checks[ready_batch.pk].blockers == []
    assert f"deviation {rejected} was closed with disposition reject" in html
    assert f"deviation {rework} was closed with disposition rework" in html
