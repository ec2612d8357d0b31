"""The sponsor portal: a sponsor's auditor sees its own documents and the site-wide ones that
govern its products (never another sponsor's, nor a site-wide one that governs only others), the
released versions and their files, and the training roster of the people who worked on its
batches."""

import pytest
from django.test import Client
from django.urls import reverse

from batches import services as batch_services
from documents import services
from sponsors.models import Role
from tests.documents.conftest import effective, in_review, mbr_naming, sop
from tests.factories import PASSWORD, make_user
from tests.querycount import count_queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def library(people, plant, sponsor_b):
    """Alpha's SOP, ZZOTHER's SOP, a site SOP governing alpha's product, and a site SOP that
    governs only ZZOTHER's; training required of CMO staff on all of them."""
    docs = {
        "own": sop(people, number="SOP-ALPHA-1", sponsor=plant.sponsor_a, title="Alpha mixing"),
        "other": sop(people, number="SOP-ZZOTHER-1", sponsor=sponsor_b, title="ZZOTHER mixing"),
        "site": sop(people, number="SOP-GEN-1", title="Gowning"),
        "site_other": sop(people, number="SOP-GEN-ZZOTHER", title="ZZOTHER isolator"),
    }
    mbr_naming(plant, plant.product_a, ["SOP-ALPHA-1", "SOP-GEN-1"])
    mbr_naming(plant, plant.product_b, ["SOP-ZZOTHER-1", "SOP-GEN-1", "SOP-GEN-ZZOTHER"])
    for document, _version in docs.values():
        services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    return docs


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_auditor_sees_own_and_governing_site_documents(library, auditor_a):
    text = _client(auditor_a).get(reverse("portal_documents:list")).content.decode()

    assert "SOP-ALPHA-1" in text and "SOP-GEN-1" in text
    assert "ZZOTHER" not in text


@pytest.mark.parametrize("number", ["SOP-ZZOTHER-1", "SOP-GEN-ZZOTHER"])
def test_other_sponsors_and_non_governing_documents_are_not_found(library, auditor_a, number):
    client = _client(auditor_a)

    assert client.get(reverse("portal_documents:detail", args=[number])).status_code == 404
    assert client.get(reverse("portal_documents:file", args=[number, 1])).status_code == 404


def test_document_page_shows_released_versions_and_serves_the_file(people, library, auditor_a):
    document, first = library["own"]
    effective(people, document, "Second issue.")
    draft = services.version_create_draft(
        document=document, change_summary="Third, in progress.", by=people.author
    )
    client = _client(auditor_a)

    page = client.get(reverse("portal_documents:detail", args=["SOP-ALPHA-1"]))
    download = client.get(reverse("portal_documents:file", args=["SOP-ALPHA-1", 1]))

    text = page.content.decode()
    assert page.status_code == 200
    assert "v2, effective from" in text and "Superseded" in text
    assert "Third, in progress." not in text
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert (
        client.get(
            reverse("portal_documents:file", args=["SOP-ALPHA-1", draft.version])
        ).status_code
        == 404
    )


def test_training_roster_lists_only_people_who_worked_on_own_batches(
    people, plant, library, auditor_a
):
    # given: operator and verifier run alpha's batch; a B-only operator runs ZZOTHER's
    own_v1, site_v1 = library["own"][1], library["site"][1]
    for person in (plant.operator, plant.verifier):
        services.training_record_series(
            user=person, versions=[own_v1, site_v1], trainee_password=PASSWORD
        )
    plant.run_batch(plant.product_a, [], number="B-ALPHA")
    b_only = make_user(sponsor=plant.sponsor_b, role=Role.CMO_STAFF, username="b-operator")
    b_verifier = make_user(sponsor=plant.sponsor_b, role=Role.CMO_STAFF, username="b-verifier")
    b_versions = [library["other"][1], site_v1, library["site_other"][1]]
    for person in (b_only, b_verifier):
        services.training_record_series(user=person, versions=b_versions, trainee_password=PASSWORD)
    batch = batch_services.batch_plan(product=plant.product_b, number="B-Z", by=b_only)
    batch_services.batch_start(batch=batch, by=b_only)
    for step in batch.mbr.steps.all():
        executed = batch_services.batch_record_step(batch=batch, step=step, performed_by=b_only)
        batch_services.batch_verify_step(
            executed=executed, verified_by=b_verifier, password=PASSWORD
        )
    # when
    response = _client(auditor_a).get(reverse("portal_documents:training"))
    # then
    text = response.content.decode()
    assert response.status_code == 200
    assert plant.operator.username in text and plant.verifier.username in text
    assert "b-operator" not in text and "b-verifier" not in text
    assert "SOP-ALPHA-1" in text and "SOP-GEN-1" in text and "ZZOTHER" not in text
    assert text.count('class="training-cell training-current"') == 4


def test_roster_shows_out_of_date_training(people, plant, library, auditor_a):
    own, own_v1 = library["own"]
    services.training_record_series(
        user=plant.operator, versions=[own_v1, library["site"][1]], trainee_password=PASSWORD
    )
    services.training_record_series(
        user=plant.verifier, versions=[own_v1, library["site"][1]], trainee_password=PASSWORD
    )
    plant.run_batch(plant.product_a, [], number="B-ALPHA")
    effective(people, own, "Second issue.")

    text = _client(auditor_a).get(reverse("portal_documents:training")).content.decode()

    assert text.count("training-cell training-out_of_date") == 2


def test_cmo_users_do_not_use_the_portal_documents(plant):
    assert _client(plant.qa).get(reverse("portal_documents:list")).status_code == 403


def test_portal_lists_have_constant_query_counts(people, plant, auditor_a):
    client = _client(auditor_a)

    def grow(start, n):
        numbers = []
        for i in range(start, start + n):
            document, version = sop(people, number=f"SOP-P-{i:03d}", sponsor=plant.sponsor_a)
            services.training_requirement_add(
                document=document, role=Role.CMO_STAFF, by=people.author
            )
            numbers.append(document.number)
        return numbers

    grow(0, 5)
    in_review(
        people,
        services.document_create(
            number="SOP-P-DRAFT",
            title="X",
            doc_type="sop",
            sponsor=plant.sponsor_a,
            by=people.author,
        ),
    )
    plant.run_batch(plant.product_a, [], number="B-Q1")
    urls = [reverse("portal_documents:list"), reverse("portal_documents:training")]
    small = [count_queries(client, url) for url in urls]
    grow(5, 45)
    plant.run_batch(plant.product_a, [], number="B-Q2")
    large = [count_queries(client, url) for url in urls]

    assert large == small
