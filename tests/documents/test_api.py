"""The documents API: scoped reads of documents, versions and training records; CMO writes
(create a document, draft a version with a multipart upload, record training) through the
services, refusals as 409 with the rule's text; constant query counts for the lists."""

import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from documents import services
from documents.models import Document, DocumentVersion, TrainingRecord
from sponsors.models import Role
from tests.documents.conftest import effective, in_review, mbr_naming, pdf, sop
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def library(people, plant, sponsor_b):
    own = sop(people, number="SOP-ALPHA-1", sponsor=plant.sponsor_a)
    other = sop(people, number="SOP-ZZOTHER-1", sponsor=sponsor_b)
    site = sop(people, number="SOP-GEN-1")
    lonely = sop(people, number="SOP-GEN-ZZOTHER")
    mbr_naming(plant, plant.product_a, ["SOP-GEN-1"])
    mbr_naming(plant, plant.product_b, ["SOP-GEN-ZZOTHER"])
    return {"own": own, "other": other, "site": site, "lonely": lonely}


def test_documents_are_scoped_like_the_pages(library, plant, auditor_a):
    cmo = _api(plant.qa).get(reverse("api:document-list")).json()
    sponsor = _api(auditor_a).get(reverse("api:document-list")).json()

    assert {d["number"] for d in cmo["results"]} == {
        "SOP-ALPHA-1",
        "SOP-ZZOTHER-1",
        "SOP-GEN-1",
        "SOP-GEN-ZZOTHER",
    }
    assert {d["number"] for d in sponsor["results"]} == {"SOP-ALPHA-1", "SOP-GEN-1"}
    detail = _api(auditor_a).get(reverse("api:document-detail", args=["SOP-ZZOTHER-1"]))
    assert detail.status_code == 404


def test_document_detail_lists_versions(library, auditor_a):
    body = _api(auditor_a).get(reverse("api:document-detail", args=["SOP-ALPHA-1"])).json()

    assert body["in_force_version"] == 1 and body["sponsor"] == "alpha"
    assert [v["version"] for v in body["versions"]] == [1]
    assert body["versions"][0]["sha256"] == library["own"][1].sha256


def test_sponsor_users_see_released_versions_only(people, library, auditor_a, plant):
    document = library["own"][0]
    effective(people, document, "Second.")
    services.version_create_draft(document=document, change_summary="Third.", by=people.author)

    sponsor = _api(auditor_a).get(
        reverse("api:document-version-list"), {"document__number": "SOP-ALPHA-1"}
    )
    cmo = _api(plant.qa).get(
        reverse("api:document-version-list"), {"document__number": "SOP-ALPHA-1"}
    )

    assert [v["version"] for v in sponsor.json()["results"]] == [1, 2]
    assert [v["version"] for v in cmo.json()["results"]] == [1, 2, 3]


def test_version_detail_carries_signatures(library, auditor_a):
    version = library["own"][1]

    body = _api(auditor_a).get(reverse("api:document-version-detail", args=[version.pk])).json()

    assert [s["meaning"] for s in body["signatures"]] == ["reviewed", "approved"]
    assert body["status"] == "effective" and body["file_name"] == "SOP-ALPHA-1.pdf"


def test_cmo_creates_a_document_and_a_version_with_a_multipart_upload(people, plant):
    client = _api(people.author)

    created = client.post(
        reverse("api:document-list"),
        {"number": "SOP-API-1", "title": "By API", "doc_type": "sop", "sponsor": "alpha"},
        format="json",
    )
    upload = pdf("api.pdf", "api")
    drafted = client.post(
        reverse("api:document-version-list"),
        {"document": "SOP-API-1", "change_summary": "First.", "file": upload},
        format="multipart",
    )

    assert created.status_code == 201 and created.json()["sponsor"] == "alpha"
    assert drafted.status_code == 201, drafted.json()
    upload.seek(0)
    assert drafted.json()["sha256"] == hashlib.sha256(upload.read()).hexdigest()
    assert drafted.json()["status"] == "draft"


def test_oversize_upload_answers_409_with_the_rule(people, settings):
    settings.DOCUMENT_MAX_UPLOAD_BYTES = 16
    services.document_create(number="SOP-API-2", title="X", doc_type="sop", by=people.author)

    response = _api(people.author).post(
        reverse("api:document-version-list"),
        {"document": "SOP-API-2", "change_summary": "First.", "file": pdf("big.pdf", "x" * 40)},
        format="multipart",
    )

    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "File big.pdf is larger than the upload limit of 16 bytes"
    )


