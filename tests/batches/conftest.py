"""A small plant for the manufacturing-record tests: two sponsors, shared raw lots and shared
equipment, each product with an effective master batch record."""

from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from django.utils import timezone

from batches import services
from batches.models import Customer, Equipment, Material
from sponsors.models import Role
from suppliers.models import Supplier
from tests.factories import PASSWORD, ProductFactory, make_user


@dataclass
class Plant:
    sponsor_a: object
    sponsor_b: object
    qa: object  # CMO QA approver on both sponsors
    operator: object  # CMO staff on both sponsors
    verifier: object  # a second CMO person
    supplier: Supplier
    api: Material  # site-wide raw material
    excipient: Material
    product_a: object
    product_b: object
    finished_a: Material
    finished_b: Material
    tank: Equipment
    customers: list = field(default_factory=list)
    counter: list = field(default_factory=lambda: [0])

    def next(self, prefix: str) -> str:
        self.counter[0] += 1
        return f"{prefix}-{self.counter[0]:04d}"

    def receive(self, material, quantity="100", release=True):
        lot = services.lot_receive(
            material=material,
            lot_number=self.next("R"),
            quantity=quantity,
            supplier=self.supplier,
            by=self.operator,
            receipt_reference=self.next("GRN"),
        )
        if release:
            services.lot_disposition(lot=lot, user=self.qa, password=PASSWORD, release=True)
        return lot

    def run_batch(self, product, inputs, output_quantity="10", release=True, number=None):
        """Plan, start, consume `inputs` [(lot, qty)], record and verify every step, complete;
        release the output lot when asked. Returns (batch, output lot)."""
        batch = services.batch_plan(
            product=product, number=number or self.next("B"), by=self.operator
        )
        services.batch_start(batch=batch, by=self.operator)
        for lot, quantity in inputs:
            services.batch_consume(batch=batch, lot=lot, quantity=quantity, by=self.operator)
        for step in batch.mbr.steps.all():
            value = step.low_limit if step.low_limit is not None else None
            executed = services.batch_record_step(
                batch=batch, step=step, performed_by=self.operator, value=value
            )
            services.batch_verify_step(
                executed=executed, verified_by=self.verifier, password=PASSWORD
            )
        lot = services.batch_complete(
            batch=batch,
            output_lot_number=self.next("L"),
            quantity=output_quantity,
            by=self.operator,
        )
        if release:
            self.release(batch)
            lot.refresh_from_db()
        return batch, lot

    def with_bom(self, *materials, product=None):
        """Put in force a new MBR version of `product` (A by default) whose bill of materials
        also lists `materials`, so that its batches may consume them."""
        product = product or self.product_a
        current = services.mbr_in_force(product)
        content = services.mbr_content(current)
        content["bom"] += [(material, "1", material.unit) for material in materials]
        mbr = services.mbr_create_draft(
            product=product, by=self.operator, based_on=current, **content
        )
        services.mbr_review(mbr=mbr, user=self.verifier, password=PASSWORD)
        services.mbr_approve(mbr=mbr, user=self.qa, password=PASSWORD)
        services.mbr_make_effective(
            mbr=mbr, by=self.qa, effective_from=timezone.now() - timedelta(hours=1)
        )
        return mbr

    def package(self, batch, label_version="LBL-1 v1"):
        """Packaging evidence of a batch: signed line clearance and a balanced reconciliation."""
        packaging = services.packaging_start(batch=batch, label_version=label_version, by=self.qa)
        services.packaging_clear_line(packaging=packaging, user=self.qa, password=PASSWORD)
        services.packaging_reconcile(
            packaging=packaging, issued=100, used=90, destroyed=5, returned=5, by=self.operator
        )
        return packaging

    def sponsor_approver(self, sponsor):
        approvers = self.__dict__.setdefault("_approvers", {})
        if sponsor.pk not in approvers:
            approvers[sponsor.pk] = make_user(
                sponsor=sponsor, role=Role.SPONSOR_APPROVER, username=f"plant-sp-{sponsor.code}"
            )
        return approvers[sponsor.pk]

    def release(self, batch):
        """Release a completed batch and its output lots through its disposition: packaging
        evidence when missing, CMO QA's signature, and the sponsor approver's where the
        agreement (or its absence) reserves the release to the sponsor."""
        from batches.disposition import batch_disposition
        from batches.models import Batch, PackagingRecord

        if not PackagingRecord.objects.filter(batch=batch).exists():
            self.package(batch)
        batch_disposition(batch=batch, user=self.qa, password=PASSWORD, release=True)
        batch.refresh_from_db()
        if batch.status != Batch.Status.RELEASED:
            approver = self.sponsor_approver(batch.sponsor)
            batch_disposition(batch=batch, user=approver, password=PASSWORD, release=True)
            batch.refresh_from_db()
        return batch


