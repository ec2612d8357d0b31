"""Demo manufacturing record for `manage.py seed_demo`: shared raw lots and Tank 4, five products
with effective MBRs, four months of executed batches, evidence, releases and shipments, all made
through the services at the times they claim (the clock is moved to each moment, so signatures
and every other time a service takes are those of the history). Produced lots are released only
through their batch's disposition, by CMO QA and, where the sponsor's agreement requires it, by
the sponsor's approver. Idempotent: a second `load()` creates and changes nothing."""

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import time_machine
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from qms.audit import audit_context
from qms.notifications import deadlines_send_due
from qms.tenancy import forget_scope
from sponsors.models import Product
from suppliers.models import Supplier

from . import services
from .disposition import batch_disposition
from .models import Batch, Customer, Equipment, Lot, MasterBatchRecord, Material

DEMO_PASSWORD_DEFAULT = "demo-password"
GS1_COMPANY_PREFIX = "0614141"
BATCHES_PER_PRODUCT = 4
SITE_SETUP_DAYS_AGO = 140
RAW_RECEIVED_DAYS_AGO = 135
MBR_EFFECTIVE_DAYS_AGO = 125
# days after a batch's completion
TESTED_AFTER_DAYS = 2
RELEASE_AFTER_DAYS = 7
SPONSOR_RELEASE_AFTER_DAYS = 9
SHIP_AFTER_DAYS = 11
NOTICE_SWEEP_AFTER = timedelta(minutes=5)

SUPPLIERS = [
    ("SUP-RHF", "Rhine Fine Chemicals GmbH", "DE"),
    ("SUP-HEX", "Hudson Excipients Inc.", "US"),
    ("SUP-NPK", "Nordic Packaging AB", "SE"),
    ("SUP-PMC", "Polymed Components Ltd", "IE"),
]

# code, name, kind, unit, supplier
SITE_MATERIALS = [
    ("RM-IBU", "Ibuprofen USP", "raw", "kg", "SUP-RHF"),
    ("RM-MELA", "Melatonin", "raw", "kg", "SUP-RHF"),
    ("RM-D3", "Cholecalciferol concentrate 1.0 MIU/g", "raw", "kg", "SUP-RHF"),
    ("RM-MABDS", "Dracomab drug substance 50 mg/mL", "raw", "L", "SUP-RHF"),
    ("RM-MCC", "Microcrystalline cellulose PH-102", "raw", "kg", "SUP-HEX"),
    ("RM-MGST", "Magnesium stearate", "raw", "kg", "SUP-HEX"),
    ("RM-GEL", "Gelatin 200 bloom", "raw", "kg", "SUP-HEX"),
    ("RM-PUR", "Polyurethane resin, medical grade", "raw", "kg", "SUP-PMC"),
    ("PKG-BLIS", "PVC/PVdC blister film", "packaging", "kg", "SUP-NPK"),
    ("PKG-HDPE", "HDPE bottle 75 cc with closure", "packaging", "ea", "SUP-NPK"),
    ("PKG-VIAL", "Type I glass vial 2R", "packaging", "ea", "SUP-NPK"),
    ("PKG-POUCH", "Tyvek peel pouch", "packaging", "ea", "SUP-PMC"),
]

# code, name, kind, location, qualified for (days from today), status
EQUIPMENT = [
    ("TANK-4", "Tank 4", "Mixing tank 500 L", "Building 2, room 204", 240, "available"),
    ("PRESS-2", "Tablet press 2", "Rotary tablet press", "Building 2, room 210", 300, "available"),
    (
        "ENC-1",
        "Softgel encapsulator 1",
        "Softgel encapsulation",
        "Building 3, room 301",
        200,
        "available",
    ),
    (
        "FILL-3",
        "Aseptic filling line 3",
        "Isolator filling line",
        "Building 5, grade A",
        150,
        "available",
    ),
    (
        "EXT-1",
        "Tubing extruder 1",
        "Single-screw extruder",
        "Building 4, room 110",
        180,
        "available",
    ),
    ("DRY-2", "Fluid bed dryer 2", "Fluid bed dryer", "Building 2, room 206", -12, "available"),
    ("MILL-1", "Cone mill 1", "Conical screen mill", "Building 2, room 208", 90, "maintenance"),
]

