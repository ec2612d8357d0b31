"""Writes of the manufacturing API, part three: master batch record versions from draft to
effective (draft → edit → review → approve → effective), each signature by someone other than
the author, and the refusals on the way."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from batches.models import MasterBatchRecord
from sponsors.models import Role
from tests.factories import PASSWORD, ProductFactory, make_user

pytestmark = pytest.mark.django_db

CONTENT = {
    "title": "Alphacillin 100 mg, revised blend",
    "batch_size": "120",
    "batch_unit": "ea",
    "theoretical_yield": "12",
    "bom": [
        {"material": "RM-API", "quantity": "6", "unit": "kg"},
        {"material": "RM-EXC", "quantity": "4", "unit": "kg"},
    ],
    "steps": [
        {
            "title": "Dispense",
            "parameter": "Weight",
            "unit": "kg",
            "low_limit": "6",
            "high_limit": "7",
        },
        {"title": "Blend", "parameter": "Time", "unit": "min", "low_limit": "12"},
        {"title": "Inspect", "requires_verification": False},
    ],
    "reason": "Scale-up to 120 units.",
}


def _call(user, name, *args, body=None, method="post"):
    client = APIClient()
    client.force_authenticate(user)
    return getattr(client, method)(reverse(f"api:{name}", args=args), body or {}, format="json")


def _ok(response, status=200):
    assert response.status_code == status, response.content
    return response.json()


def _refusal(response, code, detail):
    assert response.status_code == 409, response.content
    assert response.json() == {"error": code, "detail": detail}


def _draft(plant):
    return _ok(_call(plant.operator, "master-batch-record-list", body={"product": "ALP-100"}), 201)


def test_mbr_version_goes_from_draft_to_effective_through_the_api(plant):
    # draft: a copy of v1, written by the operator
    draft = _draft(plant)
    assert (draft["product"], draft["version"], draft["status"]) == ("ALP-100", 2, "draft")
    assert [step["title"] for step in draft["steps"]] == ["Dispense", "Blend"]
    mbr_id = draft["id"]

    # edit: replace the content, then change the title only
    edited = _ok(
        _call(plant.operator, "master-batch-record-detail", mbr_id, body=CONTENT, method="put")
    )
    assert (edited["title"], edited["batch_size"], edited["theoretical_yield"]) == (
        "Alphacillin 100 mg, revised blend",
        "120.000",
        "12.000",
    )
    assert [(line["material"], line["quantity"]) for line in edited["bom_lines"]] == [
        ("RM-API", "6.000"),
        ("RM-EXC", "4.000"),
    ]
    assert [(s["sequence"], s["title"], s["requires_verification"]) for s in edited["steps"]] == [
        (1, "Dispense", True),
        (2, "Blend", True),
        (3, "Inspect", False),
    ]
    patched = _ok(
        _call(
            plant.operator,
            "master-batch-record-detail",
            mbr_id,
            body={"title": "Alphacillin 100 mg v2"},
            method="patch",
        )
    )
    assert patched["title"] == "Alphacillin 100 mg v2"
    assert patched["bom_lines"] == edited["bom_lines"]
    assert patched["steps"] == edited["steps"]

    # review by a second person, approval by QA, then in force
    reviewed = _ok(
        _call(plant.verifier, "master-batch-record-review", mbr_id, body={"password": PASSWORD})
    )
    assert (reviewed["status"], reviewed["signature"]["meaning"]) == ("reviewed", "reviewed")
    assert reviewed["signature"]["is_valid"] is True
    approved = _ok(
        _call(plant.qa, "master-batch-record-approve", mbr_id, body={"password": PASSWORD})
    )
    assert (approved["status"], approved["signature"]["meaning"]) == ("approved", "approved")
    effective = _ok(_call(plant.qa, "master-batch-record-make-effective", mbr_id))
    assert (effective["status"], effective["version"]) == ("effective", 2)
    assert effective["effective_from"] is not None
    assert MasterBatchRecord.objects.get(product=plant.product_a, version=1).status == "superseded"


def test_the_author_cannot_review_their_own_draft(plant):
    draft = _draft(plant)
    _refusal(
        _call(
            plant.operator, "master-batch-record-review", draft["id"], body={"password": PASSWORD}
        ),
        "second_person_required",
        "MBR ALP-100 v2 was written by plant-operator; a second person must review it.",
    )
    assert MasterBatchRecord.objects.get(pk=draft["id"]).status == "draft"


def test_the_author_cannot_approve_their_own_version(plant):
    draft = _draft(plant)
    _ok(
        _call(
            plant.verifier, "master-batch-record-review", draft["id"], body={"password": PASSWORD}
        )
    )
    author_qa = make_user(sponsor=plant.sponsor_a, role=Role.CMO_QA_APPROVER, username="qa-author")
    mbr = MasterBatchRecord.objects.get(pk=draft["id"])
    MasterBatchRecord.objects.filter(pk=mbr.pk).update(created_by=author_qa)
    _refusal(
        _call(author_qa, "master-batch-record-approve", draft["id"], body={"password": PASSWORD}),
        "second_person_required",
        "MBR ALP-100 v2 was written by qa-author; a second person must approve it.",
    )


def test_a_draft_is_reviewed_before_approval(plant):
    draft = _draft(plant)
    _refusal(
        _call(plant.qa, "master-batch-record-approve", draft["id"], body={"password": PASSWORD}),
        "mbr_status_invalid",
        "MBR ALP-100 v2 is a draft: it is reviewed by a second person before approval.",
    )


def test_a_reviewed_version_is_not_edited(plant):
    draft = _draft(plant)
    _ok(
        _call(
            plant.verifier, "master-batch-record-review", draft["id"], body={"password": PASSWORD}
        )
    )
    _refusal(
        _call(
            plant.operator, "master-batch-record-detail", draft["id"], body=CONTENT, method="put"
        ),
        "mbr_not_draft",
        "MBR ALP-100 v2 is reviewed: only a draft can be edited; draft a new version instead.",
    )


def test_one_open_draft_per_product(plant):
    _draft(plant)
    _refusal(
        _call(plant.operator, "master-batch-record-list", body={"product": "ALP-100"}),
        "mbr_status_invalid",
        "MBR ALP-100 v2 is draft: finish or edit it before drafting another version.",
    )


def test_a_version_not_approved_cannot_become_effective(plant):
    draft = _draft(plant)
    _refusal(
        _call(plant.qa, "master-batch-record-make-effective", draft["id"]),
        "mbr_status_invalid",
        "MBR ALP-100 v2 is draft; it cannot become effective.",
    )


def test_a_review_with_a_wrong_password_is_refused(plant):
    draft = _draft(plant)
    _refusal(
        _call(plant.verifier, "master-batch-record-review", draft["id"], body={"password": "x"}),
        "signature_password_invalid",
        "Signature refused: the password for plant-verifier is not correct.",
    )


def test_a_product_code_two_sponsors_use_needs_the_sponsor(plant):
    ProductFactory(sponsor=plant.sponsor_b, code="ALP-100", name="Same code elsewhere")
    response = _call(plant.qa, "master-batch-record-list", body={"product": "ALP-100"})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "sponsor: Product code ALP-100 is used by several sponsors (alpha, zzother): name the "
        "sponsor."
    )
    drafted = _ok(
        _call(
            plant.qa, "master-batch-record-list", body={"product": "ALP-100", "sponsor": "alpha"}
        ),
        201,
    )
    assert (drafted["sponsor"], drafted["version"]) == ("alpha", 2)


def test_a_bill_naming_another_sponsors_material_is_a_400(plant):
    staff_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="staff-only-a")
    draft = _draft(plant)
    content = {**CONTENT, "bom": [{"material": "FG-ZZOTHER-1", "quantity": "1", "unit": "ea"}]}
    response = _call(staff_a, "master-batch-record-detail", draft["id"], body=content, method="put")
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "bom": {"0": {"material": ["Unknown, or not in your sponsor scope: FG-ZZOTHER-1."]}}
    }


def test_step_limits_out_of_order_are_a_400(plant):
    draft = _draft(plant)
    content = {**CONTENT, "steps": [{"title": "Dispense", "low_limit": "7", "high_limit": "6"}]}
    response = _call(
        plant.operator, "master-batch-record-detail", draft["id"], body=content, method="put"
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "steps": {"0": {"low_limit": ["The low limit 7.0000 is above the high limit 6.0000."]}}
    }


def test_the_first_version_of_a_new_product_is_written_through_the_api(plant):
    ProductFactory(sponsor=plant.sponsor_a, code="ALP-NEW", name="Alphacillin new")

    body = _ok(
        _call(plant.operator, "master-batch-record-list", body={"product": "ALP-NEW", **CONTENT}),
        201,
    )

    assert (body["version"], body["status"], body["title"]) == (1, "draft", CONTENT["title"])
    assert [step["title"] for step in body["steps"]] == [s["title"] for s in CONTENT["steps"]]
    assert [line["material"] for line in body["bom_lines"]] == ["RM-API", "RM-EXC"]
    assert MasterBatchRecord.objects.get(pk=body["id"]).created_by == plant.operator


def test_a_first_version_needs_its_content(plant):
    ProductFactory(sponsor=plant.sponsor_a, code="ALP-NEW", name="Alphacillin new")

    response = _call(plant.operator, "master-batch-record-list", body={"product": "ALP-NEW"})

    assert response.status_code == 400
    assert (
        "ALP-NEW has no master batch record yet: its first version needs this field."
        in (response.json()["detail"])
    )
    assert not MasterBatchRecord.objects.filter(product__code="ALP-NEW").exists()
