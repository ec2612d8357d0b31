"""Writes of the manufacturing API, part two: a batch from plan to review through the API, each
refusal of the shop floor with its message (input lot in quarantine, material off the bill,
operator not trained, verifier = performer, equipment past qualification, no cleaning between
products, unbalanced labels), equipment cleaning, and what the batch detail carries."""

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services
from batches.disposition import batch_disposition
from batches.models import Batch, CleaningRecord, Equipment, ExecutedStep
from deviations import services as deviation_services
from qms.signatures import printed_name
from sponsors.models import Role
from tests.documents.conftest import People, mbr_naming, sop
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _post(user, name, *args, body=None):
    client = APIClient()
    client.force_authenticate(user)
    return client.post(reverse(f"api:{name}", args=args), body or {}, format="json")


def _ok(response, status=200):
    assert response.status_code == status, response.content
    return response.json()


def _refusal(response, code, detail):
    assert response.status_code == 409, response.content
    assert response.json() == {"error": code, "detail": detail}


def _detail(user, number):
    client = APIClient()
    client.force_authenticate(user)
    return _ok(client.get(reverse("api:batch-detail", args=[number])))


def _started(plant, product=None, number=None):
    batch = services.batch_plan(
        product=product or plant.product_a, number=number or plant.next("B"), by=plant.operator
    )
    return services.batch_start(batch=batch, by=plant.operator)


# --- a batch from plan to review ----------------------------------------------------------


def test_a_batch_runs_from_plan_to_review_through_the_api(plant):
    operator, verifier, qa = plant.operator, plant.verifier, plant.qa
    api_lot, excipient_lot = plant.receive(plant.api), plant.receive(plant.excipient)

    planned = _ok(_post(operator, "batch-list", body={"product": "ALP-100", "number": "B-7"}), 201)
    assert (planned["number"], planned["status"], planned["mbr_version"]) == ("B-7", "planned", 1)

    started = _ok(_post(operator, "batch-start", "B-7"))
    assert started["status"] == "in_progress"

    for lot in (api_lot, excipient_lot):
        consumed = _ok(
            _post(
                operator, "batch-consumptions", "B-7", body={"lot": lot.lot_number, "quantity": "5"}
            ),
            201,
        )
        assert (consumed["lot"], consumed["quantity"]) == (lot.lot_number, "5.000")

    use = _ok(_post(operator, "batch-equipment-uses", "B-7", body={"equipment": "TANK-4"}), 201)
    assert (use["equipment"], use["ended_at"]) == ("TANK-4", None)
    ended = _ok(_post(operator, "batch-equipment-use-end", "B-7", use["id"]))
    assert ended["ended_at"] is not None

    for sequence, value in ((1, "5.5"), (2, "12")):
        step = _ok(
            _post(operator, "batch-steps", "B-7", body={"sequence": sequence, "value": value}),
            201,
        )
        assert (step["sequence"], step["is_in_limits"], step["performed_by"]) == (
            sequence,
            True,
            "plant-operator",
        )
        verified = _ok(
            _post(verifier, "batch-step-verify", "B-7", sequence, body={"password": PASSWORD})
        )
        assert verified["verified_by"] == "plant-verifier"

    completed = _ok(
        _post(
            operator,
            "batch-complete",
            "B-7",
            body={"output_lot_number": "L-7", "quantity": "9.5", "expires_on": "2029-06-30"},
        )
    )
    assert (completed["status"], completed["actual_yield"], completed["yield_percent"]) == (
        "completed",
        "9.500",
        "95.0",
    )
    [output] = completed["output_lots"]
    assert (output["lot_number"], output["status"], output["expires_on"]) == (
        "L-7",
        "quarantine",
        "2029-06-30",
    )

    packaging = _ok(
        _post(operator, "batch-packaging", "B-7", body={"label_version": "LBL v3"}), 201
    )
    assert (packaging["label_version"], packaging["line_cleared_at"]) == ("LBL v3", None)
    cleared = _ok(_post(qa, "batch-line-clearance", "B-7", body={"password": PASSWORD}))
    assert (cleared["batch"], cleared["signature"]["meaning"]) == ("B-7", "reviewed")
    assert cleared["signature"]["printed_name"] == printed_name(qa)
    reconciled = _ok(
        _post(
            operator,
            "batch-reconciliation",
            "B-7",
            body={"issued": 100, "used": 95, "destroyed": 3, "returned": 2},
        )
    )
    assert reconciled["is_reconciled"] is True

    submitted = _ok(_post(operator, "batch-submit-for-review", "B-7"))
    assert submitted["status"] == "under_review"
    assert submitted["evidence_complete_at"] is not None
    assert submitted["disposition"] == {
        "status": "under_review",
        "cmo_released_at": None,
        "sponsor_release_required": True,
        "sponsor_release_reason": "no quality agreement is in force",
        "evidence_complete": True,
        "blockers": [],
    }
    assert [(s["record"], s["meaning"], s["is_valid"]) for s in submitted["signatures"]] == [
        ("step 1", "verified", True),
        ("step 2", "verified", True),
        ("packaging", "reviewed", True),
    ]
    assert submitted == _detail(operator, "B-7")


