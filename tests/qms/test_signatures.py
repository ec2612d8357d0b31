"""E-signatures: 21 CFR 11.50 (manifestation), 11.70 (binding to the record), 11.200 (password at
each signing) and 11.300(d) (lockout after repeated failures, shared with login)."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import (
    _seal,
    _seal_message,
    signature_apply,
    signature_check,
    signatures_for,
    signer_verify,
)
from sponsors import services
from tests.factories import QualityAgreementFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(sponsor_a):
    return services.quality_agreement_create_draft(
        sponsor=sponsor_a,
        by=None,
        critical_deviation_notice_hours=24,
        major_deviation_notice_hours=72,
    )


def test_signature_records_meaning_time_printed_name_and_content_hash(qa_approver, draft, password):
    qa_approver.first_name, qa_approver.last_name = "Priya", "Raman"
    qa_approver.save()

    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    assert signature.meaning == Signature.Meaning.APPROVED
    assert signature.printed_name == "Priya Raman"
    assert signature.signed_at.utcoffset().total_seconds() == 0
    assert len(signature.content_hash) == 64
    assert signature_check(signature, draft).is_valid


def test_printed_name_is_kept_as_it_was_at_signing(qa_approver, draft, password):
    qa_approver.first_name, qa_approver.last_name = "Priya", "Raman"
    qa_approver.save()
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    qa_approver.last_name = "Raman-Okafor"
    qa_approver.save()

    signature.refresh_from_db()
    assert signature.printed_name == "Priya Raman"
    assert signature_check(signature).is_valid


def test_wrong_password_refuses_and_changes_nothing(qa_approver, draft):
    with pytest.raises(RuleViolation) as refused:
        services.quality_agreement_make_effective(
            agreement=draft, user=qa_approver, password="not-my-password"
        )

    assert refused.value.code == "signature_password_invalid"
    assert refused.value.detail == (
        f"Signature refused: the password for {qa_approver.username} is not correct."
    )
    draft.refresh_from_db()
    assert draft.is_draft
    assert not Signature.objects.exists()


def test_empty_password_is_refused(qa_approver):
    with pytest.raises(RuleViolation, match="Enter your password to sign"):
        signer_verify(user=qa_approver, password="")


def test_signature_copied_to_another_record_is_invalid(qa_approver, draft, sponsor_a, password):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )
    other = QualityAgreementFactory(sponsor=sponsor_a, version=9)

    # given: someone copies the signature row onto another record with raw SQL
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO qms_signature (content_type_id, object_id, sponsor_id, signer_id,"
            " printed_name, meaning, signed_at, content_hash, seal)"
            " SELECT content_type_id, %s, sponsor_id, signer_id, printed_name, meaning,"
            " signed_at, content_hash, seal FROM qms_signature WHERE id = %s",
            [str(other.pk), signature.pk],
        )

    # then
    [(copied, check)] = signatures_for(other)
    assert not check.is_valid
    assert check.label == "invalid — re-sign required"
    assert check.problem == "the signature does not belong to this record"
    [(original, original_check)] = signatures_for(draft)
    assert original_check.is_valid


def test_signature_with_recomputed_content_hash_on_another_record_is_invalid(
    qa_approver, draft, sponsor_a, password
):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )
    other = QualityAgreementFactory(sponsor=sponsor_a, version=9)

    forged = Signature.objects.get(pk=signature.pk)
    forged.pk = None
    forged.object_id = str(other.pk)
    from qms.signatures import record_content_hash

    forged.content_hash = record_content_hash(other)
    forged.save()

    assert signature_check(forged, other).problem == "the signature does not belong to this record"


def test_record_changed_after_signing_needs_a_new_signature(qa_approver, draft, password):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    # bypassing the services entirely: the change is still seen
    type(draft).objects.filter(pk=draft.pk).update(critical_deviation_notice_hours=12)

    draft.refresh_from_db()
    check = signature_check(signature, draft)
    assert not check.is_valid
    assert check.problem == "the record changed after it was signed"


def test_change_rule_edit_after_signing_invalidates_the_agreement_signature(
    qa_approver, draft, password
):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    draft.change_rules.filter(category="sop").update(obligation="approve", lead_time_days=30)

    assert signature_check(signature, draft).problem == "the record changed after it was signed"


def test_signatures_cannot_be_altered_or_deleted(qa_approver, draft, password):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )
    for statement in (
        "UPDATE qms_signature SET printed_name = 'Someone Else' WHERE id = %s",
        "DELETE FROM qms_signature WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="qms_signature is append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [signature.pk])


def test_unknown_meaning_is_refused(qa_approver, draft):
    with pytest.raises(RuleViolation, match="Unknown signature meaning 'witnessed'"):
        signature_apply(record=draft, user=qa_approver, meaning="witnessed")


def test_five_failed_signings_lock_the_account_for_login_too(qa_approver, draft, password):
    for _ in range(5):
        with pytest.raises(RuleViolation):
            services.quality_agreement_make_effective(
                agreement=draft, user=qa_approver, password="x"
            )

    with pytest.raises(RuleViolation) as locked:
        services.quality_agreement_make_effective(
            agreement=draft, user=qa_approver, password=password
        )
    assert locked.value.code == "account_locked"
    assert "is locked after repeated failed attempts" in locked.value.detail

    response = Client().post(
        reverse("login"), {"username": qa_approver.username, "password": password}
    )
    assert response.status_code == 403
    assert b"locked after 5 failed attempts" in response.content


def test_failed_logins_count_toward_the_signing_lockout(qa_approver, draft, password):
    client = Client()
    for _ in range(5):
        client.post(reverse("login"), {"username": qa_approver.username, "password": "wrong"})

    with pytest.raises(RuleViolation) as locked:
        services.quality_agreement_make_effective(
            agreement=draft, user=qa_approver, password=password
        )
    assert locked.value.code == "account_locked"


def test_signature_fragment_shows_name_meaning_and_utc_time(qa_approver, draft, password):
    qa_approver.first_name, qa_approver.last_name = "Priya", "Raman"
    qa_approver.save()
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    html = render_to_string(
        "qms/_signature.html", {"sig": signature, "check": signature_check(signature, draft)}
    )

    assert f"Priya Raman — approved — {signature.signed_at:%Y-%m-%d %H:%M} UTC" in html
    assert "re-sign required" not in html


def test_session_expires_after_thirty_idle_minutes(settings):
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_signature_is_bound_to_the_content_type(qa_approver, draft, password):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )
    assert signature.content_type == ContentType.objects.get_for_model(draft)
    assert signature.sponsor_id == draft.sponsor_id


def test_signature_stays_valid_when_secret_key_changes(qa_approver, draft, password, settings):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    settings.SECRET_KEY = "a-rotated-django-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = []

    assert signature_check(signature, draft).is_valid


def test_signature_sealed_with_a_fallback_seal_key_still_verifies(
    qa_approver, draft, password, settings
):
    settings.SIGNATURE_SEAL_KEY = "the-old-seal-key-" + "o" * 40
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    settings.SIGNATURE_SEAL_KEY = "the-new-seal-key-" + "n" * 40
    settings.SIGNATURE_SEAL_KEY_FALLBACKS = ["the-old-seal-key-" + "o" * 40]

    assert signature_check(signature, draft).is_valid


def test_signature_sealed_with_an_unknown_seal_key_is_invalid(
    qa_approver, draft, password, settings
):
    settings.SIGNATURE_SEAL_KEY = "a-key-nobody-keeps-" + "u" * 40
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    settings.SIGNATURE_SEAL_KEY = "the-new-seal-key-" + "n" * 40
    settings.SIGNATURE_SEAL_KEY_FALLBACKS = ["the-old-seal-key-" + "o" * 40]

    check = signature_check(signature, draft)
    assert not check.is_valid
    assert check.problem == "the signature does not belong to this record"


def test_signature_sealed_with_the_secret_key_is_invalid(qa_approver, draft, password, settings):
    signature = services.quality_agreement_make_effective(
        agreement=draft, user=qa_approver, password=password
    )

    signature.seal = _seal(_seal_message(signature), settings.SECRET_KEY)

    assert not signature_check(signature, draft).is_valid
