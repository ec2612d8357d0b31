"""Rules every API endpoint shares: unknown query parameters are refused naming them,
`page_size` is honoured up to its documented maximum, and read-only users cannot write."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from qms.api_query import MAX_PAGE_SIZE
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def products(sponsor_a):
    return [ProductFactory(sponsor=sponsor_a, code=f"ALP-{n:03d}") for n in range(3)]


def test_an_unknown_query_parameter_is_refused_naming_it(cmo_staff, products):
    response = _client(cmo_staff).get(reverse("api:product-list"), {"lots__lot_number": "L-1"})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unknown_query_parameter"
    assert body["detail"].startswith("Unknown query parameter lots__lot_number; this endpoint")
    assert "sponsor__code" in body["detail"]


def test_an_unknown_query_parameter_is_refused_on_a_detail_route(cmo_staff, products):
    url = reverse("api:product-detail", args=[products[0].pk])

    response = _client(cmo_staff).get(url, {"expand": "all"})

    assert response.status_code == 400
    assert "Unknown query parameter expand" in response.json()["detail"]


def test_known_filters_and_paging_parameters_are_accepted(cmo_staff, products, sponsor_a):
    response = _client(cmo_staff).get(
        reverse("api:product-list"), {"sponsor__code": sponsor_a.code, "page": 1, "format": "json"}
    )

    assert response.status_code == 200
    assert response.json()["count"] == 3


def test_page_size_is_honoured_and_the_next_link_keeps_it(cmo_staff, products):
    response = _client(cmo_staff).get(reverse("api:product-list"), {"page_size": 1})

    body = response.json()
    assert response.status_code == 200
    assert (body["count"], len(body["results"])) == (3, 1)
    assert "page_size=1" in body["next"] and "page=2" in body["next"]


@pytest.mark.parametrize("size", ["0", str(MAX_PAGE_SIZE + 1), "ten", "-5"])
def test_a_page_size_outside_the_range_is_refused(cmo_staff, products, size):
    response = _client(cmo_staff).get(reverse("api:product-list"), {"page_size": size})

    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"page_size: must be a whole number from 1 to {MAX_PAGE_SIZE}."
    )


def test_the_maximum_page_size_is_accepted(cmo_staff, products):
    response = _client(cmo_staff).get(reverse("api:product-list"), {"page_size": MAX_PAGE_SIZE})

    assert response.status_code == 200


def test_page_size_is_documented_in_the_schema(cmo_staff):
    response = _client(cmo_staff).get(reverse("schema"), {"format": "json"})

    operation = response.json()["paths"]["/api/v1/products/"]["get"]
    assert "page_size" in {parameter["name"] for parameter in operation["parameters"]}


def test_a_read_only_user_is_refused_a_write_before_the_input_is_read(auditor_a):
    response = _client(auditor_a).post(reverse("api:product-list"), {"x": 1}, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "error": "permission_denied",
        "detail": "Your access is read-only: you may not change records.",
    }