def test_planning_under_a_product_without_an_effective_mbr_is_refused(plant):
    from tests.factories import ProductFactory

    ProductFactory(sponsor=plant.sponsor_a, code="ALP-NEW", name="New product")
    _refusal(
        _post(plant.operator, "batch-list", body={"product": "ALP-NEW", "number": "B-N"}),
        "mbr_not_effective",
        "Batch B-N cannot be planned: ALP-NEW has no effective master batch record.",
    )


def test_planning_a_used_batch_number_is_refused(plant):
    batch = _started(plant)
    _refusal(
        _post(plant.operator, "batch-list", body={"product": "ALP-100", "number": batch.number}),
        "invalid",
        f"Batch number {batch.number} is already used.",
    )


# --- consumption --------------------------------------------------------------------------


def test_consuming_a_lot_in_quarantine_is_refused(plant):
    batch, lot = _started(plant), plant.receive(plant.api, release=False)
    _refusal(
        _post(
            plant.operator,
            "batch-consumptions",
            batch.number,
            body={"lot": lot.lot_number, "quantity": "1"},
        ),
        "lot_not_released",
        f"Lot {lot} is in quarantine: it cannot be consumed.",
    )
    assert not batch.consumptions.exists()


def test_consuming_a_material_not_on_the_bill_of_materials_is_refused(plant):
    # given: product B's MBR lists only the active ingredient
    batch, lactose = _started(plant, plant.product_b), plant.receive(plant.excipient)
    # when
    response = _post(
        plant.operator,
        "batch-consumptions",
        batch.number,
        body={"lot": lactose.lot_number, "quantity": "1"},
    )
    # then
    _refusal(
        response,
        "material_not_in_bill_of_materials",
        f"Lot {lactose} is RM-EXC, which is not in the bill of materials of MBR ZZOTHER-1 v1 "
        f"that batch {batch} runs under.",
    )


def test_consuming_more_than_the_lot_holds_is_refused(plant):
    batch, lot = _started(plant), plant.receive(plant.api, quantity="2")
    _refusal(
        _post(
            plant.operator,
            "batch-consumptions",
            batch.number,
            body={"lot": lot.lot_number, "quantity": "3"},
        ),
        "lot_insufficient",
        f"Lot {lot} has 2 kg left: 3 kg cannot be consumed.",
    )


# --- steps --------------------------------------------------------------------------------


def test_an_untrained_operator_cannot_record_a_step_naming_an_sop(plant, settings, tmp_path):
    # given: product A's MBR names SOP-A-2 in step 1; the operator has no training on it
    settings.MEDIA_ROOT = tmp_path / "media"
    people = People(author=plant.verifier, reviewer=plant.operator, approver=plant.qa)
    sop(people, number="SOP-A-2", sponsor=plant.sponsor_a, title="Blending")
    mbr_naming(plant, plant.product_a, ["SOP-A-2"])
    batch = _started(plant)
    # when
    response = _post(plant.operator, "batch-steps", batch.number, body={"sequence": 1})
    # then
    _refusal(
        response,
        "training_required",
        f"{printed_name(plant.operator)} (plant-operator) cannot sign step 1 of batch {batch}: "
        "not trained on SOP-A-2 v1 (no training record on any version).",
    )
    assert not batch.executed_steps.exists()


def test_a_value_outside_the_limits_needs_a_note(plant):
    batch = _started(plant)
    _refusal(
        _post(plant.operator, "batch-steps", batch.number, body={"sequence": 1, "value": "7"}),
        "comment_required",
        f"Step 1 of batch {batch}: 7 kg is outside the limits 5–6 kg; a comment is required.",
    )
    step = _ok(
        _post(
            plant.operator,
            "batch-steps",
            batch.number,
            body={"sequence": 1, "value": "7", "note": "Scale recalibrated, re-weighed."},
        ),
        201,
    )
    assert (step["is_in_limits"], step["note"]) == (False, "Scale recalibrated, re-weighed.")


def test_a_step_the_mbr_does_not_have_is_a_400(plant):
    batch = _started(plant)
    response = _post(plant.operator, "batch-steps", batch.number, body={"sequence": 9})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"sequence: MBR ALP-100 v1, which batch {batch} runs under, has no step 9."
    )