def _mbr(product, materials, qa, author):
    mbr = services.mbr_create_draft(
        product=product,
        title=f"{product.name} manufacture",
        batch_size="100",
        batch_unit="ea",
        theoretical_yield="10",
        bom=[(material, "5", material.unit) for material in materials],
        steps=[
            {
                "title": "Dispense",
                "parameter": "Weight",
                "unit": "kg",
                "low_limit": "5",
                "high_limit": "6",
            },
            {
                "title": "Blend",
                "parameter": "Time",
                "unit": "min",
                "low_limit": "10",
                "high_limit": "15",
            },
        ],
        by=author,
    )
    services.mbr_review(mbr=mbr, user=qa, password=PASSWORD)
    services.mbr_approve(mbr=mbr, user=qa, password=PASSWORD)
    services.mbr_make_effective(mbr=mbr, by=qa, effective_from=timezone.now() - timedelta(days=1))
    return mbr


@pytest.fixture
def plant(sponsor_a, sponsor_b):
    qa = make_user(sponsor=sponsor_a, role=Role.CMO_QA_APPROVER, username="plant-qa")
    operator = make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="plant-operator")
    verifier = make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="plant-verifier")
    from sponsors.services import access_grant_create

    for user, role in (
        (qa, Role.CMO_QA_APPROVER),
        (operator, Role.CMO_STAFF),
        (verifier, Role.CMO_STAFF),
    ):
        access_grant_create(user=user, sponsor=sponsor_b, role=role)
    supplier = Supplier.objects.create(code="SUP-1", name="Chemco GmbH", status="approved")
    api = Material.objects.create(code="RM-API", name="Active ingredient", kind="raw", unit="kg")
    excipient = Material.objects.create(code="RM-EXC", name="Lactose", kind="raw", unit="kg")
    product_a = ProductFactory(sponsor=sponsor_a, code="ALP-100", name="Alphacillin 100 mg")
    product_b = ProductFactory(sponsor=sponsor_b, code="ZZOTHER-1", name="ZZOTHER secret product")
    finished_a = Material.objects.create(
        code="FG-ALP-100", name="Alphacillin 100 mg", kind="finished", unit="ea", product=product_a
    )
    finished_b = Material.objects.create(
        code="FG-ZZOTHER-1", name="ZZOTHER tablets", kind="finished", unit="ea", product=product_b
    )
    _mbr(product_a, [api, excipient], qa, operator)
    _mbr(product_b, [api], qa, operator)
    tank = Equipment.objects.create(
        code="TANK-4",
        name="Tank 4",
        kind="mixing tank",
        qualified_until=date.today() + timedelta(days=365),
    )
    customers = [
        Customer.objects.create(code="CUST-1", name="Northwind Wholesale"),
        Customer.objects.create(code="CUST-2", name="ZZOTHER Pharmacy Chain"),
    ]
    return Plant(
        sponsor_a,
        sponsor_b,
        qa,
        operator,
        verifier,
        supplier,
        api,
        excipient,
        product_a,
        product_b,
        finished_a,
        finished_b,
        tank,
        customers,
    )
