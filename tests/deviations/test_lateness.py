"""Late is visible forever: a deadline met after its due time shows late, by how much; a deadline
still unmet past its due time is overdue whatever reminders were sent, on the record page, the
deviation lists and their overdue filter, the CMO home, the portal and the API."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from deviations import services as ds
from deviations.selectors import deadlines_of
from qms.models import Deadline
from qms.notifications import deadlines_send_due
from sponsors.selectors import sponsor_dashboard
from tests.deviations.test_deviations import agreement, investigated, record
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LATE_BY_3_DAYS = "late by 3 d 0 h 0 min"


@pytest.fixture
def batch_a(plant):
    agreement(plant, plant.sponsor_a)
    agreement(plant, plant.sponsor_b)
    return plant.run_batch(plant.product_a, [], release=False)[0]


@pytest.fixture
def reminded(plant, batch_a):
    """A critical deviation recorded 60 days after discovery: its 24 h notice goes out 59 days
    late, and its investigation summary, due some 18 days ago, was reminded to CMO QA but is
    still unmet."""
    discovered = timezone.now() - timedelta(days=60)
    deviation = record(plant, severity="critical", discovered_at=discovered, batches=[batch_a])
    deadlines_send_due()
    return deviation


@pytest.fixture
def late_notice(plant, batch_a):
    """A critical deviation recorded 4 days after discovery: its 24 h notice, due 3 days ago,
    goes out with the next sweep."""
    discovered = timezone.now() - timedelta(days=4)
    deviation = record(plant, severity="critical", discovered_at=discovered, batches=[batch_a])
    deadlines_send_due()
    return deviation


def _deadline(deviation, kind) -> Deadline:
    return deadlines_of(deviation).get(kind=kind)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _html(user, url) -> str:
    response = _client(user).get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def _row(html, title) -> str:
    start = html.index(title)
    return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]


# --- the rule ---------------------------------------------------------------------------------


def test_notified_but_unmet_deadline_past_due_is_overdue(reminded):
    summary = _deadline(reminded, "investigation_summary")

    assert summary.status == Deadline.Status.NOTIFIED
    assert summary.met_at is None
    assert summary.is_overdue
    assert summary.late_by > timedelta(days=10)
    assert not summary.is_late


def test_notice_sent_three_days_after_due_is_met_late_by_three_days(late_notice):
    notice = _deadline(late_notice, "deviation_notice")

    assert notice.status == Deadline.Status.MET
    assert notice.met_at == notice.notified_at
    assert notice.is_late
    assert notice.late_by == timedelta(days=3)
    assert not notice.is_overdue


def test_notice_sent_before_due_is_met_on_time(plant, batch_a):
    deviation = record(plant, severity="critical", batches=[batch_a])

    deadlines_send_due()

    notice = _deadline(deviation, "deviation_notice")
    assert (notice.status, notice.is_late, notice.late_by) == (Deadline.Status.MET, False, None)


def test_investigation_summary_met_three_days_after_due_shows_late_by_three_days(plant, batch_a):
    # given: a deviation whose investigation summary falls due
    deviation = investigated(plant, record(plant, severity="minor", batches=[batch_a]))
    summary = _deadline(deviation, "investigation_summary")

    # when: CMO QA signs the investigation closed 3 days after that
    with time_machine.travel(summary.due_at + timedelta(days=3), tick=False):
        ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    # then
    summary.refresh_from_db()
    assert summary.status == Deadline.Status.MET
    assert summary.met_at == summary.due_at + timedelta(days=3)
    assert (summary.is_late, summary.late_by) == (True, timedelta(days=3))
    html = _html(plant.qa, deviation.get_absolute_url())
    assert LATE_BY_3_DAYS in _row(html, summary.title)


def test_closing_in_time_meets_the_investigation_summary_on_time(plant, batch_a):
    deviation = investigated(plant, record(plant, severity="minor", batches=[batch_a]))

    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    summary = _deadline(deviation, "investigation_summary")
    assert summary.status == Deadline.Status.MET
    assert (summary.is_overdue, summary.is_late) == (False, False)


# --- the record page ------------------------------------------------------------------------


def test_record_page_shows_a_notified_but_unmet_deadline_as_overdue(plant, reminded):
    summary = _deadline(reminded, "investigation_summary")

    html = _html(plant.qa, reminded.get_absolute_url())

    row = _row(html, summary.title)
    assert 'class="overdue"' in row and "— overdue by" in row
    assert "Notified" in row


def test_record_page_shows_a_notice_sent_late_late_by_three_days(plant, late_notice):
    notice = _deadline(late_notice, "deviation_notice")

    html = _html(plant.qa, late_notice.get_absolute_url())

    row = _row(html, notice.title)
    assert LATE_BY_3_DAYS in row and "Met" in row
    assert "— overdue" not in row


# --- the deviation list -----------------------------------------------------------------------


def test_overdue_filter_lists_a_deviation_whose_deadline_was_reminded_but_not_met(
    plant, batch_a, reminded
):
    fresh = record(plant, severity="critical", batches=[batch_a])
    deadlines_send_due()

    overdue = _html(plant.qa, reverse("deviations:list") + "?overdue=true")
    on_time = _html(plant.qa, reverse("deviations:list") + "?overdue=false")

    assert reminded.number in overdue and fresh.number not in overdue
    assert fresh.number in on_time and reminded.number not in on_time
    assert '<span class="flag">overdue</span>' in _row(overdue, reminded.number)


def test_closed_deviation_is_not_overdue_once_its_summary_was_met(plant, batch_a):
    deviation = investigated(plant, record(plant, severity="minor", batches=[batch_a]))
    summary = _deadline(deviation, "investigation_summary")
    with time_machine.travel(summary.due_at + timedelta(days=3), tick=False):
        ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)

    html = _html(plant.qa, reverse("deviations:list") + "?overdue=true")

    assert deviation.number not in html


# --- the CMO home -----------------------------------------------------------------------------


def test_cmo_home_counts_a_notified_but_unmet_deadline_as_overdue(plant, reminded):
    alpha = next(s for s in sponsor_dashboard(user=plant.qa) if s.pk == plant.sponsor_a.pk)

    assert (alpha.overdue_deadlines, alpha.open_deadlines) == (1, 1)
    assert alpha.overdue_notices == 0


def test_cmo_home_counts_an_unsent_notice_past_due_until_it_is_sent(plant, batch_a):
    discovered = timezone.now() - timedelta(days=4)
    record(plant, severity="critical", discovered_at=discovered, batches=[batch_a])

    before = {s.code: s.overdue_notices for s in sponsor_dashboard(user=plant.qa)}
    deadlines_send_due()
    after = {s.code: s.overdue_notices for s in sponsor_dashboard(user=plant.qa)}

    assert before == {"alpha": 1, "zzother": 0}
    assert after == {"alpha": 0, "zzother": 0}


def test_cmo_home_shows_the_overdue_count_in_red(plant, reminded):
    html = _html(plant.qa, reverse("home"))

    alpha = _row(html, f"<code>{plant.sponsor_a.code}</code>")
    assert alpha.rstrip().endswith('<td><span class="flag">1</span></td>')


# --- the portal -------------------------------------------------------------------------------


def test_portal_list_shows_a_reminded_but_unmet_deadline_as_overdue(plant, reminded):
    approver = plant.sponsor_approver(plant.sponsor_a)

    html = _html(approver, reverse("portal_deviations:list"))

    assert '<span class="flag">overdue</span>' in _row(html, reminded.number)


def test_portal_page_shows_overdue_and_late_deadlines(plant, reminded, late_notice):
    approver = plant.sponsor_approver(plant.sponsor_a)

    reminded_html = _html(approver, reverse("portal_deviations:detail", args=[reminded.number]))
    late_html = _html(approver, reverse("portal_deviations:detail", args=[late_notice.number]))

    summary = _deadline(reminded, "investigation_summary")
    assert "— overdue by" in _row(reminded_html, summary.title)
    notice = _deadline(late_notice, "deviation_notice")
    assert LATE_BY_3_DAYS in _row(late_html, notice.title)


# --- the API ----------------------------------------------------------------------------------


def _api_deadlines(user, deviation) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(reverse("api:deviation-detail", args=[deviation.number]))
    assert response.status_code == 200, response.content
    return {row["kind"]: row for row in response.json()["deadlines"]}


def test_api_shows_a_notified_but_unmet_deadline_as_overdue(plant, reminded):
    summary = _api_deadlines(plant.qa, reminded)["investigation_summary"]

    assert (summary["status"], summary["met_at"]) == ("notified", None)
    assert (summary["is_overdue"], summary["is_late"]) == (True, False)
    assert summary["late_by"] is not None


def test_api_shows_a_notice_met_three_days_late(plant, late_notice):
    notice = _api_deadlines(plant.sponsor_approver(plant.sponsor_a), late_notice)[
        "deviation_notice"
    ]

    assert notice["status"] == "met" and notice["met_at"] is not None
    assert (notice["is_overdue"], notice["is_late"], notice["late_by"]) == (
        False,
        True,
        "3 00:00:00",
    )
