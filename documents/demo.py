"""Demo controlled documents for `manage.py seed_demo`: the SOP of every step of the demo master
batch records, in force (and trained on by the demo operator and verifier) before the first demo
batch; site-wide gowning and cleaning SOPs; a sponsor specification; training required by role;
and two SOPs revised recently, so the matrix shows who must retrain. Loaded before the
manufacturing demo, whose steps pass the training gate. Made through the services at the times
they claim (drafted, reviewed and approved before they take effect, trained on after approval).
Idempotent: a second `load()` creates nothing. Signatures are signed in series (one password
entry each), to keep the load fast."""

import os
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from batches.demo import PLANS, moment
from qms.audit import audit_context
from sponsors.models import Role, Sponsor

from . import services
from .models import Document, DocumentType, DocumentVersion, TrainingRequirement

DEMO_PASSWORD_DEFAULT = "demo-password"
FIRST_DRAFTED_DAYS_AGO = 170
FIRST_REVIEWED_DAYS_AGO = 165
FIRST_EFFECTIVE_DAYS_AGO = 160
FIRST_TRAINED_DAYS_AGO = 155
REVISION_DRAFTED_DAYS_AGO = 20
REVISION_REVIEWED_DAYS_AGO = 14
REVISION_APPROVED_DAYS_AGO = 10
REVISION_TRAINED_DAYS_AGO = 7
REVISION_EFFECTIVE_DAYS_AGO = 6

# number, title, type, sponsor code (None: site-wide), training required of a role / a person
SITE_DOCUMENTS = [
    (
        "SOP-GEN-001",
        "Gowning for grade C and D production areas",
        DocumentType.SOP,
        None,
        Role.CMO_STAFF,
        None,
    ),
    (
        "SOP-GEN-002",
        "Cleaning and line clearance of shared equipment",
        DocumentType.SOP,
        None,
        Role.CMO_STAFF,
        None,
    ),
    ("FRM-GEN-001", "Equipment cleaning log", DocumentType.FORM, None, None, None),
    (
        "SPEC-ACM-IBU200",
        "Ibuprofen 200 mg tablets: finished product specification",
        DocumentType.SPECIFICATION,
        "acme",
        None,
        "qa",
    ),
]

# number: change summary of the second version
REVISIONS = {
    "SOP-GEN-001": "Adds glove disinfection at the grade C airlock.",
    "SOP-ACM-002": "Binder solution temperature is read before the binder is added.",
}


def step_documents() -> list[tuple]:
    """The SOP every step of the demo master batch records names (`SOP-<prefix>-<nnn>`)."""
    return [
        (
            f"SOP-{plan.prefix}-{number:03d}",
            f"{plan.product}: {title}",
            DocumentType.SOP,
            plan.sponsor,
            Role.CMO_STAFF,
            None,
        )
        for plan in PLANS
        for number, (title, *_rest) in enumerate(plan.steps, start=1)
    ]


