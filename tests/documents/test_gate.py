"""The training gate: an operator or verifier signs a batch step that names an SOP only when
trained on the version of that SOP in force at the step's time; batches record the document
versions in force when they started, so the lots made under a version are a query."""

from datetime import timedelta

import pytest
from django.utils import timezone

from batches import services as batch_services
from documents import services
from documents.models import BatchDocument
from documents.selectors import lots_made_under_version
from qms.errors import RuleViolation
from qms.signatures import printed_name
from sponsors.models import Role
from tests.documents.conftest import effective, in_review, mbr_naming, sop
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def line(plant, people):
    """Product A's MBR names a sponsor SOP (step 1) and a site-wide SOP (step 2), both in force
    since 30 days."""
    own, own_v1 = sop(people, number="SOP-A-2", sponsor=plant.sponsor_a, title="Blending")
    site, site_v1 = sop(people, number="SOP-GEN-7", title="Gowning")
    mbr_naming(plant, plant.product_a, ["SOP-A-2", "SOP-GEN-7"])
    return {"own": own, "own_v1": own_v1, "site": site, "site_v1": site_v1}


def _train(person, *versions, completed_at=None):
    services.training_record_series(
        user=person, versions=versions, trainee_password=PASSWORD, completed_at=completed_at
    )


def _started(plant, number="B-GATE-1", at=None):
    batch = batch_services.batch_plan(product=plant.product_a, number=number, by=plant.operator)
    return batch_services.batch_start(batch=batch, by=plant.operator, started_at=at)


def _step(batch, sequence):
    return batch.mbr.steps.get(sequence=sequence)


def test_untrained_operator_cannot_sign_the_step(plant, line):
    # given
    batch = _started(plant)
    # when
    with pytest.raises(RuleViolation) as error:
        batch_services.batch_record_step(
            batch=batch, step=_step(batch, 1), performed_by=plant.operator
        )
    # then
    assert error.value.code == "training_required"
    assert str(error.value) == (
        f"{printed_name(plant.operator)} (plant-operator) cannot sign step 1 of batch B-GATE-1: "
        "not trained on SOP-A-2 v1 (no training record on any version)."
    )
    assert not batch.executed_steps.exists()


def test_out_of_date_training_is_refused_naming_sop_and_versions(plant, people, line):
    # given: trained on v1, then v2 became effective
    _train(plant.operator, line["own_v1"], completed_at=timezone.now() - timedelta(days=20))
    effective(people, line["own"], "Second issue.")
    batch = _started(plant)
    # when
    with pytest.raises(RuleViolation) as error:
        batch_services.batch_record_step(
            batch=batch, step=_step(batch, 1), performed_by=plant.operator
        )
    # then
    assert str(error.value).endswith(
        "cannot sign step 1 of batch B-GATE-1: not trained on SOP-A-2 v2 (trained on v1)."
    )


def test_trained_operator_and_verifier_sign_the_steps(plant, line):
    _train(plant.operator, line["own_v1"], line["site_v1"])
    _train(plant.verifier, line["own_v1"], line["site_v1"])

    batch, lot = plant.run_batch(plant.product_a, [], number="B-GATE-2")

    assert batch.executed_steps.filter(verified_by=plant.verifier).count() == 2
    assert lot.produced_by == batch


def test_verification_is_gated_too(plant, line):
    # given: the operator is trained, the verifier only on the site SOP
    _train(plant.operator, line["own_v1"], line["site_v1"])
    _train(plant.verifier, line["site_v1"])
    batch = _started(plant)
    executed = batch_services.batch_record_step(
        batch=batch, step=_step(batch, 1), performed_by=plant.operator
    )
    # when
    with pytest.raises(RuleViolation) as error:
        batch_services.batch_verify_step(
            executed=executed, verified_by=plant.verifier, password=PASSWORD
        )
    # then
    assert str(error.value) == (
        f"{printed_name(plant.verifier)} (plant-verifier) cannot verify step 1 of batch "
        "B-GATE-1: not trained on SOP-A-2 v1 (no training record on any version)."
    )
    executed.refresh_from_db()
    assert executed.verified_by is None


def test_the_version_in_force_at_the_step_time_counts(plant, people, line):
    # given: v2 effective now; the operator trained on v1 only
    _train(plant.operator, line["own_v1"], completed_at=timezone.now() - timedelta(days=25))
    second = effective(people, line["own"], "Second issue.")
    batch = _started(plant, at=second.effective_from - timedelta(minutes=10))
    # when: the step is recorded as done before v2 took effect
    executed = batch_services.batch_record_step(
        batch=batch,
        step=_step(batch, 1),
        performed_by=plant.operator,
        at=second.effective_from - timedelta(minutes=5),
    )
    # then
    assert executed.performed_by == plant.operator


