"""List pages and API lists cost the same number of queries with 5 rows as with 50."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from sponsors import services
from sponsors.models import Role
from tests.factories import ProductFactory, SponsorFactory, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db


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

    def grow(n):
        _grow(sponsor, user, n)
        for extra in SponsorFactory.create_batch(max(2, n // 15)):  # 2 more sponsors, then 3
            services.access_grant_create(user=user, sponsor=extra, role=Role.CMO_STAFF)

    assert_constant_queries(client, url, grow)


def test_portal_home_has_constant_query_count():
    sponsor = SponsorFactory(code="alpha")
    cmo = make_user(sponsor=sponsor, role=Role.CMO_STAFF)
    auditor = make_user(sponsor=sponsor, role=Role.SPONSOR_AUDITOR)
    client = Client()
    client.force_login(auditor)
    assert_constant_queries(client, reverse("portal:home"), lambda n: _grow(sponsor, cmo, n))