def _pdf_text(text: str) -> str:
    safe = text.encode("ascii", "replace").decode("ascii")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def demo_pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing `lines` (the same lines give the same bytes)."""
    text = " T* ".join(f"({_pdf_text(line)}) Tj" for line in lines)
    stream = f"BT /F1 12 Tf 16 TL 72 770 Td {text} ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class _Loader:
    def __init__(self, stdout):
        self.stdout = stdout
        self.created: list[str] = []
        self.now = timezone.now().replace(second=0, microsecond=0)
        User = get_user_model()
        try:
            self.author = User.objects.get(username="qa")
            self.reviewer = User.objects.get(username="operator")
            self.approver = User.objects.get(username="qa-approver")
        except User.DoesNotExist as missing:
            raise RuntimeError(
                "The demo users do not exist: run `manage.py seed_demo` first."
            ) from missing
        self.password = os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT
        self.sponsors = {s.code: s for s in Sponsor.objects.all()}

    def day(self, days_ago: int, hour: int = 6) -> datetime:
        return (self.now - timedelta(days=days_ago)).replace(hour=hour, minute=0)

    def at(self, days_ago: int):
        """The services inside act at 06:00 UTC `days_ago` days ago."""
        return moment(self.day(days_ago), (self.author, self.reviewer, self.approver))

    def run(self) -> list[str]:
        specs = SITE_DOCUMENTS + step_documents()
        with transaction.atomic(), audit_context(reason="demo data"):
            with self.at(FIRST_DRAFTED_DAYS_AGO):
                documents = {spec[0]: self.document(spec) for spec in specs}
                first = [self.draft(documents[spec[0]], 1, "First issue.") for spec in specs]
            with self.at(FIRST_REVIEWED_DAYS_AGO):
                self.review(first)
            with self.at(FIRST_EFFECTIVE_DAYS_AGO):
                self.approve(first, effective_from=self.day(FIRST_EFFECTIVE_DAYS_AGO))
                for spec in specs:
                    self.require(documents[spec[0]], role=spec[4], username=spec[5])
            with self.at(FIRST_TRAINED_DAYS_AGO):
                for trainee in (self.reviewer, self.author):
                    self.train(trainee, 1)
            with self.at(REVISION_DRAFTED_DAYS_AGO):
                revised = [
                    self.draft(documents[number], 2, summary)
                    for number, summary in REVISIONS.items()
                ]
            with self.at(REVISION_REVIEWED_DAYS_AGO):
                self.review(revised)
            with self.at(REVISION_APPROVED_DAYS_AGO):
                self.approve(revised, effective_from=self.day(REVISION_EFFECTIVE_DAYS_AGO))
            with self.at(REVISION_TRAINED_DAYS_AGO):
                self.train(self.author, 2)
            # the beat's task puts approved versions in force when their effective date comes
            if any(v.status == DocumentVersion.Status.APPROVED for v in revised):
                with self.at(REVISION_EFFECTIVE_DAYS_AGO):
                    services.versions_make_due_effective()
                for version in revised:
                    version.refresh_from_db()
        if self.stdout is not None:
            summary = f"{len(self.created)} records" if self.created else "nothing new"
            self.stdout.write(f"Documents and training demo: {summary}.")
        return self.created

    def document(self, spec) -> Document:
        number, title, doc_type, sponsor_code, _role, _person = spec
        document = Document.objects.filter(number=number).first()
        if document is None:
            document = services.document_create(
                number=number,
                title=title,
                doc_type=doc_type,
                sponsor=self.sponsors[sponsor_code] if sponsor_code else None,
                by=self.author,
            )
            self.created.append(f"document {number}")
        return document

    def draft(self, document: Document, number: int, summary: str) -> DocumentVersion:
        """Version `number` of the document, drafted with its file and submitted for review when
        it does not exist yet."""
        version = document.versions.filter(version=number).first()
        if version is not None:
            return version
        lines = [
            f"{document.number} v{number}",
            document.title,
            "",
            f"Change: {summary}",
            "Controlled copy: the effective version is the one in the QMS.",
        ]
        version = services.version_create_draft(
            document=document,
            change_summary=summary,
            upload=SimpleUploadedFile(f"{document.number}_v{number}.pdf", demo_pdf(lines)),
            by=self.author,
        )
        services.version_submit_for_review(version=version, by=self.author)
        self.created.append(f"{version.label}")
        return version

    def review(self, versions) -> None:
        """Review, in one series, the versions in review and not yet reviewed."""
        unreviewed = [
            v
            for v in versions
            if v.status == DocumentVersion.Status.IN_REVIEW and v.reviewed_at is None
        ]
        if unreviewed:
            services.version_review_series(
                versions=unreviewed, user=self.reviewer, password=self.password
            )
            for version in unreviewed:
                version.refresh_from_db()

    def approve(self, versions, *, effective_from: datetime) -> None:
        """Approve, in one series, the reviewed versions still in review."""
        waiting = [v for v in versions if v.status == DocumentVersion.Status.IN_REVIEW]
        if waiting:
            services.version_approve_series(
                versions=waiting,
                user=self.approver,
                password=self.password,
                effective_from=effective_from,
            )

    def require(self, document: Document, *, role, username) -> None:
        if role and not TrainingRequirement.objects.filter(document=document, role=role).exists():
            services.training_requirement_add(document=document, role=role, by=self.author)
            self.created.append(f"training requirement {document.number} → {role}")
        if username:
            person = get_user_model().objects.get(username=username)
            if not TrainingRequirement.objects.filter(document=document, user=person).exists():
                services.training_requirement_add(document=document, user=person, by=self.author)
                self.created.append(f"training requirement {document.number} → {username}")

    def train(self, trainee, number: int) -> None:
        """Train `trainee`, now, on version `number` of every document required of them."""
        from .selectors import required_documents_for

        versions = list(
            DocumentVersion.objects.filter(
                document__in=required_documents_for(trainee),
                version=number,
                status__in=(DocumentVersion.Status.APPROVED, DocumentVersion.Status.EFFECTIVE),
            )
            .exclude(training_records__user=trainee)
            .select_related("document")
            .order_by("document__number")
        )
        if not versions:
            return
        services.training_record_series(
            user=trainee,
            versions=versions,
            trainee_password=self.password,
            completed_at=timezone.now(),
            note="Read and understood; demo training.",
        )
        self.created.extend(f"training of {trainee.username} on {v.label}" for v in versions)


def load(stdout=None) -> list[str]:
    """Create the demo documents and training (after the sponsors and users of `seed_demo`,
    before the manufacturing demo); return the names of what was created."""
    return _Loader(stdout).run()
