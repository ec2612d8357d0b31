"""Deadlines of the five demo sponsors: the sponsor notice and OOS notice hours and the
investigation summary due date, all from the agreement version in force at discovery."""

import os
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from batches.models import Batch, Lot
from batches.services import lab_result_record
from deviations import services as ds
from deviations.models import Deviation
from deviations.selectors import deadlines_of
from qms.models import Deadline
from sponsors.management.commands.seed_demo import DEMO_PASSWORD_DEFAULT
from sponsors.models import QualityAgreement
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective

pytestmark = pytest.mark.django_db

CRITICAL_NOTICE_HOURS = {"acme": 24, "borealis": 48, "cygnus": 72, "draco": 24, "eos": None}
OOS_NOTICE_HOURS = {"acme": 48, "borealis": 72, "cygnus": 168, "draco": 24, "eos": None}


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo site, loaded once for the module in a transaction rolled back at its end."""
    fast = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with django_db_blocker.unblock(), fast, transaction.atomic():
        call_command("seed_demo", stdout=StringIO())
        yield
        transaction.set_rollback(True)


@pytest.fixture
def approver(demo):
    return get_user_model().objects.get(username="qa-approver")


def password() -> str:
    return os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT


def batch_of(code: str) -> Batch:
    return Batch.objects.filter(sponsor__code=code).order_by("number").first()


def record(approver, code, severity="critical", discovered_at=None) -> Deviation:
    discovered_at = discovered_at or timezone.now()
    return ds.deviation_record(
        title="Environmental excursion",
        description="Grade C particle count above the action limit.",
        category="deviation",
        severity=severity,
        occurred_at=discovered_at,
        discovered_at=discovered_at,
        by=approver,
        batches=[batch_of(code)],
    )


def notice_hours(deviation: Deviation) -> int | None:
    notice = deadlines_of(deviation).filter(kind="deviation_notice", status=Deadline.Status.PENDING)
    if not notice.exists():
        return None
    return (notice.get().due_at - deviation.discovered_at) / timedelta(hours=1)


def new_version(approver, code, effective_from, **terms) -> QualityAgreement:
    draft = quality_agreement_create_draft(
        sponsor=batch_of(code).sponsor, by=approver, reference=f"QA-{code.upper()}-2026B", **terms
    )
    quality_agreement_make_effective(
        agreement=draft, user=approver, password=password(), effective_from=effective_from
    )
    return draft


@pytest.mark.parametrize(("code", "hours"), CRITICAL_NOTICE_HOURS.items())
def test_critical_notice_deadline_follows_each_demo_agreement(approver, code, hours):
    deviation = record(approver, code)

    assert deviation.agreement.reference == f"QA-{code.upper()}-2026"
    assert notice_hours(deviation) == hours
    kinds = set(deadlines_of(deviation).values_list("kind", flat=True))
    if hours is None:
        assert kinds == {"investigation_summary"}
    else:
        assert kinds == {"deviation_notice", "deviation_notice_escalation", "investigation_summary"}
        escalation = deadlines_of(deviation).get(kind="deviation_notice_escalation")
        notice = deadlines_of(deviation).get(kind="deviation_notice")
        assert escalation.escalates == notice
        assert escalation.due_at == escalation.notify_at == notice.due_at
        assert notice.notify_at <= timezone.now()


def test_deviation_discovered_under_the_superseded_acme_agreement_keeps_its_hours(approver):
    deviation = record(approver, "acme", discovered_at=datetime(2025, 6, 2, 9, tzinfo=UTC))

    assert deviation.agreement.reference == "QA-ACME-2025"
    assert deviation.agreement.status == QualityAgreement.Status.SUPERSEDED
    assert notice_hours(deviation) == 48


@pytest.mark.parametrize(("code", "hours"), CRITICAL_NOTICE_HOURS.items())
def test_version_effective_after_discovery_does_not_change_the_deadline(approver, code, hours):
    # given: a stricter version takes effect after the deviation was discovered
    discovered_at = timezone.now() - timedelta(days=3)
    new_version(
        approver,
        code,
        effective_from=timezone.now() - timedelta(days=1),
        critical_deviation_notice_hours=6,
        major_deviation_notice_hours=12,
    )

    # when: the deviation is recorded now, and a later one too
    earlier = record(approver, code, discovered_at=discovered_at)
    later = record(approver, code)

    # then
    assert earlier.agreement.reference == f"QA-{code.upper()}-2026"
    assert notice_hours(earlier) == hours
    assert later.agreement.reference == f"QA-{code.upper()}-2026B"
    assert notice_hours(later) == 6


def test_severity_change_uses_the_version_in_force_at_discovery(approver):
    deviation = record(approver, "borealis", severity="major")
    assert notice_hours(deviation) == 120
    new_version(
        approver,
        "borealis",
        effective_from=timezone.now(),
        critical_deviation_notice_hours=6,
        major_deviation_notice_hours=12,
    )

    ds.deviation_change_severity(
        deviation=deviation, severity="critical", reason="sterile barrier breach", by=approver
    )

    assert notice_hours(deviation) == 48


@pytest.mark.parametrize(("code", "hours"), OOS_NOTICE_HOURS.items())
def test_oos_notice_is_the_sooner_of_the_severity_and_oos_hours(approver, code, hours):
    lot = Lot.objects.filter(produced_by__sponsor__code=code).order_by("lot_number").first()

    result = lab_result_record(
        lot=lot,
        test="Dissolution",
        method="USP <711>",
        value="40",
        low_limit="80",
        unit="%",
        analyst=approver,
    )

    oos = Deviation.objects.get(lab_result=result)
    assert (oos.category, oos.severity) == ("oos", "major")
    assert notice_hours(oos) == hours


@pytest.mark.parametrize(
    ("code", "due"),
    [
        ("acme", datetime(2026, 6, 30, 10, tzinfo=UTC)),
        ("borealis", datetime(2026, 7, 15, 10, tzinfo=UTC)),
    ],
)
def test_investigation_summary_is_due_in_the_agreements_business_days(approver, code, due):
    """Acme allows 20 business days, Borealis the default 30; both skip Juneteenth and the
    observed Independence Day (Friday 3 July 2026)."""
    deviation = record(approver, code, discovered_at=datetime(2026, 6, 1, 10, tzinfo=UTC))

    summary = deadlines_of(deviation).get(kind="investigation_summary")

    assert summary.due_at == due
    assert summary.notify_at == due - timedelta(days=1)
