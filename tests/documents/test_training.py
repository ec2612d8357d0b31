"""Training requirements (a role or named people) and training records signed by the trainee; a
new effective version makes earlier training out of date and shows who must retrain."""

from datetime import timedelta

import pytest
from django.utils import timezone

from documents import selectors, services
from documents.models import TrainingRecord
from documents.selectors import TrainingState
from qms.errors import RuleViolation
from qms.signatures import signatures_for
from sponsors.models import Role
from tests.documents.conftest import effective, in_review, sop
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _train(person, version, **kw):
    return services.training_record(user=person, version=version, trainee_password=PASSWORD, **kw)


# --- requirements -------------------------------------------------------------------------------


def test_requirement_names_a_role_or_a_person(people, plant):
    document, _ = sop(people)

    by_role = services.training_requirement_add(
        document=document, role=Role.CMO_STAFF, by=people.author
    )
    named = services.training_requirement_add(document=document, user=plant.qa, by=people.author)

    assert (by_role.role, by_role.user) == ("cmo_staff", None)
    assert (named.role, named.user) == ("", plant.qa)
    with pytest.raises(RuleViolation, match="names a role or one person \\(not both, not neither"):
        services.training_requirement_add(document=document, by=people.author)
    with pytest.raises(RuleViolation, match="names a role or one person"):
        services.training_requirement_add(
            document=document, role=Role.CMO_STAFF, user=plant.qa, by=people.author
        )


def test_requirement_is_added_once(people):
    document, _ = sop(people)
    services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)

    with pytest.raises(RuleViolation) as error:
        services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    assert str(error.value) == (
        "SOP-QA-001 already requires training of everyone holding the role CMO staff."
    )


def test_requirement_applies_to_cmo_roles_and_cmo_people_only(people, auditor_a):
    document, _ = sop(people)

    with pytest.raises(
        RuleViolation,
        match=r"can be required of a CMO role \(CMO staff, CMO QA approver\), not of Sponsor aud",
    ):
        services.training_requirement_add(
            document=document, role=Role.SPONSOR_AUDITOR, by=people.author
        )
    with pytest.raises(RuleViolation, match=r"\(auditor-a\) is not active CMO staff"):
        services.training_requirement_add(document=document, user=auditor_a, by=people.author)


def test_requirement_removal_needs_a_reason(people):
    document, _ = sop(people)
    requirement = services.training_requirement_add(
        document=document, role=Role.CMO_STAFF, by=people.author
    )

    with pytest.raises(RuleViolation, match="Say why the training requirement .* is removed."):
        services.training_requirement_remove(requirement=requirement, by=people.author, reason="")
    services.training_requirement_remove(
        requirement=requirement, by=people.author, reason="Role no longer does this task"
    )
    assert not document.training_requirements.exists()


def test_people_required_by_role_on_the_sponsor_or_by_name(people, plant, sponsor_a, sponsor_b):
    own, _ = sop(people, number="SOP-A-1", sponsor=sponsor_a)
    site, _ = sop(people, number="SOP-GEN-1")
    only_b = make_user(sponsor=sponsor_b, role=Role.CMO_STAFF, username="staff-b-only")
    services.training_requirement_add(document=own, role=Role.CMO_STAFF, by=people.author)
    services.training_requirement_add(document=site, role=Role.CMO_STAFF, by=people.author)
    services.training_requirement_add(document=own, user=plant.qa, by=people.author)

    required_own = set(selectors.people_required_for(own))
    required_site = set(selectors.people_required_for(site))

    assert required_own == {plant.operator, plant.verifier, plant.qa}
    assert only_b not in required_own
    assert only_b in required_site and plant.qa not in required_site
    assert list(selectors.required_documents_for(only_b)) == [site]
    assert set(selectors.required_documents_for(plant.qa)) == {own}


# --- records ------------------------------------------------------------------------------------


def test_trainee_signs_the_training_record(people, plant):
    _, version = sop(people)

    record = _train(plant.operator, version, trainer=plant.qa, note="Classroom")

    [(signature, check)] = signatures_for(record)
    assert (signature.meaning, signature.signer, check.is_valid) == (
        "trained",
        plant.operator,
        True,
    )
    assert (record.trainer, record.note) == (plant.qa, "Classroom")
    assert selectors.training_status(plant.operator, version.document).is_current


