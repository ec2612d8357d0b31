"""The CMO home, per sponsor: open deviations by severity (own and impact records), overdue
sponsor notices, open CAPAs and those with overdue actions, batches awaiting release; and the
portal home's count of the sponsor's own open deviations."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batches.disposition import batch_disposition
from batches.models import Batch
from deviations import capa as capas
from deviations import services as ds
from deviations.models import Capa, CapaAction, Deviation
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from sponsors.selectors import sponsor_dashboard
from tests.deviations.test_deviations import agreement
from tests.deviations.test_disposition import made
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

COUNTS = (
    "open_minor_deviations",
    "open_major_deviations",
    "open_critical_deviations",
    "overdue_notices",
    "open_capas",
    "capas_with_overdue_actions",
    "batches_awaiting_release",
    "batches_awaiting_sponsor",
)


def record(plant, severity, hours_ago=0, **links):
    discovered = timezone.now() - timedelta(hours=hours_ago)
    return ds.deviation_record(
        title=f"{severity} event",
        description="Found on the line.",
        category="deviation",
        severity=severity,
        occurred_at=discovered,
        discovered_at=discovered,
        by=plant.qa,
        **links,
    )


def capa_with_action(plant, sponsor, due_in_days):
    capa = capas.capa_open(
        title="Timer calibration",
        description="Calibrate blend timers.",
        source_kind="audit_finding",
        source_reference="AUD-7 finding 2",
        sponsor=sponsor,
        opened_at=timezone.now() - timedelta(days=10),
        by=plant.qa,
    )
    capas.capa_action_add(
        capa=capa,
        description="Recalibrate",
        owner=plant.qa,
        due_date=timezone.localdate() + timedelta(days=due_in_days),
        by=plant.qa,
    )
    return capa


@pytest.fixture
def quality_events(plant):
    """Alpha: a minor, a major and a critical deviation of its own (the critical one's notice
    unsent 6 h past its 24 h deadline), a major impact record of a site deviation on a raw lot
    both sponsors consumed, a closed minor deviation, two open CAPAs (one with an overdue
    action), two completed batches. Beta: the major impact record, a completed batch and one
    released by CMO QA awaiting the sponsor's release."""
    agreement(plant, plant.sponsor_a)
    agreement(plant, plant.sponsor_b, release_authority="sponsor")
    raw = plant.receive(plant.api)
    batch_a, _ = plant.run_batch(plant.product_a, [(raw, "5")], release=False)
    plant.run_batch(plant.product_b, [(raw, "5")], release=False)
    own_batch, _ = plant.run_batch(
        plant.product_a, [(plant.receive(plant.api), "5")], release=False
    )
    record(plant, "minor", batches=[batch_a])
    record(plant, "major", batches=[batch_a])
    record(plant, "major", lots=[raw])
    closed = record(plant, "minor", batches=[own_batch])
    ds.deviation_investigate(
        deviation=closed, by=plant.qa, impact_assessment="None.", root_cause="Timer."
    )
    ds.deviation_close(deviation=closed, user=plant.qa, password=PASSWORD)
    deadlines_send_due()
    record(plant, "critical", hours_ago=30, batches=[batch_a])
    capa_with_action(plant, plant.sponsor_a, due_in_days=-3)
    capa_with_action(plant, plant.sponsor_a, due_in_days=5)
    released = made(plant, product=plant.product_b)
    batch_disposition(batch=released, user=plant.qa, password=PASSWORD, release=True)
    released.refresh_from_db()
    assert released.status == Batch.Status.UNDER_REVIEW
    return plant


def counts(sponsors):
    return {sponsor.code: {name: getattr(sponsor, name) for name in COUNTS} for sponsor in sponsors}


def row(html, code):
    return re.search(rf"<tr>\s*<td><a [^>]*>[^<]*</a> <code>{code}</code>.*?</tr>", html, re.S)[0]


