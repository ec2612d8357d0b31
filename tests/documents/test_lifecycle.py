"""The version lifecycle: draft → in review → approved → effective → superseded / obsolete,
review and approval by e-signature, effective dating, one effective version, change control's
hold, and every refusal's text."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from changecontrol.models import ChangeRequest
from documents import services
from documents.models import DocumentVersion
from documents.selectors import version_in_force
from qms.errors import RuleViolation
from qms.signatures import signatures_for
from sponsors.models import Role
from tests.documents.conftest import effective, in_review, pdf, sop
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

Status = DocumentVersion.Status


def _refused(match: str):
    return pytest.raises(RuleViolation, match=match)


# --- documents --------------------------------------------------------------------------------


def test_document_is_created_site_wide_or_for_a_sponsor(people, sponsor_a):
    site = services.document_create(
        number="SOP-GEN-001", title="Gowning", doc_type="sop", by=people.author
    )
    own = services.document_create(
        number="SPEC-A-1",
        title="Spec",
        doc_type="specification",
        sponsor=sponsor_a,
        by=people.author,
    )

    assert site.sponsor is None and site.owner == people.author
    assert own.sponsor == sponsor_a


def test_document_number_is_used_once(people):
    services.document_create(number="SOP-1", title="One", doc_type="sop", by=people.author)

    with pytest.raises(RuleViolation, match="Document number SOP-1 is already used.") as error:
        services.document_create(number="SOP-1", title="Two", doc_type="sop", by=people.author)
    assert error.value.code == "document_number_taken"


def test_document_needs_number_title_and_known_type(people):
    with _refused("A document needs a number and a title."):
        services.document_create(number=" ", title="X", doc_type="sop", by=people.author)
    with _refused("Unknown document type 'memo'."):
        services.document_create(number="M-1", title="X", doc_type="memo", by=people.author)
    with _refused("may not contain spaces"):
        services.document_create(number="SOP 1", title="X", doc_type="sop", by=people.author)


def test_document_of_a_sponsor_out_of_scope_is_refused(sponsor_a, sponsor_b):
    staff = make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="only-a")

    with _refused("only-a may not create documents of ZZOTHER Biologics."):
        services.document_create(
            number="Z-1", title="X", doc_type="sop", sponsor=sponsor_b, by=staff
        )


def test_sponsor_user_cannot_create_documents(auditor_a):
    with _refused("auditor-a may not create site-wide documents."):
        services.document_create(number="S-1", title="X", doc_type="sop", by=auditor_a)


# --- versions -----------------------------------------------------------------------------------


def test_versions_are_numbered_and_only_one_is_unfinished(people):
    document, first = sop(people)
    second = services.version_create_draft(
        document=document, change_summary="Clarified.", by=people.author
    )

    assert (first.version, second.version, second.status) == (1, 2, Status.DRAFT)
    with _refused("SOP-QA-001 already has v2 draft; finish it before starting another version."):
        services.version_create_draft(document=document, change_summary="More.", by=people.author)


def test_new_version_needs_a_change_summary(people):
    document, _ = sop(people)

    with _refused("A new version of SOP-QA-001 needs a change summary"):
        services.version_create_draft(document=document, change_summary=" ", by=people.author)


def test_submit_for_review_needs_a_file(people):
    document = services.document_create(number="SOP-2", title="X", doc_type="sop", by=people.author)
    draft = services.version_create_draft(
        document=document, change_summary="New.", by=people.author
    )

    with _refused("SOP-2 v1 cannot be submitted for review: no file is attached.") as error:
        services.version_submit_for_review(version=draft, by=people.author)
    assert error.value.code == "document_file_missing"

    services.version_attach_file(version=draft, upload=pdf(), by=people.author)
    services.version_submit_for_review(version=draft, by=people.author)
    assert draft.status == Status.IN_REVIEW and draft.submitted_at is not None


def test_only_a_draft_is_submitted_or_gets_a_new_file(people):
    _, version = sop(people)

    with _refused("SOP-QA-001 v1 is effective; it cannot be submitted for review"):
        services.version_submit_for_review(version=version, by=people.author)
    with _refused("SOP-QA-001 v1 is effective: only a draft's file can change."):
        services.version_attach_file(version=version, upload=pdf(), by=people.author)


def test_author_cannot_review_own_version(people):
    document = services.document_create(number="SOP-3", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)

    with _refused("its author cannot review it") as error:
        services.version_review(version=version, user=people.author, password=PASSWORD)
    assert error.value.code == "document_author_cannot_sign"
    assert f"written by {people.author.get_full_name()}" in str(error.value)


def test_author_cannot_approve_own_version(people, plant):
    document = services.document_create(number="SOP-4", title="X", doc_type="sop", by=plant.qa)
    version = services.version_create_draft(
        document=document, change_summary="New.", upload=pdf(), by=plant.qa
    )
    services.version_submit_for_review(version=version, by=plant.qa)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)

    with _refused("SOP-4 v1 was written by .*; its author cannot approve it."):
        services.version_approve(version=version, user=plant.qa, password=PASSWORD)


def test_approval_needs_a_review_first(people):
    document = services.document_create(number="SOP-5", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)

    with _refused("SOP-5 v1 cannot be approved before it is reviewed") as error:
        services.version_approve(version=version, user=people.approver, password=PASSWORD)
    assert error.value.code == "document_not_reviewed"


def test_approval_needs_the_approve_permission(people):
    document = services.document_create(number="SOP-6", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)

    with _refused(f"{people.reviewer.username} may not approve SOP-6 v1."):
        services.version_approve(version=version, user=people.reviewer, password=PASSWORD)


def test_a_draft_cannot_be_reviewed_or_approved(people):
    document = services.document_create(number="SOP-7", title="X", doc_type="sop", by=people.author)
    draft = services.version_create_draft(document=document, change_summary="N.", by=people.author)

    with _refused("SOP-7 v1 is draft: only a version in review can be reviewed."):
        services.version_review(version=draft, user=people.reviewer, password=PASSWORD)
    with _refused("SOP-7 v1 is draft: only a version in review can be approved."):
        services.version_approve(version=draft, user=people.approver, password=PASSWORD)


def test_review_is_signed_once(people):
    document = services.document_create(number="SOP-8", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)

    with _refused("SOP-8 v1 was already reviewed by"):
        services.version_review(version=version, user=people.approver, password=PASSWORD)


def test_wrong_password_refuses_the_signature(people):
    document = services.document_create(number="SOP-9", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)

    with _refused("Signature refused: the password for"):
        services.version_review(version=version, user=people.reviewer, password="wrong")
    version.refresh_from_db()
    assert version.reviewed_at is None and not signatures_for(version)


def test_approval_sets_the_effective_date_and_puts_it_in_force_now(people):
    document = services.document_create(
        number="SOP-10", title="X", doc_type="sop", by=people.author
    )
    version = in_review(people, document)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)

    before = timezone.now()
    signature = services.version_approve(version=version, user=people.approver, password=PASSWORD)

    assert version.status == Status.EFFECTIVE
    assert version.effective_from >= before and version.approved_by == people.approver
    assert signature.meaning == "approved"
    meanings = [(sig.meaning, check.is_valid) for sig, check in signatures_for(version)]
    assert meanings == [("reviewed", True), ("approved", True)]
    assert version_in_force(document) == version


def test_new_effective_version_supersedes_the_previous(people):
    document, first = sop(people)

    second = effective(people, document, "Second issue.")

    first.refresh_from_db()
    assert first.status == Status.SUPERSEDED
    assert first.superseded_at == second.effective_from
    assert version_in_force(document) == second
    assert version_in_force(document, at=second.effective_from - timedelta(seconds=1)) == first
    assert DocumentVersion.objects.filter(document=document, status="effective").count() == 1


def test_future_effective_date_waits_for_the_beat_task(people):
    document, first = sop(people)
    second = in_review(people, document, "Second issue.")
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    starts = timezone.now() + timedelta(days=3)

    services.version_approve(
        version=second, user=people.approver, password=PASSWORD, effective_from=starts
    )

    assert second.status == Status.APPROVED and second.effective_from == starts
    assert services.versions_make_due_effective() == 0
    assert version_in_force(document) == first

    assert services.versions_make_due_effective(now=starts + timedelta(minutes=1)) == 1
    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.status, first.status) == (Status.EFFECTIVE, Status.SUPERSEDED)
    assert services.versions_make_due_effective(now=starts + timedelta(minutes=2)) == 0


def test_effective_date_must_follow_the_version_in_force(people):
    document, first = sop(people)
    second = in_review(people, document, "Second issue.")
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)

    with _refused("SOP-QA-001 v2 cannot take effect on .*: v1 is in force since") as error:
        services.version_approve(
            version=second,
            user=people.approver,
            password=PASSWORD,
            effective_from=first.effective_from - timedelta(days=1),
        )
    assert error.value.code == "document_effective_date_invalid"


def test_database_allows_one_effective_version_per_document(people):
    document, first = sop(people)
    draft = services.version_create_draft(document=document, change_summary="X.", by=people.author)

    draft.status, draft.effective_from = Status.EFFECTIVE, timezone.now()
    with pytest.raises(IntegrityError, match="one_effective_version_per_document"):
        with transaction.atomic():
            draft.save()


def test_database_refuses_an_effective_version_without_date(people):
    document, first = sop(people)

    first.effective_from = None
    with pytest.raises(IntegrityError, match="version_in_force_has_effective_date"):
        with transaction.atomic():
            first.save()


def test_return_to_draft_needs_a_reason_and_voids_the_review(people):
    document = services.document_create(
        number="SOP-11", title="X", doc_type="sop", by=people.author
    )
    version = in_review(people, document)
    services.version_review(version=version, user=people.reviewer, password=PASSWORD)

    with _refused("Say why SOP-11 v1 goes back to draft."):
        services.version_return_to_draft(version=version, by=people.approver, reason="")
    services.version_return_to_draft(version=version, by=people.approver, reason="Typo in 4.2")

    assert version.status == Status.DRAFT and version.reviewed_at is None
    assert version.status_reason == "Typo in 4.2"


def test_make_obsolete_withdraws_the_document(people):
    document, version = sop(people)

    with _refused("Say why SOP-QA-001 v1 is made obsolete"):
        services.version_make_obsolete(version=version, by=people.approver, reason=" ")
    services.version_make_obsolete(version=version, by=people.approver, reason="Process retired")

    assert version.status == Status.OBSOLETE and version.withdrawn_at is not None
    assert version_in_force(document) is None
    assert version_in_force(document, at=version.withdrawn_at - timedelta(seconds=1)) == version
    with _refused("SOP-QA-001 was withdrawn on .*; it takes no new versions.") as error:
        services.version_create_draft(document=document, change_summary="Back.", by=people.author)
    assert error.value.code == "document_withdrawn"


def test_only_the_effective_version_is_made_obsolete(people):
    document, first = sop(people)
    effective(people, document, "Second.")
    first.refresh_from_db()

    with _refused("SOP-QA-001 v1 is superseded: only the effective version can be made obsolete"):
        services.version_make_obsolete(version=first, by=people.approver, reason="Old")


def test_make_obsolete_needs_the_approve_permission(people):
    _, version = sop(people)

    with _refused(f"{people.author.username} may not make SOP-QA-001 v1 obsolete."):
        services.version_make_obsolete(version=version, by=people.author, reason="Old")


def test_signatures_stay_valid_through_effective_dating_and_supersession(people):
    document, first = sop(people)
    effective(people, document, "Second.")
    first.refresh_from_db()

    assert [check.is_valid for _sig, check in signatures_for(first)] == [True, True]


def test_series_signs_several_versions_with_one_password_entry(people):
    docs = [
        services.document_create(number=f"SOP-S{n}", title="X", doc_type="sop", by=people.author)
        for n in range(3)
    ]
    versions = [in_review(people, document) for document in docs]

    reviews = services.version_review_series(
        versions=versions, user=people.reviewer, password=PASSWORD
    )
    approvals = services.version_approve_series(
        versions=versions, user=people.approver, password=PASSWORD
    )

    assert len(reviews) == len(approvals) == 3
    assert {v.status for v in versions} == {Status.EFFECTIVE}
    assert {sig.object_id for sig in approvals} == {str(v.pk) for v in versions}


# --- change control's hold ------------------------------------------------------------------------


def _change(people, version, number="CC-2026-0001"):
    return ChangeRequest.objects.create(
        number=number,
        title="Revise line clearance",
        description="New step.",
        category="sop",
        document_version=version,
        created_by=people.author,
    )


def _held_and_approved(people):
    document, first = sop(people)
    second = in_review(people, document, "Second issue.")
    services.version_hold(version=second, by=people.author)
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    services.version_approve(version=second, user=people.approver, password=PASSWORD)
    return document, first, second


def test_held_version_stays_approved_without_effective_date(people):
    document, first, second = _held_and_approved(people)

    assert second.status == Status.APPROVED and second.effective_from is None
    assert services.versions_make_due_effective() == 0
    assert version_in_force(document) == first


def test_held_version_refuses_an_effective_date_at_approval(people):
    document, _ = sop(people)
    second = in_review(people, document, "Second issue.")
    services.version_hold(version=second, by=people.author)
    _change(people, second)
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)

    with _refused("SOP-QA-001 v2 is carried by change CC-2026-0001: it becomes effective when"):
        services.version_approve(
            version=second,
            user=people.approver,
            password=PASSWORD,
            effective_from=timezone.now() + timedelta(days=1),
        )


def test_held_version_becomes_effective_only_through_its_change(people):
    document, first, second = _held_and_approved(people)
    change = _change(people, second)
    cancelled = _change(people, second, number="CC-2026-0002")
    ChangeRequest.objects.filter(pk=cancelled.pk).update(status="cancelled")

    with _refused(
        "SOP-QA-001 v2 is carried by change CC-2026-0001: it becomes effective when that change"
    ) as error:
        services.version_make_effective(version=second, by=people.approver)
    assert error.value.code == "document_held_by_change"

    services.version_make_effective(version=second, by=people.approver, change=change)
    first.refresh_from_db()
    assert (second.status, first.status) == (Status.EFFECTIVE, Status.SUPERSEDED)


def test_a_change_that_does_not_carry_the_version_cannot_make_it_effective(people):
    document, first, second = _held_and_approved(people)
    other = _change(people, first, number="CC-2026-0009")

    with _refused("Change CC-2026-0009 does not carry SOP-QA-001 v2"):
        services.version_make_effective(version=second, by=people.approver, change=other)


def test_holding_clears_a_scheduled_date_and_only_unfinished_versions_are_held(people):
    document, first = sop(people)
    second = in_review(people, document, "Second issue.")
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    services.version_approve(
        version=second,
        user=people.approver,
        password=PASSWORD,
        effective_from=timezone.now() + timedelta(days=5),
    )

    services.version_hold(version=second, by=people.author)

    assert second.held_by_change and second.effective_from is None
    with _refused("SOP-QA-001 v1 is effective: change control can carry only a version that is"):
        services.version_hold(version=first, by=people.author)
    services.version_hold(version=second, by=people.author, held=False)
    assert not second.held_by_change


def test_make_effective_at_a_future_date_schedules_it(people):
    document, first = sop(people)
    second = in_review(people, document, "Second.")
    services.version_hold(version=second, by=people.author)
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    services.version_approve(version=second, user=people.approver, password=PASSWORD)
    change = _change(people, second)
    starts = timezone.now() + timedelta(days=2)

    services.version_make_effective(
        version=second, by=people.approver, effective_from=starts, change=change
    )

    assert second.status == Status.APPROVED and second.effective_from == starts
    assert services.versions_make_due_effective(now=starts) == 1
    second.refresh_from_db()
    assert second.status == Status.EFFECTIVE


def test_only_an_approved_version_is_made_effective(people):
    _, version = sop(people)

    with _refused("SOP-QA-001 v1 is effective: only an approved version can become effective."):
        services.version_make_effective(version=version, by=people.approver)


def test_beat_task_puts_due_versions_in_force(people, settings):
    from documents.tasks import documents_make_due_effective

    entry = settings.CELERY_BEAT_SCHEDULE["documents-make-due-effective"]
    assert entry == {"task": "documents.tasks.documents_make_due_effective", "schedule": 60.0}
    assert documents_make_due_effective.name == entry["task"]
    document, first = sop(people)
    second = in_review(people, document, "Second.")
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    services.version_approve(
        version=second,
        user=people.approver,
        password=PASSWORD,
        effective_from=timezone.now() + timedelta(seconds=2),
    )
    # the effective date passes
    DocumentVersion.objects.filter(pk=second.pk).update(
        effective_from=timezone.now() - timedelta(seconds=1)
    )

    assert documents_make_due_effective.apply().get() == 1
    assert documents_make_due_effective.apply().get() == 0
    second.refresh_from_db()
    assert second.status == Status.EFFECTIVE