CLEANING_METHODS = {
    "TANK-4": "CIP: alkaline wash, purified-water rinse, TOC swab",
    "PRESS-2": "Dismantle, wash tooling, IPA wipe, visual inspection",
    "ENC-1": "Wash dies and wedge, hot-water rinse, visual inspection",
    "FILL-3": "CIP/SIP of product path, isolator VHP cycle",
    "EXT-1": "Purge with cleaning compound, die wipe",
}

CUSTOMERS = [
    ("CUS-NWD", "Northwind Wholesale", "US", "0614141000104"),
    ("CUS-CTS", "Contoso Health Distribution", "DE", "0614141000111"),
    ("CUS-FAB", "Fabrikam Pharmacy Chain", "GB", "0614141000128"),
    ("CUS-TSP", "Tailspin Hospital Group", "US", "0614141000135"),
    ("CUS-ADV", "Adventure Works Medical Supply", "CA", "0614141000142"),
    ("CUS-WWI", "Wide World Importers Pharma", "NL", "0614141000159"),
]


@dataclass(frozen=True)
class Plan:
    """One sponsor's demo product: its recipe, equipment, tests and customers."""

    sponsor: str
    product: str
    prefix: str
    offset_days: int
    batch_size: str
    bom: list
    steps: list
    equipment: list
    tests: list
    customers: list
    label: str
    oos_batch: int | None = None


PLANS = [
    Plan(
        sponsor="acme",
        product="ACM-IBU200",
        prefix="ACM",
        offset_days=0,
        batch_size="100000",
        bom=[("RM-IBU", "20"), ("RM-MCC", "8"), ("RM-MGST", "0.5"), ("PKG-BLIS", "12")],
        steps=[
            ("Dispense ibuprofen", "Net weight", "kg", "19.8", "20.2"),
            ("Granulate in Tank 4", "Binder solution temperature", "°C", "20", "30"),
            ("Compress on Tablet press 2", "Tablet hardness", "kp", "8", "12"),
            ("Blister and seal", "Seal temperature", "°C", "180", "200"),
        ],
        equipment=["TANK-4", "PRESS-2"],
        tests=[
            ("Assay", "HPLC, USP <621>", "95", "105", "%"),
            ("Dissolution at 30 min", "USP <711>, apparatus 2", "80", None, "%"),
        ],
        customers=["CUS-NWD", "CUS-FAB"],
        label="LBL-IBU200 v4",
    ),
    Plan(
        sponsor="borealis",
        product="BOR-CATH7",
        prefix="BOR",
        offset_days=5,
        batch_size="2000",
        bom=[("RM-PUR", "15"), ("PKG-POUCH", "2100")],
        steps=[
            ("Extrude tubing on Extruder 1", "Outer diameter", "mm", "2.30", "2.36"),
            ("Bond hub", "Hub pull force", "N", "15", None),
            ("Pouch and seal", "Seal strength", "N/15 mm", "1.5", "4.0"),
        ],
        equipment=["EXT-1"],
        tests=[
            ("Tensile strength", "ISO 10555-1 Annex B", "15", None, "N"),
            ("Bioburden", "ISO 11737-1", None, "100", "CFU/device"),
        ],
        customers=["CUS-TSP", "CUS-ADV"],
        label="LBL-CATH7 v2",
    ),
    Plan(
        sponsor="cygnus",
        product="CYG-VITD3",
        prefix="CYG",
        offset_days=10,
        batch_size="150000",
        bom=[("RM-D3", "0.3"), ("RM-GEL", "25"), ("PKG-HDPE", "1500")],
        steps=[
            ("Prepare fill solution", "Solution temperature", "°C", "25", "35"),
            ("Encapsulate on Encapsulator 1", "Fill weight", "mg", "245", "255"),
            ("Tumble dry", "Drying time", "h", "24", "48"),
        ],
        equipment=["ENC-1"],
        tests=[
            ("Vitamin D3 content", "HPLC, USP <2040>", "90", "125", "% of label"),
            ("Disintegration", "USP <2040>", None, "30", "min"),
        ],
        customers=["CUS-NWD", "CUS-CTS"],
        label="LBL-VITD3 v7",
    ),
    Plan(
        sponsor="draco",
        product="DRC-MAB10",
        prefix="DRC",
        offset_days=15,
        batch_size="5000",
        bom=[("RM-MABDS", "10"), ("PKG-VIAL", "5200")],
        steps=[
            ("Formulate bulk", "pH", "", "5.8", "6.2"),
            ("Sterile filtration", "Filter bubble point", "psi", "50", None),
            ("Aseptic fill on Filling line 3", "Fill volume", "mL", "1.05", "1.15"),
            ("Visual inspection", "Reject rate", "%", "0", "2"),
        ],
        equipment=["FILL-3"],
        tests=[
            ("Protein concentration", "UV A280", "9.5", "10.5", "mg/mL"),
            ("Bacterial endotoxins", "USP <85>, kinetic chromogenic", None, "0.5", "EU/mL"),
        ],
        customers=["CUS-TSP", "CUS-WWI"],
        label="LBL-MAB10 v3",
        oos_batch=1,
    ),
    Plan(
        sponsor="eos",
        product="EOS-MELA3",
        prefix="EOS",
        offset_days=20,
        batch_size="200000",
        bom=[("RM-MELA", "0.6"), ("RM-MCC", "30"), ("RM-MGST", "0.3"), ("PKG-BLIS", "10")],
        steps=[
            ("Dispense melatonin", "Net weight", "kg", "0.59", "0.61"),
            ("Blend in Tank 4", "Blend time", "min", "15", "20"),
            ("Compress on Tablet press 2", "Tablet hardness", "kp", "5", "8"),
            ("Blister and seal", "Seal temperature", "°C", "180", "200"),
        ],
        equipment=["TANK-4", "PRESS-2"],
        tests=[
            ("Assay", "HPLC, USP <621>", "90", "110", "%"),
            ("Disintegration", "USP <701>", None, "15", "min"),
        ],
        customers=["CUS-FAB", "CUS-CTS"],
        label="LBL-MELA3 v1",
    ),
]

