"""List pages and API lists cost the same number of queries with 5 rows as with 50."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from sponsors import services
from sponsors.models import Role
from tests.factories import ProductFactory, SponsorFactory, make_user

pytestmark = pytest.mark.django_db


def _count(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


def _grow(sponsor, user, n):
    ProductFactory.create_batch(n, sponsor=sponsor)
    for _ in range(max(1, n // 10)):
        services.quality_agreement_create_draft(sponsor=sponsor, by=user)


@pytest.mark.parametrize(
    "url",
    [
        reverse("home"),
        reverse("sponsors:products"),
        reverse("audit"),
        reverse("notifications"),
        reverse("sponsors:detail", args=["alpha"]),
        reverse("api:product-list"),
        reverse("api:sponsor-list"),
        reverse("api:quality-agreement-list"),
        reverse("api:audit-event-list"),
    ],
)
def test_cmo_lists_have_constant_query_counts(url):
    sponsor = SponsorFactory(code="alpha")
    user = make_user(sponsor=sponsor, role=Role.CMO_QA_APPROVER)
    client = APIClient() if url.startswith("/api/") else Client()
    client.force_login(user)

    _grow(sponsor, user, 5)
    for extra in SponsorFactory.create_batch(2):
        services.access_grant_create(user=user, sponsor=extra, role=Role.CMO_STAFF)
    small = _count(client, url)
    _grow(sponsor, user, 45)
    for extra in SponsorFactory.create_batch(3):
        services.access_grant_create(user=user, sponsor=extra, role=Role.CMO_STAFF)
    large = _count(client, url)

    assert large == small


def test_portal_home_has_constant_query_count():
    sponsor = SponsorFactory(code="alpha")
    cmo = make_user(sponsor=sponsor, role=Role.CMO_STAFF)
    auditor = make_user(sponsor=sponsor, role=Role.SPONSOR_AUDITOR)
    client = Client()
    client.force_login(auditor)
    _grow(sponsor, cmo, 5)
    small = _count(client, reverse("portal:home"))
    _grow(sponsor, cmo, 45)
    assert _count(client, reverse("portal:home")) == small