def test_the_performer_cannot_verify_their_own_step(plant):
    batch = _started(plant)
    _ok(_post(plant.operator, "batch-steps", batch.number, body={"sequence": 1, "value": "5"}), 201)
    response = _post(
        plant.operator, "batch-step-verify", batch.number, 1, body={"password": PASSWORD}
    )
    _refusal(
        response,
        "second_person_required",
        f"Step 1 of batch {batch} was performed by plant-operator; a second person must verify it.",
    )
    assert ExecutedStep.objects.get(batch=batch).verified_by is None


def test_verifying_a_step_needs_the_verifiers_password(plant):
    batch = _started(plant)
    _ok(_post(plant.operator, "batch-steps", batch.number, body={"sequence": 1, "value": "5"}), 201)
    _refusal(
        _post(plant.verifier, "batch-step-verify", batch.number, 1, body={"password": "nope"}),
        "signature_password_invalid",
        "Signature refused: the password for plant-verifier is not correct.",
    )
    response = _post(plant.verifier, "batch-step-verify", batch.number, 1, body={})
    assert response.status_code == 400
    assert response.json()["detail"] == "password: This field is required."


def test_verifying_a_step_not_recorded_is_a_404_naming_it(plant):
    batch = _started(plant)
    response = _post(
        plant.verifier, "batch-step-verify", batch.number, 2, body={"password": PASSWORD}
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"Step 2 of batch {batch} is not recorded.",
    }


def test_completing_with_steps_missing_is_refused(plant):
    batch = _started(plant)
    _refusal(
        _post(
            plant.operator,
            "batch-complete",
            batch.number,
            body={"output_lot_number": "L-X", "quantity": "1"},
        ),
        "step_invalid",
        f"Batch {batch} cannot be completed: steps 1, 2 are not recorded.",
    )
    batch.refresh_from_db()
    assert batch.status == Batch.Status.IN_PROGRESS


# --- equipment ----------------------------------------------------------------------------


def test_equipment_past_its_qualification_is_refused(plant):
    Equipment.objects.create(
        code="MIX-OLD",
        name="Old mixer",
        kind="mixer",
        qualified_until=date.today() - timedelta(days=1),
    )
    batch = _started(plant)
    _refusal(
        _post(plant.operator, "batch-equipment-uses", batch.number, body={"equipment": "MIX-OLD"}),
        "equipment_not_qualified",
        f"MIX-OLD cannot be used: its qualification expired on "
        f"{date.today() - timedelta(days=1):%Y-%m-%d}.",
    )
    assert not batch.equipment_uses.exists()


def test_equipment_that_ran_another_product_needs_a_verified_cleaning_first(plant):
    # given: Tank 4 last ran a batch of product B
    other = _started(plant, plant.product_b)
    use = services.equipment_use_start(batch=other, equipment=plant.tank, by=plant.operator)
    services.equipment_use_end(use=use, by=plant.operator)
    use.refresh_from_db()
    batch = _started(plant)
    # when
    refused = _post(
        plant.operator, "batch-equipment-uses", batch.number, body={"equipment": "TANK-4"}
    )
    # then
    _refusal(
        refused,
        "cleaning_required",
        f"TANK-4 last ran another product (ended {use.ended_at:%Y-%m-%d %H:%M} UTC): a verified "
        f"cleaning after that is required before batch {batch} uses it.",
    )
    # and: cleaned by one person, verified by a second, the tank may be used
    cleaning = _ok(
        _post(plant.operator, "equipment-cleanings", "TANK-4", body={"method": "CIP alkaline"}),
        201,
    )
    assert (cleaning["method"], cleaning["performed_by"], cleaning["is_verified"]) == (
        "CIP alkaline",
        "plant-operator",
        False,
    )
    verified = _ok(
        _post(
            plant.verifier,
            "equipment-cleaning-verify",
            "TANK-4",
            cleaning["id"],
            body={"password": PASSWORD},
        )
    )
    assert (verified["verified_by"], verified["is_verified"]) == ("plant-verifier", True)
    _ok(
        _post(plant.operator, "batch-equipment-uses", batch.number, body={"equipment": "TANK-4"}),
        201,
    )


def test_a_cleaning_is_verified_by_a_second_person(plant):
    cleaning = services.cleaning_record(
        equipment=plant.tank, method="CIP", performed_by=plant.operator
    )
    response = _post(
        plant.operator,
        "equipment-cleaning-verify",
        "TANK-4",
        cleaning.pk,
        body={"password": PASSWORD},
    )
    _refusal(
        response,
        "second_person_required",
        f"{cleaning} was performed by plant-operator; a second person must verify it.",
    )
    assert not CleaningRecord.objects.get(pk=cleaning.pk).is_verified


def test_verifying_a_cleaning_needs_the_password(plant):
    cleaning = services.cleaning_record(
        equipment=plant.tank, method="CIP", performed_by=plant.operator
    )
    _refusal(
        _post(
            plant.verifier,
            "equipment-cleaning-verify",
            "TANK-4",
            cleaning.pk,
            body={"password": "nope"},
        ),
        "signature_password_invalid",
        "Signature refused: the password for plant-verifier is not correct.",
    )
    assert not CleaningRecord.objects.get(pk=cleaning.pk).is_verified


