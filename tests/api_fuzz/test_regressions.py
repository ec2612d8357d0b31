"""Server errors the API fuzzing found, each kept as a regression test."""

import pytest
from django.urls import NoReverseMatch, reverse
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/master-batch-records/null/"),
        ("post", "/api/v1/master-batch-records/false/review/"),
        ("post", "/api/v1/master-batch-records/1.5/make-effective/"),
        ("get", "/api/v1/shipments/abc/"),
    ],
)
def test_a_non_numeric_record_id_is_a_404_not_a_server_error(qa_approver, method, path):
    client = APIClient()
    client.force_authenticate(qa_approver)

    response = getattr(client, method)(path, {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_numeric_record_ids_are_the_only_keys_routed():
    with pytest.raises(NoReverseMatch):
        reverse("api:master-batch-record-detail", args=["null"])
