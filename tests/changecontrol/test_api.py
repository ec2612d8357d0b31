"""The change-control API: CMO users see the sponsors in their scope, a sponsor's people only
their slice (no other sponsor's name, product or decision); make-effective answers 409 with the
unmet obligations; the sponsor approver decides by e-signature; lists cost constant queries."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from changecontrol.models import ChangeProduct, ChangeRequest, SponsorObligation
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

SLICE_FIELDS = {
    "number",
    "title",
    "description",
    "category",
    "status",
    "subject_text",
    "carries",
    "risk_severity",
    "risk_probability",
    "risk_detectability",
    "risk_priority",
    "risk_level",
    "risk_rationale",
    "tasks",
    "proposed_effective_date",
    "effective_at",
    "early_effective_reason",
    "products",
    "obligation",
}
FOREIGN_TO_ACME = ("borealis", "Borealis", "BOR-CATH7", "cygnus", "Cygnus", "CYG-VITD3", "concerns")


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _url(name, *args) -> str:
    return reverse(f"api:change-request-{name}", args=args)


@pytest.fixture
def contested(three):
    change = three.submitted(category="process_parameter", title="Granulation end point by NIR")
    deadlines_send_due(now=timezone.now())
    three.decide(change, "borealis", approve=False, comment="Borealis has concerns.")
    return change


def _assert_only_acme(body) -> None:
    text = json.dumps(body)
    for foreign in FOREIGN_TO_ACME:
        assert foreign not in text, foreign


def test_cmo_users_see_every_sponsor_in_their_scope(three, contested):
    body = _client(three.qa).get(_url("detail", contested.number)).json()
    assert [o["sponsor"] for o in body["obligations"]] == ["acme", "borealis", "cygnus"]
    borealis = body["obligations"][1]
    assert (borealis["status"], borealis["comment"], borealis["decided_by"]) == (
        "rejected",
        "Borealis has concerns.",
        "borealis-approver",
    )
    assert [s["meaning"] for s in borealis["signatures"]] == ["rejected"]
    assert sorted(p["product"] for p in body["products"]) == [
        "ACM-IBU200",
        "BOR-CATH7",
        "CYG-VITD3",
    ]
    assert body["risk_level"] == "low" and body["risk_priority"] == 12


def test_cmo_user_limited_to_one_sponsor_sees_only_it(three, contested):
    acme_only = make_user(sponsor=three.sponsors["acme"], role=Role.CMO_STAFF, username="al")
    client = _client(acme_only)
    body = client.get(_url("detail", contested.number)).json()
    assert [o["sponsor"] for o in body["obligations"]] == ["acme"]
    assert [p["product"] for p in body["products"]] == ["ACM-IBU200"]
    _assert_only_acme(body)
    _assert_only_acme(client.get(_url("list")).json())
    assert client.get(_url("obligation-decision", contested.number, "borealis")).status_code == 405
    response = client.post(
        _url("obligation-decision", contested.number, "borealis"),
        {"approve": True, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["approvers", "auditors"])
def test_a_sponsor_user_gets_only_its_slice(three, contested, who):
    client = _client(getattr(three, who)["acme"])
    # detail
    body = client.get(_url("detail", contested.number)).json()
    assert set(body) == SLICE_FIELDS
    assert body["products"] == ["ACM-IBU200"]
    assert body["obligation"]["sponsor"] == "acme"
    assert body["obligation"]["kind"] == "approve"
    _assert_only_acme(body)
    # list
    listing = client.get(_url("list")).json()
    assert [row["number"] for row in listing["results"]] == [contested.number]
    _assert_only_acme(listing)
    # obligations
    obligations = client.get(_url("obligations", contested.number)).json()
    assert [o["sponsor"] for o in obligations] == ["acme"]
    _assert_only_acme(obligations)
    # another sponsor's obligation: not found for the approver; an auditor writes nothing
    response = client.post(
        _url("obligation-decision", contested.number, "borealis"),
        {"approve": True, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == (404 if who == "approvers" else 403)
    assert "Borealis" not in response.content.decode()


def test_a_sponsor_filters_its_slice_by_status_category_and_risk_level(three, contested):
    client = _client(three.auditors["acme"])
    assert len(client.get(_url("list") + "?risk_level=high").json()["results"]) == 0
    assert len(client.get(_url("list") + "?risk_level=low").json()["results"]) == 1
    assert len(client.get(_url("list") + "?category=process_parameter").json()["results"]) == 1
    assert len(client.get(_url("list") + "?status=approved").json()["results"]) == 0
    qa = _client(three.qa)
    assert len(qa.get(_url("list") + "?risk_level=high").json()["results"]) == 0
    assert len(qa.get(_url("list") + "?risk_level=low").json()["results"]) == 1


def test_make_effective_answers_409_with_every_unmet_obligation(three):
    change = three.submitted()
    response = _client(three.qa).post(_url("make-effective", change.number), {}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "change_obligations_unmet"
    assert body["detail"].startswith(f"Change {change.number} cannot become effective: ")
    assert [(u["sponsor"], u["kind"], u["status"]) for u in body["unmet_obligations"]] == [
        ("acme", "approve", "pending"),
        ("borealis", "notify", "pending"),
    ]
    assert body["unmet_obligations"][0]["problem"] == (
        "Sponsor Acme Pharmaceuticals: approval required, pending"
    )


def test_make_effective_succeeds_once_met(three):
    change = three.submitted(
        codes=("acme", "cygnus"), proposed_effective_date=timezone.localdate() + timedelta(days=30)
    )
    three.decide(change, "acme")
    moment = timezone.now() + timedelta(days=30)
    response = _client(three.qa).post(
        _url("make-effective", change.number), {"effective_at": moment.isoformat()}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "effective"


def test_make_effective_is_for_cmo_users(three):
    change = three.submitted()
    response = _client(three.approvers["acme"]).post(
        _url("make-effective", change.number), {}, format="json"
    )
    assert response.status_code == 403


def test_the_sponsor_approver_decides_through_the_api(three):
    change = three.submitted()
    client = _client(three.approvers["acme"])
    url = _url("obligation-decision", change.number, "acme")
    response = client.post(url, {"approve": False, "password": PASSWORD}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": "reason_required",
        "detail": f"Say why change {change.number} is rejected.",
    }
    response = client.post(
        url, {"approve": True, "password": PASSWORD, "comment": "OK"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["change"], body["sponsor"], body["status"]) == (change.number, "acme", "approved")
    assert body["signature"]["meaning"] == "approved"
    response = _client(three.qa).post(url, {"approve": True, "password": PASSWORD}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "not_permitted"


def test_cmo_staff_drafts_a_change_sponsor_users_may_not(three):
    payload = {
        "title": "New blister foil",
        "description": "Alternate foil supplier.",
        "category": "supplier",
        "products": [three.products["acme"].pk, three.products["cygnus"].pk],
        "subject_text": "PVC/PVdC foil",
        "proposed_effective_date": "2099-03-01",
    }
    response = _client(three.staff).post(_url("list"), payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["number"].startswith("CC-")
    assert sorted(p["product"] for p in body["products"]) == ["ACM-IBU200", "CYG-VITD3"]
    response = _client(three.approvers["acme"]).post(_url("list"), payload, format="json")
    assert response.status_code == 403
    response = _client(three.staff).post(
        _url("list"), {**payload, "products": [999999]}, format="json"
    )
    assert response.status_code == 400
    assert "Unknown, or not in your sponsor scope: 999999." in response.json()["detail"]


def _grow(three, n):
    start = ChangeRequest.objects.count()
    changes = ChangeRequest.objects.bulk_create(
        ChangeRequest(
            number=f"CC-2000-{start + i + 1:04d}",
            title="Counted",
            description="Counted",
            category="sop",
            status="awaiting_sponsors",
            subject_text="x",
            created_by=three.staff,
        )
        for i in range(n)
    )
    ChangeProduct.objects.bulk_create(
        ChangeProduct(change=c, product=p, sponsor_id=p.sponsor_id)
        for c in changes
        for p in three.products.values()
    )
    SponsorObligation.objects.bulk_create(
        SponsorObligation(change=c, sponsor=s, kind="approve", status="pending")
        for c in changes
        for s in three.sponsors.values()
    )


@pytest.mark.parametrize("who", ["qa", "acme-auditor"])
def test_list_costs_the_same_queries_for_5_and_50_changes(three, who):
    user = three.qa if who == "qa" else three.auditors["acme"]
    client = APIClient()
    client.force_login(user)
    assert_constant_queries(client, _url("list"), lambda n: _grow(three, n))


def test_openapi_schema_documents_the_change_endpoints():
    schema = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    make_effective = paths["/api/v1/change-requests/{number}/make-effective/"]["post"]
    assert {"200", "403", "404", "409"} <= make_effective["responses"].keys()
    decision = paths["/api/v1/change-requests/{number}/obligations/{sponsor_code}/decision/"]
    assert {"200", "404", "409"} <= decision["post"]["responses"].keys()
    assert "/api/v1/change-requests/{number}/obligations/" in paths
