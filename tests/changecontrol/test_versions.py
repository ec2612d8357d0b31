"""Effective dating: a change carrying a new MBR version puts it in force at the change's
effective moment; batches started before ran under the old version, batches started after under
the new one, and "which lots were made under which version" is a query and a page."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services as bs
from batches.models import MasterBatchRecord
from changecontrol import selectors
from changecontrol import services as cs
from changecontrol.models import ChangeRequest
from qms.errors import RuleViolation
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

STEPS = [
    {"title": "Dispense", "parameter": "Weight", "unit": "kg", "low_limit": "5", "high_limit": "6"},
    {"title": "Blend", "parameter": "Time", "unit": "min", "low_limit": "10", "high_limit": "20"},
]


@pytest.fixture
def agreed(plant):
    for sponsor in (plant.sponsor_a, plant.sponsor_b):
        draft = quality_agreement_create_draft(sponsor=sponsor, by=plant.qa)
        quality_agreement_make_effective(
            agreement=draft,
            user=plant.qa,
            password=PASSWORD,
            effective_from=timezone.now() - timedelta(days=30),
        )
    return plant


def _sign_off(plant, mbr) -> None:
    """The second-person review and QA approval of an MBR version written by the operator."""
    bs.mbr_review(mbr=mbr, user=plant.verifier, password=PASSWORD)
    bs.mbr_approve(mbr=mbr, user=plant.qa, password=PASSWORD)


def _new_version(plant, approve=True) -> MasterBatchRecord:
    mbr = bs.mbr_create_draft(
        product=plant.product_a,
        title="Alphacillin 100 mg, blend time widened",
        batch_size="100",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[(plant.api, "5", "kg"), (plant.excipient, "5", "kg")],
        steps=STEPS,
        by=plant.operator,
    )
    if approve:
        _sign_off(plant, mbr)
    return mbr


def _change(plant, mbr) -> ChangeRequest:
    change = cs.change_create(
        title="Widen the blend time to 10–20 min",
        description="Validation showed uniformity from 10 min; upper limit raised.",
        category="master_batch_record",
        products=[plant.product_a],
        mbr=mbr,
        proposed_effective_date=timezone.localdate(),
        by=plant.qa,
    )
    cs.change_assess(
        change=change,
        by=plant.qa,
        severity=2,
        probability=2,
        detectability=2,
        rationale="Validated range.",
    )
    return cs.change_submit(change=change, by=plant.qa)


def _run(plant, number: str, started_at):
    """A batch of product A started at `started_at`, its steps recorded seconds after that
    (nothing is recorded for a time more than a few minutes ahead)."""
    batch = bs.batch_plan(
        product=plant.product_a, number=number, by=plant.operator, planned_at=started_at
    )
    bs.batch_start(batch=batch, by=plant.operator, started_at=started_at)
    for index, step in enumerate(batch.mbr.steps.all(), start=1):
        executed = bs.batch_record_step(
            batch=batch,
            step=step,
            performed_by=plant.operator,
            value=step.low_limit,
            at=started_at + timedelta(seconds=2 * index),
        )
        bs.batch_verify_step(
            executed=executed,
            verified_by=plant.verifier,
            password=PASSWORD,
            at=started_at + timedelta(seconds=2 * index + 1),
        )
    lot = bs.batch_complete(
        batch=batch,
        output_lot_number=f"L-{number}",
        quantity="10",
        by=plant.operator,
        at=started_at + timedelta(seconds=60),
    )
    return batch, lot


def test_a_version_carried_by_an_open_change_becomes_effective_only_through_it(agreed):
    # given
    plant = agreed
    v2 = _new_version(plant)
    change = _change(plant, v2)
    # when
    with pytest.raises(RuleViolation) as caught:
        bs.mbr_make_effective(mbr=v2, by=plant.qa)
    # then
    assert caught.value.code == "mbr_carried_by_change"
    assert caught.value.detail == (
        f"MBR ALP-100 v2 is carried by change {change.number}; it becomes effective when that "
        "change does."
    )
    v2.refresh_from_db()
    assert v2.status == MasterBatchRecord.Status.APPROVED


def test_a_draft_mbr_carried_by_a_change_is_signed_off_then_put_in_force_by_the_change(agreed):
    # given: a draft v2 written for a process-parameter change, which carries it
    plant = agreed
    v1 = MasterBatchRecord.objects.get(product=plant.product_a, version=1)
    v2 = _new_version(plant, approve=False)
    assert v2.status == MasterBatchRecord.Status.DRAFT
    change = cs.change_create(
        title="Blend time 10–20 min",
        description="Widened after the uniformity study.",
        category="process_parameter",
        products=[plant.product_a],
        mbr=v2,
        proposed_effective_date=timezone.localdate(),
        by=plant.qa,
    )
    # when: reviewed and approved by signature while carried
    _sign_off(plant, v2)
    # then: it cannot be put in force outside the change
    with pytest.raises(RuleViolation) as caught:
        bs.mbr_make_effective(mbr=v2, by=plant.qa)
    assert caught.value.detail == (
        f"MBR ALP-100 v2 is carried by change {change.number}; it becomes effective when that "
        "change does."
    )
    v2.refresh_from_db()
    assert v2.status == MasterBatchRecord.Status.APPROVED
    # when: the change is assessed, submitted and made effective
    cs.change_assess(
        change=change, by=plant.qa, severity=2, probability=2, detectability=2, rationale="Minor."
    )
    cs.change_submit(change=change, by=plant.qa)
    cs.change_make_effective(change=change, by=plant.qa)
    # then: v2 is in force from the change's effective moment, v1 superseded
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert change.status == ChangeRequest.Status.EFFECTIVE
    assert (v2.status, v2.effective_from) == (
        MasterBatchRecord.Status.EFFECTIVE,
        change.effective_at,
    )
    assert v1.status == MasterBatchRecord.Status.SUPERSEDED
    assert bs.mbr_in_force(plant.product_a) == v2


def test_a_change_carries_only_a_draft_or_approved_version_of_an_affected_product(agreed):
    plant = agreed
    v1 = MasterBatchRecord.objects.get(product=plant.product_a, version=1)
    with pytest.raises(RuleViolation) as caught:
        _change(plant, v1)
    assert caught.value.detail == (
        "A change request cannot carry MBR ALP-100 v1: it is effective; only a draft, "
        "reviewed or approved version can be put in force by a change."
    )
    other = MasterBatchRecord.objects.get(product=plant.product_b, version=1)
    other.status = MasterBatchRecord.Status.APPROVED
    with pytest.raises(RuleViolation) as caught:
        _change(plant, other)
    assert caught.value.detail == (
        "A change request cannot carry MBR ZZOTHER-1 v1: its product ZZOTHER-1 is not among the "
        "affected products."
    )
    v2 = _new_version(plant)
    first = _change(plant, v2)
    with pytest.raises(RuleViolation) as caught:
        _change(plant, v2)
    assert caught.value.detail == f"MBR ALP-100 v2 is already carried by change {first.number}."


def test_lots_record_the_version_in_force_when_their_batch_started(agreed):
    # given: v2 carried by an approved change; a batch started now runs under v1
    plant = agreed
    v1 = MasterBatchRecord.objects.get(product=plant.product_a, version=1)
    v2 = _new_version(plant)
    change = _change(plant, v2)
    assert change.status == ChangeRequest.Status.APPROVED
    now = timezone.now()
    before_batch, before_lot = _run(plant, "B-BEFORE", now)
    # when: the change becomes effective in a minute
    moment = now + timedelta(minutes=1)
    cs.change_make_effective(change=change, by=plant.qa, effective_at=moment)
    after_batch, after_lot = _run(plant, "B-AFTER", moment + timedelta(seconds=30))
    # then
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v2.status, v2.effective_from) == (MasterBatchRecord.Status.EFFECTIVE, moment)
    assert v1.status == MasterBatchRecord.Status.SUPERSEDED
    assert (before_batch.mbr, after_batch.mbr) == (v1, v2)
    assert list(selectors.lots_made_under_mbr(mbr=v1, user=plant.qa)) == [before_lot]
    assert list(selectors.lots_made_under_mbr(mbr=v2, user=plant.qa)) == [after_lot]
    client = Client()
    client.force_login(plant.qa)
    page = client.get(reverse("changecontrol:lots-by-mbr", args=[v2.pk])).content.decode()
    assert "L-B-AFTER" in page and "L-B-BEFORE" not in page
    assert change.number in page
    page = client.get(reverse("changecontrol:lots-by-mbr", args=[v1.pk])).content.decode()
    assert "L-B-BEFORE" in page and "L-B-AFTER" not in page


def test_a_refusal_of_the_carried_version_rolls_the_whole_change_back(agreed):
    # given: the change carries a version nobody approved
    plant = agreed
    draft = _new_version(plant, approve=False)
    change = _change(plant, draft)
    # when
    with pytest.raises(RuleViolation) as caught:
        cs.change_make_effective(change=change, by=plant.qa)
    # then
    assert caught.value.detail == "MBR ALP-100 v2 is draft; it cannot become effective."
    change.refresh_from_db()
    assert (change.status, change.effective_at) == (ChangeRequest.Status.APPROVED, None)
    assert change.obligations.get().status == "not_required"


def test_lots_by_version_picker_finds_the_mbr_page(agreed):
    plant = agreed
    v1 = MasterBatchRecord.objects.get(product=plant.product_a, version=1)
    client = Client()
    client.force_login(plant.qa)
    url = reverse("changecontrol:lots-by-version")
    assert client.get(url).status_code == 200
    response = client.get(url, {"product": plant.product_a.pk, "mbr_version": 1})
    assert response.status_code == 302
    assert response["Location"] == reverse("changecontrol:lots-by-mbr", args=[v1.pk])
    response = client.get(url, {"product": plant.product_a.pk, "mbr_version": 9})
    assert response.status_code == 400
    assert "ALP-100 has no MBR v9." in response.content.decode()


# --- document versions ----------------------------------------------------------------------


def _pdf(name="sop.pdf"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, b"%PDF-1.4\n% line clearance\n", "application/pdf")


def _issue(plant, document, summary, effective_from=None, approve=True):
    from documents import services as ds

    version = ds.version_create_draft(
        document=document, change_summary=summary, upload=_pdf(), by=plant.operator
    )
    if approve:
        ds.version_submit_for_review(version=version, by=plant.operator)
        ds.version_review(version=version, user=plant.verifier, password=PASSWORD)
        ds.version_approve(
            version=version, user=plant.qa, password=PASSWORD, effective_from=effective_from
        )
    return version


@pytest.fixture
def sop(agreed, settings, tmp_path):
    """SOP-QA-014 v1 in force, named by a step of product A's MBR; both operators trained."""
    from documents import services as ds

    settings.MEDIA_ROOT = tmp_path
    plant = agreed
    document = ds.document_create(
        number="SOP-QA-014", title="Line clearance", doc_type="sop", by=plant.qa
    )
    v1 = _issue(plant, document, "First issue", effective_from=timezone.now() - timedelta(days=2))
    mbr = bs.mbr_create_draft(
        product=plant.product_a,
        title="Alphacillin 100 mg with line clearance",
        batch_size="100",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[(plant.api, "5", "kg")],
        steps=[{**STEPS[0], "sop_reference": "SOP-QA-014"}, STEPS[1]],
        by=plant.operator,
    )
    _sign_off(plant, mbr)
    bs.mbr_make_effective(mbr=mbr, by=plant.qa, effective_from=timezone.now() - timedelta(days=1))
    for person in (plant.operator, plant.verifier):
        ds.training_record(user=person, version=v1, trainee_password=PASSWORD)
    return document, v1


