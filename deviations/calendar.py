"""The site calendar: business days skip weekends, the public holidays of QMS_SITE_COUNTRY and
the site's own holidays (admin), unless the site marks a day as worked."""

from datetime import date, datetime, timedelta

import holidays
from django.conf import settings

from .models import SiteHoliday


def _closed_days(years: range) -> set[date]:
    public = set(holidays.country_holidays(settings.QMS_SITE_COUNTRY, years=list(years)))
    site = SiteHoliday.objects.filter(day__year__in=list(years))
    closed = {h.day for h in site if not h.is_working_day}
    worked = {h.day for h in site if h.is_working_day}
    return (public | closed) - worked


def is_business_day(day: date, closed: set[date] | None = None) -> bool:
    closed = closed if closed is not None else _closed_days(range(day.year, day.year + 1))
    return day.weekday() < 5 and day not in closed


def add_business_days(start: datetime, days: int) -> datetime:
    """`start` moved forward by `days` business days, keeping the time of day."""
    closed = _closed_days(range(start.year, start.year + 2 + days // 200))
    moved, counted = start, 0
    while counted < days:
        moved += timedelta(days=1)
        if is_business_day(moved.date(), closed):
            counted += 1
    return moved
