"""Quality agreements: versions, the version in force at a time, validation of terms, the reason
required once effective, and approval by e-signature."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from qms.errors import RuleViolation
from qms.models import AuditEvent
from sponsors import services
from sponsors.admin import QualityAgreementForm
from sponsors.models import ChangeCategory, QualityAgreement
from sponsors.selectors import agreement_in_force
from tests.factories import QualityAgreementFactory

pytestmark = pytest.mark.django_db

JAN = datetime(2025, 1, 1, tzinfo=UTC)
JUN = datetime(2025, 6, 1, tzinfo=UTC)


def _effective(sponsor, approver, password, when, **terms):
    draft = services.quality_agreement_create_draft(sponsor=sponsor, by=approver, **terms)
    services.quality_agreement_make_effective(
        agreement=draft, user=approver, password=password, effective_from=when
    )
    draft.refresh_from_db()
    return draft


def test_version_in_force_depends_on_the_event_time(sponsor_a, qa_approver, password):
    v1 = _effective(sponsor_a, qa_approver, password, JAN, critical_deviation_notice_hours=48)
    v2 = _effective(sponsor_a, qa_approver, password, JUN, critical_deviation_notice_hours=24)

    assert agreement_in_force(sponsor=sponsor_a, at=JAN - timedelta(seconds=1)) is None
    assert agreement_in_force(sponsor=sponsor_a, at=JAN) == v1
    assert agreement_in_force(sponsor=sponsor_a, at=JUN - timedelta(days=1)) == v1
    assert agreement_in_force(sponsor=sponsor_a, at=JUN) == v2
    assert agreement_in_force(sponsor=sponsor_a) == v2
    v1.refresh_from_db()
    assert v1.status == QualityAgreement.Status.SUPERSEDED


def test_future_dated_version_governs_only_from_its_date(sponsor_a, qa_approver, password):
    v1 = _effective(sponsor_a, qa_approver, password, JAN)
    future = timezone.now() + timedelta(days=30)
    v2 = _effective(sponsor_a, qa_approver, password, future)

    assert agreement_in_force(sponsor=sponsor_a) == v1
    assert agreement_in_force(sponsor=sponsor_a, at=future + timedelta(hours=1)) == v2


def test_drafts_are_never_in_force(sponsor_a):
    QualityAgreementFactory(sponsor=sponsor_a, version=1)
    assert agreement_in_force(sponsor=sponsor_a) is None


def test_other_sponsors_agreement_is_not_used(sponsor_a, sponsor_b, qa_approver, password):
    _effective(sponsor_a, qa_approver, password, JAN)
    assert agreement_in_force(sponsor=sponsor_b) is None


def test_new_draft_starts_from_the_latest_terms_and_rules(sponsor_a, qa_approver):
    v1 = services.quality_agreement_create_draft(
        sponsor=sponsor_a,
        by=qa_approver,
        critical_deviation_notice_hours=24,
        rules={"sop": ("notify", 30), "supplier": ("approve", 60)},
    )
    v2 = services.quality_agreement_create_draft(sponsor=sponsor_a, by=qa_approver)

    assert (v1.version, v2.version) == (1, 2)
    assert v2.critical_deviation_notice_hours == 24
    rules = {r.category: (r.obligation, r.lead_time_days) for r in v2.change_rules.all()}
    assert set(rules) == set(ChangeCategory.values)
    assert rules["sop"] == ("notify", 30)
    assert rules["supplier"] == ("approve", 60)
    assert rules["facility"] == ("none", 0)


def test_critical_notice_cannot_be_longer_than_major(sponsor_a, qa_approver):
    with pytest.raises(RuleViolation) as refused:
        services.quality_agreement_create_draft(
            sponsor=sponsor_a,
            by=qa_approver,
            major_deviation_notice_hours=48,
            critical_deviation_notice_hours=72,
        )
    assert refused.value.code == "invalid"
    assert (
        "critical_deviation_notice_hours: A critical deviation notice (72 h) cannot be longer "
        "than a major one (48 h)." in refused.value.detail
    )
    assert not QualityAgreement.objects.exists()


def test_graver_deviation_must_be_notified_when_milder_one_is(sponsor_a, qa_approver):
    with pytest.raises(RuleViolation, match="A critical deviation must be notified when a major"):
        services.quality_agreement_create_draft(
            sponsor=sponsor_a,
            by=qa_approver,
            major_deviation_notice_hours=48,
            critical_deviation_notice_hours=None,
        )


def test_sponsor_closing_minor_implies_closing_graver_ones(sponsor_a, qa_approver):
    with pytest.raises(RuleViolation, match="must also approve closing major ones"):
        services.quality_agreement_create_draft(
            sponsor=sponsor_a, by=qa_approver, sponsor_closes_minor=True, sponsor_closes_major=False
        )


def test_lead_time_only_for_notify_or_approve(sponsor_a, qa_approver):
    with pytest.raises(RuleViolation, match="change rule sop: .*A lead time only applies"):
        services.quality_agreement_create_draft(
            sponsor=sponsor_a, by=qa_approver, rules={"sop": ("none", 10)}
        )
    assert not QualityAgreement.objects.exists()


def test_change_to_effective_agreement_requires_a_reason(sponsor_a, qa_approver, password):
    agreement = _effective(sponsor_a, qa_approver, password, JAN, audit_notice_days=30)

    with pytest.raises(RuleViolation) as refused:
        services.quality_agreement_update(agreement=agreement, by=qa_approver, audit_notice_days=20)

    assert refused.value.code == "reason_required"
    assert refused.value.detail == (
        f"{agreement} is effective: a reason for the change is required."
    )
    agreement.refresh_from_db()
    assert agreement.audit_notice_days == 30


def test_change_with_reason_is_recorded_with_the_reason(sponsor_a, qa_approver, password):
    agreement = _effective(sponsor_a, qa_approver, password, JAN, audit_notice_days=30)

    services.quality_agreement_update(
        agreement=agreement,
        by=qa_approver,
        reason="Amendment 1 signed 2025-03-02",
        audit_notice_days=20,
    )

    event = AuditEvent.objects.filter(
        model="sponsors.qualityagreement", object_id=str(agreement.pk), action="update"
    ).last()
    assert event.changes == {"audit_notice_days": [30, 20]}
    assert event.reason == "Amendment 1 signed 2025-03-02"
    assert event.actor_username == qa_approver.username


def test_draft_changes_need_no_reason(sponsor_a, qa_approver):
    draft = services.quality_agreement_create_draft(sponsor=sponsor_a, by=qa_approver)
    services.quality_agreement_update(agreement=draft, by=qa_approver, audit_notice_days=14)
    draft.refresh_from_db()
    assert draft.audit_notice_days == 14


def test_only_a_draft_can_be_made_effective(sponsor_a, qa_approver, password):
    agreement = _effective(sponsor_a, qa_approver, password, JAN)
    with pytest.raises(RuleViolation, match="is effective; only a draft can be approved"):
        services.quality_agreement_make_effective(
            agreement=agreement, user=qa_approver, password=password
        )


def test_new_version_cannot_take_effect_before_the_current_one(sponsor_a, qa_approver, password):
    _effective(sponsor_a, qa_approver, password, JUN)
    draft = services.quality_agreement_create_draft(sponsor=sponsor_a, by=qa_approver)

    with pytest.raises(RuleViolation) as refused:
        services.quality_agreement_make_effective(
            agreement=draft, user=qa_approver, password=password, effective_from=JAN
        )
    assert refused.value.code == "agreement_effective_date"
    assert "cannot take effect on 2025-01-01 00:00 UTC" in refused.value.detail
    draft.refresh_from_db()
    assert draft.is_draft


def test_staff_without_approve_permission_cannot_make_effective(sponsor_a, cmo_staff, password):
    draft = services.quality_agreement_create_draft(sponsor=sponsor_a, by=cmo_staff)
    with pytest.raises(RuleViolation) as refused:
        services.quality_agreement_make_effective(
            agreement=draft, user=cmo_staff, password=password
        )
    assert refused.value.detail == (
        f"{cmo_staff.username} may not approve quality agreements for sponsor alpha."
    )


def test_admin_form_rejects_inconsistent_notice_hours(sponsor_a):
    form = QualityAgreementForm(
        data={
            "sponsor": sponsor_a.pk,
            "title": "Quality agreement",
            "major_deviation_notice_hours": 24,
            "critical_deviation_notice_hours": 48,
            "investigation_summary_business_days": 30,
            "release_authority": "cmo",
            "evidence_handoff_hours": 72,
            "audit_notice_days": 30,
        }
    )
    assert not form.is_valid()
    assert form.errors["critical_deviation_notice_hours"] == [
        "A critical deviation notice (48 h) cannot be longer than a major one (24 h)."
    ]


def test_admin_form_requires_reason_for_effective_agreement(sponsor_a, qa_approver, password):
    agreement = _effective(sponsor_a, qa_approver, password, JAN)
    data = {
        "sponsor": sponsor_a.pk,
        "title": "Quality agreement",
        "critical_deviation_notice_hours": 24,
        "investigation_summary_business_days": 30,
        "release_authority": "cmo",
        "evidence_handoff_hours": 72,
        "audit_notice_days": 30,
        "reason": "",
    }
    form = QualityAgreementForm(data=data, instance=agreement)
    assert not form.is_valid()
    assert form.non_field_errors() == [
        f"{agreement} is effective: a reason for the change is required."
    ]


def test_admin_edit_records_actor_and_reason(sponsor_a, superuser, qa_approver, password):
    agreement = _effective(
        sponsor_a,
        qa_approver,
        password,
        JAN,
        audit_notice_days=30,
        critical_deviation_notice_hours=24,
        major_deviation_notice_hours=72,
    )
    client = Client()
    client.force_login(superuser)
    url = reverse("admin:sponsors_qualityagreement_change", args=[agreement.pk])
    page = client.get(url)
    assert page.status_code == 200
    data = {
        "sponsor": sponsor_a.pk,
        "title": agreement.title,
        "reference": "",
        "critical_deviation_notice_hours": 24,
        "major_deviation_notice_hours": 72,
        "investigation_summary_business_days": 30,
        "release_authority": "cmo",
        "evidence_handoff_hours": 72,
        "audit_notice_days": 21,
        "sponsor_closes_critical": "on",
        "reason": "Amendment 2",
        "change_rules-TOTAL_FORMS": "0",
        "change_rules-INITIAL_FORMS": "0",
        "change_rules-MIN_NUM_FORMS": "0",
        "change_rules-MAX_NUM_FORMS": "9",
    }
    # the inline carries the existing rules; resubmit them unchanged
    rules = list(agreement.change_rules.all())
    data["change_rules-TOTAL_FORMS"] = data["change_rules-INITIAL_FORMS"] = str(len(rules))
    for index, rule in enumerate(rules):
        data[f"change_rules-{index}-id"] = rule.pk
        data[f"change_rules-{index}-agreement"] = agreement.pk
        data[f"change_rules-{index}-category"] = rule.category
        data[f"change_rules-{index}-obligation"] = rule.obligation
        data[f"change_rules-{index}-lead_time_days"] = rule.lead_time_days

    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.filter(
        model="sponsors.qualityagreement", object_id=str(agreement.pk), action="update"
    ).last()
    assert event.changes == {"audit_notice_days": [30, 21]}
    assert event.reason == "Amendment 2"
    assert event.actor_username == superuser.username


def test_agreement_admin_is_registered():
    assert QualityAgreement in site._registry