def test_ending_an_equipment_use_of_another_batch_is_a_404(plant):
    first, second = _started(plant), _started(plant)
    use = services.equipment_use_start(batch=first, equipment=plant.tank, by=plant.operator)
    response = _post(plant.operator, "batch-equipment-use-end", second.number, use.pk)
    assert response.status_code == 404
    assert response.json()["detail"] == f"Batch {second} has no equipment use {use.pk}."


# --- packaging ----------------------------------------------------------------------------


def _completed(plant):
    batch, _ = plant.run_batch(plant.product_a, [(plant.receive(plant.api), "5")], release=False)
    return batch


def test_unbalanced_label_reconciliation_is_refused(plant):
    batch = _completed(plant)
    services.packaging_start(batch=batch, label_version="LBL v1", by=plant.operator)
    _refusal(
        _post(
            plant.operator,
            "batch-reconciliation",
            batch.number,
            body={"issued": 100, "used": 90, "destroyed": 5, "returned": 2},
        ),
        "label_reconciliation_unbalanced",
        f"Label reconciliation of batch {batch} does not balance: 100 issued, 97 accounted for "
        "(90 used + 5 destroyed + 2 returned).",
    )
    assert not batch.packaging.is_reconciled


def test_line_clearance_before_packaging_is_recorded_is_a_404_naming_it(plant):
    batch = _completed(plant)
    response = _post(plant.qa, "batch-line-clearance", batch.number, body={"password": PASSWORD})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"Packaging of batch {batch} is not recorded: start it first "
        f"(POST /api/v1/batches/{batch.number}/packaging/)."
    )


def test_line_clearance_needs_the_password(plant):
    batch = _completed(plant)
    services.packaging_start(batch=batch, label_version="LBL v1", by=plant.operator)
    _refusal(
        _post(plant.qa, "batch-line-clearance", batch.number, body={"password": "nope"}),
        "signature_password_invalid",
        "Signature refused: the password for plant-qa is not correct.",
    )


# --- what the batch detail carries --------------------------------------------------------


def test_batch_detail_carries_disposition_signatures_hand_off_and_deviations(plant):
    # given: a packaged batch released by CMO QA, awaiting the sponsor, with a minor deviation
    batch = _completed(plant)
    plant.package(batch)
    batch_disposition(batch=batch, user=plant.qa, password=PASSWORD, release=True)
    deviation = deviation_services.deviation_record(
        title="Label smudge",
        description="One carton label smudged.",
        category="deviation",
        severity="minor",
        occurred_at=timezone.now() - timedelta(hours=1),
        discovered_at=timezone.now(),
        by=plant.qa,
        batches=[batch],
    )
    batch.refresh_from_db()
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="aud-a")
    # when
    body = _detail(auditor, batch.number)
    # then
    assert body["evidence_complete_at"] is not None
    assert body["evidence_handoff_hours"] == "0.0"
    disposition = body["disposition"]
    assert (disposition["status"], disposition["sponsor_release_required"]) == (
        "under_review",
        True,
    )
    assert disposition["cmo_released_at"] is not None
    assert disposition["sponsor_release_reason"] == "no quality agreement is in force"
    assert disposition["blockers"] == [f"deviation {deviation.number} (minor) is open"]
    assert body["deviations"] == [
        {"number": deviation.number, "severity": "minor", "status": "open"}
    ]
    released = [s for s in body["signatures"] if s["record"] == "batch"]
    assert [(s["meaning"], s["printed_name"], s["is_valid"]) for s in released] == [
        ("released", printed_name(plant.qa), True)
    ]
    assert all(s["signed_at"].endswith("Z") for s in body["signatures"])
    assert [s["record"] for s in body["signatures"]].count("packaging") == 1


def test_batch_detail_shows_no_other_sponsors_deviation_on_a_shared_lot(plant):
    # given: a site deviation on the shared raw lot, consumed by both sponsors' batches
    raw = plant.receive(plant.api)
    batch_a, _ = plant.run_batch(plant.product_a, [(raw, "5")], release=False)
    plant.run_batch(plant.product_b, [(raw, "5")], release=False)
    deviation_services.deviation_record(
        title="ZZOTHER-only note",
        description="Batch B only.",
        category="deviation",
        severity="minor",
        occurred_at=timezone.now() - timedelta(hours=1),
        discovered_at=timezone.now(),
        by=plant.qa,
        batches=[Batch.objects.get(product=plant.product_b)],
    )
    auditor = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="aud-a")
    # when
    body = _detail(auditor, batch_a.number)
    # then
    assert body["deviations"] == []
    assert "zzother" not in str(body).lower()
