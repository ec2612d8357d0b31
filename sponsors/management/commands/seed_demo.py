"""Load the demo site: one plant operating five sponsors with different quality agreements, and
the demo users, then the documents, manufacturing and change-control demos. Everything is made
through the services at the time it claims: the site, its users and their access grants before
the first agreement takes effect, each agreement signed before its effective date. Idempotent: a
second run changes nothing."""

import os
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from batches import demo
from batches.demo import moment
from changecontrol import demo as change_demo
from documents import demo as document_demo
from qms.audit import audit_context
from qms.notifications import deadline_schedule
from sponsors import services
from sponsors.models import AccessGrant, Product, QualityAgreement, Role, Sponsor

DEMO_PASSWORD_DEFAULT = "demo-password"

N, A = "notify", "approve"

SPONSORS = [
    {
        "code": "acme",
        "name": "Acme Pharmaceuticals",
        "products": [
            ("ACM-AMX500", "Amoxicillin 500 mg capsules", Product.RegulatoryBasis.DRUG),
            ("ACM-IBU200", "Ibuprofen 200 mg tablets", Product.RegulatoryBasis.DRUG),
        ],
        "history": {"critical_deviation_notice_hours": 48, "major_deviation_notice_hours": 96},
        "terms": {
            "critical_deviation_notice_hours": 24,
            "major_deviation_notice_hours": 72,
            "oos_notice_hours": 48,
            "capa_notice_hours": 120,
            "release_authority": "cmo",
            "sponsor_closes_critical": True,
            "investigation_summary_business_days": 20,
        },
        "rules": {
            "supplier": (A, 60),
            "sop": (N, 30),
            "master_batch_record": (A, 30),
            "label_artwork": (A, 45),
            "process_parameter": (A, 30),
            "equipment": (N, 14),
        },
    },
    {
        "code": "borealis",
        "name": "Borealis Medical Devices",
        "products": [
            ("BOR-CATH7", "Central venous catheter 7 Fr", Product.RegulatoryBasis.DEVICE),
            ("BOR-GW035", "Guidewire 0.035 in", Product.RegulatoryBasis.DEVICE),
        ],
        "terms": {
            "critical_deviation_notice_hours": 48,
            "major_deviation_notice_hours": 120,
            "oos_notice_hours": 72,
            "release_authority": "sponsor",
            "sponsor_closes_major": True,
            "sponsor_closes_critical": True,
        },
        "rules": {
            "supplier": (A, 90),
            "material": (A, 90),
            "equipment": (A, 60),
            "process_parameter": (A, 60),
            "sop": (N, 14),
            "test_method": (A, 60),
            "facility": (A, 120),
        },
    },
    {
        "code": "cygnus",
        "name": "Cygnus Nutrition",
        "products": [
            ("CYG-VITD3", "Vitamin D3 2000 IU softgels", Product.RegulatoryBasis.SUPPLEMENT),
            ("CYG-OMEGA", "Omega-3 1000 mg softgels", Product.RegulatoryBasis.SUPPLEMENT),
        ],
        "terms": {
            "critical_deviation_notice_hours": 72,
            "major_deviation_notice_hours": 168,
            "release_authority": "conditional",
            "sponsor_closes_critical": True,
        },
        "rules": {
            "supplier": (N, 30),
            "material": (N, 30),
            "label_artwork": (A, 30),
            "master_batch_record": (N, 14),
        },
    },
    {
        "code": "draco",
        "name": "Draco Biotech",
        "products": [
            ("DRC-MAB10", "Dracomab 10 mg/mL injection", Product.RegulatoryBasis.DRUG),
            ("DRC-DIL5", "Sterile diluent 5 mL", Product.RegulatoryBasis.DRUG),
        ],
        "terms": {
            "critical_deviation_notice_hours": 24,
            "major_deviation_notice_hours": 48,
            "minor_deviation_notice_hours": 240,
            "oos_notice_hours": 24,
            "capa_notice_hours": 72,
            "release_authority": "cmo",
            "sponsor_closes_major": True,
            "sponsor_closes_critical": True,
        },
        "rules": {
            category: (A, 60)
            for category in (
                "supplier",
                "material",
                "equipment",
                "process_parameter",
                "sop",
                "master_batch_record",
                "label_artwork",
                "test_method",
                "facility",
            )
        },
    },
    {
        "code": "eos",
        "name": "Eos Consumer Health",
        "products": [
            ("EOS-MELA3", "Melatonin 3 mg tablets", Product.RegulatoryBasis.SUPPLEMENT),
            ("EOS-ZINC", "Zinc lozenges", Product.RegulatoryBasis.SUPPLEMENT),
        ],
        "terms": {
            "critical_deviation_notice_hours": None,
            "major_deviation_notice_hours": None,
            "release_authority": "sponsor",
            "sponsor_closes_critical": False,
        },
        "rules": {"label_artwork": (N, 30), "supplier": (N, 30)},
    },
]

CMO_USERS = [
    ("admin", "Ada", "Admin", None),
    ("qa", "Quinn", "Alvarez", Role.CMO_STAFF),
    ("qa-approver", "Priya", "Raman", Role.CMO_QA_APPROVER),
    ("operator", "Oscar", "Lindqvist", Role.CMO_STAFF),
]

HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)
CURRENT_START = datetime(2026, 1, 1, tzinfo=UTC)
# the site, its users and their grants exist before the first agreement takes effect
SETUP_AT = HISTORY_START - timedelta(days=45)
AGREEMENT_DRAFTED_BEFORE = timedelta(days=30)
AGREEMENT_SIGNED_BEFORE = timedelta(days=14)
AUDITOR_ACCESS = timedelta(days=365)


class Command(BaseCommand):
    help = "Load the demo site (five sponsors, agreements, users). Safe to run again."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT
        loaded_at = timezone.now()
        created = []
        with transaction.atomic(), audit_context(reason="demo data"), moment(SETUP_AT):
            users = {
                name: self._user(name, first, last, password, created)
                for name, first, last, _ in CMO_USERS
            }
            admin = users["admin"]
            if not admin.is_superuser:
                admin.is_superuser = admin.is_staff = True
                admin.save(update_fields=["is_superuser", "is_staff"])
            for spec in SPONSORS:
                sponsor = self._sponsor(spec, admin, created)
                for name, _first, _last, role in CMO_USERS:
                    if role is not None:
                        self._grant(users[name], sponsor, role, admin, loaded_at)
                for suffix, role, first in (
                    ("auditor", Role.SPONSOR_AUDITOR, "Audrey"),
                    ("approver", Role.SPONSOR_APPROVER, "Arthur"),
                ):
                    user = self._user(
                        f"{spec['code']}-{suffix}",
                        first,
                        spec["name"].split()[0],
                        password,
                        created,
                    )
                    if not hasattr(user, "profile"):
                        services.user_profile_set(user=user, sponsor=sponsor, by=admin)
                    self._grant(user, sponsor, role, admin, loaded_at)
        with audit_context(reason="demo data"):
            for spec in SPONSORS:
                sponsor = Sponsor.objects.get(code=spec["code"])
                self._agreements(spec, sponsor, users["qa-approver"], password, created)
                with moment(CURRENT_START, (admin,)):
                    self._deadline(sponsor, admin)
        manufacturing = document_demo.load() + demo.load() + change_demo.load()
        if created or manufacturing:
            summary = (
                f"{len(created)} sponsor records and {len(manufacturing)} manufacturing records"
            )
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {summary}."))
        else:
            self.stdout.write(self.style.SUCCESS("Demo data: nothing new, already loaded."))

    def _user(self, username, first, last, password, created):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username=username,
                password=password,
                first_name=first,
                last_name=last,
                email=f"{username}@demo.invalid",
            )
            created.append(f"user {username}")
        return user

    def _sponsor(self, spec, admin, created):
        sponsor = Sponsor.objects.filter(code=spec["code"]).first()
        if sponsor is None:
            sponsor = services.sponsor_create(
                code=spec["code"],
                name=spec["name"],
                contact_email=f"quality@{spec['code']}.demo.invalid",
                by=admin,
            )
            created.append(f"sponsor {sponsor.code}")
        for code, name, basis in spec["products"]:
            if not Product.objects.filter(sponsor=sponsor, code=code).exists():
                services.product_create(
                    sponsor=sponsor, code=code, name=name, regulatory_basis=basis, by=admin
                )
                created.append(f"product {code}")
        return sponsor

    def _grant(self, user, sponsor, role, admin, loaded_at):
        """A grant from the site's setup, so it is valid at every moment of the demo's history;
        an auditor's expires a year after the demo is loaded."""
        grants = AccessGrant.objects.filter(user=user, sponsor=sponsor, role=role)
        if grants.active(at=loaded_at).exists():
            return
        services.access_grant_create(
            user=user,
            sponsor=sponsor,
            role=role,
            by=admin,
            starts_at=SETUP_AT,
            expires_at=loaded_at + AUDITOR_ACCESS if role == Role.SPONSOR_AUDITOR else None,
            reason="demo access",
        )

    def _agreements(self, spec, sponsor, approver, password, created):
        """Each version drafted a month and signed two weeks before it takes effect."""
        if QualityAgreement.objects.filter(sponsor=sponsor).exists():
            return
        versions = []
        if spec.get("history"):
            versions.append((HISTORY_START, "2025", {**spec["terms"], **spec["history"]}))
        versions.append((CURRENT_START, "2026", spec["terms"]))
        for effective_from, year, terms in versions:
            with moment(effective_from - AGREEMENT_DRAFTED_BEFORE, (approver,)):
                agreement = services.quality_agreement_create_draft(
                    sponsor=sponsor,
                    by=approver,
                    reference=f"QA-{sponsor.code.upper()}-{year}",
                    rules=spec["rules"],
                    **terms,
                )
            with moment(effective_from - AGREEMENT_SIGNED_BEFORE, (approver,)):
                services.quality_agreement_make_effective(
                    agreement=agreement,
                    user=approver,
                    password=password,
                    effective_from=effective_from,
                )
            created.append(f"{agreement}")

    def _deadline(self, sponsor, admin):
        deadline_schedule(
            sponsor=sponsor,
            key=f"demo:{sponsor.code}:quality-review-2026",
            kind="product_quality_review",
            title=f"Annual product quality review 2026 due to {sponsor.name}",
            due_at=datetime(2027, 1, 31, tzinfo=UTC),
            notify_at=datetime(2027, 1, 17, tzinfo=UTC),
            recipient_roles=[Role.CMO_QA_APPROVER],
            by=admin,
        )
