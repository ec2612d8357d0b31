"""`manage.py seed_demo` loads the five-sponsor demo and a second run changes nothing."""

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from qms.models import AuditEvent
from qms.signatures import signatures_for
from qms.tenancy import sponsor_ids_for
from sponsors.models import QualityAgreement, ReleaseAuthority, Sponsor
from sponsors.selectors import agreement_in_force

pytestmark = pytest.mark.django_db


def _counts():
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label in {"auth", "guardian", "sponsors", "qms"}
    }


def test_seed_demo_twice_yields_the_same_counts(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo")
    first = _counts()
    head = AuditEvent.objects.order_by("-seq").first().seq

    call_command("seed_demo")

    assert _counts() == first
    assert AuditEvent.objects.order_by("-seq").first().seq == head


def test_seed_demo_builds_five_sponsors_with_their_agreements():
    call_command("seed_demo")
    expected = {
        "acme": (24, ReleaseAuthority.CMO),
        "borealis": (48, ReleaseAuthority.SPONSOR),
        "cygnus": (72, ReleaseAuthority.CONDITIONAL),
        "draco": (24, ReleaseAuthority.CMO),
        "eos": (None, ReleaseAuthority.SPONSOR),
    }
    assert set(Sponsor.objects.values_list("code", flat=True)) == set(expected)
    obligations = set()
    for code, (critical_hours, authority) in expected.items():
        agreement = agreement_in_force(sponsor=Sponsor.objects.get(code=code))
        assert (agreement.critical_deviation_notice_hours, agreement.release_authority) == (
            critical_hours,
            authority,
        )
        [(signature, check)] = signatures_for(agreement)
        assert check.is_valid and signature.meaning == "approved"
        obligations |= set(agreement.change_rules.values_list("obligation", flat=True))
    assert {"notify", "approve"} <= obligations
    assert QualityAgreement.objects.filter(status="superseded").exists()


def test_seed_demo_users_and_roles():
    call_command("seed_demo")
    users = {u.username: u for u in get_user_model().objects.all()}
    every = set(Sponsor.objects.values_list("pk", flat=True))
    assert users["admin"].is_superuser
    assert sponsor_ids_for(users["qa"], "change") == every
    assert sponsor_ids_for(users["qa-approver"], "approve") == every
    assert sponsor_ids_for(users["operator"], "view") == every
    for sponsor in Sponsor.objects.all():
        assert sponsor_ids_for(users[f"{sponsor.code}-auditor"], "view") == {sponsor.pk}
        assert sponsor_ids_for(users[f"{sponsor.code}-approver"], "sponsor_approve") == {sponsor.pk}
    assert users["acme-auditor"].check_password("demo-password")
