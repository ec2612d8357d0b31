"""CMO pages: the document list, a document (version history, requirements, training status, who
must retrain), a version with every lifecycle action through its forms, the training matrix
with out-of-date cells highlighted, and constant query counts for the list and the matrix."""

import hashlib

import pytest
from django.test import Client
from django.urls import reverse

from documents import services
from documents.models import DocumentVersion
from sponsors.models import Role
from tests.documents.conftest import effective, pdf, sop
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

Status = DocumentVersion.Status


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _train(person, version):
    services.training_record(user=person, version=version, trainee_password=PASSWORD)


def test_document_list_shows_scope_filters_and_in_force_version(people, plant, sponsor_b):
    sop(people, number="SOP-A-1", sponsor=plant.sponsor_a, title="Alpha blending")
    sop(people, number="SOP-B-1", sponsor=sponsor_b, title="ZZOTHER blending")
    sop(people, number="SOP-GEN-1", title="Gowning")
    staff_a = make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username="staff-a-only")

    text = _client(staff_a).get(reverse("documents:list")).content.decode()
    assert "SOP-A-1" in text and "SOP-GEN-1" in text and "ZZOTHER" not in text
    assert 'href="/documents/SOP-A-1/v1/"' in text

    filtered = _client(plant.qa).get(reverse("documents:list"), {"site_wide": "true"})
    assert "SOP-GEN-1" in filtered.content.decode()
    assert "SOP-A-1" not in filtered.content.decode()


def test_create_document_and_draft_a_version_with_upload(people):
    client = _client(people.author)

    response = client.post(
        reverse("documents:create"),
        {"number": "SOP-NEW-1", "title": "New SOP", "doc_type": "sop", "sponsor": ""},
    )
    assert response.status_code == 302 and response["Location"] == "/documents/SOP-NEW-1/"

    upload = pdf("new.pdf", "new")
    response = client.post(
        reverse("documents:new-version", args=["SOP-NEW-1"]),
        {"change_summary": "First issue.", "file": upload},
    )
    assert response.status_code == 302 and response["Location"] == "/documents/SOP-NEW-1/v1/"
    version = DocumentVersion.objects.get(document__number="SOP-NEW-1")
    upload.seek(0)
    assert version.sha256 == hashlib.sha256(upload.read()).hexdigest()


def test_refused_upload_is_shown_inline(people):
    services.document_create(number="SOP-X", title="X", doc_type="sop", by=people.author)

    response = _client(people.author).post(
        reverse("documents:new-version", args=["SOP-X"]),
        {"change_summary": "First.", "file": pdf("fake.exe")},
    )

    assert response.status_code == 400
    assert "File fake.exe is type .exe, which is not accepted" in response.content.decode()


def test_version_lifecycle_through_the_page(people, plant):
    document = services.document_create(
        number="SOP-UI", title="Through the UI", doc_type="sop", by=people.author
    )
    services.version_create_draft(
        document=document, change_summary="First.", upload=pdf(), by=people.author
    )
    args = ["SOP-UI", 1]
    author, reviewer, approver = (
        _client(people.author),
        _client(people.reviewer),
        _client(people.approver),
    )

    assert author.post(reverse("documents:submit", args=args)).status_code == 302
    refused = author.post(reverse("documents:review", args=args), {"password": PASSWORD})
    assert refused.status_code == 400 and "its author cannot review it" in refused.content.decode()
    reviewed = reviewer.post(reverse("documents:review", args=args), {"password": PASSWORD})
    assert reviewed.status_code == 302
    approved = approver.post(
        reverse("documents:approve", args=args), {"password": PASSWORD, "effective_from": ""}
    )
    assert approved.status_code == 302

    version = DocumentVersion.objects.get(document=document)
    assert version.status == Status.EFFECTIVE
    page = approver.get(reverse("documents:version", args=args)).content.decode()
    assert "reviewed" in page and "approved" in page and version.sha256 in page


def test_submit_refusal_is_shown_on_the_version_page(people):
    document = services.document_create(
        number="SOP-NF", title="X", doc_type="sop", by=people.author
    )
    services.version_create_draft(document=document, change_summary="First.", by=people.author)

    response = _client(people.author).post(reverse("documents:submit", args=["SOP-NF", 1]))

    assert response.status_code == 400
    assert "SOP-NF v1 cannot be submitted for review: no file is attached." in (
        response.content.decode()
    )


def test_record_training_with_the_trainees_password(people, plant):
    _, version = sop(people)
    client = _client(plant.qa)
    url = reverse("documents:train", args=["SOP-QA-001", 1])

    wrong = client.post(url, {"trainee": plant.operator.pk, "trainee_password": "nope"})
    assert wrong.status_code == 400
    assert "the password for plant-operator is not correct" in wrong.content.decode()

    response = client.post(url, {"trainee": plant.operator.pk, "trainee_password": PASSWORD})
    assert response.status_code == 302
    record = version.training_records.get()
    assert (record.user, record.trainer) == (plant.operator, plant.qa)


