"""Business actions on controlled documents and training: creating documents, versions with their
file (checked and hashed on upload), review and approval by e-signature, effective dating (at
once, on a future date, or when change control says so), withdrawal, training requirements,
training records signed by the trainee, and the training gate batch steps pass through."""

import codecs
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from qms.audit import audit_context
from qms.bounds import FUTURE_TOLERANCE, date_check, identifier_check, title_check
from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import printed_name, signature_apply, signer_verify
from qms.tenancy import sponsor_ids_for
from sponsors.models import Role, Sponsor
from sponsors.selectors import is_sponsor_user

from .models import (
    BatchDocument,
    Document,
    DocumentType,
    DocumentVersion,
    TrainingRecord,
    TrainingRequirement,
)
from .selectors import CMO_ROLES, versions_in_force_by_number

Status = DocumentVersion.Status


class DocumentError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "invalid"
    NUMBER_TAKEN = "document_number_taken"
    STATUS = "document_version_status_invalid"
    VERSION_OPEN = "document_version_open"
    WITHDRAWN = "document_withdrawn"
    FILE_MISSING = "document_file_missing"
    FILE_REJECTED = "document_file_rejected"
    SELF_SIGNED = "document_author_cannot_sign"
    NOT_REVIEWED = "document_not_reviewed"
    HELD_BY_CHANGE = "document_held_by_change"
    EFFECTIVE_DATE = "document_effective_date_invalid"
    REASON_REQUIRED = "reason_required"
    REQUIREMENT = "training_requirement_invalid"
    TRAINING = "training_record_invalid"
    TRAINING_REQUIRED = "training_required"


TRANSITIONS = {
    Status.DRAFT: {Status.IN_REVIEW},
    Status.IN_REVIEW: {Status.APPROVED, Status.DRAFT},
    Status.APPROVED: {Status.EFFECTIVE},
    Status.EFFECTIVE: {Status.SUPERSEDED, Status.OBSOLETE},
    Status.SUPERSEDED: set(),
    Status.OBSOLETE: set(),
}


def _move(version: DocumentVersion, target: str, verb: str) -> None:
    if target not in TRANSITIONS[version.status]:
        raise RuleViolation(
            DocumentError.STATUS,
            f"{version.label} is {version.get_status_display().lower()}; it cannot {verb}.",
        )
    version.status = target


def _require(user, sponsor_id: int | None, action: str, what: str) -> None:
    """Acting on a sponsor's document needs the action on that sponsor; on a site-wide document,
    on at least one sponsor (CMO staff)."""
    if user is None or user.is_superuser:
        return
    ids = sponsor_ids_for(user, action)
    allowed = bool(ids) if sponsor_id is None else sponsor_id in ids
    if not allowed or is_sponsor_user(user):
        raise RuleViolation(DocumentError.NOT_PERMITTED, f"{user.get_username()} may not {what}.")


def _who(user) -> str:
    return f"{printed_name(user)} ({user.get_username()})"


def _aware(moment: datetime | None, what: str) -> datetime | None:
    if moment is not None and timezone.is_naive(moment):
        raise RuleViolation(DocumentError.INVALID, f"{what} must be a timezone-aware time.")
    return date_check(moment, what, DocumentError.INVALID)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- uploads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileType:
    label: str
    content_type: str