def test_training_needs_the_trainees_password(people, plant):
    _, version = sop(people)

    with pytest.raises(RuleViolation, match="the password for plant-operator is not correct"):
        services.training_record(user=plant.operator, version=version, trainee_password="nope")
    assert not TrainingRecord.objects.exists()


def test_training_only_on_an_approved_or_effective_version(people, plant):
    document = services.document_create(number="SOP-T", title="X", doc_type="sop", by=people.author)
    version = in_review(people, document)

    with pytest.raises(RuleViolation) as error:
        _train(plant.operator, version)
    assert str(error.value) == (
        "SOP-T v1 is in review: training is recorded on an approved or effective version only."
    )


def test_training_is_recorded_once_per_version(people, plant):
    _, version = sop(people)
    _train(plant.operator, version)

    with pytest.raises(
        RuleViolation, match=r"\(plant-operator\) is already trained on SOP-QA-001 v1"
    ):
        _train(plant.operator, version)


def test_training_cannot_be_completed_in_the_future(people, plant):
    _, version = sop(people)

    with pytest.raises(RuleViolation, match="cannot be completed in the future"):
        _train(plant.operator, version, completed_at=timezone.now() + timedelta(days=1))


def test_sponsor_users_are_not_trained(people, auditor_a):
    _, version = sop(people)

    with pytest.raises(RuleViolation, match=r"\(auditor-a\) is a sponsor user"):
        _train(auditor_a, version)


def test_trainee_outside_the_documents_sponsor_is_refused(people, sponsor_a, sponsor_b):
    _, version = sop(people, number="SOP-B-1", sponsor=sponsor_b)
    staff_a = make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="staff-a-only")

    with pytest.raises(RuleViolation, match="staff-a-only may not be trained on SOP-B-1 v1."):
        _train(staff_a, version)


def test_training_on_an_approved_version_ahead_of_its_effective_date(people, plant):
    document, first = sop(people)
    second = in_review(people, document, "Second.")
    services.version_review(version=second, user=people.reviewer, password=PASSWORD)
    starts = timezone.now() + timedelta(days=7)
    services.version_approve(
        version=second, user=people.approver, password=PASSWORD, effective_from=starts
    )
    _train(plant.operator, first)
    _train(plant.operator, second)

    before = selectors.training_status(plant.operator, document, at=starts)
    assert (before.state, before.in_force, before.trained) == (TrainingState.CURRENT, 1, 1)
    services.versions_make_due_effective(now=starts)
    later = selectors.training_status(plant.operator, document, at=starts + timedelta(hours=1))
    assert (later.state, later.trained) == (TrainingState.CURRENT, 2)


# --- retraining ---------------------------------------------------------------------------------


def test_new_effective_version_makes_earlier_training_out_of_date(people, plant):
    document, first = sop(people)
    services.training_requirement_add(document=document, role=Role.CMO_STAFF, by=people.author)
    _train(plant.operator, first)
    _train(plant.verifier, first)
    assert selectors.who_must_retrain(document) == []

    second = effective(people, document, "Second issue.")

    status = selectors.training_status(plant.operator, document)
    assert (status.state, status.trained, status.in_force) == ("out_of_date", 1, 2)
    assert status.label == "out of date"
    must = selectors.who_must_retrain(document)
    assert [(person, s.trained) for person, s in must] == sorted(
        [(plant.operator, 1), (plant.verifier, 1)], key=lambda pair: pair[0].last_name
    )

    _train(plant.operator, second)

    assert selectors.training_status(plant.operator, document).is_current
    assert [person for person, _ in selectors.who_must_retrain(document)] == [plant.verifier]


def test_training_status_never_and_no_version(people, plant):
    document, _ = sop(people)
    empty = services.document_create(number="SOP-E", title="X", doc_type="sop", by=people.author)

    assert selectors.training_status(plant.operator, document).state == TrainingState.NEVER
    assert selectors.training_status(plant.operator, empty).state == TrainingState.NO_VERSION


def test_training_statuses_list_every_required_person(people, plant):
    document, first = sop(people)
    services.training_requirement_add(document=document, user=plant.qa, by=people.author)
    services.training_requirement_add(document=document, user=plant.operator, by=people.author)
    _train(plant.qa, first)

    statuses = {person: status.state for person, status in selectors.training_statuses(document)}

    assert statuses == {plant.qa: "current", plant.operator: "never"}
