"""Responses tell a sponsor nothing about other sponsors' activity: no global audit sequence
numbers or chain hashes, and no database constraint names in errors."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from qms.api import CONFLICT_DETAIL
from qms.models import AuditEvent
from sponsors.models import Sponsor
from tests.factories import ProductFactory, SponsorFactory

pytestmark = pytest.mark.django_db

HIDDEN = {"seq", "prev_hash", "hash"}


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_sponsor_users_see_no_sequence_numbers_or_hashes(auditor_a, product_a, product_b):
    response = _client(auditor_a).get(reverse("api:audit-event-list"))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert rows
    assert not any(HIDDEN & set(row) for row in rows)
    body = response.content.decode()
    assert '"seq"' not in body and "prev_hash" not in body and '"hash"' not in body


def test_sponsor_users_count_only_their_own_events(auditor_a, sponsor_a, product_a):
    before = _client(auditor_a).get(reverse("api:audit-event-list")).json()["count"]
    for n in range(3):
        ProductFactory(sponsor=SponsorFactory(code=f"other-{n}"))

    after = _client(auditor_a).get(reverse("api:audit-event-list")).json()["count"]

    assert after == before == AuditEvent.objects.filter(sponsor=sponsor_a).count()


def test_sponsor_users_cannot_filter_or_open_events_by_sequence(auditor_a, sponsor_a, product_a):
    own = AuditEvent.objects.filter(sponsor=sponsor_a).first()
    client = _client(auditor_a)

    filtered = client.get(reverse("api:audit-event-list"), {"seq__gt": 0})
    opened = client.get(reverse("api:audit-event-detail", args=[own.seq]))

    assert filtered.status_code == 400
    assert filtered.json()["error"] == "unknown_query_parameter"
    assert "seq__gt" in filtered.json()["detail"]
    assert opened.status_code == 404
    assert opened.json() == {
        "error": "not_found",
        "detail": "Not found, or not in your sponsor scope.",
    }


def test_sponsor_users_find_a_records_events_by_model_and_id(auditor_a, product_a):
    response = _client(auditor_a).get(
        reverse("api:audit-event-list"),
        {"model": "sponsors.product", "object_id": str(product_a.pk)},
    )

    [event] = response.json()["results"]
    assert event["action"] == "create"
    assert event["sponsor"] == "alpha"


def test_cmo_users_keep_sequence_numbers_hashes_and_the_detail_route(cmo_staff, product_a):
    client = _client(cmo_staff)
    [event] = client.get(
        reverse("api:audit-event-list"),
        {"model": "sponsors.product", "object_id": str(product_a.pk), "seq__gt": 0},
    ).json()["results"]

    opened = client.get(reverse("api:audit-event-detail", args=[event["seq"]]))

    assert HIDDEN <= set(event)
    assert opened.status_code == 200
    assert opened.json()["hash"] == event["hash"]


class _DuplicateSponsorView(APIView):
    def post(self, request):
        with transaction.atomic():
            Sponsor.objects.create(code="alpha", name="Second Alpha")


class _RaisingView(APIView):
    def post(self, request):
        raise IntegrityError(
            'duplicate key value violates unique constraint "batches_lot_number_key"'
        )


@pytest.mark.parametrize("view", [_DuplicateSponsorView, _RaisingView])
def test_a_database_conflict_is_a_409_without_the_constraint_name(view, cmo_staff, sponsor_a):
    request = APIRequestFactory().post("/api/v1/test/", {}, format="json")
    force_authenticate(request, user=cmo_staff)

    response = view.as_view()(request)
    response.render()

    assert response.status_code == 409
    assert response.data == {"error": "conflict", "detail": CONFLICT_DETAIL}
    assert CONFLICT_DETAIL == (
        "The record could not be saved: it conflicts with another record "
        "(for example a number already used)."
    )
    body = response.content.decode()
    assert "_key" not in body and "constraint" not in body and "alpha" not in body


def test_the_portal_audit_trail_numbers_rows_not_global_sequence(auditor_a, product_a, product_b):
    from django.test import Client

    for n in range(3):
        ProductFactory(sponsor=SponsorFactory(code=f"busy-{n}"))
    own = AuditEvent.objects.filter(model="sponsors.product", object_id=str(product_a.pk))
    global_seqs = {event.seq for event in own}
    client = Client()
    client.force_login(auditor_a)

    html = client.get(reverse("portal:product", args=[product_a.pk])).content.decode()

    assert 'id="audit-trail"' in html
    assert "<td>1</td>" in html
    assert not any(f"<td>{seq}</td>" in html for seq in global_seqs if seq > len(global_seqs))