FILE_TYPES = {
    ".pdf": FileType("PDF", "application/pdf"),
    ".docx": FileType(
        "Word (DOCX)",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ".xlsx": FileType(
        "Excel (XLSX)", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ),
    ".png": FileType("PNG image", "image/png"),
    ".jpg": FileType("JPEG image", "image/jpeg"),
    ".jpeg": FileType("JPEG image", "image/jpeg"),
    ".txt": FileType("plain text", "text/plain; charset=utf-8"),
    ".csv": FileType("CSV", "text/csv; charset=utf-8"),
}
TEXT_TYPES = {".txt", ".csv"}
OFFICE_PARTS = {".docx": "word/document.xml", ".xlsx": "xl/workbook.xml"}
SPOOL_BYTES = 1024 * 1024


def accepted_extensions() -> list[str]:
    """The configured upload types whose content this system can check."""
    configured = [e.strip().lower() for e in settings.DOCUMENT_UPLOAD_EXTENSIONS if e.strip()]
    normalised = [e if e.startswith(".") else f".{e}" for e in configured]
    return [e for e in dict.fromkeys(normalised) if e in FILE_TYPES]


def size_display(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


@dataclass
class ReceivedFile:
    """An upload that passed the checks, spooled, with its SHA-256."""

    name: str
    extension: str
    content_type: str
    size: int
    sha256: str
    spool: object

    def close(self) -> None:
        self.spool.close()


def _refuse(text: str) -> RuleViolation:
    return RuleViolation(DocumentError.FILE_REJECTED, text)


def file_receive(upload) -> ReceivedFile:
    """Check an upload and hash it while streaming it to a spool file: only the accepted types
    (by extension, and by content: a PDF starts with %PDF-, an Office file is the right zip
    package, an image has its signature, text is UTF-8), not empty, not over the size limit."""
    name = os.path.basename((getattr(upload, "name", "") or "").replace("\\", "/"))[:255]
    if not name:
        raise _refuse("The upload has no file name.")
    extension = os.path.splitext(name)[1].lower()
    accepted = accepted_extensions()
    if extension not in accepted:
        kinds = ", ".join(e.lstrip(".").upper() for e in accepted)
        shown = f"type {extension}" if extension else "a file without an extension"
        raise _refuse(f"File {name} is {shown}, which is not accepted; upload one of: {kinds}.")
    limit = settings.DOCUMENT_MAX_UPLOAD_BYTES
    too_big = f"File {name} is larger than the upload limit of {size_display(limit)}"
    declared = getattr(upload, "size", None)
    if declared is not None and declared > limit:
        raise _refuse(f"{too_big} ({size_display(declared)}).")
    kind = FILE_TYPES[extension]
    digest = hashlib.sha256()
    size = 0
    head = b""
    decoder = codecs.getincrementaldecoder("utf-8")() if extension in TEXT_TYPES else None
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    not_kind = _refuse(
        f"File {name} is not a {kind.label} file: its content does not match its "
        f"{extension} extension."
    )
    try:
        if hasattr(upload, "seek"):
            upload.seek(0)
        for chunk in upload.chunks():
            size += len(chunk)
            if size > limit:
                raise _refuse(f"{too_big}.")
            digest.update(chunk)
            spool.write(chunk)
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
            if decoder is not None:
                if b"\x00" in chunk:
                    raise not_kind
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    raise not_kind from error
        if size == 0:
            raise _refuse(f"File {name} is empty.")
        if decoder is not None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as error:
                raise not_kind from error
        if not _content_matches(extension, head, spool):
            raise not_kind
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return ReceivedFile(name, extension, kind.content_type, size, digest.hexdigest(), spool)


def _content_matches(extension: str, head: bytes, spool) -> bool:
    if extension == ".pdf":
        return head.startswith(b"%PDF-")
    if extension == ".png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if extension in (".jpg", ".jpeg"):
        return head.startswith(b"\xff\xd8\xff")
    if extension in OFFICE_PARTS:
        if not head.startswith(b"PK\x03\x04"):
            return False
        spool.seek(0)
        try:
            with zipfile.ZipFile(spool) as package:
                names = set(package.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
        return "[Content_Types].xml" in names and OFFICE_PARTS[extension] in names
    return extension in TEXT_TYPES


def _file_sha256(name: str) -> str | None:
    try:
        with default_storage.open(name, "rb") as stored:
            digest = hashlib.sha256()
            for chunk in iter(lambda: stored.read(64 * 1024), b""):
                digest.update(chunk)
            return digest.hexdigest()
    except OSError:
        return None


def _store(received: ReceivedFile) -> str:
    """Store the file under its SHA-256 (content-addressed): the same content is kept once, and a
    stored file that no longer matches its name is never reused."""
    path = f"documents/{received.sha256[:2]}/{received.sha256}{received.extension}"
    if default_storage.exists(path) and _file_sha256(path) == received.sha256:
        return path
    received.spool.seek(0)
    return default_storage.save(path, File(received.spool, name=path))


def _attach(version: DocumentVersion, received: ReceivedFile) -> None:
    version.file.name = _store(received)
    version.file_name = received.name
    version.content_type = received.content_type
    version.file_size = received.size
    version.sha256 = received.sha256


# --- documents and versions -------------------------------------------------------------------


def document_create(
    *, number: str, title: str, doc_type: str, sponsor: Sponsor | None = None, by, owner=None
) -> Document:
    """A controlled document, site-wide or belonging to one sponsor; its versions follow."""
    number, title = (number or "").strip(), (title or "").strip()
    if not number or not title:
        raise RuleViolation(DocumentError.INVALID, "A document needs a number and a title.")
    if any(c in number for c in "/?#%\\") or " " in number:
        raise RuleViolation(
            DocumentError.INVALID,
            f"Document number {number!r} may not contain spaces or the characters / ? # % \\.",
        )
    identifier_check(number, "The document number", DocumentError.INVALID)
    title_check(title, f"Document {number}: the title", DocumentError.INVALID)
    if doc_type not in DocumentType.values:
        raise RuleViolation(DocumentError.INVALID, f"Unknown document type {doc_type!r}.")
    what = f"create documents of {sponsor.name}" if sponsor else "create site-wide documents"
    _require(by, sponsor.pk if sponsor else None, "change", what)
    with transaction.atomic(), audit_context(actor=by):
        if Document.objects.filter(number=number).exists():
            raise RuleViolation(
                DocumentError.NUMBER_TAKEN, f"Document number {number} is already used."
            )
        try:
            with transaction.atomic():
                return Document.objects.create(
                    number=number,
                    title=title,
                    doc_type=doc_type,
                    sponsor=sponsor,
                    owner=owner or by,
                )
        except IntegrityError as error:
            raise RuleViolation(
                DocumentError.NUMBER_TAKEN, f"Document number {number} is already used."
            ) from error


def _withdrawn(document: Document) -> DocumentVersion | None:
    return document.versions.filter(status=Status.OBSOLETE).order_by("-withdrawn_at").first()


def version_create_draft(
    *, document: Document, change_summary: str, upload=None, by
) -> DocumentVersion:
    """The next version of a document, as a draft (its number taken under a lock on the
    document). Refused while another version is unfinished or after the document was
    withdrawn."""
    _require(by, document.sponsor_id, "change", f"write versions of {document.number}")
    if not (change_summary or "").strip():
        raise RuleViolation(
            DocumentError.INVALID,
            f"A new version of {document.number} needs a change summary: what changes and why.",
        )
    received = file_receive(upload) if upload is not None else None
    try:
        with transaction.atomic(), audit_context(actor=by):
            locked = Document.objects.select_for_update().get(pk=document.pk)
            withdrawn = _withdrawn(locked)
            if withdrawn is not None:
                raise RuleViolation(
                    DocumentError.WITHDRAWN,
                    f"{locked.number} was withdrawn on {_when(withdrawn.withdrawn_at)} "
                    f"(v{withdrawn.version} made obsolete); it takes no new versions.",
                )
            unfinished = (
                locked.versions.filter(status__in=DocumentVersion.UNFINISHED)
                .order_by("version")
                .first()
            )
            if unfinished is not None:
                raise RuleViolation(
                    DocumentError.VERSION_OPEN,
                    f"{locked.number} already has v{unfinished.version} "
                    f"{unfinished.get_status_display().lower()}; finish it before starting "
                    "another version.",
                )
            last = locked.versions.aggregate(n=Max("version"))["n"] or 0
            version = DocumentVersion(
                document=locked,
                version=last + 1,
                change_summary=change_summary.strip(),
                author=by,
            )
            if received is not None:
                _attach(version, received)
            version.save()
    finally:
        if received is not None:
            received.close()
    return version


def _locked(version: DocumentVersion) -> DocumentVersion:
    return (
        DocumentVersion.objects.select_for_update(of=("self",))
        .select_related("document")
        .get(pk=version.pk)
    )


def version_attach_file(*, version: DocumentVersion, upload, by) -> DocumentVersion:
    """Attach (or replace) the file of a draft."""
    _require(by, version.sponsor_id, "change", f"change the file of {version.label}")
    received = file_receive(upload)
    try:
        with transaction.atomic(), audit_context(actor=by):
            locked = _locked(version)
            if locked.status != Status.DRAFT:
                raise RuleViolation(
                    DocumentError.STATUS,
                    f"{locked.label} is {locked.get_status_display().lower()}: only a draft's "
                    "file can change.",
                )
            _attach(locked, received)
            locked.save(update_fields=["file", "file_name", "content_type", "file_size", "sha256"])
    finally:
        received.close()
    version.refresh_from_db()
    return version


def version_submit_for_review(*, version: DocumentVersion, by) -> DocumentVersion:
    """A draft with its file goes to review."""
    _require(by, version.sponsor_id, "change", f"submit {version.label} for review")
    with transaction.atomic(), audit_context(actor=by):
        locked = _locked(version)
        _move(locked, Status.IN_REVIEW, "be submitted for review (only a draft can)")
        if not locked.has_file:
            raise RuleViolation(
                DocumentError.FILE_MISSING,
                f"{locked.label} cannot be submitted for review: no file is attached.",
            )
        locked.submitted_at = timezone.now()
        locked.save(update_fields=["status", "submitted_at"])
    version.refresh_from_db()
    return version


def version_return_to_draft(*, version: DocumentVersion, by, reason: str) -> DocumentVersion:
    """Send a version in review back to its author; a review already signed no longer counts."""
    _require(by, version.sponsor_id, "change", f"return {version.label} to draft")
    if not (reason or "").strip():
        raise RuleViolation(
            DocumentError.REASON_REQUIRED, f"Say why {version.label} goes back to draft."
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip()):
        locked = _locked(version)
        if locked.status != Status.IN_REVIEW:
            raise RuleViolation(
                DocumentError.STATUS,
                f"{locked.label} is {locked.get_status_display().lower()}: only a version in "
                "review can go back to draft.",
            )
        _move(locked, Status.DRAFT, "go back to draft")
        locked.status_reason = reason.strip()
        locked.reviewed_by, locked.reviewed_at, locked.submitted_at = None, None, None
        locked.save(
            update_fields=["status", "status_reason", "reviewed_by", "reviewed_at", "submitted_at"]
        )
    version.refresh_from_db()
    return version


def _not_author(locked: DocumentVersion, user, verb: str) -> None:
    if locked.author_id == user.pk:
        raise RuleViolation(
            DocumentError.SELF_SIGNED,
            f"{locked.label} was written by {printed_name(user)}; its author cannot {verb} it.",
        )


def version_review_series(*, versions, user, password: str, request=None) -> list[Signature]:
    """Sign the review ("reviewed") of one or more versions in review. One password entry covers
    the series (21 CFR 11.200(a)(1)(i)); each version gets its own signature. The author of a
    version cannot review it."""
    versions = list(versions)
    for version in versions:
        _require(user, version.sponsor_id, "change", f"review {version.label}")
    signer_verify(user=user, password=password, request=request)
    signatures = []
    with transaction.atomic(), audit_context(actor=user):
        for version in versions:
            locked = _locked(version)
            if locked.status != Status.IN_REVIEW:
                raise RuleViolation(
                    DocumentError.STATUS,
                    f"{locked.label} is {locked.get_status_display().lower()}: only a version in "
                    "review can be reviewed.",
                )
            _not_author(locked, user, "review")
            if locked.reviewed_at is not None:
                raise RuleViolation(
                    DocumentError.STATUS,
                    f"{locked.label} was already reviewed by {printed_name(locked.reviewed_by)} "
                    f"on {_when(locked.reviewed_at)}.",
                )
            locked.reviewed_by, locked.reviewed_at = user, timezone.now()
            locked.save(update_fields=["reviewed_by", "reviewed_at"])
            signatures.append(
                signature_apply(record=locked, user=user, meaning=Signature.Meaning.REVIEWED)
            )
    for version in versions:
        version.refresh_from_db()
    return signatures


def version_review(*, version: DocumentVersion, user, password: str, request=None) -> Signature:
    """Sign the review of a version in review (e-signature "reviewed"); not by its author."""
    [signature] = version_review_series(
        versions=[version], user=user, password=password, request=request
    )
    return signature


def _holding_changes(version: DocumentVersion) -> list[str]:
    return list(
        version.change_requests.exclude(status__in=("rejected", "cancelled"))
        .order_by("number")
        .values_list("number", flat=True)
    )


def _held_text(version: DocumentVersion) -> str:
    numbers = _holding_changes(version)
    if numbers:
        which = "change " + ", ".join(numbers)
        return f"{version.label} is carried by {which}: it becomes effective when that change does."
    return f"{version.label} is held by change control: it becomes effective when the change does."


def _check_effective_date(locked: DocumentVersion, effective_from: datetime) -> None:
    """A version takes effect after the one in force before it, and never for a withdrawn
    document."""
    withdrawn = _withdrawn(locked.document)
    if withdrawn is not None:
        raise RuleViolation(
            DocumentError.WITHDRAWN,
            f"{locked.document.number} was withdrawn on {_when(withdrawn.withdrawn_at)}; "
            f"v{locked.version} cannot become effective.",
        )
    previous = (
        DocumentVersion.objects.filter(
            document_id=locked.document_id, status__in=DocumentVersion.IN_FORCE
        )
        .exclude(pk=locked.pk)
        .order_by("-effective_from")
        .first()
    )
    if previous is not None and effective_from <= previous.effective_from:
        raise RuleViolation(
            DocumentError.EFFECTIVE_DATE,
            f"{locked.label} cannot take effect on {_when(effective_from)}: "
            f"v{previous.version} is in force since {_when(previous.effective_from)}; pick a "
            "later date.",
        )


def _activate(locked: DocumentVersion, effective_from: datetime) -> None:
    """Put an approved version in force from `effective_from`; the version in force before is
    superseded at that moment. Call inside the transaction, with the version locked."""
    for older in (
        DocumentVersion.objects.select_for_update()
        .filter(document_id=locked.document_id, status=Status.EFFECTIVE)
        .exclude(pk=locked.pk)
    ):
        _move(older, Status.SUPERSEDED, "be superseded")
        older.superseded_at = effective_from
        older.save(update_fields=["status", "superseded_at"])
    _move(locked, Status.EFFECTIVE, "become effective (only an approved version can)")
    locked.effective_from = effective_from
    locked.save(update_fields=["status", "effective_from"])


def version_approve_series(
    *,
    versions,
    user,
    password: str,
    effective_from: datetime | None = None,
    request=None,
) -> list[Signature]:
    """Sign the approval ("approved") of one or more reviewed versions, one password entry for
    the series (21 CFR 11.200(a)(1)(i)). The approver holds "approve" on the document's sponsor
    (site-wide: on any sponsor) and is not the author. The effective date is set on approval
    (default now; a date not in the future puts the version in force at once, a future one when
    the beat task reaches it), except for a version carried by change control: it stays approved
    until the change becomes effective."""
    versions = list(versions)
    _aware(effective_from, "The effective date")
    for version in versions:
        _require(user, version.sponsor_id, "approve", f"approve {version.label}")
    signer_verify(user=user, password=password, request=request)
    signatures = []
    now = timezone.now()
    with transaction.atomic(), audit_context(actor=user):
        for version in versions:
            locked = _locked(version)
            if locked.status != Status.IN_REVIEW:
                raise RuleViolation(
                    DocumentError.STATUS,
                    f"{locked.label} is {locked.get_status_display().lower()}: only a version in "
                    "review can be approved.",
                )
            _not_author(locked, user, "approve")
            if locked.reviewed_at is None:
                raise RuleViolation(
                    DocumentError.NOT_REVIEWED,
                    f"{locked.label} cannot be approved before it is reviewed: a reviewer signs "
                    "first.",
                )
            if locked.held_by_change and effective_from is not None:
                raise RuleViolation(DocumentError.HELD_BY_CHANGE, _held_text(locked))
            _move(locked, Status.APPROVED, "be approved")
            locked.approved_by, locked.approved_at = user, now
            fields = ["status", "approved_by", "approved_at"]
            if not locked.held_by_change:
                starts = effective_from or now
                _check_effective_date(locked, starts)
                locked.effective_from = starts
                fields.append("effective_from")
            locked.save(update_fields=fields)
            signatures.append(
                signature_apply(record=locked, user=user, meaning=Signature.Meaning.APPROVED)
            )
            if locked.effective_from is not None and locked.effective_from <= now:
                _activate(locked, locked.effective_from)
    for version in versions:
        version.refresh_from_db()
    return signatures


def version_approve(
    *,
    version: DocumentVersion,
    user,
    password: str,
    effective_from: datetime | None = None,
    request=None,
) -> Signature:
    """Sign the approval of a reviewed version and set its effective date (see the series)."""
    [signature] = version_approve_series(
        versions=[version],
        user=user,
        password=password,
        effective_from=effective_from,
        request=request,
    )
    return signature


def version_make_effective(
    *,
    version: DocumentVersion,
    by,
    effective_from: datetime | None = None,
    change=None,
) -> DocumentVersion:
    """Put an approved version in force (default: its approved effective date, else now); the
    version in force before it is superseded. A version carried by change control becomes
    effective only through that change (`change` given). A future date schedules it: the beat
    task puts it in force when the date is reached."""
    _require(by, version.sponsor_id, "approve", f"make {version.label} effective")
    _aware(effective_from, "The effective date")
    now = timezone.now()
    with transaction.atomic(), audit_context(actor=by, reason=f"{version.label} made effective"):
        locked = _locked(version)
        if locked.status != Status.APPROVED:
            raise RuleViolation(
                DocumentError.STATUS,
                f"{locked.label} is {locked.get_status_display().lower()}: only an approved "
                "version can become effective.",
            )
        if change is None and locked.held_by_change:
            raise RuleViolation(DocumentError.HELD_BY_CHANGE, _held_text(locked))
        if change is not None and change.document_version_id != locked.pk:
            raise RuleViolation(
                DocumentError.HELD_BY_CHANGE,
                f"Change {change} does not carry {locked.label}; it cannot make it effective.",
            )
        starts = effective_from or locked.effective_from or now
        _check_effective_date(locked, starts)
        if starts > now:
            locked.effective_from = starts
            locked.save(update_fields=["effective_from"])
        else:
            _activate(locked, starts)
    version.refresh_from_db()
    return version


def versions_make_due_effective(*, now: datetime | None = None) -> int:
    """Beat: put in force every approved version whose effective date has come (each exactly
    once, however often it runs; rows another run holds are skipped). Returns how many."""
    now = now or timezone.now()
    with transaction.atomic(), audit_context(reason="effective date reached"):
        due = list(
            DocumentVersion.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("document")
            .filter(status=Status.APPROVED, effective_from__lte=now)
            .order_by("effective_from", "id")
        )
        for version in due:
            _activate(version, version.effective_from)
    return len(due)


def version_hold(*, version: DocumentVersion, by, held: bool = True) -> DocumentVersion:
    """Change control carries the version (held) or lets it go. A held version becomes effective
    only when its change does, so a scheduled effective date is cleared. Only a version not yet
    effective can be held; letting go is always possible."""
    _require(by, version.sponsor_id, "change", f"change the hold on {version.label}")
    reason = "carried by change control" if held else "released by change control"
    with transaction.atomic(), audit_context(actor=by, reason=reason):
        locked = _locked(version)
        if held and locked.status not in DocumentVersion.UNFINISHED:
            raise RuleViolation(
                DocumentError.STATUS,
                f"{locked.label} is {locked.get_status_display().lower()}: change control can "
                "carry only a version that is not yet effective.",
            )
        if locked.held_by_change != held:
            locked.held_by_change = held
            fields = ["held_by_change"]
            if held and locked.effective_from is not None:
                locked.effective_from = None
                fields.append("effective_from")
            locked.save(update_fields=fields)
    version.refresh_from_db()
    return version


def version_make_obsolete(*, version: DocumentVersion, by, reason: str) -> DocumentVersion:
    """Withdraw the document: its effective version becomes obsolete, nothing is in force after
    that, and the document takes no new versions."""
    _require(by, version.sponsor_id, "approve", f"make {version.label} obsolete")
    if not (reason or "").strip():
        raise RuleViolation(
            DocumentError.REASON_REQUIRED,
            f"Say why {version.label} is made obsolete (the document is withdrawn).",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip()):
        locked = _locked(version)
        if locked.status != Status.EFFECTIVE:
            raise RuleViolation(
                DocumentError.STATUS,
                f"{locked.label} is {locked.get_status_display().lower()}: only the effective "
                "version can be made obsolete.",
            )
        _move(locked, Status.OBSOLETE, "be made obsolete")
        locked.withdrawn_at = timezone.now()
        locked.status_reason = reason.strip()
        locked.save(update_fields=["status", "withdrawn_at", "status_reason"])
    version.refresh_from_db()
    return version


# --- training requirements and records --------------------------------------------------------

ROLE_WHO = {r.value: f"everyone holding the role {r.label}" for r in CMO_ROLES}


def training_requirement_add(
    *, document: Document, role: str = "", user=None, by
) -> TrainingRequirement:
    """Who must be trained on the document: everyone holding a CMO role (on the document's
    sponsor; on any sponsor for a site-wide document), or one named CMO person."""
    _require(by, document.sponsor_id, "change", f"set the training of {document.number}")
    role = role or ""
    if bool(role) == (user is not None):
        raise RuleViolation(
            DocumentError.REQUIREMENT,
            f"A training requirement of {document.number} names a role or one person (not both, "
            "not neither).",
        )
    if role and role not in CMO_ROLES:
        labels = ", ".join(r.label for r in CMO_ROLES)
        raise RuleViolation(
            DocumentError.REQUIREMENT,
            f"Training on {document.number} can be required of a CMO role ({labels}), not of "
            f"{Role(role).label if role in Role.values else repr(role)}.",
        )
    if user is not None and (is_sponsor_user(user) or not user.is_active):
        raise RuleViolation(
            DocumentError.REQUIREMENT,
            f"{_who(user)} is not active CMO staff; training on {document.number} cannot be "
            "required of them.",
        )
    who = ROLE_WHO[role] if role else _who(user)
    duplicate = RuleViolation(
        DocumentError.REQUIREMENT, f"{document.number} already requires training of {who}."
    )
    with transaction.atomic(), audit_context(actor=by):
        existing = TrainingRequirement.objects.filter(document=document)
        if existing.filter(role=role, user=user).exists():
            raise duplicate
        try:
            with transaction.atomic():
                return TrainingRequirement.objects.create(document=document, role=role, user=user)
        except IntegrityError as error:
            raise duplicate from error


def training_requirement_remove(*, requirement: TrainingRequirement, by, reason: str) -> None:
    """Drop a training requirement; why is recorded in the audit trail."""
    document = requirement.document
    _require(by, document.sponsor_id, "change", f"set the training of {document.number}")
    if not (reason or "").strip():
        raise RuleViolation(
            DocumentError.REASON_REQUIRED,
            f"Say why the training requirement {requirement} is removed.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip()):
        TrainingRequirement.objects.filter(pk=requirement.pk).delete()


def training_record_series(
    *,
    user,
    versions,
    trainee_password: str,
    trainer=None,
    completed_at: datetime | None = None,
    note: str = "",
    request=None,
) -> list[TrainingRecord]:
    """Record a person's training on one or more approved or effective versions. The trainee
    signs each record ("trained": read and understood), one password entry for the series
    (21 CFR 11.200(a)(1)(i)); a trainer, when given, is who delivered it."""
    versions = list(versions)
    _aware(completed_at, "The completion time")
    now = timezone.now()
    completed_at = completed_at or now
    if completed_at > now + FUTURE_TOLERANCE:
        raise RuleViolation(
            DocumentError.TRAINING,
            f"Training of {_who(user)} cannot be completed in the future ({_when(completed_at)}).",
        )
    if trainer is not None and trainer.pk == user.pk:
        trainer = None
    for version in versions:
        if is_sponsor_user(user):
            raise RuleViolation(
                DocumentError.TRAINING,
                f"{_who(user)} is a sponsor user; training records are for CMO staff.",
            )
        _require(user, version.sponsor_id, "view", f"be trained on {version.label}")
        if trainer is not None:
            _require(trainer, version.sponsor_id, "change", f"record training on {version.label}")
    signer_verify(user=user, password=trainee_password, request=request)
    records = []
    with transaction.atomic(), audit_context(actor=trainer or user):
        for version in versions:
            locked = _locked(version)
            if locked.status not in (Status.APPROVED, Status.EFFECTIVE):
                raise RuleViolation(
                    DocumentError.TRAINING,
                    f"{locked.label} is {locked.get_status_display().lower()}: training is "
                    "recorded on an approved or effective version only.",
                )
            earlier = TrainingRecord.objects.filter(user=user, version=locked).first()
            if earlier is not None:
                raise RuleViolation(
                    DocumentError.TRAINING,
                    f"{_who(user)} is already trained on {locked.label} (completed "
                    f"{_when(earlier.completed_at)}).",
                )
            record = TrainingRecord.objects.create(
                user=user,
                version=locked,
                completed_at=completed_at,
                trainer=trainer,
                note=(note or "").strip(),
            )
            signature_apply(
                record=record,
                user=user,
                meaning=Signature.Meaning.TRAINED,
                sponsor_id=locked.sponsor_id,
            )
            records.append(record)
    return records


def training_record(
    *,
    user,
    version: DocumentVersion,
    trainee_password: str,
    trainer=None,
    completed_at: datetime | None = None,
    note: str = "",
    request=None,
) -> TrainingRecord:
    """Record one person's training on one approved or effective version, signed by the
    trainee."""
    [record] = training_record_series(
        user=user,
        versions=[version],
        trainee_password=trainee_password,
        trainer=trainer,
        completed_at=completed_at,
        note=note,
        request=request,
    )
    return record


# --- batches --------------------------------------------------------------------------------


def training_gate(*, user, sop_reference: str, at: datetime, what: str) -> DocumentVersion:
    """An operator or verifier signs a batch step that names an SOP only when trained on the
    version of that SOP in force at the step's time (training completed by then). Returns that
    version; refuses naming the SOP and the version."""
    reference = (sop_reference or "").strip()
    who = _who(user)
    document = Document.objects.filter(number=reference).first()
    if document is None:
        raise RuleViolation(
            DocumentError.TRAINING_REQUIRED,
            f"{who} cannot {what}: the step names {reference}, which is not a controlled document.",
        )
    in_force = versions_in_force_by_number([reference], at).get(reference)
    if in_force is None:
        raise RuleViolation(
            DocumentError.TRAINING_REQUIRED,
            f"{who} cannot {what}: {reference} has no effective version on {_when(at)}.",
        )
    trained = sorted(
        TrainingRecord.objects.filter(
            user=user, version__document=document, completed_at__lte=at
        ).values_list("version__version", flat=True)
    )
    if in_force.version in trained:
        return in_force
    if trained:
        had = f"trained on v{trained[-1]}"
    else:
        had = "no training record on any version"
    raise RuleViolation(
        DocumentError.TRAINING_REQUIRED,
        f"{who} cannot {what}: not trained on {reference} v{in_force.version} ({had}).",
    )


def batch_documents_record(*, batch, at: datetime) -> list[BatchDocument]:
    """Record the version in force at `at` of every document the steps of the batch's master
    batch record name: the batch ran under them. Call inside the batch-start transaction."""
    numbers = {
        ref.strip()
        for ref in batch.mbr.steps.exclude(sop_reference="").values_list("sop_reference", flat=True)
        if ref.strip()
    }
    in_force = versions_in_force_by_number(numbers, at)
    rows = [
        BatchDocument(batch=batch, version=version, sponsor_id=batch.sponsor_id)
        for _number, version in sorted(in_force.items())
    ]
    return BatchDocument.objects.bulk_create(rows, ignore_conflicts=True)
