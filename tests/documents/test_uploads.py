"""Uploads: accepted types by extension and content, size limit, empty files, the SHA-256
recorded at upload and checked again on every download."""

import hashlib

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from documents import services
from qms.errors import RuleViolation
from tests.documents.conftest import docx, pdf, sop

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(people):
    document = services.document_create(
        number="SOP-UP-1", title="Uploads", doc_type="sop", by=people.author
    )
    return services.version_create_draft(
        document=document, change_summary="First issue.", by=people.author
    )


def _attach(people, draft, upload):
    return services.version_attach_file(version=draft, upload=upload, by=people.author)


def test_sha256_name_type_and_size_are_recorded(people, draft):
    upload = pdf("Line clearance.pdf", "content")
    content = upload.read()

    _attach(people, draft, upload)

    assert draft.sha256 == hashlib.sha256(content).hexdigest()
    assert (draft.file_name, draft.content_type, draft.file_size) == (
        "Line clearance.pdf",
        "application/pdf",
        len(content),
    )
    assert draft.file.name == f"documents/{draft.sha256[:2]}/{draft.sha256}.pdf"
    with default_storage.open(draft.file.name, "rb") as stored:
        assert stored.read() == content


def test_oversize_file_is_refused_naming_file_and_limit(people, draft, settings):
    settings.DOCUMENT_MAX_UPLOAD_BYTES = 1024

    with pytest.raises(RuleViolation) as error:
        _attach(people, draft, pdf("big.pdf", "x" * 2000))

    assert error.value.code == "document_file_rejected"
    assert str(error.value) == (
        "File big.pdf is larger than the upload limit of 1.0 KiB (2.0 KiB)."
    )
    draft.refresh_from_db()
    assert draft.sha256 == ""


def test_size_is_counted_while_streaming(people, draft, settings):
    settings.DOCUMENT_MAX_UPLOAD_BYTES = 1024
    upload = pdf("big.pdf", "x" * 2000)
    upload.size = 10

    with pytest.raises(RuleViolation, match=r"^File big.pdf is larger than the upload limit"):
        _attach(people, draft, upload)


def test_type_not_accepted_is_refused(people, draft):
    with pytest.raises(RuleViolation) as error:
        _attach(people, draft, SimpleUploadedFile("tool.exe", b"MZ\x90\x00"))

    assert str(error.value) == (
        "File tool.exe is type .exe, which is not accepted; upload one of: PDF, DOCX, XLSX, "
        "PNG, JPG, TXT, CSV."
    )


def test_file_without_extension_is_refused(people, draft):
    with pytest.raises(RuleViolation, match="File README is a file without an extension"):
        _attach(people, draft, SimpleUploadedFile("README", b"hello"))


def test_disguised_pdf_is_refused(people, draft):
    with pytest.raises(RuleViolation) as error:
        _attach(people, draft, SimpleUploadedFile("report.pdf", b"MZ\x90\x00 not a pdf"))

    assert str(error.value) == (
        "File report.pdf is not a PDF file: its content does not match its .pdf extension."
    )


def test_disguised_office_file_is_refused(people, draft):
    with pytest.raises(RuleViolation, match=r"File sheet.xlsx is not a Excel \(XLSX\) file"):
        _attach(people, draft, docx("sheet.xlsx"))
    with pytest.raises(RuleViolation, match="File method.docx is not a Word"):
        _attach(people, draft, SimpleUploadedFile("method.docx", b"PK\x03\x04broken"))


def test_office_files_and_images_are_accepted(people, draft):
    _attach(people, draft, docx("method.docx"))
    assert draft.file_name == "method.docx"
    _attach(people, draft, docx("sheet.xlsx", part="xl/workbook.xml"))
    assert draft.content_type.endswith("spreadsheetml.sheet")
    _attach(people, draft, SimpleUploadedFile("label.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 8))
    assert draft.content_type == "image/png"
    _attach(people, draft, SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 8))
    assert draft.content_type == "image/jpeg"


def test_text_must_be_utf8_text(people, draft):
    _attach(
        people, draft, SimpleUploadedFile("limits.csv", "Test;Limit\nAssay;95–105 %\n".encode())
    )
    assert draft.content_type == "text/csv; charset=utf-8"

    with pytest.raises(RuleViolation, match="File data.txt is not a plain text file"):
        _attach(people, draft, SimpleUploadedFile("data.txt", b"abc\x00\x01\x02"))
    with pytest.raises(RuleViolation, match="File latin.csv is not a CSV file"):
        _attach(people, draft, SimpleUploadedFile("latin.csv", b"caf\xe9"))


def test_empty_file_is_refused(people, draft):
    with pytest.raises(RuleViolation) as error:
        _attach(people, draft, SimpleUploadedFile("empty.pdf", b""))

    assert str(error.value) == "File empty.pdf is empty."


def test_accepted_types_follow_the_setting(people, draft, settings):
    settings.DOCUMENT_UPLOAD_EXTENSIONS = [".pdf"]

    with pytest.raises(RuleViolation, match="upload one of: PDF."):
        _attach(people, draft, docx("method.docx"))


def test_refused_upload_on_new_version_creates_nothing(people):
    document, _ = sop(people)
    services.document_create(number="SOP-UP-2", title="X", doc_type="sop", by=people.author)

    with pytest.raises(RuleViolation, match="is not a PDF file"):
        services.version_create_draft(
            document=document,
            change_summary="Second.",
            upload=SimpleUploadedFile("fake.pdf", b"<html>"),
            by=people.author,
        )
    assert document.versions.count() == 1


# --- download -----------------------------------------------------------------------------------


def _download(user, version):
    client = Client()
    client.force_login(user)
    url = reverse("documents:file", args=[version.document.number, version.version])
    return client.get(url)


def test_download_serves_the_file_with_its_recorded_name_and_type(people):
    _, version = sop(people)

    response = _download(people.author, version)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="SOP-QA-001.pdf"'
    assert hashlib.sha256(response.content).hexdigest() == version.sha256


def test_tampered_file_is_not_served(people):
    _, version = sop(people)
    path = default_storage.path(version.file.name)
    with open(path, "ab") as stored:
        stored.write(b"tampered")

    response = _download(people.author, version)

    assert response.status_code == 409
    text = response.content.decode()
    assert "File integrity check failed" in text
    assert "SOP-QA-001 v1" in text and "changed after upload" in text
    assert version.sha256[:16] in text


def test_missing_file_is_an_error_page(people):
    _, version = sop(people)
    default_storage.delete(version.file.name)

    response = _download(people.author, version)

    assert response.status_code == 404
    assert "is missing from storage" in response.content.decode()


def test_a_tampered_stored_file_is_not_reused_for_new_content(people, draft):
    upload = pdf("a.pdf", "same")
    _attach(people, draft, upload)
    with open(default_storage.path(draft.file.name), "wb") as stored:
        stored.write(b"%PDF-1.4 altered")
    first_name = draft.file.name

    _attach(people, draft, pdf("a.pdf", "same"))

    assert draft.file.name != first_name
    with default_storage.open(draft.file.name, "rb") as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == draft.sha256
