"""Demo change requests for `manage.py seed_demo` (after the manufacturing demo): an SOP change
across Acme (notify), Draco (approve) and Cygnus (none) awaiting Draco's approval, an effective
change that put a new site SOP in force for the Cygnus and Eos lines, and a draft supplier
change. Idempotent: each is created once, found again by its title."""

import os
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from qms.audit import audit_context
from sponsors.models import Product
from suppliers.models import Supplier

from . import services
from .models import ChangeRequest

DEMO_PASSWORD_DEFAULT = "demo-password"

AWAITING = "Shared-equipment cleaning: TOC swab limit tightened"
EFFECTIVE = "Second-person verification of line clearance becomes an SOP"
SOP_NUMBER = "SOP-QA-015"
DRAFT = "Second source for gelatin 200 bloom"


def _users():
    User = get_user_model()
    try:
        return (
            User.objects.get(username="qa"),
            User.objects.get(username="operator"),
            User.objects.get(username="qa-approver"),
        )
    except User.DoesNotExist as missing:
        raise RuntimeError(
            "The demo users do not exist: run `manage.py seed_demo` first."
        ) from missing


def _products(*codes) -> list[Product]:
    found = {p.code: p for p in Product.objects.filter(code__in=codes)}
    return [found[code] for code in codes]


def _awaiting(qa) -> ChangeRequest:
    change = services.change_create(
        title=AWAITING,
        description=(
            "SOP-GEN-002 revision 2: the total organic carbon limit of the cleaning swab on "
            "shared equipment drops from 10 to 5 ppm, with a rinse-water sample added."
        ),
        category="sop",
        products=_products("ACM-IBU200", "DRC-MAB10", "CYG-VITD3"),
        subject_text="SOP-GEN-002 Cleaning and line clearance of shared equipment, revision 2",
        proposed_effective_date=timezone.localdate() + timedelta(days=75),
        by=qa,
    )
    services.change_assess(
        change=change,
        by=qa,
        severity=3,
        probability=2,
        detectability=2,
        rationale="A tighter limit; a failed swab stops the next batch before it starts.",
    )
    services.change_submit(change=change, by=qa)
    today = timezone.localdate()
    for description, days in (
        ("Issue SOP-GEN-002 revision 2", 30),
        ("Validate the rinse-water TOC method", 60),
    ):
        services.change_task_add(
            change=change,
            description=description,
            owner=qa,
            due_date=today + timedelta(days=days),
            by=qa,
        )
    return change


def _new_sop(qa):
    """A new site SOP, drafted and carried by the change, reviewed and approved; it becomes
    effective only when the change does."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from documents import services as document_services
    from documents.demo import demo_pdf

    document = document_services.document_create(
        number=SOP_NUMBER,
        title="Second-person verification of line clearance",
        doc_type="sop",
        by=qa,
    )
    lines = [
        f"{SOP_NUMBER} v1: Second-person verification of line clearance",
        "Before a batch starts, a second person checks the cleared line and signs the record.",
    ]
    version = document_services.version_create_draft(
        document=document,
        change_summary="First issue.",
        upload=SimpleUploadedFile(f"{SOP_NUMBER}_v1.pdf", demo_pdf(lines)),
        by=qa,
    )
    return document_services, version


def _effective(qa, operator, approver, password) -> ChangeRequest:
    document_services, version = _new_sop(qa)
    change = services.change_create(
        title=EFFECTIVE,
        description=(
            f"{SOP_NUMBER} makes the second-person check of line clearance a written procedure "
            "on the tablet and softgel lines."
        ),
        category="sop",
        products=_products("CYG-VITD3", "EOS-MELA3"),
        document_version=version,
        proposed_effective_date=timezone.localdate(),
        by=qa,
    )
    document_services.version_submit_for_review(version=version, by=qa)
    document_services.version_review(version=version, user=operator, password=password)
    document_services.version_approve(version=version, user=approver, password=password)
    services.change_assess(
        change=change,
        by=qa,
        severity=2,
        probability=2,
        detectability=2,
        rationale="Formalises a check already done; a missed check is caught at record review.",
    )
    services.change_submit(change=change, by=qa)
    task = services.change_task_add(
        change=change,
        description=f"Post {SOP_NUMBER} at the line-clearance stations",
        owner=qa,
        due_date=timezone.localdate(),
        by=qa,
    )
    services.change_make_effective(change=change, by=approver)
    services.change_task_complete(task=task, by=qa)
    return change


def _draft(qa) -> ChangeRequest:
    supplier = Supplier.objects.filter(code="SUP-HEX").first()
    return services.change_create(
        title=DRAFT,
        description="Qualify Hudson Excipients as a second source of gelatin 200 bloom.",
        category="supplier",
        products=_products("CYG-VITD3"),
        supplier=supplier,
        subject_text="" if supplier else "Gelatin 200 bloom, second source",
        proposed_effective_date=timezone.localdate() + timedelta(days=120),
        by=qa,
    )


def load(stdout=None) -> list[str]:
    """Create this app's demo records; return the names of what was created."""
    qa, operator, approver = _users()
    password = os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT
    created = []
    with transaction.atomic(), audit_context(reason="demo data"):
        for title, make in (
            (EFFECTIVE, lambda: _effective(qa, operator, approver, password)),
            (AWAITING, lambda: _awaiting(qa)),
            (DRAFT, lambda: _draft(qa)),
        ):
            if not ChangeRequest.objects.filter(title=title).exists():
                change = make()
                created.append(f"change {change.number}")
    if stdout is not None:
        summary = f"{len(created)} change requests" if created else "nothing new"
        stdout.write(f"Change control demo: {summary}.")
    return created
