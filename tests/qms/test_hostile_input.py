"""Bad input is refused with a 4xx naming the problem, never a 500: control characters in the
address, oversized and deeply nested bodies, overlong usernames, naive or implausible
date-times, unbounded free text."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from qms.parsers import MAX_DEPTH
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NESTED = "[" * 5000 + "]" * 5000
DEEP = {"error": "parse_error", "detail": f"JSON nested deeper than {MAX_DEPTH} levels."}


def _api(user=None) -> APIClient:
    client = APIClient(raise_request_exception=False)
    if user is not None:
        client.force_authenticate(user)
    return client


def _page(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _deviation_body(**overrides) -> dict:
    now = timezone.now()
    return {
        "title": "Blend time exceeded",
        "description": "Blender ran 17 min against 10-15 min.",
        "category": "deviation",
        "severity": "major",
        "occurred_at": (now - timedelta(hours=2)).isoformat(),
        "discovered_at": (now - timedelta(hours=1)).isoformat(),
        "lots": ["NO-SUCH-LOT"],
        **overrides,
    }


# --- the address ----------------------------------------------------------------------------


def test_nul_in_an_api_detail_path_is_a_json_400(cmo_staff):
    response = _api(cmo_staff).get("/api/v1/lots/L-1%00/")
    assert response.status_code == 400
    assert response.json() == {
        "error": "bad_request",
        "detail": "The address contains a control character (such as NUL); no record is named "
        "that way.",
    }


@pytest.mark.parametrize(
    "path",
    ["/portal/lots/L-1%00/", "/portal/deviations/DEV%00/", "/lots/L-1%00/", "/deviations/D%00/"],
)
def test_nul_in_a_page_path_is_an_html_400(cmo_staff, auditor_a, path):
    user = auditor_a if path.startswith("/portal/") else cmo_staff
    response = _page(user).get(path)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "control character" in response.content.decode()


def test_control_character_in_the_query_string_is_refused_before_login():
    response = Client(raise_request_exception=False).get("/lots/?q=a%00b")
    assert response.status_code == 400


# --- the body -------------------------------------------------------------------------------


def test_json_nested_5000_deep_is_a_400_on_a_json_post_route(cmo_staff):
    response = _api(cmo_staff).post(
        reverse("api:deviation-list"), NESTED, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == DEEP


def test_json_nested_deeper_than_the_limit_is_a_400(cmo_staff):
    body = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    response = _api(cmo_staff).post(
        reverse("api:deviation-list"), body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == DEEP


@pytest.mark.parametrize("media_type", ["application/json", "application/ld+json"])
def test_json_nested_5000_deep_is_a_400_on_the_epcis_import(cmo_staff, media_type):
    response = _api(cmo_staff).post(reverse("api:epcis-import"), NESTED, content_type=media_type)
    assert response.status_code == 400
    assert response.json() == DEEP


def test_nul_in_a_json_string_is_a_400(cmo_staff):
    response = _api(cmo_staff).post(
        reverse("api:deviation-list"),
        '{"title": "a\\u0000b"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "parse_error",
        "detail": "JSON contains a NUL character (\\u0000).",
    }


def test_json_body_over_the_limit_is_a_413(cmo_staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"title": "' + "x" * 2000 + '"}'
    response = _api(cmo_staff).post(
        reverse("api:deviation-list"), body, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": "request_too_large",
        "detail": "The request body has 2,013 bytes; at most 1,000 are accepted here.",
    }


def test_epcis_import_has_its_own_body_limit(cmo_staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.EPCIS_UPLOAD_MAX_SIZE = 5000
    body = '{"type": "' + "x" * 2000 + '"}'
    response = _api(cmo_staff).post(
        reverse("api:epcis-import"), body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "epcis_invalid"
    settings.EPCIS_UPLOAD_MAX_SIZE = 1500
    response = _api(cmo_staff).post(
        reverse("api:epcis-import"), body, content_type="application/json"
    )
    assert response.status_code == 413


# --- login ----------------------------------------------------------------------------------


def test_overlong_username_at_the_login_page_is_a_form_error():
    response = Client(raise_request_exception=False).post(
        reverse("login"), {"username": "u" * 256, "password": "x"}
    )
    assert response.status_code == 200
    assert "at most 150 characters" in response.content.decode()


def test_overlong_username_at_the_token_route_is_a_400():
    response = _api().post(
        reverse("api:token"), {"username": "u" * 256, "password": "x"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert body["detail"] == "username: Ensure this field has no more than 150 characters."


def test_username_of_150_characters_still_logs_in_with_the_token_route(db):
    from tests.factories import make_user

    user = make_user(username="u" * 150)
    response = _api().post(
        reverse("api:token"), {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200


# --- dates, times and text in API writes ----------------------------------------------------


def test_naive_datetime_in_an_api_write_is_a_400_naming_the_field(cmo_staff):
    body = _deviation_body(occurred_at="2026-01-01T08:00:00")
    response = _api(cmo_staff).post(reverse("api:deviation-list"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "occurred_at: Give the time zone: a date and time with a UTC offset, e.g. "
        "2026-03-01T09:30:00Z."
    )


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "1899-12-31T23:00:00Z"]
)
def test_implausible_datetime_in_an_api_write_is_a_400_naming_the_field(cmo_staff, stamp):
    body = _deviation_body(occurred_at=stamp)
    response = _api(cmo_staff).post(reverse("api:deviation-list"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"occurred_at: {stamp.replace('Z', '+00:00')} is outside the plausible range "
        "1900-01-01 to 2199-12-31."
    )


def test_megabyte_description_in_an_api_write_is_a_400(cmo_staff):
    body = _deviation_body(description="x" * 1_000_000)
    response = _api(cmo_staff).post(reverse("api:deviation-list"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "description: Ensure this field has no more than 20000 characters."
    )


def test_control_character_in_an_api_title_is_a_400(cmo_staff):
    body = _deviation_body(title="Blend\x1b[31m time")
    response = _api(cmo_staff).post(reverse("api:deviation-list"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == ("title: The text contains the control character U+001B.")


def test_proposed_effective_date_in_year_1_is_a_400(cmo_staff, product_a):
    payload = {
        "title": "New blister foil",
        "description": "Alternate foil supplier.",
        "category": "supplier",
        "products": [product_a.pk],
        "subject_text": "PVC/PVdC foil",
        "proposed_effective_date": "0001-01-01",
    }
    response = _api(cmo_staff).post(reverse("api:change-request-list"), payload, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "proposed_effective_date: 0001-01-01 is outside the plausible range 1900-01-01 to "
        "2199-12-31."
    )


def test_model_serializers_build_the_bounded_fields():
    from deviations.api import DeviationDetailSerializer
    from qms.api_fields import AwareDateTimeField, BoundedCharField, BoundedTextField

    fields = DeviationDetailSerializer().fields
    assert isinstance(fields["discovered_at"], AwareDateTimeField)
    assert isinstance(fields["description"], BoundedTextField)
    assert isinstance(fields["number"], BoundedCharField)