def test_document_page_shows_training_status_and_who_must_retrain(people, plant):
    document, first = sop(people)
    services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    _train(plant.operator, first)
    second = effective(people, document, "Second.")
    _train(plant.verifier, second)

    page = _client(plant.qa).get(reverse("documents:detail", args=["SOP-QA-001"]))

    text = page.content.decode()
    assert page.status_code == 200
    assert "training-out_of_date" in text and "training-current" in text
    retrain = text.split("<h2>Must retrain</h2>")[1].split("</ul>")[0]
    assert plant.operator.get_full_name() in retrain
    assert plant.verifier.get_full_name() not in retrain
    assert "Everyone holding the role <strong>CMO staff</strong>" in text


def test_requirement_forms_add_and_remove_with_reason(people, plant):
    document, _ = sop(people)
    client = _client(people.author)

    added = client.post(
        reverse("documents:requirement-add", args=["SOP-QA-001"]), {"person": plant.qa.pk}
    )
    assert added.status_code == 302
    requirement = document.training_requirements.get()
    url = reverse("documents:requirement-remove", args=["SOP-QA-001", requirement.pk])
    assert client.post(url, {"reason": ""}).status_code == 400
    assert client.post(url, {"reason": "Moved to another line"}).status_code == 302
    assert not document.training_requirements.exists()


def test_make_obsolete_and_make_effective_forms(people):
    _, version = sop(people)
    client = _client(people.approver)

    response = client.post(
        reverse("documents:make-effective", args=["SOP-QA-001", 1]), {"effective_from": ""}
    )
    assert response.status_code == 400
    assert "only an approved version can become effective" in response.content.decode()
    response = client.post(
        reverse("documents:obsolete", args=["SOP-QA-001", 1]), {"reason": "Gone"}
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == Status.OBSOLETE


def test_training_matrix_highlights_out_of_date_cells(people, plant):
    document, first = sop(people)
    services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    _train(plant.operator, first)
    effective(people, document, "Second.")

    response = _client(plant.qa).get(reverse("documents:training-matrix"))

    text = response.content.decode()
    assert response.status_code == 200
    assert '<td class="training-cell training-out_of_date" title="out of date">v1 → v2</td>' in text
    assert 'class="training-cell training-never"' in text
    gaps_only = _client(plant.qa).get(reverse("documents:training-matrix"), {"gaps": "on"})
    assert plant.operator.username in gaps_only.content.decode()


def test_training_matrix_filters_by_sponsor_and_type(people, plant, sponsor_b):
    own, _ = sop(people, number="SOP-A-9", sponsor=plant.sponsor_a)
    other, _ = sop(people, number="SOP-B-9", sponsor=sponsor_b)
    spec = services.document_create(
        number="SPEC-A-9",
        title="Spec",
        doc_type="specification",
        sponsor=plant.sponsor_a,
        by=people.author,
    )
    effective(people, spec)
    for document in (own, other, spec):
        services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    client = _client(plant.qa)

    by_sponsor = client.get(reverse("documents:training-matrix"), {"sponsor": plant.sponsor_a.pk})
    by_type = client.get(reverse("documents:training-matrix"), {"doc_type": "specification"})

    assert "SOP-A-9" in by_sponsor.content.decode()
    assert "SOP-B-9" not in by_sponsor.content.decode()
    assert "SPEC-A-9" in by_type.content.decode() and "SOP-A-9" not in by_type.content.decode()


def test_sponsor_users_get_no_cmo_document_pages(people, auditor_a):
    sop(people)

    assert _client(auditor_a).get(reverse("documents:list")).status_code == 403
    assert (
        _client(auditor_a).get(reverse("documents:detail", args=["SOP-QA-001"])).status_code == 403
    )


# --- query counts -------------------------------------------------------------------------------


def _grow(people, plant, start, n):
    """n documents of sponsor A with an effective version, a role requirement and a trainee,
    and n more people holding the role."""
    for i in range(start, start + n):
        document, version = sop(people, number=f"SOP-Q-{i:03d}", sponsor=plant.sponsor_a)
        services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
        _train(plant.operator, version)
        make_user(sponsor=plant.sponsor_a, role=Role.CMO_STAFF, username=f"extra-{i}")


@pytest.mark.parametrize("url", [reverse("documents:list"), reverse("documents:training-matrix")])
def test_lists_have_constant_query_counts(people, plant, url):
    client = _client(plant.qa)
    assert_constant_queries(
        client,
        url,
        lambda n: _grow(people, plant, 0, n),
        more=lambda n: _grow(people, plant, 5, n),
    )