def test_training_completed_after_the_step_time_does_not_count(plant, line):
    _train(plant.operator, line["own_v1"])
    batch = _started(plant, at=timezone.now() - timedelta(hours=1))

    with pytest.raises(RuleViolation, match=r"not trained on SOP-A-2 v1 \(no training record"):
        batch_services.batch_record_step(
            batch=batch,
            step=_step(batch, 1),
            performed_by=plant.operator,
            at=timezone.now() - timedelta(minutes=30),
        )


def test_a_step_naming_an_unknown_document_is_refused(plant, people):
    mbr_naming(plant, plant.product_a, ["SOP-NOPE-9"])
    batch = _started(plant)

    with pytest.raises(RuleViolation) as error:
        batch_services.batch_record_step(
            batch=batch, step=_step(batch, 1), performed_by=plant.operator
        )
    assert str(error.value).endswith(
        "cannot sign step 1 of batch B-GATE-1: the step names SOP-NOPE-9, which is not a "
        "controlled document."
    )


def test_a_step_naming_a_document_without_effective_version_is_refused(plant, people):
    document = services.document_create(
        number="SOP-DRAFT-1", title="Not yet", doc_type="sop", by=people.author
    )
    in_review(people, document)
    mbr_naming(plant, plant.product_a, ["SOP-DRAFT-1"])
    batch = _started(plant)

    with pytest.raises(RuleViolation, match="SOP-DRAFT-1 has no effective version on .* UTC."):
        batch_services.batch_record_step(
            batch=batch, step=_step(batch, 1), performed_by=plant.operator
        )


def test_steps_without_sop_reference_are_not_gated(plant):
    batch, lot = plant.run_batch(plant.product_a, [], number="B-NO-SOP")

    assert batch.executed_steps.count() == 2 and lot is not None


# --- which lots were made under which version --------------------------------------------------


def test_batch_start_records_the_versions_in_force(plant, people, line):
    batch = _started(plant)

    recorded = {
        (row.version.document.number, row.version.version, row.sponsor_id)
        for row in BatchDocument.objects.filter(batch=batch).select_related("version__document")
    }

    assert recorded == {
        ("SOP-A-2", 1, plant.sponsor_a.pk),
        ("SOP-GEN-7", 1, plant.sponsor_a.pk),
    }


def test_lots_made_under_a_version_follow_effective_dating(plant, people, line):
    # given: a batch under v1, then v2 becomes effective and a second batch runs under it
    everyone = (plant.operator, plant.verifier)
    for person in everyone:
        _train(person, line["own_v1"], line["site_v1"])
    _, lot_v1 = plant.run_batch(plant.product_a, [], number="B-V1")
    second = effective(people, line["own"], "Second issue.")
    for person in everyone:
        _train(person, second)
    _, lot_v2 = plant.run_batch(plant.product_a, [], number="B-V2")
    # when
    under_v1 = list(lots_made_under_version(line["own_v1"], plant.qa))
    under_v2 = list(lots_made_under_version(second, plant.qa))
    under_site = list(lots_made_under_version(line["site_v1"], plant.qa))
    # then
    assert under_v1 == [lot_v1]
    assert under_v2 == [lot_v2]
    assert under_site == [lot_v1, lot_v2]


def test_lots_made_under_a_site_version_are_scoped_to_the_user(plant, people, line, sponsor_b):
    for person in (plant.operator, plant.verifier):
        _train(person, line["own_v1"], line["site_v1"])
    mbr_naming(plant, plant.product_b, ["SOP-GEN-7"])
    _, lot_a = plant.run_batch(plant.product_a, [], number="B-A")
    _, lot_b = plant.run_batch(plant.product_b, [], number="B-B")
    auditor_b = make_user(sponsor=sponsor_b, role=Role.SPONSOR_AUDITOR, username="auditor-b")
    auditor_a = make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="aud-a")

    assert set(lots_made_under_version(line["site_v1"], plant.qa)) == {lot_a, lot_b}
    assert list(lots_made_under_version(line["site_v1"], auditor_a)) == [lot_a]
    assert list(lots_made_under_version(line["site_v1"], auditor_b)) == [lot_b]