def test_dashboard_counts_open_deviations_notices_capas_and_batches_per_sponsor(
    quality_events,
):
    plant = quality_events

    sponsors = sponsor_dashboard(user=plant.qa)

    assert counts(sponsors) == {
        plant.sponsor_a.code: {
            "open_minor_deviations": 1,
            "open_major_deviations": 2,
            "open_critical_deviations": 1,
            "overdue_notices": 1,
            "open_capas": 2,
            "capas_with_overdue_actions": 1,
            "batches_awaiting_release": 2,
            "batches_awaiting_sponsor": 0,
        },
        plant.sponsor_b.code: {
            "open_minor_deviations": 0,
            "open_major_deviations": 1,
            "open_critical_deviations": 0,
            "overdue_notices": 0,
            "open_capas": 0,
            "capas_with_overdue_actions": 0,
            "batches_awaiting_release": 2,
            "batches_awaiting_sponsor": 1,
        },
    }


def test_dashboard_shows_overdue_notices_and_overdue_capa_actions_in_red(quality_events):
    plant = quality_events
    client = Client()
    client.force_login(plant.qa)

    html = client.get(reverse("home")).content.decode()

    alpha, beta = row(html, plant.sponsor_a.code), row(html, plant.sponsor_b.code)
    assert '<td class="overdue-notices"><span class="flag">1</span></td>' in alpha
    assert '<td class="capas-overdue"><span class="flag">1</span></td>' in alpha
    assert '<td class="overdue-notices">0</td>' in beta
    assert "(1 awaiting the sponsor)" in beta and "awaiting the sponsor" not in alpha
    assert f'?sponsor={plant.sponsor_a.pk}&amp;severity=major">2</a>' in alpha


def test_dashboard_is_one_query_for_every_sponsor(quality_events):
    plant = quality_events
    with CaptureQueriesContext(connection) as queries:
        sponsors = sponsor_dashboard(user=plant.qa)

    scope, dashboard = (query["sql"] for query in queries.captured_queries)
    assert scope.startswith('SELECT "sponsors_sponsor"."id" AS "id" FROM')
    assert all(f'AS "{name}"' in dashboard for name in COUNTS)
    assert len(sponsors) == 2


def _grow(plant, n):
    now = timezone.now()
    start = Deviation.objects.count()
    for sponsor in (plant.sponsor_a, plant.sponsor_b):
        Deviation.objects.bulk_create(
            Deviation(
                number=f"DEV-GROW-{sponsor.code}-{start + i:04d}",
                sponsor=sponsor,
                title="Grown",
                description="Row for the query count.",
                category="deviation",
                severity=("minor", "major", "critical")[i % 3],
                occurred_at=now,
                discovered_at=now,
                recorded_by=plant.qa,
            )
            for i in range(n)
        )
        capa = capa_with_action(plant, sponsor, due_in_days=-1)
        CapaAction.objects.bulk_create(
            CapaAction(
                capa=capa,
                sponsor=sponsor,
                sequence=2 + i,
                description="Grown",
                owner=plant.qa,
                due_date=timezone.localdate(),
                created_by=plant.qa,
            )
            for i in range(n)
        )


def test_dashboard_query_count_is_the_same_for_5_and_50_rows(quality_events):
    plant = quality_events
    client = Client()
    client.force_login(plant.qa)

    assert_constant_queries(client, reverse("home"), lambda n: _grow(plant, n))
    assert Capa.objects.filter(sponsor=plant.sponsor_b).count() == 2


def test_portal_home_links_the_sponsors_deviations_with_its_open_count(quality_events):
    plant = quality_events
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="aud-a")
    client = Client()
    client.force_login(auditor)

    html = client.get(reverse("portal:home")).content.decode()

    assert f'<a href="{reverse("portal_deviations:list")}">Deviations</a>' in html
    assert '<span class="open-deviations">4 open</span>' in html
