"""21 CFR 11.300(d) without a denial of service: failed logins lock an account at the address
they came from, an address that tries many accounts is locked as a whole, and failed
e-signatures count against the signer alone."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from qms.errors import RuleViolation
from qms.signatures import signer_verify
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ADDRESS_A, ADDRESS_B = "203.0.113.10", "198.51.100.20"
LOCKED = b"locked after 5 failed attempts"


def _login(user_or_name, password, address):
    username = getattr(user_or_name, "username", user_or_name)
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def _fail(username, address, times):
    for _ in range(times):
        _login(username, "wrong-password", address)


def test_five_failures_from_one_address_do_not_lock_the_account_elsewhere(cmo_staff, password):
    _fail(cmo_staff.username, ADDRESS_A, 5)

    response = _login(cmo_staff, password, ADDRESS_B)

    assert response.status_code == 302


def test_five_failures_lock_the_account_at_that_address(cmo_staff, password):
    _fail(cmo_staff.username, ADDRESS_A, 5)

    response = _login(cmo_staff, password, ADDRESS_A)

    assert response.status_code == 403
    assert LOCKED in response.content


def test_token_login_is_locked_per_account_and_address(cmo_staff, password):
    body = {"username": cmo_staff.username, "password": "wrong-password"}
    for _ in range(5):
        APIClient(REMOTE_ADDR=ADDRESS_A).post(reverse("api:token"), body, format="json")
    body["password"] = password

    here = APIClient(REMOTE_ADDR=ADDRESS_A).post(reverse("api:token"), body, format="json")
    elsewhere = APIClient(REMOTE_ADDR=ADDRESS_B).post(reverse("api:token"), body, format="json")

    assert here.status_code == 403
    assert here.json()["error"] == "account_locked"
    assert elsewhere.status_code == 200


def test_an_address_failing_on_many_usernames_is_locked_for_everyone_there(cmo_staff, password):
    # given: twenty failures spread over usernames, none reaching five
    for n in range(5):
        _fail(f"sprayed-{n}", ADDRESS_A, 4)
    # when
    here = _login(cmo_staff, password, ADDRESS_A)
    elsewhere = _login(cmo_staff, password, ADDRESS_B)
    # then
    assert here.status_code == 403
    assert LOCKED in here.content
    assert elsewhere.status_code == 302


def test_nineteen_failures_on_many_usernames_do_not_lock_the_address(cmo_staff, password):
    for n in range(19):
        _fail(f"sprayed-{n}", ADDRESS_A, 1)

    assert _login(cmo_staff, password, ADDRESS_A).status_code == 302


def test_failed_signings_lock_the_signer_only_at_their_address(qa_approver, password):
    # given: five wrong signature passwords (a signing without a request counts from 127.0.0.1)
    for _ in range(5):
        with pytest.raises(RuleViolation):
            signer_verify(user=qa_approver, password="wrong-password")
    # when
    with pytest.raises(RuleViolation) as locked:
        signer_verify(user=qa_approver, password=password)
    # then
    assert locked.value.code == "account_locked"
    assert _login(qa_approver, password, "127.0.0.1").status_code == 403
    assert _login(qa_approver, password, ADDRESS_B).status_code == 302


def test_failed_signings_do_not_count_toward_the_address_limit(sponsor_a, cmo_staff, password):
    # given: five signers at one address, each failing four times (twenty failures)
    signers = [make_user(username=f"signer-{n}") for n in range(5)]
    for signer in signers:
        for _ in range(4):
            with pytest.raises(RuleViolation) as refused:
                signer_verify(user=signer, password="wrong-password")
            assert refused.value.code == "signature_password_invalid"
    # when: four more failed logins there
    _fail("somebody", "127.0.0.1", 4)
    # then: the address is not locked, and every signer can still sign
    assert _login(cmo_staff, password, "127.0.0.1").status_code == 302
    for signer in signers:
        signer_verify(user=signer, password=password)


def test_a_locked_address_does_not_stop_an_authenticated_signer(qa_approver, password):
    for n in range(5):
        _fail(f"sprayed-{n}", "127.0.0.1", 4)

    signer_verify(user=qa_approver, password=password)