def test_disguised_upload_answers_409(people):
    services.document_create(number="SOP-API-3", title="X", doc_type="sop", by=people.author)

    response = _api(people.author).post(
        reverse("api:document-version-list"),
        {
            "document": "SOP-API-3",
            "change_summary": "First.",
            "file": SimpleUploadedFile("report.pdf", b"<html>not a pdf</html>"),
        },
        format="multipart",
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "document_file_rejected",
        "detail": "File report.pdf is not a PDF file: its content does not match its .pdf "
        "extension.",
    }


def test_second_unfinished_version_answers_409(people, library):
    services.version_create_draft(
        document=library["own"][0], change_summary="Second.", by=people.author
    )

    response = _api(people.author).post(
        reverse("api:document-version-list"),
        {"document": "SOP-ALPHA-1", "change_summary": "Third."},
        format="multipart",
    )

    assert response.status_code == 409
    assert response.json()["error"] == "document_version_open"
    assert "SOP-ALPHA-1 already has v2 draft" in response.json()["detail"]


def test_sponsor_users_cannot_write(library, auditor_a):
    client = _api(auditor_a)

    document = client.post(
        reverse("api:document-list"),
        {"number": "X-1", "title": "X", "doc_type": "sop"},
        format="json",
    )
    training = client.post(reverse("api:training-record-list"), {}, format="json")

    assert document.status_code == training.status_code == 403
    assert not Document.objects.filter(number="X-1").exists()


def test_document_of_a_sponsor_out_of_scope_is_invalid(people, plant):
    staff = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="staff-only-a")

    response = _api(staff).post(
        reverse("api:document-list"),
        {"number": "SOP-Z", "title": "X", "doc_type": "sop", "sponsor": "zzother"},
        format="json",
    )

    assert response.status_code == 400
    assert "Unknown, or not in your sponsor scope: zzother." in response.json()["detail"]


def test_training_record_by_api_signed_by_the_trainee(library, plant):
    client = _api(plant.qa)
    payload = {
        "user": plant.operator.username,
        "document": "SOP-ALPHA-1",
        "version": 1,
        "trainee_password": PASSWORD,
        "note": "Read",
    }

    created = client.post(reverse("api:training-record-list"), payload, format="json")
    again = client.post(reverse("api:training-record-list"), payload, format="json")
    wrong = client.post(
        reverse("api:training-record-list"),
        {**payload, "user": plant.verifier.username, "trainee_password": "nope"},
        format="json",
    )

    assert created.status_code == 201
    body = created.json()
    assert (body["user"], body["trainer"], body["document"], body["version"]) == (
        "plant-operator",
        "plant-qa",
        "SOP-ALPHA-1",
        1,
    )
    assert [s["meaning"] for s in body["signatures"]] == ["trained"]
    assert (
        again.status_code == 409 and "already trained on SOP-ALPHA-1 v1" in again.json()["detail"]
    )
    assert wrong.status_code == 409 and wrong.json()["error"] == "signature_password_invalid"


def test_training_on_a_version_in_review_answers_409(people, plant):
    document = services.document_create(number="SOP-R", title="X", doc_type="sop", by=people.author)
    in_review(people, document)

    response = _api(plant.qa).post(
        reverse("api:training-record-list"),
        {
            "user": plant.operator.username,
            "document": "SOP-R",
            "version": 1,
            "trainee_password": PASSWORD,
        },
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "SOP-R v1 is in review: training is recorded on an approved or effective version only."
    )


def test_training_records_are_scoped(library, plant, auditor_a):
    for version in (library["own"][1], library["other"][1], library["lonely"][1]):
        services.training_record(user=plant.qa, version=version, trainee_password=PASSWORD)

    cmo = _api(plant.qa).get(reverse("api:training-record-list")).json()
    sponsor = _api(auditor_a).get(reverse("api:training-record-list")).json()

    assert {r["document"] for r in cmo["results"]} == {
        "SOP-ALPHA-1",
        "SOP-ZZOTHER-1",
        "SOP-GEN-ZZOTHER",
    }
    assert {r["document"] for r in sponsor["results"]} == {"SOP-ALPHA-1"}
    assert TrainingRecord.objects.count() == 3


@pytest.mark.parametrize(
    "name", ["api:document-list", "api:document-version-list", "api:training-record-list"]
)
def test_api_lists_have_constant_query_counts(people, plant, name):

    def grow(start, n):
        for i in range(start, start + n):
            _, version = sop(people, number=f"SOP-API-{i:03d}", sponsor=plant.sponsor_a)
            services.training_record(
                user=plant.operator, version=version, trainee_password=PASSWORD
            )

    client = _api(get_user_model().objects.get(pk=plant.qa.pk))
    assert_constant_queries(client, reverse(name), lambda n: grow(0, n), more=lambda n: grow(5, n))
    assert DocumentVersion.objects.count() == 50