SHARED_RAW_LOT = "RL-MCC-001"


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a GTIN or GLN body."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _gtin(index: int) -> str:
    body = f"0{GS1_COMPANY_PREFIX}{index:05d}"
    return body + gs1_check_digit(body)


@contextmanager
def moment(at: datetime, users=()) -> Iterator[None]:
    """Run the services inside as at `at`: every time they take from the clock (a signature's
    signed time, a default creation time, a deadline) is `at`. The users' memoised sponsor
    scope is dropped on the way in and out, so their access grants are checked at `at`. The
    audit trail keeps the database server's clock: it records when the data was entered."""
    if at > timezone.now():
        raise RuntimeError(f"The demo cannot act in the future ({at:%Y-%m-%d %H:%M} UTC).")
    with time_machine.travel(at, tick=False):
        for user in users:
            forget_scope(user)
        try:
            yield
        finally:
            for user in users:
                forget_scope(user)


def _raw_lot_number(code: str) -> str:
    return f"RL-{code.split('-', 1)[1]}-001"


def _between(low, high, share: float) -> Decimal:
    """A value inside the limits (at `share` of the way from low to high)."""
    if low is not None and high is not None:
        low, high = Decimal(low), Decimal(high)
        return (low + (high - low) * Decimal(str(share))).quantize(Decimal("0.001"))
    if low is not None:
        return (Decimal(low) * Decimal(str(1.1 + share / 10))).quantize(Decimal("0.01"))
    return (Decimal(high) * Decimal(str(0.2 + share / 5))).quantize(Decimal("0.001"))


