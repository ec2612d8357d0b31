"""API tokens end when they should: on logout, on a password change or deactivation of their
user, and after hours rather than weeks (21 CFR 11.300(b)); superusers revoke them in the admin."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _token(user, password) -> str:
    response = APIClient().post(
        reverse("api:token"), {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _client(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _works(token) -> bool:
    return _client(token).get(reverse("api:product-list")).status_code == 200


def test_logout_revokes_the_token_it_carries_and_no_other(auditor_a, password):
    # given
    first, second = _token(auditor_a, password), _token(auditor_a, password)
    # when
    response = _client(first).post(reverse("api:logout"))
    # then
    assert (response.status_code, response.json()) == (200, {"revoked": 1})
    refused = _client(first).get(reverse("api:product-list"))
    assert refused.status_code == 401
    assert refused.json() == {"error": "authentication_failed", "detail": "Invalid token."}
    assert _works(second)


def test_logoutall_revokes_every_token_of_the_caller_only(auditor_a, cmo_staff, password):
    tokens = [_token(auditor_a, password) for _ in range(3)]
    others = _token(cmo_staff, password)

    response = _client(tokens[0]).post(reverse("api:logoutall"))

    assert (response.status_code, response.json()) == (200, {"revoked": 3})
    assert not any(_works(token) for token in tokens)
    assert _works(others)


def test_logoutall_from_a_browser_session_revokes_the_api_tokens(auditor_a, password):
    token = _token(auditor_a, password)
    client = APIClient()
    client.force_login(auditor_a)

    response = client.post(reverse("api:logoutall"))

    assert (response.status_code, response.json()) == (200, {"revoked": 1})
    assert not _works(token)


def test_logout_needs_a_token(auditor_a):
    client = APIClient()
    client.force_login(auditor_a)

    response = client.post(reverse("api:logout"))

    assert response.status_code == 401
    assert response.json() == {
        "error": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
    }


def _signed_in_browser(user, password) -> Client:
    browser = Client()
    assert (
        browser.post(
            reverse("login"), {"username": user.username, "password": password}
        ).status_code
        == 302
    )
    return browser


def test_password_change_ends_every_token_and_session(cmo_staff, password):
    # given
    token = _token(cmo_staff, password)
    browser = _signed_in_browser(cmo_staff, password)
    assert Session.objects.count() == 1
    # when
    cmo_staff.set_password("a-new-long-passphrase")
    cmo_staff.save()
    # then
    assert not _works(token)
    assert not AuthToken.objects.filter(user=cmo_staff).exists()
    assert not Session.objects.exists()
    assert browser.get(reverse("home")).status_code == 302


def test_deactivation_ends_every_token_and_session(cmo_staff, password):
    token = _token(cmo_staff, password)
    _signed_in_browser(cmo_staff, password)

    cmo_staff.is_active = False
    cmo_staff.save(update_fields=["is_active"])

    assert not AuthToken.objects.filter(user=cmo_staff).exists()
    assert not Session.objects.exists()
    assert not _works(token)


def test_other_changes_to_the_user_keep_tokens_and_sessions(cmo_staff, auditor_a, password):
    token = _token(cmo_staff, password)
    _signed_in_browser(auditor_a, password)

    cmo_staff.first_name = "Renamed"
    cmo_staff.save()

    assert _works(token)
    assert Session.objects.count() == 1


def test_a_password_change_leaves_other_users_signed_in(cmo_staff, auditor_a, password):
    token = _token(auditor_a, password)
    _signed_in_browser(auditor_a, password)

    cmo_staff.set_password("a-new-long-passphrase")
    cmo_staff.save()

    assert _works(token)
    assert Session.objects.count() == 1


def test_tokens_last_eight_hours_by_default(auditor_a, password):
    _token(auditor_a, password)
    stored = AuthToken.objects.get(user=auditor_a)

    assert settings.REST_KNOX["TOKEN_TTL"] == timedelta(hours=8)
    assert stored.expiry - stored.created == pytest.approx(
        timedelta(hours=8), abs=timedelta(seconds=5)
    )


def test_superuser_lists_and_revokes_tokens_in_the_admin(superuser, auditor_a, password):
    token = _token(auditor_a, password)
    stored = AuthToken.objects.get(user=auditor_a)
    admin = Client()
    admin.force_login(superuser)

    listing = admin.get(reverse("admin:knox_authtoken_changelist"))
    revoked = admin.post(
        reverse("admin:knox_authtoken_changelist"),
        {"action": "revoke", "_selected_action": [stored.pk]},
        follow=True,
    )

    assert listing.status_code == 200
    assert stored.token_key in listing.content.decode()
    assert "1 token(s) revoked." in revoked.content.decode()
    assert not _works(token)


def test_token_admin_is_for_superusers_only(cmo_staff):
    staff = Client()
    staff.force_login(cmo_staff)

    assert staff.get(reverse("admin:knox_authtoken_changelist")).status_code == 302


def test_logout_routes_are_in_the_schema():
    schema = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json").json()

    for path in ("/api/v1/auth/logout/", "/api/v1/auth/logoutall/"):
        operation = schema["paths"][path]["post"]
        assert "200" in operation["responses"] and "401" in operation["responses"]