def test_a_change_carrying_a_document_version_puts_it_in_force_and_lots_follow(agreed, sop):
    from documents import services as ds
    from documents.models import DocumentVersion

    # given: v2 written and carried by a change (held), approved, operators trained on it
    plant = agreed
    document, v1 = sop
    v2 = ds.version_create_draft(
        document=document, change_summary="Second-person check", upload=_pdf(), by=plant.operator
    )
    change = cs.change_create(
        title="Line clearance: second-person check",
        description="SOP-QA-014 v2.",
        category="sop",
        products=[plant.product_a],
        document_version=v2,
        proposed_effective_date=timezone.localdate(),
        by=plant.qa,
    )
    v2.refresh_from_db()
    assert v2.held_by_change
    ds.version_submit_for_review(version=v2, by=plant.operator)
    ds.version_review(version=v2, user=plant.verifier, password=PASSWORD)
    ds.version_approve(version=v2, user=plant.qa, password=PASSWORD)
    v2.refresh_from_db()
    assert v2.status == DocumentVersion.Status.APPROVED
    with pytest.raises(RuleViolation) as caught:
        ds.version_make_effective(version=v2, by=plant.qa)
    assert change.number in caught.value.detail
    for person in (plant.operator, plant.verifier):
        ds.training_record(user=person, version=v2, trainee_password=PASSWORD)
    before_batch, before_lot = _run(plant, "D-BEFORE", timezone.now())
    # when
    cs.change_assess(
        change=change, by=plant.qa, severity=2, probability=2, detectability=2, rationale="Minor."
    )
    cs.change_submit(change=change, by=plant.qa)
    cs.change_make_effective(change=change, by=plant.qa)
    after_batch, after_lot = _run(plant, "D-AFTER", timezone.now() + timedelta(minutes=1))
    # then
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v2.status, v2.effective_from) == (DocumentVersion.Status.EFFECTIVE, change.effective_at)
    assert v1.status == DocumentVersion.Status.SUPERSEDED
    under_v1 = selectors.lots_made_under_document_version(version=v1, user=plant.qa)
    under_v2 = selectors.lots_made_under_document_version(version=v2, user=plant.qa)
    assert (list(under_v1), list(under_v2)) == ([before_lot], [after_lot])
    client = Client()
    client.force_login(plant.qa)
    url = reverse("changecontrol:lots-by-document-version", args=["SOP-QA-014", 2])
    page = client.get(url).content.decode()
    assert "L-D-AFTER" in page and "L-D-BEFORE" not in page and change.number in page
    url = reverse("changecontrol:lots-by-document-version", args=["SOP-QA-014", 1])
    page = client.get(url).content.decode()
    assert "L-D-BEFORE" in page and "L-D-AFTER" not in page


