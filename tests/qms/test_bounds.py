"""The plausible range of dates, the identifier rule and the text bounds (`qms.bounds`), applied
by the services that accept them; and the other side of the rule: every extreme value the rules
allow, once stored, is shown by every page and API route that lists or details it."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services
from batches.epcis import epcis_import, namespace
from batches.models import Lot, Material
from changecontrol.services import change_create
from deviations import services as deviation_services
from deviations.models import Deviation
from qms.bounds import IDENTIFIER_MAX, TEXT_MAX, date_check, identifier_check, text_check
from qms.errors import RuleViolation
from tests.batches import conftest as batch_fixtures

pytestmark = pytest.mark.django_db

plant = batch_fixtures.plant

RANGE = "is outside the plausible range 1900-01-01 to 2199-12-31."
IDENTIFIER = "use 1 to 60 letters, digits and . _ : + -, starting with a letter or a digit."
LONG_LOT = ("L.1_2:3+4-" * 6)[:IDENTIFIER_MAX]


def _refused(match: str):
    return pytest.raises(RuleViolation, match=match)


# --- the kernel rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [date(1899, 12, 31), date(2200, 1, 1), datetime(1900, 1, 1, tzinfo=UTC) - timedelta(1)],
)
def test_dates_outside_the_range_are_refused_naming_the_field(value):
    with pytest.raises(RuleViolation) as refused:
        date_check(value, "Expiry date")
    assert refused.value.detail == f"Expiry date: {value.isoformat()} {RANGE}"
    assert refused.value.code == "date_out_of_range"


def test_an_offset_cannot_carry_a_time_past_the_range():
    late = datetime.fromisoformat("2199-12-31T23:00:00-12:00")
    with _refused("outside the plausible range"):
        date_check(late, "Receipt")
    assert date_check(date(1900, 1, 1), "x") == date(1900, 1, 1)
    assert date_check(datetime(2199, 12, 31, 23, tzinfo=UTC), "x").year == 2199


@pytest.mark.parametrize(
    "value", ["X%2F", "X/1", "A B", "-A", "", "A\x00", "Ä1", "A" * (IDENTIFIER_MAX + 1)]
)
def test_identifiers_outside_the_pattern_are_refused(value):
    with pytest.raises(RuleViolation) as refused:
        identifier_check(value, "Lot number")
    assert refused.value.detail == f"Lot number: {value!r} is not a valid identifier: {IDENTIFIER}"


def test_identifier_of_60_characters_with_allowed_punctuation_passes():
    assert identifier_check(LONG_LOT, "Lot number") == LONG_LOT


def test_text_with_control_characters_or_too_long_is_refused():
    with _refused(r"^The note contains the control character U\+0000\.$"):
        text_check("a\x00b", "The note")
    with _refused(r"^The title contains the control character U\+000A\.$"):
        text_check("a\nb", "The title", multiline=False)
    assert text_check("line 1\n\tline 2\r\n", "The note") == "line 1\n\tline 2\r\n"
    with _refused(r"^The note has 20,001 characters; at most 20,000 are allowed\.$"):
        text_check("x" * (TEXT_MAX + 1), "The note")


# --- the services ---------------------------------------------------------------------------


def test_lot_number_with_an_encoded_slash_is_refused_by_lot_receive(plant):
    with _refused(r"^Lot number: 'X%2F' is not a valid identifier"):
        services.lot_receive(
            material=plant.api,
            lot_number="X%2F",
            quantity="1",
            supplier=plant.supplier,
            by=plant.operator,
        )
    assert not Lot.objects.filter(lot_number="X%2F").exists()


def test_lot_expiry_outside_the_range_is_refused(plant):
    with _refused(rf"^Expiry date of lot R-1: 0001-01-01 {RANGE}$"):
        services.lot_receive(
            material=plant.api,
            lot_number="R-1",
            quantity="1",
            supplier=plant.supplier,
            by=plant.operator,
            expires_on=date(1, 1, 1),
        )


def test_receipt_before_1900_is_refused(plant):
    with _refused(r"^Receipt of lot R-1: 1899-12-31T00:00:00\+00:00 is outside"):
        services.lot_receive(
            material=plant.api,
            lot_number="R-1",
            quantity="1",
            supplier=plant.supplier,
            by=plant.operator,
            received_at=datetime(1899, 12, 31, tzinfo=UTC),
        )


def test_batch_number_with_a_slash_is_refused_by_batch_plan(plant):
    with _refused(r"^Batch number: 'B/1' is not a valid identifier"):
        services.batch_plan(product=plant.product_a, number="B/1", by=plant.operator)


def _deviation(plant, **overrides):
    now = timezone.now()
    values = {
        "title": "Blend time exceeded",
        "description": "Blender ran 17 min.",
        "category": "deviation",
        "severity": "minor",
        "occurred_at": now - timedelta(hours=1),
        "discovered_at": now,
        "by": plant.qa,
        "lots": [plant.receive(plant.api)],
    }
    return deviation_services.deviation_record(**{**values, **overrides})


def test_deviation_dated_year_1_is_refused_so_no_number_like_dev_1(plant):
    year_1 = datetime(1, 1, 1, tzinfo=UTC)
    with _refused(rf"^When the deviation occurred: 0001-01-01T00:00:00\+00:00 {RANGE}$"):
        _deviation(plant, occurred_at=year_1, discovered_at=year_1)
    assert not Deviation.objects.filter(number__startswith="DEV-1-").exists()


def test_megabyte_deviation_description_is_refused(plant):
    with _refused(r"^The deviation's description has 1,000,000 characters; at most 20,000"):
        _deviation(plant, description="x" * 1_000_000)
    assert not Deviation.objects.exists()


def test_change_proposed_for_year_1_is_refused(cmo_staff, product_a):
    with _refused(rf"^A change request: the proposed effective date: 0001-01-01 {RANGE}$"):
        change_create(
            title="New foil",
            description="Alternate foil supplier.",
            category="supplier",
            products=[product_a],
            subject_text="PVC foil",
            proposed_effective_date=date(1, 1, 1),
            by=cmo_staff,
        )


# --- EPCIS import ---------------------------------------------------------------------------


def _receipt(plant, stamp: str, lot: str = "L-1") -> dict:
    Material.objects.filter(pk=plant.api.pk).update(gtin="04012345123456")
    event = {
        "type": "ObjectEvent",
        "eventID": "urn:uuid:00000000-0000-4000-8000-000000000009",
        "eventTime": stamp,
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [
            {"epcClass": f"urn:epc:class:lgtin:4012345.012345.{lot}", "quantity": 5, "uom": "KGM"}
        ],
        "sourceList": [
            {"type": "owning_party", "source": f"{namespace()}supplier/{plant.supplier.code}"}
        ],
    }
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-01-01T00:00:00Z",
        "epcisBody": {"eventList": [event]},
    }


def test_epcis_receipt_imports_within_the_range(plant):
    report = epcis_import(document=_receipt(plant, "2024-01-01T08:00:00+01:00"), user=plant.qa)
    assert report.ok, report.as_dict()
    assert Lot.objects.filter(lot_number="L-1").exists()


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_epcis_event_time_outside_the_range_is_refused_with_its_position(plant, stamp):
    report = epcis_import(document=_receipt(plant, stamp), user=plant.qa)
    assert not report.ok and not report.committed
    shown = datetime.fromisoformat(stamp).isoformat()
    assert [(e.index, e.detail) for e in report.errors] == [(0, f"eventTime {shown} {RANGE}")]
    assert not Lot.objects.exists()


def test_epcis_lot_number_with_an_encoded_slash_is_refused(plant):
    report = epcis_import(
        document=_receipt(plant, "2024-01-01T08:00:00Z", lot="X%252F"), user=plant.qa
    )
    assert not report.ok
    assert [(e.index, e.detail) for e in report.errors] == [
        (
            0,
            "quantityList[0]: lot number 'X%2F' cannot be recorded: a lot number has 1 to 60 "
            "letters, digits and . _ : + -, starting with a letter or a digit.",
        )
    ]
    assert not Lot.objects.exists()


# --- one stored row never breaks a page -----------------------------------------------------


def test_extreme_values_the_rules_allow_are_shown_by_every_page_and_api_route(plant):
    # given: values at each bound, stored through the services
    earliest = datetime(1900, 1, 1, tzinfo=UTC)
    long_lot = services.lot_receive(
        material=plant.api,
        lot_number=LONG_LOT,
        quantity="1",
        supplier=plant.supplier,
        by=plant.operator,
        received_at=earliest,
        expires_on=date(2199, 12, 31),
    )
    old_lot = services.lot_receive(
        material=plant.api,
        lot_number="OLD-1",
        quantity="1",
        supplier=plant.supplier,
        by=plant.operator,
        expires_on=date(1900, 1, 1),
    )
    old = _deviation(
        plant,
        occurred_at=earliest,
        discovered_at=earliest,
        lots=[long_lot],
        description="x" * TEXT_MAX,
    )
    recent = _deviation(plant, lots=[old_lot], title="t" * 200)
    assert old.number == "DEV-1900-0001"
    page, api = Client(), APIClient()
    page.force_login(plant.qa)
    api.force_authenticate(plant.qa)
    # when / then
    for url in [
        reverse("batches:lots"),
        long_lot.get_absolute_url(),
        old_lot.get_absolute_url(),
        reverse("batches:recall", args=[long_lot.lot_number]),
        reverse("batches:recall-csv", args=[long_lot.lot_number]),
        reverse("batches:recall-pdf", args=[long_lot.lot_number]),
        reverse("deviations:list"),
        reverse("deviations:detail", args=[old.number]),
        reverse("deviations:detail", args=[recent.number]),
    ]:
        response = page.get(url)
        assert response.status_code == 200, url
    for url in [
        reverse("api:lot-list"),
        reverse("api:lot-detail", args=[long_lot.lot_number]),
        reverse("api:lot-detail", args=[old_lot.lot_number]),
        reverse("api:epcis-export", args=[long_lot.lot_number]),
        reverse("api:deviation-list"),
        reverse("api:deviation-detail", args=[old.number]),
    ]:
        response = api.get(url)
        assert response.status_code == 200, (url, response.content[:300])
    lot_row = api.get(reverse("api:lot-detail", args=[long_lot.lot_number])).json()
    assert lot_row["expires_on"] == "2199-12-31"


def test_a_stored_lot_number_no_url_can_carry_links_to_the_filtered_lot_list(plant):
    lot = plant.receive(plant.api)
    Lot.objects.filter(pk=lot.pk).update(lot_number="X/1")
    lot.refresh_from_db()
    assert lot.get_absolute_url() == "/lots/?q=X%2F1"
    page = Client()
    page.force_login(plant.qa)
    assert page.get(reverse("batches:lots")).status_code == 200
