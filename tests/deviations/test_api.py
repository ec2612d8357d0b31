"""The quality-events API: deviation scoping per user, recording, the sponsor's approval and
acknowledgement, batch disposition by e-signature, notifications, and constant query counts."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services as bs
from deviations import services as ds
from deviations.models import Deviation
from qms.models import Notification
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD, SponsorFactory, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

MARKER = "zzother"
NOT_FOUND = {"error": "not_found", "detail": "Not found, or not in your sponsor scope."}


def _agreement(plant, sponsor, **terms):
    draft = quality_agreement_create_draft(sponsor=sponsor, by=plant.qa, **terms)
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=timezone.now() - timedelta(days=30),
    )


def _record(plant, severity="major", category="deviation", **links):
    now = timezone.now()
    return ds.deviation_record(
        title=f"{severity.title()} event",
        description="Found during review.",
        category=category,
        severity=severity,
        occurred_at=now - timedelta(hours=1),
        discovered_at=now,
        by=plant.qa,
        **links,
    )


@dataclass
class Events:
    plant: object
    raw: object
    batch_a: object
    lot_a: object
    batch_b: object
    lot_b: object
    site: object
    impact_a: object
    impact_b: object
    dev_a: object
    dev_b: object
    staff_a: object
    auditor_a: object
    approver_a: object
    approver_b: object


@pytest.fixture
def events(plant):
    """A critical site deviation on a raw lot both sponsors consumed (one impact record each),
    a major deviation on alpha's batch (closure reserved to alpha) and a minor complaint on the
    ZZOTHER batch."""
    _agreement(
        plant,
        plant.sponsor_a,
        major_deviation_notice_hours=48,
        critical_deviation_notice_hours=24,
        sponsor_closes_major=True,
        sponsor_closes_critical=True,
        release_authority="cmo",
    )
    _agreement(
        plant, plant.sponsor_b, major_deviation_notice_hours=72, critical_deviation_notice_hours=72
    )
    raw = plant.receive(plant.api)
    batch_a, lot_a = plant.run_batch(plant.product_a, [(raw, "5")])
    batch_b, lot_b = plant.run_batch(plant.product_b, [(raw, "5")], number="B-ZZOTHER-1")
    site = _record(plant, "critical", lots=[raw])
    impacts = {impact.sponsor.code: impact for impact in site.impacts.all()}
    dev_a = _record(plant, "major", batches=[batch_a])
    dev_b = _record(plant, "minor", "complaint", batches=[batch_b])
    return Events(
        plant,
        raw,
        batch_a,
        lot_a,
        batch_b,
        lot_b,
        site,
        impacts["alpha"],
        impacts["zzother"],
        dev_a,
        dev_b,
        staff_a=make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="only-a"),
        auditor_a=make_user(
            sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="auditor-of-a"
        ),
        approver_a=make_user(
            sponsor=plant.sponsor_a, role=Role.SPONSOR_APPROVER, username="approver-of-a"
        ),
        approver_b=make_user(
            sponsor=plant.sponsor_b, role=Role.SPONSOR_APPROVER, username="approver-of-b"
        ),
    )


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _get(user, name, *args, **params):
    response = _client(user).get(reverse(f"api:{name}", args=args), params)
    assert response.status_code == 200, (name, response.status_code, response.content)
    return response.json()


def _post(user, name, *args, data=None):
    return _client(user).post(reverse(f"api:{name}", args=args), data or {}, format="json")


def _numbers(rows):
    return {row["number"] for row in rows}


# --- list and detail scoping ----------------------------------------------------------------


def test_deviation_list_shows_a_cmo_user_on_both_sponsors_everything(events):
    e = events
    rows = _get(e.plant.qa, "deviation-list")["results"]
    assert _numbers(rows) == {d.number for d in (e.site, e.impact_a, e.impact_b, e.dev_a, e.dev_b)}
    row = next(row for row in rows if row["number"] == e.impact_a.number)
    assert (row["sponsor"], row["source"], row["severity"], row["status"]) == (
        "alpha",
        e.site.number,
        "critical",
        "open",
    )


def test_deviation_list_shows_cmo_staff_of_one_sponsor_that_sponsor_and_site_records(events):
    e = events
    response = _client(e.staff_a).get(reverse("api:deviation-list"))
    assert _numbers(response.json()["results"]) == {
        e.site.number,
        e.impact_a.number,
        e.dev_a.number,
    }
    assert MARKER not in response.content.decode().lower()


def test_deviation_list_shows_a_sponsor_auditor_only_their_own_records(events):
    e = events
    response = _client(e.auditor_a).get(reverse("api:deviation-list"))
    assert _numbers(response.json()["results"]) == {e.impact_a.number, e.dev_a.number}
    assert MARKER not in response.content.decode().lower()


def test_deviation_list_filters_by_sponsor_severity_status_and_category(events):
    e, qa = events, events.plant.qa
    by_sponsor = _get(qa, "deviation-list", sponsor__code="zzother")["results"]
    assert _numbers(by_sponsor) == {e.impact_b.number, e.dev_b.number}
    assert _numbers(_get(qa, "deviation-list", severity="major")["results"]) == {e.dev_a.number}
    assert _numbers(_get(qa, "deviation-list", category="complaint")["results"]) == {e.dev_b.number}
    assert _get(qa, "deviation-list", status="closed")["results"] == []


def test_deviation_list_refuses_an_unknown_severity_with_a_json_400(events):
    response = _client(events.plant.qa).get(reverse("api:deviation-list"), {"severity": "huge"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert (
        "severity: Select a valid choice. huge is not one of the available choices."
        in (response.json()["detail"])
    )


def test_deviation_detail_of_an_impact_record_shows_links_deadlines_and_acknowledgement(events):
    e = events
    body = _get(e.auditor_a, "deviation-detail", e.impact_a.number)
    assert (body["number"], body["sponsor"], body["severity"]) == (
        e.impact_a.number,
        "alpha",
        "critical",
    )
    assert body["batches"] == [e.batch_a.number]
    assert body["lots"] == [e.lot_a.lot_number]
    assert body["agreement_version"] == 1
    notice = next(d for d in body["deadlines"] if d["kind"] == "deviation_notice")
    assert notice["status"] == "pending"
    assert notice["is_overdue"] is False
    due = timezone.datetime.fromisoformat(notice["due_at"])
    assert due - e.impact_a.discovered_at == timedelta(hours=24)
    assert {d["kind"] for d in body["deadlines"]} == {
        "deviation_notice",
        "deviation_notice_escalation",
        "investigation_summary",
    }
    assert (body["sponsor_acknowledged_at"], body["time_to_acknowledge"]) == (None, None)
    assert body["impacts"] == []
    content = str(body).lower()
    assert MARKER not in content
    assert e.lot_b.lot_number not in content
    assert e.batch_b.number.lower() not in content


def test_site_deviation_detail_shows_cmo_staff_only_the_impacts_in_their_scope(events):
    e = events
    mine = _get(e.staff_a, "deviation-detail", e.site.number)
    assert mine["sponsor"] is None
    assert mine["lots"] == [e.raw.lot_number]
    assert [(i["number"], i["sponsor"]) for i in mine["impacts"]] == [(e.impact_a.number, "alpha")]
    everyone = _get(e.plant.qa, "deviation-detail", e.site.number)
    assert [i["sponsor"] for i in everyone["impacts"]] == ["alpha", "zzother"]


@pytest.mark.parametrize("who", ["staff_a", "auditor_a", "approver_a"])
def test_other_sponsors_deviations_are_a_json_404(events, who):
    client = _client(getattr(events, who))
    for number in (events.dev_b.number, events.impact_b.number):
        response = client.get(reverse("api:deviation-detail", args=[number]))
        assert response.status_code == 404, (who, number)
        assert response.json() == NOT_FOUND


def test_site_deviation_itself_is_a_json_404_for_a_sponsor_auditor(events):
    response = _client(events.auditor_a).get(
        reverse("api:deviation-detail", args=[events.site.number])
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# --- recording ------------------------------------------------------------------------------


def _body(**overrides):
    now = timezone.now()
    return {
        "title": "Blend time exceeded",
        "description": "Blender ran 17 min against 10-15 min.",
        "category": "deviation",
        "severity": "major",
        "occurred_at": (now - timedelta(hours=2)).isoformat(),
        "discovered_at": (now - timedelta(hours=1)).isoformat(),
        **overrides,
    }


def test_recording_a_deviation_returns_201_with_its_links_and_deadlines(events):
    e = events
    response = _post(e.staff_a, "deviation-list", data=_body(batches=[e.batch_a.number]))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"].startswith(f"DEV-{timezone.now().year}-")
    assert (body["sponsor"], body["status"], body["recorded_by"]) == ("alpha", "open", "only-a")
    assert body["batches"] == [e.batch_a.number]
    notice = next(d for d in body["deadlines"] if d["kind"] == "deviation_notice")
    recorded = Deviation.objects.get(number=body["number"])
    assert timezone.datetime.fromisoformat(notice["due_at"]) - recorded.discovered_at == (
        timedelta(hours=48)
    )


def test_recording_on_a_shared_lot_creates_a_site_deviation_with_impacts(events):
    e = events
    response = _post(e.plant.qa, "deviation-list", data=_body(lots=[e.raw.lot_number]))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sponsor"] is None
    assert [i["sponsor"] for i in body["impacts"]] == ["alpha", "zzother"]


def test_recording_refuses_bad_input_with_a_json_400_naming_the_field(events):
    e = events
    client = _client(e.staff_a)
    url = reverse("api:deviation-list")

    response = client.post(url, _body(severity="huge", lots=[e.raw.lot_number]), format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == 'severity: "huge" is not a valid choice.'

    response = client.post(url, _body(), format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Link the deviation to at least one lot, batch or equipment."
    )

    later = _body(
        occurred_at=timezone.now().isoformat(),
        discovered_at=(timezone.now() - timedelta(hours=3)).isoformat(),
        lots=[e.raw.lot_number],
    )
    response = client.post(url, later, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "occurred_at: A deviation cannot be discovered before it occurred."
    )
    assert Deviation.objects.count() == 5


def test_recording_refuses_another_sponsors_batch_as_unknown(events):
    e = events
    response = _post(e.staff_a, "deviation-list", data=_body(batches=[e.batch_b.number]))
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"batches: Unknown, or not in your sponsor scope: {e.batch_b.number}."
    )


def test_recording_refuses_lots_of_two_sponsors_with_409(events):
    e = events
    response = _post(
        e.plant.qa, "deviation-list", data=_body(lots=[e.lot_a.lot_number, e.lot_b.lot_number])
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "deviation_mixed_sponsors",
        "detail": "The linked lots and batches belong to several sponsors (alpha, zzother): "
        "record one deviation per sponsor.",
    }
    assert Deviation.objects.count() == 5


def test_sponsor_auditor_cannot_record_a_deviation(events):
    e = events
    before = Deviation.objects.count()
    response = _post(e.auditor_a, "deviation-list", data=_body(batches=[e.batch_a.number]))
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert response.json()["detail"] in (
        "Only CMO staff record deviations.",
        "Your access is read-only: you may not change records.",
    )
    assert Deviation.objects.count() == before


def test_sponsor_approver_cannot_record_a_deviation(events):
    e = events
    response = _post(e.approver_a, "deviation-list", data=_body(batches=[e.batch_a.number]))
    assert response.status_code == 403
    assert response.json() == {
        "error": "permission_denied",
        "detail": "Only CMO staff record deviations.",
    }


# --- the sponsor's approval of a closure --------------------------------------------------


@pytest.fixture
def pending(events):
    """Alpha's major deviation, investigated and closed by CMO QA: alpha's agreement reserves
    the closure of a major deviation to the sponsor."""
    deviation = events.dev_a
    ds.deviation_investigate(
        deviation=deviation, by=events.plant.qa, impact_assessment="none", root_cause="timer"
    )
    ds.deviation_close(deviation=deviation, user=events.plant.qa, password=PASSWORD)
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL
    return deviation


def test_sponsor_approver_approves_the_closure_by_signature(events, pending):
    response = _post(
        events.approver_a,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": PASSWORD, "approve": True},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["number"], body["status"]) == (pending.number, "closed")
    assert body["signature"]["meaning"] == "approved"
    pending.refresh_from_db()
    assert pending.closed_at is not None


def test_sponsor_approver_rejects_the_closure_back_to_investigation(events, pending):
    response = _post(
        events.approver_a,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": PASSWORD, "approve": False, "comment": "Root cause not shown."},
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "under_investigation"
    assert response.json()["signature"]["meaning"] == "rejected"


def test_sponsor_rejection_needs_a_comment(events, pending):
    response = _post(
        events.approver_a,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": PASSWORD, "approve": False},
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "reason_required",
        "detail": f"Say why the closure of {pending.number} is rejected.",
    }


def test_sponsor_approval_refuses_a_wrong_password(events, pending):
    response = _post(
        events.approver_a,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": "wrong", "approve": True},
    )
    assert response.status_code == 409
    assert response.json()["error"] == "signature_password_invalid"
    pending.refresh_from_db()
    assert pending.status == Deviation.Status.PENDING_SPONSOR_APPROVAL


def test_sponsor_approver_of_another_sponsor_cannot_approve(events, pending):
    response = _post(
        events.approver_b,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": PASSWORD, "approve": True},
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    pending.refresh_from_db()
    assert pending.status == Deviation.Status.PENDING_SPONSOR_APPROVAL


def test_cmo_qa_cannot_approve_for_the_sponsor(events, pending):
    response = _post(
        events.plant.qa,
        "deviation-sponsor-approval",
        pending.number,
        data={"password": PASSWORD, "approve": True},
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "not_permitted",
        "detail": f"plant-qa may not decide on {pending.number} for the sponsor.",
    }


def test_sponsor_approval_refused_when_not_awaiting_the_sponsor(events):
    response = _post(
        events.approver_a,
        "deviation-sponsor-approval",
        events.dev_a.number,
        data={"password": PASSWORD, "approve": True},
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"{events.dev_a.number} is open: it is not awaiting the sponsor's approval."
    )


def test_sponsor_approval_needs_password_and_decision(events, pending):
    response = _post(events.approver_a, "deviation-sponsor-approval", pending.number, data={})
    assert response.status_code == 400
    assert response.json()["fields"].keys() == {"password", "approve"}


# --- acknowledgement ------------------------------------------------------------------------


def test_sponsor_approver_acknowledges_and_the_time_is_kept(events):
    e = events
    response = _post(e.approver_a, "deviation-acknowledge", e.impact_a.number)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sponsor_acknowledged_by"] == "approver-of-a"
    assert body["sponsor_acknowledged_at"] is not None
    assert body["time_to_acknowledge"] is not None

    again = _post(e.approver_a, "deviation-acknowledge", e.impact_a.number)
    assert again.status_code == 409
    assert again.json()["error"] == "invalid"
    assert again.json()["detail"].startswith(f"{e.impact_a.number} was already acknowledged on ")


def test_cmo_staff_cannot_acknowledge_for_the_sponsor(events):
    response = _post(events.staff_a, "deviation-acknowledge", events.dev_a.number)
    assert response.status_code == 409
    assert response.json() == {
        "error": "not_permitted",
        "detail": f"only-a may not acknowledge {events.dev_a.number}: only the sponsor's people "
        "acknowledge its notice.",
    }


def test_sponsor_auditor_cannot_acknowledge_a_notice(events):
    e = events
    response = _post(e.auditor_a, "deviation-acknowledge", e.impact_a.number)

    assert response.status_code in (403, 409)
    assert response.json()["error"] in ("permission_denied", "not_permitted")
    assert "read-only" in response.json()["detail"]
    e.impact_a.refresh_from_db()
    assert (e.impact_a.sponsor_acknowledged_at, e.impact_a.sponsor_acknowledged_by) == (None, None)


def test_acknowledging_another_sponsors_deviation_is_a_404(events):
    response = _post(events.approver_a, "deviation-acknowledge", events.dev_b.number)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# --- disposition ----------------------------------------------------------------------------


def _pack(plant, batch):
    packaging = bs.packaging_start(batch=batch, label_version="LBL-1", by=plant.operator)
    bs.packaging_clear_line(packaging=packaging, user=plant.operator, password=PASSWORD)
    bs.packaging_reconcile(
        packaging=packaging, issued=10, used=8, destroyed=1, returned=1, by=plant.operator
    )


@pytest.fixture
def finished(events):
    batch, lot = events.plant.run_batch(events.plant.product_a, [(events.raw, "5")], release=False)
    return batch, lot


def test_disposition_refused_naming_every_blocker(events, finished):
    batch, _ = finished
    deviation = _record(events.plant, "major", batches=[batch])
    response = _post(
        events.plant.qa,
        "batch-disposition",
        batch.number,
        data={"password": PASSWORD, "release": True},
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "release_blocked",
        "detail": f"Batch {batch.number} cannot be released: deviation {deviation.number} "
        "(major) is open; packaging evidence is not recorded.",
    }


def test_disposition_releases_the_batch_and_a_second_approver_is_refused(events, finished):
    e = events
    batch, lot = finished
    _pack(e.plant, batch)
    second_qa = make_user(sponsor=e.plant.sponsor_a, role=Role.CMO_QA_APPROVER, username="qa-2")
    body = {"password": PASSWORD, "release": True}

    first = _post(e.plant.qa, "batch-disposition", batch.number, data=body)
    second = _post(second_qa, "batch-disposition", batch.number, data=body)

    assert first.status_code == 200, first.content
    assert (first.json()["batch"], first.json()["status"]) == (batch.number, "released")
    assert first.json()["signature"]["meaning"] == "released"
    assert second.status_code == 409
    assert second.json() == {
        "error": "batch_status_invalid",
        "detail": f"Batch {batch.number} is already released.",
    }
    lot.refresh_from_db()
    assert lot.status == "released"


def test_disposition_rejects_a_batch(events, finished):
    batch, lot = finished
    response = _post(
        events.plant.qa,
        "batch-disposition",
        batch.number,
        data={"password": PASSWORD, "release": False},
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "rejected"
    assert response.json()["signature"]["meaning"] == "rejected"


def test_disposition_of_another_sponsors_batch_is_a_404(events):
    response = _post(
        events.staff_a,
        "batch-disposition",
        events.batch_b.number,
        data={"password": PASSWORD, "release": True},
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_disposition_by_a_sponsor_auditor_is_refused(events, finished):
    batch, _ = finished
    response = _post(
        events.auditor_a,
        "batch-disposition",
        batch.number,
        data={"password": PASSWORD, "release": True},
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "Your access is read-only: you may not change records."


def test_disposition_needs_password_and_decision(events, finished):
    batch, _ = finished
    response = _post(events.plant.qa, "batch-disposition", batch.number, data={})
    assert response.status_code == 400
    assert response.json()["fields"].keys() == {"password", "release"}


# --- notifications --------------------------------------------------------------------------


def test_notifications_list_holds_only_the_users_own(events):
    e = events
    deadlines_send_due(now=timezone.now())
    rows = _get(e.auditor_a, "notification-list")["results"]
    assert {row["subject"].split(" ")[2].rstrip(":") for row in rows} == {
        e.impact_a.number,
        e.dev_a.number,
    }
    assert {row["sponsor"] for row in rows} == {"alpha"}
    assert {row["kind"] for row in rows} == {"deviation_notice"}
    others = Notification.objects.filter(recipient=e.approver_b)
    assert others.exists()
    response = _client(e.auditor_a).get(
        reverse("api:notification-detail", args=[others.first().pk])
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# --- query counts ---------------------------------------------------------------------------


def _grow(sponsor, recorder, reader, n):
    now = timezone.now()
    start = Deviation.objects.count()
    Deviation.objects.bulk_create(
        Deviation(
            number=f"DEV-2000-{start + i + 1:04d}",
            sponsor=sponsor,
            title="Counted",
            description="Counted",
            category="deviation",
            severity="minor",
            occurred_at=now,
            discovered_at=now,
            recorded_by=recorder,
            sponsor_acknowledged_at=now,
            sponsor_acknowledged_by=reader,
        )
        for i in range(n)
    )
    Notification.objects.bulk_create(
        Notification(sponsor=sponsor, recipient=reader, subject=f"Notice {i}") for i in range(n)
    )


@pytest.mark.parametrize("name", ["deviation-list", "notification-list"])
@pytest.mark.parametrize("role", [Role.CMO_QA_APPROVER, Role.SPONSOR_AUDITOR])
def test_lists_have_constant_query_counts(name, role):
    sponsor = SponsorFactory(code="alpha")
    recorder = get_user_model().objects.create(username="recorder")
    reader = make_user(sponsor=sponsor, role=role, username="reader")
    client = APIClient()
    client.force_login(reader)
    url = reverse(f"api:{name}")

    assert_constant_queries(client, url, lambda n: _grow(sponsor, recorder, reader, n))


# --- OpenAPI schema -------------------------------------------------------------------------


def test_openapi_schema_documents_bodies_and_refusals():
    response = APIClient().get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    record = paths["/api/v1/deviations/"]["post"]
    assert {"201", "400", "403", "409"} <= record["responses"].keys()
    body = record["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][body.rsplit("/", 1)[1]]["properties"]
    assert {"title", "lots", "batches", "equipment", "occurred_at"} <= fields.keys()
    for path, keys in (
        ("/api/v1/deviations/{number}/sponsor-approval/", {"password", "approve", "comment"}),
        ("/api/v1/batches/{number}/disposition/", {"password", "release"}),
    ):
        operation = paths[path]["post"]
        assert {"200", "404", "409"} <= operation["responses"].keys(), path
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"].keys() == (keys)
    for path in (
        "/api/v1/deviations/{number}/",
        "/api/v1/deviations/{number}/acknowledge/",
        "/api/v1/notifications/",
        "/api/v1/notifications/{id}/",
    ):
        assert path in paths, path
    filters = {p["name"] for p in paths["/api/v1/deviations/"]["get"]["parameters"]}
    assert {"sponsor__code", "severity", "status", "category"} <= filters


def test_openapi_schema_generates_without_warnings_about_these_endpoints():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    messages = list(GENERATOR_STATS._warn_cache) + list(GENERATOR_STATS._error_cache)
    names = ("deviations/api.py", "DeviationViewSet", "BatchDispositionView", "Notification")
    assert [m for m in messages if any(name in m for name in names)] == []
