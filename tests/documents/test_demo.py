"""The demo documents: every SOP the demo batch steps name is in force before the first demo
batch and its operators and verifiers are trained on it; two recent revisions leave the operator
out of date; a second load creates nothing."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse

from batches.models import Batch, ExecutedStep, MbrStep
from documents import demo, selectors
from documents.models import (
    BatchDocument,
    Document,
    DocumentVersion,
    TrainingRecord,
    TrainingRequirement,
)
from qms.models import AuditEvent, Signature

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker, tmp_path_factory):
    """`seed_demo` once for the module, in a transaction rolled back at its end."""
    fast = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MEDIA_ROOT=tmp_path_factory.mktemp("demo-media"),
    )
    with django_db_blocker.unblock(), fast, transaction.atomic():
        call_command("seed_demo", stdout=StringIO())
        yield
        transaction.set_rollback(True)


def _user(username):
    return get_user_model().objects.get(username=username)


def test_every_step_sop_is_in_force_before_the_first_batch(loaded):
    first_start = Batch.objects.order_by("started_at").first().started_at
    references = set(
        MbrStep.objects.exclude(sop_reference="").values_list("sop_reference", flat=True)
    )

    in_force = selectors.versions_in_force_by_number(references, first_start)

    assert references and set(in_force) == references
    assert {v.version for v in in_force.values()} == {1}
    assert all(v.effective_from <= first_start for v in in_force.values())


def test_demo_batches_ran_under_the_recorded_versions(loaded):
    for batch in Batch.objects.filter(started_at__isnull=False).select_related("mbr"):
        names = set(
            batch.mbr.steps.exclude(sop_reference="").values_list("sop_reference", flat=True)
        )
        recorded = set(
            BatchDocument.objects.filter(batch=batch).values_list(
                "version__document__number", flat=True
            )
        )
        assert recorded == names, batch.number
    acme_v1 = DocumentVersion.objects.get(document__number="SOP-ACM-001", version=1)
    lots = selectors.lots_made_under_version(acme_v1, _user("qa"))
    assert {lot.lot_number for lot in lots} == {f"ACM-L{n:03d}" for n in range(1, 5)}


def test_step_signers_are_trained_on_every_sop(loaded):
    people = set(ExecutedStep.objects.values_list("performed_by__username", flat=True))
    people |= set(ExecutedStep.objects.values_list("verified_by__username", flat=True))
    assert people == {"operator", "qa"}
    for username in people:
        assert (
            TrainingRecord.objects.filter(user__username=username, version__version=1).count() >= 18
        )


def test_site_documents_specification_and_requirements(loaded):
    site = set(Document.objects.filter(sponsor__isnull=True).values_list("number", flat=True))
    assert {"SOP-GEN-001", "SOP-GEN-002", "FRM-GEN-001"} <= site
    spec = Document.objects.get(number="SPEC-ACM-IBU200")
    assert spec.sponsor.code == "acme" and spec.doc_type == "specification"
    assert TrainingRequirement.objects.get(document=spec).user.username == "qa"
    assert TrainingRequirement.objects.filter(role="cmo_staff").count() >= 20


def test_matrix_shows_the_operator_out_of_date_on_the_revised_sops(loaded):
    matrix = selectors.training_matrix(user=_user("qa"))
    numbers = [document.number for document, _ in matrix.columns]
    rows = {row.person.username: row for row in matrix.rows}

    for number in demo.REVISIONS:
        column = numbers.index(number)
        operator, qa = rows["operator"].cells[column], rows["qa"].cells[column]
        assert (operator.state, operator.trained, operator.in_force) == ("out_of_date", 1, 2)
        assert (qa.state, qa.trained) == ("current", 2)
    assert rows["operator"].gaps == 2 and rows["qa"].gaps == 0


def test_demo_signatures_are_valid(loaded):
    version = DocumentVersion.objects.get(document__number="SOP-GEN-001", version=2)
    signatures = Signature.objects.filter(
        object_id=str(version.pk), content_type__model="documentversion"
    )
    assert sorted(s.meaning for s in signatures) == ["approved", "reviewed"]
    assert {s.signer.username for s in signatures} == {"operator", "qa-approver"}


def test_acme_auditor_sees_the_roster_and_own_documents(loaded):
    client = Client()
    client.force_login(_user("acme-auditor"))

    roster = client.get(reverse("portal_documents:training")).content.decode()
    listing = client.get(reverse("portal_documents:list")).content.decode()

    assert "Oscar Lindqvist" in roster and "Quinn Alvarez" in roster
    assert "training-out_of_date" in roster
    assert "SOP-ACM-001" in listing and "SOP-EOS-001" not in listing


def test_second_load_creates_nothing(loaded):
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)[0]
    counts = (
        Document.objects.count(),
        DocumentVersion.objects.count(),
        TrainingRecord.objects.count(),
    )

    assert demo.load(stdout=StringIO()) == []

    assert (
        Document.objects.count(),
        DocumentVersion.objects.count(),
        TrainingRecord.objects.count(),
    ) == counts
    assert AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)[0] == head


def test_demo_pdf_is_deterministic():
    assert demo.demo_pdf(["A", "B (c)"]) == demo.demo_pdf(["A", "B (c)"])
    assert demo.demo_pdf(["A"]).startswith(b"%PDF-1.4")
