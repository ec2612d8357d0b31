"""The site calendar: business days skip weekends, the US public holidays (QMS_SITE_COUNTRY) and
the site's own holidays, and count a holiday the site marks as a working day."""

from datetime import UTC, date, datetime, timedelta

import pytest

from deviations import services as ds
from deviations.calendar import add_business_days, is_business_day
from deviations.models import SiteHoliday
from deviations.selectors import deadlines_of
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

WEDNESDAY_BEFORE_THANKSGIVING = datetime(2025, 11, 26, 10, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _us_site(settings):
    settings.QMS_SITE_COUNTRY = "US"


def test_weekend_is_skipped_and_the_time_of_day_kept():
    friday = datetime(2025, 10, 3, 16, 45, tzinfo=UTC)

    assert add_business_days(friday, 1) == datetime(2025, 10, 6, 16, 45, tzinfo=UTC)
    assert add_business_days(friday, 5) == datetime(2025, 10, 10, 16, 45, tzinfo=UTC)
    assert add_business_days(friday, 0) == friday


def test_public_holiday_is_skipped():
    assert not is_business_day(date(2025, 11, 27))
    assert add_business_days(WEDNESDAY_BEFORE_THANKSGIVING, 2) == datetime(
        2025, 12, 1, 10, 30, tzinfo=UTC
    )


def test_holidays_across_the_new_year_are_skipped():
    christmas_eve = datetime(2025, 12, 24, 9, tzinfo=UTC)

    assert add_business_days(christmas_eve, 3) == datetime(2025, 12, 30, 9, tzinfo=UTC)
    assert add_business_days(datetime(2025, 12, 31, 9, tzinfo=UTC), 1) == datetime(
        2026, 1, 2, 9, tzinfo=UTC
    )


def test_site_holiday_is_skipped():
    SiteHoliday.objects.create(day=date(2025, 11, 28), name="Day after Thanksgiving")

    assert not is_business_day(date(2025, 11, 28))
    assert add_business_days(WEDNESDAY_BEFORE_THANKSGIVING, 2) == datetime(
        2025, 12, 2, 10, 30, tzinfo=UTC
    )


def test_public_holiday_the_site_works_counts():
    SiteHoliday.objects.create(day=date(2025, 11, 27), name="Thanksgiving", is_working_day=True)

    assert is_business_day(date(2025, 11, 27))
    assert add_business_days(WEDNESDAY_BEFORE_THANKSGIVING, 2) == datetime(
        2025, 11, 28, 10, 30, tzinfo=UTC
    )


def test_investigation_summary_deadline_counts_on_the_site_calendar(plant):
    # given: 3 business days under the agreement, and the site closed the day after Thanksgiving
    draft = quality_agreement_create_draft(
        sponsor=plant.sponsor_a, by=plant.qa, investigation_summary_business_days=3
    )
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    SiteHoliday.objects.create(day=date(2025, 11, 28), name="Day after Thanksgiving")
    raw = plant.receive(plant.api)
    batch, _ = plant.run_batch(plant.product_a, [(raw, "5")])

    # when
    deviation = ds.deviation_record(
        title="Label mix-up",
        description="Two label rolls on the line.",
        category="deviation",
        severity="minor",
        occurred_at=WEDNESDAY_BEFORE_THANKSGIVING - timedelta(hours=2),
        discovered_at=WEDNESDAY_BEFORE_THANKSGIVING,
        by=plant.qa,
        batches=[batch],
    )

    # then: Thursday (public), Friday (site) and the weekend are skipped
    summary = deadlines_of(deviation).get(kind="investigation_summary")
    assert summary.due_at == datetime(2025, 12, 3, 10, 30, tzinfo=UTC)


def test_site_holiday_added_in_the_admin_moves_the_due_date(superuser):
    from django.test import Client
    from django.urls import reverse

    friday = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    assert add_business_days(friday, 1) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    client = Client()
    client.force_login(superuser)

    response = client.post(
        reverse("admin:deviations_siteholiday_add"),
        {"day": "2026-03-09", "name": "Plant shutdown", "is_working_day": ""},
    )

    assert response.status_code == 302
    assert add_business_days(friday, 1) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