def test_cancelling_the_change_releases_the_document_version(agreed, sop):
    from documents import services as ds

    plant = agreed
    document, _ = sop
    v2 = ds.version_create_draft(
        document=document, change_summary="Draft", upload=_pdf(), by=plant.operator
    )
    change = cs.change_create(
        title="Line clearance wording",
        description="Typos.",
        category="sop",
        products=[plant.product_a],
        document_version=v2,
        by=plant.qa,
    )
    v2.refresh_from_db()
    assert v2.held_by_change
    with pytest.raises(RuleViolation) as caught:
        cs.change_create(
            title="Twice",
            description="Twice.",
            category="sop",
            products=[plant.product_a],
            document_version=v2,
            by=plant.qa,
        )
    assert caught.value.detail == f"SOP-QA-014 v2 is already carried by change {change.number}."
    cs.change_cancel(change=change, by=plant.qa, reason="Folded into the next revision.")
    v2.refresh_from_db()
    assert not v2.held_by_change


def test_lots_by_version_page_costs_the_same_queries_for_5_and_50_batches(agreed):
    from batches.models import Batch, Lot

    plant = agreed
    v1 = MasterBatchRecord.objects.get(product=plant.product_a, version=1)
    client = Client()
    client.force_login(plant.qa)
    url = reverse("changecontrol:lots-by-mbr", args=[v1.pk])

    def grow(n):
        start = Batch.objects.count()
        batches = Batch.objects.bulk_create(
            Batch(
                number=f"Q-{start + i:04d}",
                product=plant.product_a,
                sponsor=plant.sponsor_a,
                mbr=v1,
                status="completed",
                started_at=timezone.now(),
            )
            for i in range(n)
        )
        Lot.objects.bulk_create(
            Lot(
                lot_number=f"L-{b.number}",
                material=plant.finished_a,
                sponsor=plant.sponsor_a,
                quantity=10,
                unit="ea",
                produced_by=b,
            )
            for b in batches
        )

    assert_constant_queries(client, url, grow)
