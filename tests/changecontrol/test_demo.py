"""The change-control demo: loaded by `seed_demo` after the manufacturing record, idempotent,
with a three-sponsor SOP change awaiting Draco's approval, an effective change that put a new
SOP in force, and a draft."""

import pytest
from django.core.management import call_command

from changecontrol import demo
from changecontrol.models import ChangeProduct, ChangeRequest, ChangeTask, SponsorObligation
from qms.models import AuditEvent, Deadline

pytestmark = pytest.mark.django_db

MODELS = [ChangeRequest, ChangeProduct, SponsorObligation, ChangeTask, Deadline]


def _counts():
    return {model.__name__: model.objects.count() for model in MODELS}


def test_seed_demo_loads_the_change_requests_once(settings):
    # given
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo")
    first = _counts()
    head = AuditEvent.objects.order_by("-seq").first().seq
    # when
    again = demo.load()
    call_command("seed_demo")
    # then
    assert again == []
    assert _counts() == first
    assert AuditEvent.objects.order_by("-seq").first().seq == head
    awaiting = ChangeRequest.objects.get(title=demo.AWAITING)
    assert awaiting.status == ChangeRequest.Status.AWAITING_SPONSORS
    assert {
        o.sponsor.code: (o.kind, o.status) for o in awaiting.obligations.select_related("sponsor")
    } == {
        "acme": ("notify", "pending"),
        "cygnus": ("none", "not_required"),
        "draco": ("approve", "pending"),
    }
    effective = ChangeRequest.objects.get(title=demo.EFFECTIVE)
    assert effective.status == ChangeRequest.Status.EFFECTIVE
    version = effective.document_version
    assert (str(version), version.status) == (f"{demo.SOP_NUMBER} v1", "effective")
    assert version.effective_from == effective.effective_at
    assert sorted(effective.products.values_list("code", flat=True)) == ["CYG-VITD3", "EOS-MELA3"]
    assert not effective.tasks.filter(completed_at__isnull=True).exists()
    assert ChangeRequest.objects.get(title=demo.DRAFT).status == ChangeRequest.Status.DRAFT
