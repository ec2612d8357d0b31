"""Admin: documents are listed and their title may be corrected; versions, requirements,
training records and batch documents are read-only."""

import pytest
from django.test import Client
from django.urls import reverse

from documents import services
from tests.documents.conftest import sop
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def test_admin_pages_render_and_are_read_only(people, plant, admin_client_for):
    document, version = sop(people)
    services.training_requirement_add(document=document, role="cmo_staff", by=people.author)
    record = services.training_record(
        user=plant.operator, version=version, trainee_password=PASSWORD
    )

    for name in (
        "documents_document",
        "documents_documentversion",
        "documents_trainingrequirement",
        "documents_trainingrecord",
        "documents_batchdocument",
    ):
        assert admin_client_for.get(reverse(f"admin:{name}_changelist")).status_code == 200
        assert admin_client_for.get(reverse(f"admin:{name}_add")).status_code == 403
    change = admin_client_for.get(reverse("admin:documents_document_change", args=[document.pk]))
    assert change.status_code == 200 and "SOP-QA-001" in change.content.decode()
    record_page = admin_client_for.get(
        reverse("admin:documents_trainingrecord_change", args=[record.pk])
    )
    assert record_page.status_code == 200
    assert 'name="completed_at' not in record_page.content.decode()
