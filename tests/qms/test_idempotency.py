"""The Idempotency-Key on API writes: a retry answers the first success and writes nothing; the
same key on another request is refused; refusals keep no key; keys are per user and expire after
24 hours; two identical requests at once write once."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services
from batches.disposition import batch_disposition
from batches.models import CleaningRecord, ExecutedStep, Lot, Shipment
from qms.idempotency import idempotency_keys_purge
from qms.models import AuditEvent, IdempotencyKey
from tests.batches.conftest import plant  # noqa: F401  (the small plant of the batch tests)
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

KEY = "5f0c6f0e-8d0b-4a43-9b57-2f1d6a1f0c11"


def _post(user, name, *args, body=None, key=KEY):
    client = APIClient()
    client.force_authenticate(user)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(reverse(f"api:{name}", args=args), body or {}, format="json", **headers)


def _receipt(number="R-IDEM-1", quantity="40"):
    return {"material": "RM-API", "lot_number": number, "quantity": quantity, "supplier": "SUP-1"}


def test_a_retry_with_the_same_key_answers_the_first_success_and_writes_once(plant):  # noqa: F811
    # given
    first = _post(plant.operator, "lot-list", body=_receipt())
    events = AuditEvent.objects.count()
    # when
    retry = _post(plant.operator, "lot-list", body=_receipt())
    # then
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Lot.objects.filter(lot_number="R-IDEM-1").count() == 1
    assert AuditEvent.objects.count() == events


def test_a_retried_step_is_recorded_once(plant):  # noqa: F811
    batch = services.batch_plan(product=plant.product_a, number="B-IDEM", by=plant.operator)
    services.batch_start(batch=batch, by=plant.operator)
    body = {"sequence": 1, "value": "5.2"}
    answers = [_post(plant.operator, "batch-steps", batch.number, body=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[1].json() == answers[0].json() == answers[2].json()
    assert ExecutedStep.objects.filter(batch=batch).count() == 1


def test_the_same_key_with_a_different_body_is_refused(plant):  # noqa: F811
    _post(plant.operator, "lot-list", body=_receipt())
    response = _post(plant.operator, "lot-list", body=_receipt(quantity="41"))
    assert response.status_code == 422
    assert response.json() == {
        "error": "idempotency_key_reused",
        "detail": f"Idempotency-Key {KEY} was already used with a different body; send a new "
        "key for a new request.",
    }
    assert Lot.objects.get(lot_number="R-IDEM-1").quantity == 40


def test_the_same_key_on_another_route_is_refused(plant):  # noqa: F811
    _post(plant.operator, "lot-list", body=_receipt())
    response = _post(plant.operator, "equipment-cleanings", "TANK-4", body={"method": "CIP"})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"Idempotency-Key {KEY} was already used for POST /api/v1/lots/; send a new key for a "
        "new request."
    )
    assert not CleaningRecord.objects.exists()


def test_keys_belong_to_their_user(plant):  # noqa: F811
    body = {"method": "CIP alkaline"}
    mine = _post(plant.operator, "equipment-cleanings", "TANK-4", body=body)
    theirs = _post(plant.verifier, "equipment-cleanings", "TANK-4", body=body)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert CleaningRecord.objects.count() == 2


def test_a_refused_request_keeps_no_key_and_its_retry_is_judged_again(plant):  # noqa: F811
    # given: the lot's batch awaits the sponsor's release, so shipping is refused
    batch, lot = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    plant.package(batch)
    batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=True)
    body = {"lot": lot.lot_number, "customer": "CUST-1", "quantity": "2"}
    refused = _post(plant.operator, "shipment-list", body=body)
    assert refused.status_code == 409
    assert not IdempotencyKey.objects.exists()
    # when: the sponsor releases, and the same request is retried with the same key
    batch_disposition(
        batch=batch, user=plant.sponsor_approver(plant.sponsor_a), password=PASSWORD, release=True
    )
    shipped = _post(plant.operator, "shipment-list", body=body)
    again = _post(plant.operator, "shipment-list", body=body)
    # then
    assert (shipped.status_code, again.status_code) == (201, 201)
    assert again.content == shipped.content
    assert Shipment.objects.filter(lot=lot).count() == 1


def test_invalid_input_keeps_no_key(plant):  # noqa: F811
    assert _post(plant.operator, "lot-list", body={"material": "RM-API"}).status_code == 400
    assert _post(plant.operator, "lot-list", body=_receipt()).status_code == 201


def test_failed_signatures_sent_with_keys_still_lock_the_account(plant):  # noqa: F811
    # given
    lot = plant.receive(plant.api, release=False)

    def sign(password, key):
        body = {"password": password, "release": True}
        return _post(plant.qa, "lot-disposition", lot.lot_number, body=body, key=key)

    # when: five wrong passwords, each retried under its own key
    codes = [sign("wrong", f"attempt-{n}").json()["error"] for n in range(5)]
    # then: they count toward the lockout, which holds against the right password too
    assert codes == ["signature_password_invalid"] * 4 + ["account_locked"]
    locked = sign(PASSWORD, "attempt-6")
    assert locked.status_code == 403
    assert locked.json() == {
        "error": "account_locked",
        "detail": "This account is locked after 5 failed attempts; try again in 15 minutes.",
    }
    lot.refresh_from_db()
    assert lot.status == Lot.Status.QUARANTINE


def test_a_key_is_forgotten_after_24_hours(plant):  # noqa: F811
    body = {"method": "CIP"}
    first = _post(plant.operator, "equipment-cleanings", "TANK-4", body=body)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    later = _post(plant.operator, "equipment-cleanings", "TANK-4", body=body)
    assert (first.status_code, later.status_code) == (201, 201)
    assert later.json()["id"] != first.json()["id"]
    assert not later.has_header("Idempotent-Replayed")


def test_purge_forgets_keys_past_their_lifetime(plant):  # noqa: F811
    _post(plant.operator, "equipment-cleanings", "TANK-4", body={"method": "CIP"}, key="old")
    _post(plant.operator, "equipment-cleanings", "TANK-4", body={"method": "CIP"}, key="new")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(days=2))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_an_unusable_key_is_a_400(plant, key):  # noqa: F811
    response = _post(plant.operator, "lot-list", body=_receipt(), key=key)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Idempotency-Key: Send 1 to 255 printable characters, e.g. a UUID."
    )
    assert not Lot.objects.filter(lot_number="R-IDEM-1").exists()


def test_the_key_stores_no_password(plant):  # noqa: F811
    lot = plant.receive(plant.api, release=False)
    _post(plant.qa, "lot-disposition", lot.lot_number, body={"password": PASSWORD, "release": True})
    stored = IdempotencyKey.objects.get()
    assert PASSWORD not in stored.request_hash
    assert PASSWORD not in stored.response_body
    assert len(stored.request_hash) == 64


@pytest.mark.django_db(transaction=True)
def test_two_identical_requests_at_once_write_once(plant):  # noqa: F811
    barrier = Barrier(2)

    def send():
        try:
            barrier.wait(timeout=10)
            return _post(plant.operator, "lot-list", body=_receipt())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = [f.result(timeout=60) for f in [pool.submit(send), pool.submit(send)]]

    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].content == answers[1].content
    assert sorted(a.has_header("Idempotent-Replayed") for a in answers) == [False, True]
    assert Lot.objects.filter(lot_number="R-IDEM-1").count() == 1
