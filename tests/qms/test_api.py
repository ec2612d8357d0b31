"""The REST API: token auth, JSON errors, pagination, the OpenAPI schema."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from qms.api import exception_handler
from qms.errors import RuleViolation

pytestmark = pytest.mark.django_db


def _token(client, user, password):
    response = client.post(
        reverse("api:token"), {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def test_token_login_then_token_auth(auditor_a, product_a, product_b, password):
    client = APIClient()
    token = _token(client, auditor_a, password)

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get(reverse("api:product-list"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert [row["code"] for row in body["results"]] == [product_a.code]


def test_token_is_stored_hashed(auditor_a, password):
    from knox.models import AuthToken

    token = _token(APIClient(), auditor_a, password)
    stored = AuthToken.objects.get(user=auditor_a)
    assert token not in {stored.digest, stored.token_key}
    assert stored.expiry is not None


def test_bad_credentials_are_a_json_401(auditor_a):
    response = APIClient().post(
        reverse("api:token"), {"username": auditor_a.username, "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "authentication_failed",
        "detail": "Unable to log in with these credentials.",
    }


def test_missing_fields_are_a_json_400():
    response = APIClient().post(reverse("api:token"), {}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert "username: This field is required." in body["detail"]


def test_unauthenticated_is_a_json_401():
    response = APIClient().get(reverse("api:sponsor-list"))
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_invalid_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(reverse("api:sponsor-list"))
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_other_sponsors_record_is_a_json_404(cmo_staff, product_b):
    client = APIClient()
    client.force_authenticate(cmo_staff)
    response = client.get(reverse("api:product-detail", args=[product_b.pk]))
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": "Not found, or not in your sponsor scope.",
    }


def test_unknown_api_url_is_a_json_404(cmo_staff):
    client = APIClient()
    client.force_authenticate(cmo_staff)
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_rule_violation_is_a_409():
    response = exception_handler(RuleViolation("agreement_not_draft", "QA v1 is effective."), {})
    assert response.status_code == 409
    assert response.data == {"error": "agreement_not_draft", "detail": "QA v1 is effective."}


def test_agreements_carry_their_change_rules(qa_approver, sponsor_a):
    from sponsors import services

    services.quality_agreement_create_draft(
        sponsor=sponsor_a, by=qa_approver, rules={"sop": ("notify", 30)}
    )
    client = APIClient()
    client.force_authenticate(qa_approver)
    [agreement] = client.get(reverse("api:quality-agreement-list")).json()["results"]
    assert agreement["sponsor"] == "alpha"
    assert {"category": "sop", "obligation": "notify", "lead_time_days": 30} in agreement[
        "change_rules"
    ]


def test_audit_events_are_filtered_by_record(cmo_staff, product_a):
    client = APIClient()
    client.force_authenticate(cmo_staff)
    response = client.get(
        reverse("api:audit-event-list"),
        {"model": "sponsors.product", "object_id": str(product_a.pk)},
    )
    [event] = response.json()["results"]
    assert event["action"] == "create"
    assert event["changes"]["code"] == [None, product_a.code]
    assert len(event["hash"]) == 64


def test_openapi_schema_and_docs(cmo_staff):
    client = APIClient()
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/sponsors/",
        "/api/v1/products/",
        "/api/v1/quality-agreements/",
        "/api/v1/audit-events/",
        "/api/v1/auth/token/",
    ):
        assert path in paths
    assert "404" in paths["/api/v1/products/{id}/"]["get"]["responses"]
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
