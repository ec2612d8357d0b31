"""CAPA: opening from a deviation or another source, actions, the effectiveness check, closure by
e-signature, aging, the CAPA notice from the agreement, pages, API, scoping and query counts."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from deviations import capa as cs
from deviations import services as ds
from deviations.models import Capa
from deviations.selectors import deadlines_of
from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import signatures_for
from qms.tenancy import forget_scope
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db


def _agreement(plant, sponsor, **terms):
    draft = quality_agreement_create_draft(sponsor=sponsor, by=plant.qa, **terms)
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=timezone.now() - timedelta(days=30),
    )


def _deviation(plant, product=None):
    batch, _ = plant.run_batch(product or plant.product_a, [], release=False)
    now = timezone.now()
    return ds.deviation_record(
        title="Blend time exceeded",
        description="Blend ran 17 min against 10–15 min.",
        category="deviation",
        severity="major",
        occurred_at=now - timedelta(hours=1),
        discovered_at=now,
        by=plant.qa,
        batches=[batch],
    )


def _capa(plant, sponsor=None, **kw):
    return cs.capa_open(
        title=kw.pop("title", "Blender timer drift"),
        description="Timer drifts after 10 min.",
        source_kind=kw.pop("source_kind", "other"),
        sponsor=sponsor or plant.sponsor_a,
        by=plant.qa,
        **kw,
    )


def _action(plant, capa, days=7, description="Replace the blender timer"):
    return cs.capa_action_add(
        capa=capa,
        description=description,
        owner=plant.operator,
        due_date=timezone.localdate() + timedelta(days=days),
        by=plant.qa,
    )


def _effective(plant, capa):
    cs.capa_effectiveness_start(
        capa=capa,
        due_date=timezone.localdate() + timedelta(days=30),
        criteria="No blend time excursion in the next 10 batches.",
        by=plant.qa,
    )
    return cs.capa_effectiveness_record(
        capa=capa, result="10 batches, no excursion.", is_effective=True, by=plant.qa
    )


def _refused(call, **kw) -> str:
    with pytest.raises(RuleViolation) as refusal:
        call(**kw)
    return refusal.value.detail


# --- opening ------------------------------------------------------------------------------


def test_capa_from_deviation_takes_the_deviation_sponsor(plant):
    deviation = _deviation(plant)
    capa = cs.capa_open(
        title="Blender timer",
        description="Fix the timer.",
        source_kind="deviation",
        deviation=deviation,
        by=plant.qa,
    )
    year = capa.opened_at.year
    assert (capa.number, capa.sponsor, capa.status) == (
        f"CAPA-{year}-0001",
        plant.sponsor_a,
        "open",
    )
    assert _capa(plant).number == f"CAPA-{year}-0002"


def test_capa_from_deviation_refused_for_another_sponsor(plant):
    deviation = _deviation(plant)
    detail = _refused(
        cs.capa_open,
        title="Blender timer",
        description="Fix the timer.",
        source_kind="deviation",
        deviation=deviation,
        sponsor=plant.sponsor_b,
        by=plant.qa,
    )
    assert detail == (
        f"A CAPA from {deviation.number} belongs to alpha, the deviation's sponsor, not to zzother."
    )


def test_capa_from_deviation_needs_the_deviation(plant):
    detail = _refused(_capa, plant=plant, source_kind="deviation")
    assert detail == "A CAPA from a deviation needs the deviation's number."


def test_capa_from_audit_finding_needs_its_reference(plant):
    detail = _refused(_capa, plant=plant, source_kind="audit_finding")
    assert detail == "A CAPA from an audit finding needs its reference."
    detail = _refused(_capa, plant=plant, source_kind="supplier_issue")
    assert detail == "A CAPA from a supplier issue needs its reference."
    capa = _capa(plant, source_kind="audit_finding", source_reference="AUD-2026-03 F2")
    assert capa.source_display == "Audit finding: AUD-2026-03 F2"


def test_capa_open_refused_for_sponsor_user(plant, auditor_a):
    detail = _refused(
        cs.capa_open,
        title="T",
        description="D",
        source_kind="other",
        sponsor=plant.sponsor_a,
        by=auditor_a,
    )
    assert detail == "auditor-a may not open CAPAs for alpha."


# --- actions ------------------------------------------------------------------------------


def test_action_needs_an_owner_and_a_due_date(plant):
    capa = _capa(plant)
    due = timezone.localdate() + timedelta(days=3)
    common = {"capa": capa, "description": "Retrain", "by": plant.qa}
    detail = _refused(cs.capa_action_add, owner=None, due_date=due, **common)
    assert detail == f"An action of {capa.number} needs an owner."
    detail = _refused(cs.capa_action_add, owner=plant.operator, due_date=None, **common)
    assert detail == f"An action of {capa.number} needs a due date."


def test_action_owner_must_be_cmo_staff_on_the_sponsor(plant, auditor_a):
    capa = _capa(plant)
    detail = _refused(
        cs.capa_action_add,
        capa=capa,
        description="Retrain",
        owner=auditor_a,
        due_date=timezone.localdate(),
        by=plant.qa,
    )
    assert detail == (
        f"auditor-a cannot own an action of {capa.number}: only CMO staff working on its "
        "sponsor can."
    )


def test_first_action_puts_capa_in_progress(plant):
    capa = _capa(plant)
    action = _action(plant, capa)
    capa.refresh_from_db()
    assert (str(action), capa.status) == (f"{capa.number}/A1", "in_progress")


def test_completing_an_action_twice_is_refused(plant):
    capa = _capa(plant)
    action = _action(plant, capa)
    cs.capa_action_complete(action=action, note="Timer replaced.", by=plant.operator)
    detail = _refused(cs.capa_action_complete, action=action, note="Again.", by=plant.qa)
    assert detail == (
        f"Action {capa.number}/A1 was already completed on "
        f"{action.completed_at:%Y-%m-%d %H:%M} UTC by plant-operator."
    )


# --- effectiveness and closure ------------------------------------------------------------


def test_close_refused_before_effectiveness_check_is_recorded(plant):
    capa = _capa(plant)
    _action(plant, capa)
    detail = _refused(cs.capa_close, capa=capa, user=plant.qa, password=PASSWORD)
    assert detail == f"{capa.number} cannot be closed: its effectiveness check is not recorded."


def test_close_refused_while_actions_open_names_them(plant):
    capa = _capa(plant)
    done = _action(plant, capa, description="Replace the timer")
    _action(plant, capa, days=5, description="Retrain operators")
    _action(plant, capa, days=9, description="Revise SOP-12")
    cs.capa_action_complete(action=done, note="Replaced.", by=plant.operator)
    _effective(plant, capa)
    detail = _refused(cs.capa_close, capa=capa, user=plant.qa, password=PASSWORD)
    today = timezone.localdate()
    assert detail == (
        f"{capa.number} cannot be closed while actions are open: "
        f"A2 Retrain operators (due {today + timedelta(days=5):%Y-%m-%d}, plant-operator); "
        f"A3 Revise SOP-12 (due {today + timedelta(days=9):%Y-%m-%d}, plant-operator)."
    )


def test_close_after_effectiveness_check_is_a_closed_signature(plant):
    capa = _capa(plant)
    action = _action(plant, capa)
    cs.capa_action_complete(action=action, note="Replaced.", by=plant.operator)
    _effective(plant, capa)
    signature = cs.capa_close(capa=capa, user=plant.qa, password=PASSWORD)
    capa.refresh_from_db()
    assert (capa.status, signature.meaning) == ("closed", Signature.Meaning.CLOSED)
    assert capa.closed_at is not None
    [(signed, check)] = signatures_for(capa)
    assert signed.pk == signature.pk and check.is_valid
    detail = _refused(cs.capa_close, capa=capa, user=plant.qa, password=PASSWORD)
    assert detail == f"{capa.number} is closed: it cannot be closed again."


def test_close_needs_a_cmo_qa_approver(plant):
    capa = _capa(plant)
    detail = _refused(cs.capa_close, capa=capa, user=plant.operator, password=PASSWORD)
    assert detail == f"plant-operator may not close {capa.number}."


def test_close_refused_with_wrong_password(plant):
    capa = _capa(plant)
    detail = _refused(cs.capa_close, capa=capa, user=plant.qa, password="wrong")
    assert detail == "Signature refused: the password for plant-qa is not correct."


def test_effectiveness_check_needs_actions_due_date_and_criteria(plant):
    capa = _capa(plant)
    detail = _refused(
        cs.capa_effectiveness_start,
        capa=capa,
        due_date=timezone.localdate(),
        criteria="c",
        by=plant.qa,
    )
    assert detail == (
        f"{capa.number} has no actions: add its actions before checking their effectiveness."
    )
    _action(plant, capa)
    detail = _refused(
        cs.capa_effectiveness_start, capa=capa, due_date=None, criteria="", by=plant.qa
    )
    assert detail == f"The effectiveness check of {capa.number} needs a due date and its criteria."


def test_effectiveness_result_refused_before_check_started(plant):
    capa = _capa(plant)
    _action(plant, capa)
    detail = _refused(
        cs.capa_effectiveness_record, capa=capa, result="ok", is_effective=True, by=plant.qa
    )
    assert detail == (
        f"{capa.number} is in progress: its effectiveness check has not been started."
    )


def test_no_action_added_during_effectiveness_check(plant):
    capa = _capa(plant)
    _action(plant, capa)
    cs.capa_effectiveness_start(
        capa=capa, due_date=timezone.localdate(), criteria="No recurrence.", by=plant.qa
    )
    detail = _refused(
        cs.capa_action_add,
        capa=capa,
        description="More",
        owner=plant.operator,
        due_date=timezone.localdate(),
        by=plant.qa,
    )
    assert detail == (
        f"{capa.number} is in its effectiveness check: record the result first; an ineffective "
        "result reopens it for new actions."
    )


def test_ineffective_result_needs_a_reason_and_keeps_capa_open(plant):
    capa = _capa(plant)
    action = _action(plant, capa)
    cs.capa_action_complete(action=action, note="Replaced.", by=plant.operator)
    cs.capa_effectiveness_start(
        capa=capa, due_date=timezone.localdate(), criteria="No recurrence.", by=plant.qa
    )
    detail = _refused(
        cs.capa_effectiveness_record,
        capa=capa,
        result="Recurred on B-0042.",
        is_effective=False,
        by=plant.qa,
    )
    assert detail == f"Say why {capa.number} is not effective and what happens next: it stays open."
    cs.capa_effectiveness_record(
        capa=capa,
        result="Recurred on B-0042.",
        is_effective=False,
        reason="Root cause was the sensor, not the timer.",
        by=plant.qa,
    )
    capa.refresh_from_db()
    assert (capa.status, capa.is_effective) == ("in_progress", False)
    detail = _refused(cs.capa_close, capa=capa, user=plant.qa, password=PASSWORD)
    assert detail == f"{capa.number} cannot be closed: its effectiveness check is not recorded."
    second = _action(plant, capa, description="Replace the sensor")
    assert second.sequence == 2


# --- aging --------------------------------------------------------------------------------


def test_aging_counts_days_open_and_overdue_actions(plant):
    capa = _capa(plant, opened_at=timezone.now() - timedelta(days=10, hours=1))
    today = timezone.localdate()
    late = _action(plant, capa, days=-3, description="Late")
    done_late = _action(plant, capa, days=-5, description="Done late")
    _action(plant, capa, days=2, description="Not yet due")
    cs.capa_action_complete(action=done_late, note="Done.", by=plant.operator)
    other = _capa(plant, title="Fresh")
    row = cs.capa_list(user=plant.qa).get(pk=capa.pk)
    assert (row.days_open, row.open_actions, row.overdue_actions, row.is_overdue) == (
        10,
        2,
        1,
        True,
    )
    fresh = cs.capa_list(user=plant.qa).get(pk=other.pk)
    assert (fresh.days_open, fresh.open_actions, fresh.overdue_actions, fresh.is_overdue) == (
        0,
        0,
        0,
        False,
    )
    assert late.due_date == today - timedelta(days=3)
    overdue = cs.capa_list(user=plant.qa).filter(is_overdue=True)
    assert list(overdue.values_list("number", flat=True)) == [capa.number]


def test_aging_stops_at_closure(plant):
    capa = _capa(plant, opened_at=timezone.now() - timedelta(days=4, hours=1))
    action = _action(plant, capa)
    cs.capa_action_complete(action=action, note="Done.", by=plant.operator)
    _effective(plant, capa)
    cs.capa_close(capa=capa, user=plant.qa, password=PASSWORD)
    later = timezone.now() + timedelta(days=20)
    assert cs.capa_list(user=plant.qa, now=later).get(pk=capa.pk).days_open == 4


# --- CAPA notice --------------------------------------------------------------------------


def test_capa_notice_deadline_from_the_agreement(plant):
    _agreement(plant, plant.sponsor_a, capa_notice_hours=48)
    deviation = _deviation(plant)
    capa = cs.capa_open(
        title="Blender timer",
        description="Fix the timer.",
        source_kind="deviation",
        deviation=deviation,
        by=plant.qa,
    )
    [deadline] = deadlines_of(capa)
    assert (deadline.kind, deadline.sponsor, deadline.due_at) == (
        "capa_notice",
        plant.sponsor_a,
        capa.opened_at + timedelta(hours=48),
    )
    assert deadline.title == f"CAPA {capa.number}: notify Alpha Therapeutics within 48 h"
    assert capa.agreement.capa_notice_hours == 48


def test_no_capa_notice_when_the_agreement_asks_none(plant):
    _agreement(plant, plant.sponsor_a, capa_notice_hours=None)
    capa = _capa(plant)
    assert not deadlines_of(capa).exists()
    site = cs.capa_open(title="Site", description="D", source_kind="other", by=plant.qa)
    assert site.sponsor is None and not deadlines_of(site).exists()


# --- pages --------------------------------------------------------------------------------


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client, url, data, status=302) -> str:
    response = client.post(url, data)
    assert response.status_code == status, (url, response.status_code, response.content[:3000])
    return response.content.decode()


def test_capa_pages_end_to_end(plant):
    deviation = _deviation(plant)
    client = _client(plant.qa)
    html = client.get(reverse("deviations:capa-create") + f"?deviation={deviation.number}")
    assert html.status_code == 200 and deviation.number in html.content.decode()
    _post(
        client,
        reverse("deviations:capa-create"),
        {
            "title": "Blender timer",
            "description": "Fix the timer.",
            "source_kind": "deviation",
            "deviation": deviation.number,
        },
    )
    capa = Capa.objects.get(deviation=deviation)
    number = capa.number
    html = _post(
        client,
        reverse("deviations:capa-action-add", args=[number]),
        {"description": "Replace timer", "owner": "", "due_date": ""},
        status=400,
    )
    assert f"An action of {number} needs an owner." in html
    due = (timezone.localdate() + timedelta(days=3)).isoformat()
    _post(
        client,
        reverse("deviations:capa-action-add", args=[number]),
        {"description": "Replace timer", "owner": "plant-operator", "due_date": due},
    )
    html = _post(
        client, reverse("deviations:capa-close", args=[number]), {"password": PASSWORD}, 400
    )
    assert f"{number} cannot be closed: its effectiveness check is not recorded." in html
    _post(
        client,
        reverse("deviations:capa-action-complete", args=[number, 1]),
        {"note": "Timer replaced."},
    )
    _post(
        client,
        reverse("deviations:capa-effectiveness-start", args=[number]),
        {"due_date": due, "criteria": "No excursion in 10 batches."},
    )
    _post(
        client,
        reverse("deviations:capa-effectiveness", args=[number]),
        {"result": "No excursion.", "is_effective": "yes"},
    )
    html = _post(
        client, reverse("deviations:capa-close", args=[number]), {"password": "wrong"}, 400
    )
    assert "Signature refused: the password for plant-qa is not correct." in html
    _post(client, reverse("deviations:capa-close", args=[number]), {"password": PASSWORD})
    html = client.get(reverse("deviations:capa-detail", args=[number])).content.decode()
    assert "Closed" in html and "closed" in html and "Timer replaced." in html
    assert "signatures" in html and "Audit trail" in html
    listing = client.get(reverse("deviations:capa-list")).content.decode()
    assert number in listing


def test_capa_list_filters_overdue_and_sponsor(plant):
    late = _capa(plant, title="Late one", opened_at=timezone.now() - timedelta(days=5))
    _action(plant, late, days=-1)
    _capa(plant, title="On time one")
    _capa(plant, sponsor=plant.sponsor_b, title="Other sponsor one")
    client = _client(plant.qa)
    html = client.get(reverse("deviations:capa-list"), {"overdue": "true"}).content.decode()
    assert "Late one" in html and "On time one" not in html
    html = client.get(
        reverse("deviations:capa-list"), {"sponsor": plant.sponsor_b.pk}
    ).content.decode()
    assert "Other sponsor one" in html and "Late one" not in html


def test_other_sponsors_capa_is_404_on_page_and_api(plant, qa_approver):
    theirs = _capa(plant, sponsor=plant.sponsor_b, title="ZZOTHER secret CAPA")
    mine = _capa(plant, title="Own CAPA")
    client = _client(qa_approver)
    assert client.get(reverse("deviations:capa-detail", args=[theirs.number])).status_code == 404
    assert client.get(reverse("deviations:capa-detail", args=[mine.number])).status_code == 200
    assert (
        client.post(
            reverse("deviations:capa-close", args=[theirs.number]), {"password": PASSWORD}
        ).status_code
        == 404
    )
    listing = client.get(reverse("deviations:capa-list")).content.decode()
    assert "ZZOTHER" not in listing and mine.number in listing
    api = APIClient()
    api.force_authenticate(qa_approver)
    assert api.get(reverse("api:capa-detail", args=[theirs.number])).status_code == 404
    body = api.get(reverse("api:capa-list")).json()
    assert [row["number"] for row in body["results"]] == [mine.number]


def test_sponsor_user_reads_own_capas_through_the_api_only(plant, auditor_a):
    mine = _capa(plant)
    theirs = _capa(plant, sponsor=plant.sponsor_b)
    site = cs.capa_open(title="Site", description="D", source_kind="other", by=plant.qa)
    assert _client(auditor_a).get(reverse("deviations:capa-list")).status_code == 403
    api = APIClient()
    api.force_authenticate(auditor_a)
    body = api.get(reverse("api:capa-list")).json()
    assert [row["number"] for row in body["results"]] == [mine.number]
    for other in (theirs, site):
        assert api.get(reverse("api:capa-detail", args=[other.number])).status_code == 404
    detail = api.get(reverse("api:capa-detail", args=[mine.number])).json()
    assert (detail["sponsor"], detail["status"], detail["actions"]) == ("alpha", "open", [])


def test_api_detail_shows_actions_and_signature(plant):
    capa = _capa(plant)
    action = _action(plant, capa)
    cs.capa_action_complete(action=action, note="Done.", by=plant.operator)
    _effective(plant, capa)
    cs.capa_close(capa=capa, user=plant.qa, password=PASSWORD)
    api = APIClient()
    api.force_authenticate(plant.qa)
    body = api.get(reverse("api:capa-detail", args=[capa.number])).json()
    assert body["status"] == "closed" and body["is_effective"] is True
    assert [a["sequence"] for a in body["actions"]] == [1]
    assert [s["meaning"] for s in body["signatures"]] == ["closed"]


# --- query counts -------------------------------------------------------------------------


def _grow(plant, n):
    for i in range(n):
        capa = _capa(plant, title=f"Counted {i}", opened_at=timezone.now() - timedelta(days=2))
        _action(plant, capa, days=-1)


def test_capa_list_page_query_count_is_constant(plant):
    client = _client(plant.qa)
    assert_constant_queries(client, reverse("deviations:capa-list"), lambda n: _grow(plant, n))


def test_capa_api_list_query_count_is_constant(plant):
    api = APIClient()
    api.force_authenticate(plant.qa)

    def grow(n):
        _grow(plant, n)
        forget_scope(plant.qa)

    assert_constant_queries(api, reverse("api:capa-list"), grow)


def test_capa_numbers_are_gapless_per_year(plant):
    earlier = _capa(plant, opened_at=timezone.now() - timedelta(days=400))
    first, second = _capa(plant), _capa(plant)
    year = first.opened_at.year
    assert [earlier.number, first.number, second.number] == [
        f"CAPA-{earlier.opened_at.year}-0001",
        f"CAPA-{year}-0001",
        f"CAPA-{year}-0002",
    ]
