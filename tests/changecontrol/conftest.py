"""Three sponsors named like the demo's, whose agreements differ for the same change category:
for an SOP change Acme must approve, Borealis must be notified 30 days ahead and Cygnus needs
nothing; for a process-parameter change Acme and Borealis must both approve."""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone

from changecontrol import services as cs
from sponsors.models import Role
from sponsors.services import (
    access_grant_create,
    quality_agreement_create_draft,
    quality_agreement_make_effective,
)
from tests.batches.conftest import plant  # noqa: F401  (the small plant, for version tests)
from tests.factories import PASSWORD, ProductFactory, SponsorFactory, make_user

RULES = {
    "acme": {"sop": ("approve", 30), "process_parameter": ("approve", 30)},
    "borealis": {"sop": ("notify", 30), "process_parameter": ("approve", 60)},
    "cygnus": {},
}
NAMES = {
    "acme": "Acme Pharmaceuticals",
    "borealis": "Borealis Medical Devices",
    "cygnus": "Cygnus Nutrition",
}
PRODUCTS = {
    "acme": ("ACM-IBU200", "Ibuprofen 200 mg tablets"),
    "borealis": ("BOR-CATH7", "Central venous catheter 7 Fr"),
    "cygnus": ("CYG-VITD3", "Vitamin D3 2000 IU softgels"),
}


@dataclass
class Three:
    sponsors: dict
    products: dict
    agreements: dict
    qa: object  # CMO QA approver on all three
    staff: object  # CMO staff on all three
    approvers: dict  # sponsor approver of each sponsor
    auditors: dict  # sponsor auditor of each sponsor
    counter: list = field(default_factory=lambda: [0])

    def draft(self, *, codes=("acme", "borealis", "cygnus"), category="sop", by=None, **kw):
        self.counter[0] += 1
        kw.setdefault("subject_text", "SOP-QA-014 Line clearance, revision 5")
        kw.setdefault("proposed_effective_date", timezone.localdate() + timedelta(days=60))
        return cs.change_create(
            title=kw.pop("title", f"Line clearance revision {self.counter[0]}"),
            description=kw.pop("description", "Adds a second-person check of the line."),
            category=category,
            products=[self.products[code] for code in codes],
            by=by or self.staff,
            **kw,
        )

    def assessed(self, **kw):
        change = self.draft(**kw)
        return cs.change_assess(
            change=change,
            by=self.staff,
            severity=3,
            probability=2,
            detectability=2,
            rationale="Procedural change, detected at line clearance.",
        )

    def submitted(self, **kw):
        return cs.change_submit(change=self.assessed(**kw), by=self.staff)

    def obligation(self, change, code):
        return change.obligations.get(sponsor=self.sponsors[code])

    def decide(self, change, code, approve=True, comment="", **kw):
        return cs.obligation_decide(
            obligation=self.obligation(change, code),
            user=self.approvers[code],
            password=PASSWORD,
            approve=approve,
            comment=comment,
            **kw,
        )


def _agreement(sponsor, by, rules, **terms):
    draft = quality_agreement_create_draft(sponsor=sponsor, by=by, rules=rules, **terms)
    quality_agreement_make_effective(
        agreement=draft,
        user=by,
        password=PASSWORD,
        effective_from=timezone.now() - timedelta(days=30),
    )
    return draft


@pytest.fixture
def three(db):
    sponsors = {code: SponsorFactory(code=code, name=name) for code, name in NAMES.items()}
    qa = make_user(sponsor=sponsors["acme"], role=Role.CMO_QA_APPROVER, username="quinn")
    staff = make_user(sponsor=sponsors["acme"], role=Role.CMO_STAFF, username="oscar")
    for code in ("borealis", "cygnus"):
        access_grant_create(user=qa, sponsor=sponsors[code], role=Role.CMO_QA_APPROVER)
        access_grant_create(user=staff, sponsor=sponsors[code], role=Role.CMO_STAFF)
    products, agreements, approvers, auditors = {}, {}, {}, {}
    for code, sponsor in sponsors.items():
        product_code, name = PRODUCTS[code]
        products[code] = ProductFactory(sponsor=sponsor, code=product_code, name=name)
        agreements[code] = _agreement(sponsor, qa, RULES[code])
        approvers[code] = make_user(
            sponsor=sponsor,
            role=Role.SPONSOR_APPROVER,
            username=f"{code}-approver",
            first_name="Arthur",
            last_name=code.title(),
        )
        auditors[code] = make_user(
            sponsor=sponsor, role=Role.SPONSOR_AUDITOR, username=f"{code}-auditor"
        )
    return Three(sponsors, products, agreements, qa, staff, approvers, auditors)
