"""Reason for change (21 CFR 11.10(e)) on every edit of a deviation or a CAPA: a value entered
into an empty field needs none; changing or clearing a recorded value is refused without one,
naming the record and the field, and the reason given lands in the audit event of the change.
Pages show the refusal inline, the API answers 409."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from deviations import capa as cs
from deviations import services as ds
from qms.audit import history_for
from qms.errors import RuleViolation
from sponsors.models import Role
from tests.deviations.test_deviations import agreement, record
from tests.factories import make_user

pytestmark = pytest.mark.django_db

REASON = "Data reviewed again after the line trial."
RULE = "needs a reason for the change (21 CFR 11.10(e))."

FINDINGS = {
    "impact_assessment": ("impact assessment", "No impact.", "Two lots affected."),
    "root_cause": ("root cause", "Timer fault.", "Relay fault."),
    "immediate_action": ("immediate action", "Line stopped.", "Line stopped and cleared."),
    "disposition": ("disposition", "use_as_is", "reject"),
}


def _refused(call, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as refusal:
        call(**kwargs)
    return refusal.value


def _last_change(record_, field):
    return [event for event in history_for(record_) if field in event.changes][-1]


@pytest.fixture
def deviation(plant):
    agreement(plant, plant.sponsor_a)
    batch = plant.run_batch(plant.product_a, [], release=False)[0]
    return record(plant, batches=[batch])


@pytest.fixture
def second_owner(plant):
    return make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="owner-2")


@pytest.fixture
def capa(plant):
    return cs.capa_open(
        title="Blender timer drift",
        description="Timer drifts after 10 min.",
        source_kind="other",
        sponsor=plant.sponsor_a,
        effectiveness_due=timezone.localdate() + timedelta(days=60),
        effectiveness_criteria="No excursion in 10 batches.",
        by=plant.qa,
    )


@pytest.fixture
def action(plant, capa):
    return cs.capa_action_add(
        capa=capa,
        description="Replace the timer",
        owner=plant.operator,
        due_date=timezone.localdate() + timedelta(days=7),
        by=plant.qa,
    )


# --- deviation investigation ------------------------------------------------------------------


@pytest.mark.parametrize("field", list(FINDINGS))
def test_first_entry_of_a_finding_needs_no_reason(plant, deviation, field):
    _, first, _ = FINDINGS[field]

    ds.deviation_investigate(deviation=deviation, by=plant.qa, **{field: first})

    assert getattr(deviation, field) == first
    assert _last_change(deviation, field).reason == ""


@pytest.mark.parametrize("field", list(FINDINGS))
def test_changing_a_recorded_finding_without_a_reason_is_refused(plant, deviation, field):
    label, first, second = FINDINGS[field]
    ds.deviation_investigate(deviation=deviation, by=plant.qa, **{field: first})

    refused = _refused(
        ds.deviation_investigate, deviation=deviation, by=plant.qa, **{field: second}
    )

    assert refused.code == "reason_required"
    assert refused.detail == (f"{deviation.number} already records its {label}: changing it {RULE}")
    deviation.refresh_from_db()
    assert getattr(deviation, field) == first


@pytest.mark.parametrize("field", list(FINDINGS))
def test_changing_a_recorded_finding_with_a_reason_records_the_reason(plant, deviation, field):
    _, first, second = FINDINGS[field]
    ds.deviation_investigate(deviation=deviation, by=plant.qa, **{field: first})

    ds.deviation_investigate(deviation=deviation, by=plant.qa, reason=REASON, **{field: second})

    assert getattr(deviation, field) == second
    event = _last_change(deviation, field)
    assert event.changes[field] == [first, second]
    assert (event.reason, event.actor_id) == (REASON, plant.qa.pk)


def test_immediate_action_recorded_with_the_deviation_changes_only_with_a_reason(plant, deviation):
    recorded = record(
        plant, batches=list(deviation.batches.all()), immediate_action="Line stopped."
    )

    refused = _refused(
        ds.deviation_investigate, deviation=recorded, by=plant.qa, immediate_action=""
    )

    assert refused.detail == (
        f"{recorded.number} already records its immediate action: changing it {RULE}"
    )


def test_refusal_names_every_recorded_finding_being_changed(plant, deviation):
    ds.deviation_investigate(
        deviation=deviation, by=plant.qa, impact_assessment="None.", root_cause="Timer."
    )

    refused = _refused(
        ds.deviation_investigate,
        deviation=deviation,
        by=plant.qa,
        impact_assessment="Two lots.",
        root_cause="Relay.",
        reason="   ",
    )

    assert refused.detail == (
        f"{deviation.number} already records its impact assessment and root cause: changing "
        f"them {RULE}"
    )


def test_resubmitting_recorded_findings_unchanged_needs_no_reason(plant, deviation):
    ds.deviation_investigate(deviation=deviation, by=plant.qa, root_cause="Timer fault.")

    ds.deviation_investigate(
        deviation=deviation,
        by=plant.qa,
        root_cause="Timer fault.\r\n",
        impact_assessment="No impact.",
    )

    assert (deviation.root_cause, deviation.impact_assessment) == ("Timer fault.", "No impact.")


def test_investigation_form_shows_the_missing_reason_inline(plant, deviation):
    ds.deviation_investigate(deviation=deviation, by=plant.qa, root_cause="Timer fault.")
    client = Client()
    client.force_login(plant.qa)
    url = reverse("deviations:investigate", args=[deviation.number])
    data = {"impact_assessment": "", "root_cause": "Relay fault.", "disposition": ""}

    refused = client.post(url, {**data, "immediate_action": ""})
    accepted = client.post(url, {**data, "immediate_action": "", "reason": REASON})

    assert refused.status_code == 400
    assert (
        f"{deviation.number} already records its root cause: changing it needs a reason"
        in refused.content.decode()
    )
    assert accepted.status_code == 302
    deviation.refresh_from_db()
    assert deviation.root_cause == "Relay fault."
    assert _last_change(deviation, "root_cause").reason == REASON


def test_api_investigation_refused_without_a_reason_with_409(plant, deviation):
    ds.deviation_investigate(deviation=deviation, by=plant.qa, root_cause="Timer fault.")
    client = APIClient()
    client.force_authenticate(plant.qa)
    url = reverse("api:deviation-investigation", args=[deviation.number])

    refused = client.post(url, {"root_cause": "Relay fault."}, format="json")
    accepted = client.post(url, {"root_cause": "Relay fault.", "reason": REASON}, format="json")

    assert refused.status_code == 409
    assert refused.json() == {
        "error": "reason_required",
        "detail": f"{deviation.number} already records its root cause: changing it {RULE}",
    }
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["root_cause"] == "Relay fault."
    assert _last_change(deviation, "root_cause").reason == REASON


def test_api_investigation_is_refused_to_sponsor_users_with_403(plant, deviation):
    client = APIClient()
    client.force_authenticate(plant.sponsor_approver(plant.sponsor_a))

    response = client.post(
        reverse("api:deviation-investigation", args=[deviation.number]),
        {"root_cause": "Guess."},
        format="json",
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "Only CMO staff investigate deviations."
    deviation.refresh_from_db()
    assert deviation.root_cause == ""


# --- CAPA -------------------------------------------------------------------------------------


def _capa_edits(plant, second_owner):
    return {
        "title": ("title", "Blender timer and relay drift"),
        "description": ("description", "Timer and relay drift after 10 min."),
        "owner": ("owner", second_owner),
        "effectiveness_due": (
            "effectiveness check due date",
            timezone.localdate() + timedelta(days=90),
        ),
        "effectiveness_criteria": ("effectiveness criteria", "No excursion in 20 batches."),
    }


CAPA_FIELDS = ["title", "description", "owner", "effectiveness_due", "effectiveness_criteria"]


@pytest.mark.parametrize("field", CAPA_FIELDS)
def test_changing_a_recorded_capa_field_without_a_reason_is_refused(
    plant, capa, second_owner, field
):
    label, value = _capa_edits(plant, second_owner)[field]

    refused = _refused(cs.capa_update, capa=capa, by=plant.qa, **{field: value})

    assert refused.code == "reason_required"
    assert refused.detail == f"{capa.number} already records its {label}: changing it {RULE}"


@pytest.mark.parametrize("field", CAPA_FIELDS)
def test_changing_a_recorded_capa_field_with_a_reason_records_the_reason(
    plant, capa, second_owner, field
):
    _, value = _capa_edits(plant, second_owner)[field]

    cs.capa_update(capa=capa, by=plant.qa, reason=REASON, **{field: value})

    assert getattr(capa, field) == value
    column = "owner_id" if field == "owner" else field
    event = _last_change(capa, column)
    assert (event.reason, event.actor_id) == (REASON, plant.qa.pk)


def test_first_entry_of_capa_effectiveness_criteria_needs_no_reason(plant):
    capa = cs.capa_open(
        title="Timer",
        description="Drift.",
        source_kind="other",
        sponsor=plant.sponsor_a,
        by=plant.qa,
    )

    cs.capa_update(capa=capa, by=plant.qa, effectiveness_criteria="No excursion in 10 batches.")

    assert capa.effectiveness_criteria == "No excursion in 10 batches."


ACTION_FIELDS = ["description", "owner", "due_date"]


def _action_edits(second_owner):
    return {
        "description": ("description", "Replace the timer and its relay"),
        "owner": ("owner", second_owner),
        "due_date": ("due date", timezone.localdate() + timedelta(days=14)),
    }


@pytest.mark.parametrize("field", ACTION_FIELDS)
def test_changing_a_capa_action_without_a_reason_is_refused(plant, action, second_owner, field):
    label, value = _action_edits(second_owner)[field]

    refused = _refused(cs.capa_action_update, action=action, by=plant.qa, **{field: value})

    assert refused.code == "reason_required"
    assert refused.detail == f"Action {action} already records its {label}: changing it {RULE}"


@pytest.mark.parametrize("field", ACTION_FIELDS)
def test_changing_a_capa_action_with_a_reason_records_the_reason(
    plant, action, second_owner, field
):
    _, value = _action_edits(second_owner)[field]

    cs.capa_action_update(action=action, by=plant.qa, reason=REASON, **{field: value})

    assert getattr(action, field) == value
    column = "owner_id" if field == "owner" else field
    event = _last_change(action, column)
    assert (event.reason, event.actor_id) == (REASON, plant.qa.pk)


def test_completed_action_cannot_change(plant, action):
    cs.capa_action_complete(action=action, note="Replaced.", by=plant.qa)

    refused = _refused(
        cs.capa_action_update, action=action, by=plant.qa, reason=REASON, description="Other"
    )

    assert refused.detail.startswith(f"Action {action} was completed on ")
    assert refused.detail.endswith("UTC: it cannot change.")


@pytest.mark.parametrize(
    ("given", "label"),
    [
        ({"due_date": timezone.localdate() + timedelta(days=30)}, "effectiveness check due date"),
        ({"criteria": "No excursion in 5 batches."}, "effectiveness criteria"),
    ],
)
def test_effectiveness_check_changing_recorded_terms_needs_a_reason(
    plant, capa, action, given, label
):
    terms = {"due_date": capa.effectiveness_due, "criteria": capa.effectiveness_criteria}

    refused = _refused(cs.capa_effectiveness_start, capa=capa, by=plant.qa, **{**terms, **given})
    cs.capa_effectiveness_start(capa=capa, by=plant.qa, reason=REASON, **{**terms, **given})

    assert refused.detail == f"{capa.number} already records its {label}: changing it {RULE}"
    column = "effectiveness_due" if "due_date" in given else "effectiveness_criteria"
    assert _last_change(capa, column).reason == REASON


def test_effectiveness_check_with_the_recorded_terms_needs_no_reason(plant, capa, action):
    cs.capa_effectiveness_start(
        capa=capa,
        by=plant.qa,
        due_date=capa.effectiveness_due,
        criteria=capa.effectiveness_criteria,
    )

    assert capa.status == "effectiveness_check"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_capa_edit_form_shows_the_missing_reason_inline(plant, capa):
    url = reverse("deviations:capa-edit", args=[capa.number])
    data = {
        "title": "Blender timer and relay drift",
        "description": capa.description,
        "owner": plant.qa.username,
        "effectiveness_due": capa.effectiveness_due.isoformat(),
        "effectiveness_criteria": capa.effectiveness_criteria,
    }

    refused = _client(plant.qa).post(url, data)
    accepted = _client(plant.qa).post(url, {**data, "reason": REASON})

    assert refused.status_code == 400
    assert (
        f"{capa.number} already records its title: changing it needs a reason"
        in refused.content.decode()
    )
    assert accepted.status_code == 302
    capa.refresh_from_db()
    assert capa.title == "Blender timer and relay drift"
    assert _last_change(capa, "title").reason == REASON


def test_capa_action_edit_form_shows_the_missing_reason_inline(plant, capa, action):
    url = reverse("deviations:capa-action-edit", args=[capa.number, action.sequence])
    later = (action.due_date + timedelta(days=7)).isoformat()
    data = {"description": action.description, "owner": "plant-operator", "due_date": later}

    refused = _client(plant.qa).post(url, data)
    accepted = _client(plant.qa).post(url, {**data, "reason": REASON})

    assert refused.status_code == 400
    assert (
        f"Action {action} already records its due date: changing it needs a reason"
        in refused.content.decode()
    )
    assert accepted.status_code == 302
    action.refresh_from_db()
    assert action.due_date.isoformat() == later
    assert _last_change(action, "due_date").reason == REASON


def test_capa_page_offers_the_corrections_with_a_reason_field(plant, capa, action):
    html = _client(plant.qa).get(capa.get_absolute_url()).content.decode()

    assert 'action="{}"'.format(reverse("deviations:capa-edit", args=[capa.number])) in html
    assert 'id="id_capa_reason"' in html and 'id="id_action1_reason"' in html
