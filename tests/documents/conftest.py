"""Controlled documents on the small plant: files go to a temporary media root; helpers make a
document with an effective version, and an MBR whose steps name SOPs."""

import io
import zipfile
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from batches import services as batch_services
from documents import services
from tests.batches.conftest import plant  # noqa: F401  (the same small plant)
from tests.factories import PASSWORD


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def pdf(name="sop.pdf", text="Controlled copy") -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name, b"%PDF-1.4\n% " + text.encode() + b"\n%%EOF\n", "application/pdf"
    )


def docx(name="method.docx", part="word/document.xml") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr(part, "<document/>")
    return SimpleUploadedFile(name, buffer.getvalue())


@dataclass
class People:
    author: object  # CMO staff on both sponsors (the plant's verifier)
    reviewer: object  # CMO staff on both sponsors (the plant's operator)
    approver: object  # CMO QA approver on both sponsors (the plant's QA)


@pytest.fixture
def people(plant):  # noqa: F811
    return People(author=plant.verifier, reviewer=plant.operator, approver=plant.qa)


def in_review(people, document, summary="First issue.", upload=None):
    version = services.version_create_draft(
        document=document,
        change_summary=summary,
        upload=upload or pdf(f"{document.number}.pdf", f"{document.number} {summary}"),
        by=people.author,
    )
    return services.version_submit_for_review(version=version, by=people.author)


def effective(people, document, summary="First issue.", effective_from=None):
    """The next version of `document`, reviewed, approved and in force from `effective_from`."""
    version = in_review(people, document, summary)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)
    services.version_approve(
        version=version,
        user=people.approver,
        password=PASSWORD,
        effective_from=effective_from or timezone.now(),
    )
    version.refresh_from_db()
    return version


def sop(people, number="SOP-QA-001", sponsor=None, title="Line clearance", effective_from=None):
    """A document with v1 in force (by default since 30 days)."""
    document = services.document_create(
        number=number, title=title, doc_type="sop", sponsor=sponsor, by=people.author
    )
    since = effective_from or timezone.now() - timedelta(days=30)
    return document, effective(people, document, effective_from=since)


def mbr_naming(plant, product, references):  # noqa: F811
    """A new effective MBR of `product` whose steps name `references` (one step each)."""
    mbr = batch_services.mbr_create_draft(
        product=product,
        title=f"{product.name} with SOPs",
        batch_size="10",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[],
        steps=[
            {"title": f"Step {n}", "parameter": "", "unit": "", "sop_reference": reference}
            for n, reference in enumerate(references, start=1)
        ],
        by=plant.operator,
    )
    batch_services.mbr_review(mbr=mbr, user=plant.verifier, password=PASSWORD)
    batch_services.mbr_approve(mbr=mbr, user=plant.qa, password=PASSWORD)
    batch_services.mbr_make_effective(
        mbr=mbr, by=plant.qa, effective_from=timezone.now() - timedelta(hours=1)
    )
    return mbr