class _Loader:
    def __init__(self, stdout):
        self.stdout = stdout
        self.created: list[str] = []
        self.now = timezone.now().replace(second=0, microsecond=0)
        User = get_user_model()
        try:
            self.operator = User.objects.get(username="operator")
            self.qa = User.objects.get(username="qa")
            self.approver = User.objects.get(username="qa-approver")
        except User.DoesNotExist as missing:
            raise RuntimeError(
                "The demo users do not exist: run `manage.py seed_demo` first."
            ) from missing
        self.sponsor_approvers = {
            user.username.removesuffix("-approver"): user
            for user in User.objects.filter(
                username__in=[f"{plan.sponsor}-approver" for plan in PLANS]
            )
        }
        self.password = os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT

    def note(self, name: str) -> None:
        self.created.append(name)

    def day(self, days_ago: int, hour: int = 6) -> datetime:
        return (self.now - timedelta(days=days_ago)).replace(hour=hour, minute=0)

    def at(self, when: datetime):
        """The services inside act at `when`, with every demo user's grants checked then."""
        users = (self.operator, self.qa, self.approver, *self.sponsor_approvers.values())
        return moment(when, users)

    def is_due(self, when: datetime) -> bool:
        """Has the demo's history reached `when`? What lies in the future is not done yet."""
        return when <= self.now

    def sponsor_approver(self, code: str):
        if code not in self.sponsor_approvers:
            raise RuntimeError(
                f"The demo user {code}-approver does not exist: run `manage.py seed_demo` first."
            )
        return self.sponsor_approvers[code]

    def run(self) -> list[str]:
        with transaction.atomic(), audit_context(reason="demo data"):
            with self.at(self.day(SITE_SETUP_DAYS_AGO)), audit_context(actor=self.qa):
                suppliers = self.suppliers()
                materials = self.site_materials()
                self.finished_materials()
                equipment = self.equipment()
                customers = self.customers()
            lots = self.raw_lots(materials, suppliers)
            for plan in PLANS:
                self.mbr(plan, materials)
            for when, plan, index in self.schedule():
                self.batch(plan, index, when, lots, equipment, customers)
        if self.stdout is not None:
            summary = f"{len(self.created)} records" if self.created else "nothing new"
            self.stdout.write(f"Manufacturing record demo: {summary}.")
        return self.created

    def suppliers(self) -> dict[str, Supplier]:
        found = {}
        for index, (code, name, country) in enumerate(SUPPLIERS, start=1):
            supplier = Supplier.objects.filter(code=code).first()
            if supplier is None:
                body = f"{GS1_COMPANY_PREFIX}{index + 50:05d}"
                supplier = Supplier.objects.create(
                    code=code,
                    name=name,
                    country=country,
                    gln=body + gs1_check_digit(body),
                    status=Supplier.Status.APPROVED,
                )
                self.note(f"supplier {code}")
            found[code] = supplier
        return found

    def site_materials(self) -> dict[str, Material]:
        found = {}
        for code, name, kind, unit, _supplier in SITE_MATERIALS:
            material = Material.objects.filter(code=code).first()
            if material is None:
                material = Material.objects.create(code=code, name=name, kind=kind, unit=unit)
                self.note(f"material {code}")
            found[code] = material
        return found

    def finished_materials(self) -> None:
        products = Product.objects.filter(sponsor__code__in=[p.sponsor for p in PLANS])
        if not products.exists():
            raise RuntimeError("The demo sponsors do not exist: run `manage.py seed_demo` first.")
        for index, product in enumerate(products.order_by("code"), start=1):
            code = f"FG-{product.code}"
            if not Material.objects.filter(code=code).exists():
                Material.objects.create(
                    code=code,
                    name=product.name,
                    kind=Material.Kind.FINISHED,
                    unit="ea",
                    gtin=_gtin(index),
                    product=product,
                )
                self.note(f"material {code}")

    def equipment(self) -> dict[str, Equipment]:
        found = {}
        today = self.now.date()
        for code, name, kind, location, qualified_for, status in EQUIPMENT:
            item = Equipment.objects.filter(code=code).first()
            if item is None:
                item = Equipment.objects.create(
                    code=code,
                    name=name,
                    kind=kind,
                    location=location,
                    qualified_until=today + timedelta(days=qualified_for),
                    status=status,
                )
                self.note(f"equipment {code}")
            found[code] = item
        return found

    def customers(self) -> dict[str, Customer]:
        found = {}
        for code, name, country, gln in CUSTOMERS:
            customer = Customer.objects.filter(code=code).first()
            if customer is None:
                customer = Customer.objects.create(code=code, name=name, country=country, gln=gln)
                self.note(f"customer {code}")
            found[code] = customer
        return found

    def raw_lots(self, materials, suppliers) -> dict[str, Lot]:
        """Every site lot received on one day, tested, and released by its own disposition
        before the first batch consumes it."""
        needed: dict[str, Decimal] = {}
        for plan in PLANS:
            for code, quantity in plan.bom:
                needed[code] = needed.get(code, Decimal(0)) + Decimal(quantity)
        lots = {}
        received_at = self.day(RAW_RECEIVED_DAYS_AGO, hour=9)
        tested_at = received_at + timedelta(days=2)
        released_at = received_at + timedelta(days=3)
        for index, (code, _name, kind, _unit, supplier) in enumerate(SITE_MATERIALS, start=1):
            number = _raw_lot_number(code)
            lot = Lot.objects.filter(lot_number=number).first()
            if lot is None:
                quantity = math.ceil(needed[code] * BATCHES_PER_PRODUCT * Decimal("1.25"))
                with self.at(received_at):
                    lot = services.lot_receive(
                        material=materials[code],
                        lot_number=number,
                        quantity=quantity,
                        supplier=suppliers[supplier],
                        by=self.operator,
                        supplier_lot_number=f"{supplier[4:]}{2600 + index * 7}",
                        receipt_reference=f"GRN-{index:04d}",
                        received_at=received_at,
                        expires_on=(received_at + timedelta(days=3 * 365)).date(),
                    )
                if kind == Material.Kind.RAW:
                    with self.at(tested_at):
                        services.lab_result_record(
                            lot=lot,
                            test="Assay",
                            method="Per supplier CoA, confirmed by HPLC",
                            low_limit="98",
                            high_limit="102",
                            unit="%",
                            value=_between("98", "102", 0.4 + index / 40),
                            analyst=self.qa,
                            tested_at=tested_at,
                        )
                with self.at(released_at):
                    services.lot_disposition(
                        lot=lot, user=self.approver, password=self.password, release=True
                    )
                lot.refresh_from_db()
                self.note(f"lot {number}")
            lots[code] = lot
        return lots

    def mbr(self, plan: Plan, materials) -> None:
        """Written by QA, reviewed by production, approved by the QA approver, in force before
        the first batch is planned."""
        product = Product.objects.get(code=plan.product)
        if MasterBatchRecord.objects.filter(product=product).exists():
            return
        with self.at(self.day(MBR_EFFECTIVE_DAYS_AGO + 5)):
            mbr = services.mbr_create_draft(
                product=product,
                title=f"{product.name}: manufacture and packaging",
                batch_size=plan.batch_size,
                batch_unit="ea",
                theoretical_yield=plan.batch_size,
                bom=[
                    (materials[code], quantity, materials[code].unit) for code, quantity in plan.bom
                ],
                steps=[
                    {
                        "title": title,
                        "parameter": parameter,
                        "unit": unit,
                        "low_limit": low,
                        "high_limit": high,
                        "sop_reference": f"SOP-{plan.prefix}-{number:03d}",
                    }
                    for number, (title, parameter, unit, low, high) in enumerate(
                        plan.steps, start=1
                    )
                ],
                by=self.qa,
            )
        with self.at(self.day(MBR_EFFECTIVE_DAYS_AGO + 3)):
            services.mbr_review(mbr=mbr, user=self.operator, password=self.password)
        with self.at(self.day(MBR_EFFECTIVE_DAYS_AGO + 2)):
            services.mbr_approve(mbr=mbr, user=self.approver, password=self.password)
        effective_from = self.day(MBR_EFFECTIVE_DAYS_AGO)
        with self.at(effective_from):
            services.mbr_make_effective(mbr=mbr, by=self.approver, effective_from=effective_from)
        self.note(f"{mbr}")

    def schedule(self):
        """Every demo batch with its start, oldest first, so shared equipment sees them in
        order."""
        runs = []
        for plan in PLANS:
            for index in range(BATCHES_PER_PRODUCT):
                days_ago = 118 - plan.offset_days - 30 * index
                runs.append((self.day(days_ago), plan, index))
        return sorted(runs, key=lambda run: run[0])

    def batch(self, plan: Plan, index: int, start: datetime, lots, equipment, customers) -> None:
        number = f"{plan.prefix}-B{index + 1:03d}"
        if Batch.objects.filter(number=number).exists():
            return
        product = Product.objects.get(code=plan.product)
        operator, qa = self.operator, self.qa
        planned_at = start - timedelta(days=2)
        with self.at(planned_at):
            batch = services.batch_plan(
                product=product, number=number, by=operator, planned_at=planned_at
            )
        with self.at(start):
            services.batch_start(batch=batch, by=operator, started_at=start)
        in_use_at = start + timedelta(minutes=20)
        with self.at(in_use_at):
            for code in plan.equipment:
                services.equipment_use_start(
                    batch=batch, equipment=equipment[code], by=operator, at=in_use_at
                )
        consumed_at = start + timedelta(minutes=30)
        with self.at(consumed_at):
            for code, quantity in plan.bom:
                services.batch_consume(
                    batch=batch, lot=lots[code], quantity=quantity, by=operator, at=consumed_at
                )
        for step in batch.mbr.steps.all():
            performed_at = start + timedelta(hours=step.sequence)
            with self.at(performed_at):
                executed = services.batch_record_step(
                    batch=batch,
                    step=step,
                    performed_by=operator,
                    value=_between(step.low_limit, step.high_limit, 0.35 + 0.1 * index),
                    at=performed_at,
                )
            verified_at = performed_at + timedelta(minutes=15)
            with self.at(verified_at):
                services.batch_verify_step(
                    executed=executed, verified_by=qa, password=self.password, at=verified_at
                )
        self.packaging(plan, batch, index, start)
        completed_at = start + timedelta(hours=8)
        factor = (
            Decimal("0.975") + Decimal("0.004") * index - Decimal("0.002") * plan.offset_days / 5
        )
        with self.at(completed_at):
            output = services.batch_complete(
                batch=batch,
                output_lot_number=f"{plan.prefix}-L{index + 1:03d}",
                quantity=(Decimal(plan.batch_size) * factor).quantize(Decimal("1")),
                by=operator,
                at=completed_at,
                expires_on=(completed_at + timedelta(days=730)).date(),
            )
        with self.at(completed_at + timedelta(minutes=15)):
            services.batch_submit_for_review(batch=batch, by=operator)
        cleaned_at = completed_at + timedelta(hours=1)
        cleaning_verified_at = completed_at + timedelta(hours=2)
        for code in plan.equipment:
            with self.at(cleaned_at):
                cleaning = services.cleaning_record(
                    equipment=equipment[code],
                    method=CLEANING_METHODS[code],
                    performed_by=operator,
                    at=cleaned_at,
                )
            with self.at(cleaning_verified_at):
                services.cleaning_verify(
                    cleaning=cleaning,
                    verified_by=qa,
                    password=self.password,
                    at=cleaning_verified_at,
                )
        self.note(f"batch {number}")
        self.note(f"lot {output.lot_number}")
        self.evidence_and_release(plan, index, batch, output, completed_at, customers)

    def packaging(self, plan: Plan, batch: Batch, index: int, start: datetime) -> None:
        with self.at(start + timedelta(hours=5)):
            packaging = services.packaging_start(
                batch=batch, label_version=plan.label, by=self.operator
            )
        cleared_at = start + timedelta(hours=6)
        with self.at(cleared_at):
            services.packaging_clear_line(
                packaging=packaging, user=self.approver, password=self.password, at=cleared_at
            )
        issued = 1200 + 100 * index
        destroyed, returned = 20 + index, 30 - index
        reconciled_at = start + timedelta(hours=7, minutes=30)
        with self.at(reconciled_at):
            services.packaging_reconcile(
                packaging=packaging,
                issued=issued,
                used=issued - destroyed - returned,
                destroyed=destroyed,
                returned=returned,
                by=self.operator,
                at=reconciled_at,
            )

    def evidence_and_release(self, plan, index, batch, output, completed_at, customers) -> None:
        """Lab results two days after completion; then the batch's disposition: CMO QA releases
        and, where the sponsor's agreement requires it, the sponsor's approver; shipments follow
        the release. Whatever falls after today is left for later (the release queue)."""
        is_oos = plan.oos_batch == index
        tested_at = completed_at + timedelta(days=TESTED_AFTER_DAYS)
        if not self.is_due(tested_at):
            return
        with self.at(tested_at):
            for position, (test, method, low, high, unit) in enumerate(plan.tests):
                value = _between(low, high, 0.4 + 0.1 * index)
                if is_oos and position == len(plan.tests) - 1:
                    value = Decimal(high) * Decimal("1.6")
                services.lab_result_record(
                    lot=output,
                    test=test,
                    method=method,
                    low_limit=low,
                    high_limit=high,
                    unit=unit,
                    value=value,
                    analyst=self.qa,
                    tested_at=tested_at,
                )
        if is_oos:
            self.reject(plan, batch, output, completed_at)
            return
        released_at = completed_at + timedelta(days=RELEASE_AFTER_DAYS)
        if not self.is_due(released_at):
            return
        with self.at(released_at):
            batch_disposition(batch=batch, user=self.approver, password=self.password, release=True)
        batch.refresh_from_db()
        if batch.status != Batch.Status.RELEASED:
            sponsor_released_at = completed_at + timedelta(days=SPONSOR_RELEASE_AFTER_DAYS)
            if not self.is_due(sponsor_released_at):
                return
            with self.at(sponsor_released_at):
                batch_disposition(
                    batch=batch,
                    user=self.sponsor_approver(plan.sponsor),
                    password=self.password,
                    release=True,
                )
            batch.refresh_from_db()
        output.refresh_from_db()
        shares = (Decimal("0.6"), Decimal("0.35"))
        order = plan.customers if index % 2 == 0 else list(reversed(plan.customers))
        for number, (code, share) in enumerate(zip(order, shares, strict=True), start=1):
            shipped_at = completed_at + timedelta(days=SHIP_AFTER_DAYS, hours=number)
            if not self.is_due(shipped_at):
                return
            with self.at(shipped_at):
                services.shipment_create(
                    lot=output,
                    customer=customers[code],
                    quantity=(output.quantity * share).quantize(Decimal("1")),
                    by=self.operator,
                    reference=f"SHP-{output.lot_number}-{number}",
                    at=shipped_at,
                )
            self.note(f"shipment SHP-{output.lot_number}-{number}")

    def reject(self, plan, batch, output, completed_at) -> None:
        """The sponsor is notified of the OOS result by the deadline sweep minutes after it is
        found; the investigation confirms it and decides to reject; it is closed (with the
        sponsor's approval where its agreement reserves the closure), then CMO QA rejects the
        batch and its lot."""
        from deviations import services as deviation_services
        from deviations.models import Deviation

        tested_at = completed_at + timedelta(days=TESTED_AFTER_DAYS)
        investigated_at = completed_at + timedelta(days=TESTED_AFTER_DAYS + 1)
        closed_at = completed_at + timedelta(days=RELEASE_AFTER_DAYS - 1)
        decided_at = completed_at + timedelta(days=RELEASE_AFTER_DAYS)
        rejected_at = completed_at + timedelta(days=RELEASE_AFTER_DAYS + 1)
        if not self.is_due(rejected_at):
            return
        investigation = Deviation.objects.get(
            lab_result__lot=output, category=Deviation.Category.OOS
        )
        with self.at(tested_at + NOTICE_SWEEP_AFTER):
            deadlines_send_due()
        with self.at(investigated_at):
            deviation_services.deviation_investigate(
                deviation=investigation,
                by=self.qa,
                impact_assessment=f"Lot {output} only; no other lot was made from the same bulk.",
                root_cause=(
                    "Laboratory error excluded (system suitability and a re-preparation "
                    "confirmed the result): the bulk was out of specification."
                ),
                disposition=Deviation.Disposition.REJECT,
            )
        with self.at(closed_at):
            deviation_services.deviation_close(
                deviation=investigation, user=self.approver, password=self.password
            )
        investigation.refresh_from_db()
        if investigation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL:
            with self.at(decided_at):
                deviation_services.deviation_sponsor_decide(
                    deviation=investigation,
                    user=self.sponsor_approver(plan.sponsor),
                    password=self.password,
                    approve=True,
                    comment="Confirmed OOS; rejection agreed.",
                )
        with self.at(rejected_at):
            batch_disposition(
                batch=batch, user=self.approver, password=self.password, release=False
            )
        batch.refresh_from_db()
        output.refresh_from_db()


def load(stdout=None) -> list[str]:
    """Create the demo manufacturing record (after the sponsors and users of `seed_demo`);
    return the names of what was created."""
    return _Loader(stdout).run()
