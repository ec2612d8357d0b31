"""A sponsor's people never write deviations or CAPAs, except the approver's own acts
(acknowledging a notice, deciding a reserved closure); a sponsor auditor writes nothing. Each
service refuses, naming the user and the record, whatever the caller (page, portal, API)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from deviations import capa as cs
from deviations import services as ds
from qms.errors import RuleViolation
from qms.tenancy import forget_scope
from tests.deviations.test_deviations import agreement, investigated, record
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(plant):
    """Alpha's batch, a major deviation on it awaiting the sponsor's closure decision, and a
    CAPA with one open action."""
    agreement(plant, plant.sponsor_a)
    batch = plant.run_batch(plant.product_a, [], release=False)[0]
    deviation = investigated(plant, record(plant, batches=[batch]))
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    capa = cs.capa_open(
        title="Blender timer drift",
        description="Timer drifts after 10 min.",
        source_kind="deviation",
        deviation=deviation,
        by=plant.qa,
    )
    action = cs.capa_action_add(
        capa=capa,
        description="Replace the timer",
        owner=plant.operator,
        due_date=timezone.localdate() + timedelta(days=7),
        by=plant.qa,
    )
    return {"batch": batch, "deviation": deviation, "capa": capa, "action": action}


def _now():
    return timezone.now()


CMO_WRITES = {
    "deviation_record": (
        lambda r, u: ds.deviation_record(
            title="Blend time exceeded",
            description="Blend ran long.",
            category="deviation",
            severity="minor",
            occurred_at=_now(),
            discovered_at=_now(),
            batches=[r["batch"]],
            by=u,
        ),
        "{user} may not record deviations for this sponsor.",
    ),
    "deviation_investigate": (
        lambda r, u: ds.deviation_investigate(deviation=r["deviation"], by=u, root_cause="X"),
        "{user} may not investigate {deviation}.",
    ),
    "deviation_change_severity": (
        lambda r, u: ds.deviation_change_severity(
            deviation=r["deviation"], severity="critical", reason="Worse.", by=u
        ),
        "{user} may not change {deviation}.",
    ),
    "deviation_close": (
        lambda r, u: ds.deviation_close(deviation=r["deviation"], user=u, password=PASSWORD),
        "{user} may not close {deviation}.",
    ),
    "capa_open": (
        lambda r, u: cs.capa_open(
            title="Timer",
            description="Drift.",
            source_kind="deviation",
            deviation=r["deviation"],
            by=u,
        ),
        "{user} may not open CAPAs for alpha.",
    ),
    "capa_update": (
        lambda r, u: cs.capa_update(capa=r["capa"], title="Other", reason="Why.", by=u),
        "{user} may not change {capa}.",
    ),
    "capa_action_add": (
        lambda r, u: cs.capa_action_add(
            capa=r["capa"],
            description="More",
            owner=u,
            due_date=timezone.localdate(),
            by=u,
        ),
        "{user} may not add actions to {capa}.",
    ),
    "capa_action_update": (
        lambda r, u: cs.capa_action_update(
            action=r["action"], description="Other", reason="Why.", by=u
        ),
        "{user} may not change actions of {capa}.",
    ),
    "capa_action_complete": (
        lambda r, u: cs.capa_action_complete(action=r["action"], note="Done.", by=u),
        "{user} may not complete actions of {capa}.",
    ),
    "capa_effectiveness_start": (
        lambda r, u: cs.capa_effectiveness_start(
            capa=r["capa"], due_date=timezone.localdate(), criteria="None.", by=u
        ),
        "{user} may not start the effectiveness check of {capa}.",
    ),
    "capa_effectiveness_record": (
        lambda r, u: cs.capa_effectiveness_record(
            capa=r["capa"], result="Fine.", is_effective=True, by=u
        ),
        "{user} may not record the effectiveness check of {capa}.",
    ),
    "capa_close": (
        lambda r, u: cs.capa_close(capa=r["capa"], user=u, password=PASSWORD),
        "{user} may not close {capa}.",
    ),
}


def _refusal(call, records, user) -> RuleViolation:
    with pytest.raises(RuleViolation) as refused:
        call(records, user)
    return refused.value


def _message(template, records, user) -> str:
    return template.format(
        user=user.get_username(), deviation=records["deviation"], capa=records["capa"]
    )


@pytest.mark.parametrize("service", sorted(CMO_WRITES))
def test_sponsor_auditor_cannot_write_a_deviation_or_capa(plant, records, auditor_a, service):
    call, template = CMO_WRITES[service]

    refused = _refusal(call, records, auditor_a)

    assert refused.code == "not_permitted"
    assert refused.detail == _message(template, records, auditor_a)


@pytest.mark.parametrize("service", sorted(CMO_WRITES))
def test_sponsor_approver_cannot_make_cmo_writes(plant, records, service):
    approver = plant.sponsor_approver(plant.sponsor_a)
    call, template = CMO_WRITES[service]

    refused = _refusal(call, records, approver)

    assert refused.detail == _message(template, records, approver)


@pytest.mark.parametrize("service", ["deviation_investigate", "capa_action_add"])
def test_sponsor_user_holding_a_change_permission_still_cannot_write(
    plant, records, auditor_a, service
):
    # given: an auditor who was given the CMO change permission on the sponsor by mistake
    assign_perm("change_sponsor", auditor_a, plant.sponsor_a)
    forget_scope(auditor_a)
    call, template = CMO_WRITES[service]

    refused = _refusal(call, records, auditor_a)

    assert refused.detail == _message(template, records, auditor_a)


def test_sponsor_auditor_cannot_acknowledge_a_notice(plant, records, auditor_a):
    deviation = records["deviation"]

    with pytest.raises(RuleViolation) as refused:
        ds.deviation_acknowledge(deviation=deviation, user=auditor_a)

    assert refused.value.code == "not_permitted"
    assert refused.value.detail == (
        f"auditor-a may not acknowledge {deviation}: acknowledging the notice is the sponsor "
        "approver's act; a sponsor auditor's access is read-only."
    )
    deviation.refresh_from_db()
    assert deviation.sponsor_acknowledged_at is None


def test_sponsor_approver_acknowledges_a_notice(plant, records):
    approver = plant.sponsor_approver(plant.sponsor_a)

    deviation = ds.deviation_acknowledge(deviation=records["deviation"], user=approver)

    assert deviation.sponsor_acknowledged_by == approver


def test_sponsor_auditor_cannot_decide_a_reserved_closure(plant, records, auditor_a):
    deviation = records["deviation"]

    with pytest.raises(RuleViolation) as refused:
        ds.deviation_sponsor_decide(
            deviation=deviation, user=auditor_a, password=PASSWORD, approve=True
        )

    assert refused.value.detail == f"auditor-a may not decide on {deviation} for the sponsor."
    deviation.refresh_from_db()
    assert deviation.status == "pending_sponsor_approval"
