"""The isolation matrix: every URL pattern and API route × every role × own/other sponsor.

Each route the URLconf exposes must have an entry in ROUTES; a new route without one fails
`test_every_route_is_covered`. For each entry, every actor requests the route for a record of
their own sponsor (A) and of the other sponsor (B, whose records all carry the marker ZZOTHER);
the status must be the expected one and no response of a sponsor-A actor may contain ZZOTHER."""

import dataclasses
import html
import inspect
import io
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta

import django_filters
import pypdf
import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.test import APIRequestFactory

from batches import services as batch_services
from batches.disposition import batch_disposition
from batches.models import Customer, Equipment, Material
from deviations import capa as capa_services
from deviations import services as deviation_services
from qms.models import AuditEvent, Deadline, Notification
from sponsors.models import QualityAgreement, Role
from sponsors.services import access_grant_create
from suppliers.models import Supplier
from tests.batches import matrix_api, matrix_pages
from tests.changecontrol import matrix as changecontrol_matrix
from tests.documents import matrix as documents_matrix
from tests.factories import (
    PASSWORD,
    ProductFactory,
    QualityAgreementFactory,
    SponsorFactory,
    make_user,
)

MARKER = "ZZOTHER"
OWN, OTHER = "own", "other"

ANON = "anonymous"
CMO_STAFF = "cmo_staff"
QA_APPROVER = "qa_approver"
AUDITOR = "auditor"
AUDITOR_EXPIRED = "auditor_expired"
SPONSOR_APPROVER = "sponsor_approver"
SUPERUSER = "superuser"
ACTORS = [ANON, CMO_STAFF, QA_APPROVER, AUDITOR, AUDITOR_EXPIRED, SPONSOR_APPROVER, SUPERUSER]
CMO_ACTORS = {CMO_STAFF, QA_APPROVER, SUPERUSER}
SPONSOR_ACTORS = {AUDITOR, AUDITOR_EXPIRED, SPONSOR_APPROVER}


@dataclass
class World:
    sponsors: dict
    products: dict
    agreements: dict
    drafts: dict
    notifications: dict
    events: dict
    users: dict = field(default_factory=dict)
    mfg: dict = field(default_factory=dict)
    documents: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)


def _build_world() -> World:
    sponsors = {
        OWN: SponsorFactory(code="alpha", name="Alpha Therapeutics"),
        OTHER: SponsorFactory(code="zzother", name=f"{MARKER} Biologics"),
    }
    products, agreements, drafts, notifications, events = {}, {}, {}, {}, {}
    for side, sponsor in sponsors.items():
        tag = MARKER if side == OTHER else "Alpha"
        # distinct version numbers, so a URL naming only a version cannot hit the other sponsor
        version = 1 if side == OWN else 5
        products[side] = ProductFactory(sponsor=sponsor, code=f"{tag}-P1", name=f"{tag} product")
        agreements[side] = QualityAgreementFactory(
            sponsor=sponsor,
            version=version,
            reference=f"{tag}-QA-1",
            status=QualityAgreement.Status.EFFECTIVE,
            effective_from=timezone.now() - timedelta(days=10),
        )
        drafts[side] = QualityAgreementFactory(
            sponsor=sponsor, version=version + 1, reference=f"{tag}-QA-2"
        )
    users = {
        CMO_STAFF: make_user(sponsor=sponsors[OWN], role=Role.CMO_STAFF, username="m-staff"),
        QA_APPROVER: make_user(
            sponsor=sponsors[OWN], role=Role.CMO_QA_APPROVER, username="m-approver"
        ),
        AUDITOR: make_user(sponsor=sponsors[OWN], role=Role.SPONSOR_AUDITOR, username="m-auditor"),
        AUDITOR_EXPIRED: make_user(
            sponsor=sponsors[OWN],
            role=Role.SPONSOR_AUDITOR,
            username="m-auditor-old",
            starts_ago=timedelta(days=30),
            expires_in=-timedelta(days=1),
        ),
        SPONSOR_APPROVER: make_user(
            sponsor=sponsors[OWN], role=Role.SPONSOR_APPROVER, username="m-sp-approver"
        ),
        SUPERUSER: make_user(username="m-root", is_superuser=True, is_staff=True),
    }
    other_staff = make_user(
        sponsor=sponsors[OTHER], role=Role.CMO_STAFF, username=f"{MARKER.lower()}-staff"
    )
    for side, recipient in ((OWN, None), (OTHER, other_staff)):
        sponsor = sponsors[side]
        tag = MARKER if side == OTHER else "Alpha"
        deadline = Deadline.objects.create(
            sponsor=sponsor,
            key=f"matrix:{side}",
            kind="test",
            title=f"{tag} deadline",
            due_at=timezone.now() + timedelta(days=1),
            notify_at=timezone.now(),
        )
        notifications[side] = [
            Notification.objects.create(
                sponsor=sponsor,
                deadline=deadline,
                recipient=user,
                subject=f"{tag} notice",
            )
            for user in ([recipient] if recipient else [u for u in users.values()])
        ]
        events[side] = AuditEvent.objects.filter(sponsor=sponsor).order_by("seq").first()
    world = World(sponsors, products, agreements, drafts, notifications, events, users)
    world.mfg = _build_manufacturing(world)
    world.documents = documents_matrix.build(world)
    world.changes = changecontrol_matrix.build(world)
    return world


def _build_manufacturing(world: World) -> dict:
    """Per side: a finished material, an effective MBR, a batch that consumed a shared raw lot on
    a shared tank, its released output lot shipped to a customer; plus a tank only the other
    sponsor used. Everything of the other sponsor carries the marker."""
    qa = make_user(sponsor=world.sponsors[OWN], role=Role.CMO_QA_APPROVER, username="m-plant")
    access_grant_create(user=qa, sponsor=world.sponsors[OTHER], role=Role.CMO_QA_APPROVER)
    supplier = Supplier.objects.create(code="SUP-M", name="Matrix Chemicals", status="approved")
    raw_material = Material.objects.create(code="RM-M", name="Shared API", kind="raw", unit="kg")
    shared_tank = Equipment.objects.create(
        code="TANK-SHARED", name="Shared tank", kind="tank", qualified_until=date(2099, 1, 1)
    )
    other_tank = Equipment.objects.create(
        code="TANK-B-ONLY", name="Second tank", kind="tank", qualified_until=date(2099, 1, 1)
    )
    raw = batch_services.lot_receive(
        material=raw_material, lot_number="R-SHARED", quantity="100", supplier=supplier, by=qa
    )
    batch_services.lot_disposition(lot=raw, user=qa, password=PASSWORD, release=True)
    out = {"raw": raw, "tanks": {OWN: shared_tank, OTHER: other_tank}}
    for side in (OWN, OTHER):
        tag = MARKER if side == OTHER else "Alpha"
        product = world.products[side]
        material = Material.objects.create(
            code=f"FG-{tag}", name=f"{tag} tablets", kind="finished", unit="ea", product=product
        )
        mbr = batch_services.mbr_create_draft(
            product=product,
            title=f"{tag} process",
            batch_size="10",
            batch_unit="ea",
            theoretical_yield="10",
            bom=[(raw_material, "1", "kg")],
            steps=[
                {
                    "title": "Blend",
                    "parameter": "Time",
                    "unit": "min",
                    "low_limit": "1",
                    "requires_verification": False,
                }
            ],
            by=world.users[SUPERUSER],
        )
        batch_services.mbr_review(mbr=mbr, user=qa, password=PASSWORD)
        batch_services.mbr_approve(mbr=mbr, user=qa, password=PASSWORD)
        batch_services.mbr_make_effective(mbr=mbr, by=qa, effective_from=timezone.now())
        batch = batch_services.batch_plan(product=product, number=f"{tag}-B1", by=qa)
        batch_services.batch_start(batch=batch, by=qa)
        batch_services.batch_consume(batch=batch, lot=raw, quantity="1", by=qa)
        for tank in {shared_tank, out["tanks"][side]}:
            if tank.uses.exists():
                cleaning = batch_services.cleaning_record(
                    equipment=tank, method="CIP", performed_by=qa
                )
                batch_services.cleaning_verify(
                    cleaning=cleaning, verified_by=world.users[SUPERUSER], password=PASSWORD
                )
            use = batch_services.equipment_use_start(batch=batch, equipment=tank, by=qa)
            batch_services.equipment_use_end(use=use, by=qa)
        [step] = mbr.steps.all()
        batch_services.batch_record_step(batch=batch, step=step, performed_by=qa, value="1")
        lot = batch_services.batch_complete(
            batch=batch, output_lot_number=f"{tag}-L1", quantity="10", by=qa
        )
        packaging = batch_services.packaging_start(batch=batch, label_version="L1", by=qa)
        batch_services.packaging_clear_line(packaging=packaging, user=qa, password=PASSWORD)
        batch_services.packaging_reconcile(
            packaging=packaging, issued=10, used=10, destroyed=0, returned=0, by=qa
        )
        batch_disposition(batch=batch, user=qa, password=PASSWORD, release=True)
        lot.refresh_from_db()
        customer = Customer.objects.create(code=f"C-{tag}", name=f"{tag} Pharmacy")
        shipment = batch_services.shipment_create(lot=lot, customer=customer, quantity="4", by=qa)
        deviation = deviation_services.deviation_record(
            title=f"{tag} blend time exceeded",
            description="Blend ran 17 minutes.",
            category="deviation",
            severity="critical",
            occurred_at=timezone.now() - timedelta(hours=2),
            discovered_at=timezone.now() - timedelta(hours=1),
            by=qa,
            batches=[batch],
        )
        deviation_services.deviation_investigate(
            deviation=deviation, by=qa, impact_assessment="None.", root_cause="Timer."
        )
        deviation_services.deviation_close(deviation=deviation, user=qa, password=PASSWORD)
        capa = capa_services.capa_open(
            title=f"{tag} blender timer",
            description="Timer drifts.",
            source_kind="deviation",
            deviation=deviation,
            by=qa,
        )
        capa_services.capa_action_add(
            capa=capa,
            description=f"{tag} replace timer",
            owner=qa,
            due_date=timezone.localdate() + timedelta(days=7),
            by=qa,
        )
        out[side] = {
            "material": material,
            "mbr": mbr,
            "batch": batch,
            "lot": lot,
            "shipment": shipment,
            "deviation": deviation,
            "capa": capa,
        }
    return out


@dataclass(frozen=True)
class Route:
    """How to request a route for a side's record, and what each actor should get."""

    kind: str  # "cmo", "portal", "api", "open", "any_user"
    args: object = None  # callable(world, side) -> list, or None for routes without arguments
    method: str = "get"
    ok: int = 200
    scoped: bool = True  # does the route show one sponsor's record (so other → 404)?
    personal: bool = False  # the record belongs to one user: nobody else sees it, not even admin
    site_wide: bool = False  # a site record (equipment): every CMO user sees it, scoped inside
    json_body: str | None = None  # sent as application/json
    cmo_writes: bool = False  # an API write only CMO staff may make: sponsor users get 403
    expect: object = None  # callable(actor, side) -> status, where the general rules do not fit


def _own_notification(world, side, actor):
    if side == OTHER:
        return [world.notifications[OTHER][0].pk]
    user = world.users.get(actor)
    mine = [n for n in world.notifications[OWN] if user is not None and n.recipient_id == user.pk]
    return [mine[0].pk] if mine else [world.notifications[OWN][0].pk]


def _deviation(world, side, actor):
    return [world.mfg[side]["deviation"].number]


def _capa(world, side, actor):
    return [world.mfg[side]["capa"].number]


ROUTES: dict[str, Route] = {
    "home": Route("any_user", scoped=False),
    "login": Route("open", scoped=False),
    "logout": Route("open", method="post", scoped=False, ok=302),
    "audit": Route("cmo", scoped=False),
    "notifications": Route("any_user", scoped=False),
    "notification-read": Route(
        "any_user", args=_own_notification, method="post", ok=302, personal=True
    ),
    "portal:home": Route("portal", scoped=False),
    "portal:product": Route("portal", args=lambda w, s, a: [w.products[s].pk]),
    "portal:agreement": Route("portal", args=lambda w, s, a: [w.agreements[s].version]),
    "portal:batches": Route("portal", scoped=False),
    "portal:batch": Route("portal", args=lambda w, s, a: [_mfg(w, s)["batch"].number]),
    "portal:lot": Route("portal", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "portal:recall": Route("portal", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "portal:recall-csv": Route("portal", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "portal:recall-pdf": Route("portal", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "sponsors:detail": Route("cmo", args=lambda w, s, a: [w.sponsors[s].code]),
    "sponsors:agreement": Route(
        "cmo", args=lambda w, s, a: [w.sponsors[s].code, w.agreements[s].version]
    ),
    "sponsors:agreement-approve": Route(
        "cmo", args=lambda w, s, a: [w.sponsors[s].code, w.drafts[s].version], method="post", ok=400
    ),
    "sponsors:products": Route("cmo", scoped=False),
    "sponsors:product": Route("cmo", args=lambda w, s, a: [w.products[s].pk]),
    "api:api-root": Route("api", scoped=False),
    "api:token": Route("open", method="post", ok=400, scoped=False),
    # logout takes only a token (the matrix signs in by session: 401); logoutall takes either
    "api:logout": Route("api", method="post", scoped=False, personal=True, expect=lambda a, s: 401),
    "api:logoutall": Route("api", method="post", scoped=False, personal=True),
    "api:sponsor-list": Route("api", scoped=False),
    "api:sponsor-detail": Route("api", args=lambda w, s, a: [w.sponsors[s].code]),
    "api:product-list": Route("api", scoped=False),
    "api:product-detail": Route("api", args=lambda w, s, a: [w.products[s].pk]),
    "api:quality-agreement-list": Route("api", scoped=False),
    "api:quality-agreement-detail": Route("api", args=lambda w, s, a: [w.agreements[s].pk]),
    "api:audit-event-list": Route("api", scoped=False),
    "api:audit-event-detail": Route(  # sponsor users have no single-event route
        "api",
        args=lambda w, s, a: [w.events[s].seq],
        expect=lambda a, s: 200 if a == SUPERUSER or (a in CMO_ACTORS and s == OWN) else 404,
    ),
    "batches:lots": Route("cmo", scoped=False),
    "batches:lot": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "batches:recall": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "batches:recall-csv": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "batches:recall-pdf": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "batches:batches": Route("cmo", scoped=False),
    "batches:batch": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["batch"].number]),
    "batches:mbr": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["mbr"].pk]),
    "batches:equipment-list": Route("cmo", scoped=False),
    "batches:equipment": Route(
        "cmo", args=lambda w, s, a: [w.mfg["tanks"][s].code], site_wide=True
    ),
    "api:material-list": Route("api", scoped=False),
    "api:material-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["material"].code]),
    "api:lot-list": Route("api", scoped=False),
    "api:lot-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "api:lot-recall-scope": Route("api", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "api:lot-trace": Route("api", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "api:batch-list": Route("api", scoped=False),
    "api:batch-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["batch"].number]),
    "api:master-batch-record-list": Route("api", scoped=False),
    "api:master-batch-record-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["mbr"].pk]),
    "api:equipment-list": Route("api", scoped=False),
    "api:equipment-detail": Route(
        "api", args=lambda w, s, a: [w.mfg["tanks"][s].code], site_wide=True
    ),
    "api:shipment-list": Route("api", scoped=False),
    "api:shipment-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["shipment"].pk]),
    "api:epcis-export": Route("api", args=lambda w, s, a: [_mfg(w, s)["lot"].lot_number]),
    "api:epcis-import": Route(
        "api", method="post", ok=400, scoped=False, json_body="{}", cmo_writes=True
    ),
    "deviations:list": Route("cmo", scoped=False),
    "deviations:create": Route("cmo", scoped=False),
    "deviations:detail": Route("cmo", args=_deviation),
    "deviations:investigate": Route("cmo", args=_deviation, method="post", ok=400),
    "deviations:severity": Route("cmo", args=_deviation, method="post", ok=400),
    "deviations:close": Route("cmo", args=_deviation, method="post", ok=400),
    "deviations:release-queue": Route("cmo", scoped=False),
    "deviations:release-batch": Route("cmo", args=lambda w, s, a: [_mfg(w, s)["batch"].number]),
    "deviations:capa-list": Route("cmo", scoped=False),
    "deviations:capa-create": Route("cmo", scoped=False),
    "deviations:capa-detail": Route("cmo", args=_capa),
    "deviations:capa-action-add": Route("cmo", args=_capa, method="post", ok=400),
    "deviations:capa-action-complete": Route(
        "cmo", args=lambda w, s, a: [*_capa(w, s, a), 1], method="post", ok=400
    ),
    "deviations:capa-effectiveness-start": Route("cmo", args=_capa, method="post", ok=400),
    "deviations:capa-effectiveness": Route("cmo", args=_capa, method="post", ok=400),
    "deviations:capa-close": Route("cmo", args=_capa, method="post", ok=400),
    "deviations:capa-edit": Route("cmo", args=_capa, method="post", ok=400),
    "deviations:capa-action-edit": Route(
        "cmo", args=lambda w, s, a: [*_capa(w, s, a), 1], method="post", ok=400
    ),
    "api:deviation-investigation": Route(
        "api",
        args=lambda w, s, a: [_mfg(w, s)["deviation"].number],
        method="post",
        json_body="{}",
        ok=409,
        cmo_writes=True,
    ),
    "api:capa-list": Route("api", scoped=False),
    "api:capa-detail": Route("api", args=_capa),
    "portal_deviations:list": Route("portal", scoped=False),
    "portal_deviations:detail": Route("portal", args=_deviation),
    "portal_deviations:acknowledge": Route("portal", args=_deviation, method="post", ok=302),
    "portal_deviations:decide": Route("portal", args=_deviation, method="post", ok=400),
    "portal_deviations:releases": Route("portal", scoped=False),
    "api:deviation-list": Route("api", scoped=False),
    "api:deviation-detail": Route("api", args=lambda w, s, a: [_mfg(w, s)["deviation"].number]),
    "api:deviation-sponsor-approval": Route(
        "api",
        args=lambda w, s, a: [_mfg(w, s)["deviation"].number],
        method="post",
        json_body="{}",
        expect=lambda actor, side: (
            404 if actor == AUDITOR_EXPIRED or (side == OTHER and actor != SUPERUSER) else 400
        ),
    ),
    "api:deviation-acknowledge": Route(
        "api",
        args=lambda w, s, a: [_mfg(w, s)["deviation"].number],
        method="post",
        json_body="{}",
        expect=lambda actor, side: (
            404
            if actor == AUDITOR_EXPIRED or (side == OTHER and actor != SUPERUSER)
            else 200
            if actor in (AUDITOR, SPONSOR_APPROVER)
            else 409
        ),
    ),
    "api:batch-disposition": Route(
        "api",
        args=lambda w, s, a: [_mfg(w, s)["batch"].number],
        method="post",
        json_body="{}",
        expect=lambda actor, side: (
            404 if actor == AUDITOR_EXPIRED or (side == OTHER and actor != SUPERUSER) else 400
        ),
    ),
    "api:notification-list": Route("api", scoped=False),
    "api:notification-detail": Route("api", args=_own_notification, personal=True),
    "schema": Route("open", scoped=False),
    "api-docs": Route("open", scoped=False),
}


ROUTES.update(documents_matrix.ROUTES)
ROUTES.update(changecontrol_matrix.ROUTES)
ROUTES.update(matrix_api.ROUTES)
ROUTES.update(matrix_pages.ROUTES)


def _mfg(world, side):
    return world.mfg[side]


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            namespace = f"{prefix}{entry.namespace}:" if entry.namespace else prefix
            if entry.namespace == "admin":
                yield "admin:*"
                continue
            yield from _walk(entry.url_patterns, namespace)
        elif isinstance(entry, URLPattern):
            yield f"{prefix}{entry.name}" if entry.name else f"<unnamed {entry.pattern}>"


def test_every_route_is_covered():
    names = set(_walk(get_resolver().url_patterns)) - {"admin:*"}
    uncovered = sorted(names - set(ROUTES))
    assert not uncovered, f"routes missing from the isolation matrix: {uncovered}"
    stale = sorted(set(ROUTES) - names)
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


READ_ONLY_ACTORS = {AUDITOR, AUDITOR_EXPIRED}


def expected_status(route: Route, actor: str, side: str) -> int:
    if route.kind != "open" and route.method != "get" and not route.personal:
        if actor in READ_ONLY_ACTORS:
            return 403  # read-only access is refused every write before anything is looked up
    if route.expect is not None and actor != ANON:
        return route.expect(actor, side)
    superuser_sees_all = actor == SUPERUSER and not route.personal
    if route.kind == "open":
        return route.ok
    if actor == ANON:
        return 401 if route.kind == "api" else 302
    if route.kind == "cmo":
        if actor in SPONSOR_ACTORS:
            return 403
    elif route.kind == "portal":
        if actor in CMO_ACTORS or actor == AUDITOR_EXPIRED:
            return 403
    if route.cmo_writes and actor in SPONSOR_ACTORS:
        return 403
    if route.site_wide and actor in CMO_ACTORS:
        return route.ok
    if route.scoped and side == OTHER and not superuser_sees_all:
        return 404
    if route.scoped and actor == AUDITOR_EXPIRED and route.kind in ("api", "any_user"):
        return 404
    if route.kind == "any_user" and route.args is None and actor in SPONSOR_ACTORS:
        return route.ok if route is not ROUTES["home"] else 302
    return route.ok


def response_text(response) -> str:
    """The text a response shows, whatever its format: HTML and JSON decoded, CSV decoded (UTF-8,
    with or without a byte-order mark), a PDF's extracted text (its content streams are
    compressed, so the raw bytes hide it) followed by its raw bytes. Anything else is read as
    Latin-1, so no byte is lost."""
    body = response.getvalue()
    content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/pdf" or body.startswith(b"%PDF"):
        try:
            reader = pypdf.PdfReader(io.BytesIO(body))
            text = "\n".join(page.extract_text() or "" for page in reader.pages)
        except Exception as error:  # a PDF that does not parse is searched as bytes only
            text = f"(unreadable PDF: {error})"
        return text + "\n" + body.decode("latin-1")
    if content_type.startswith("text/") or content_type.endswith(("json", "+xml", "/xml")):
        return body.decode("utf-8-sig", errors="replace")
    return body.decode("latin-1")


def leaks(response, echoed=()) -> bool:
    """Does the response show the other sponsor's marker? What the actor sent (a filter value
    echoed into its form field, a path argument) is not a leak, so it is removed first."""
    text = response_text(response)
    for value in echoed:
        value = str(value)
        for form in (f'value="{html.escape(value)}"', f'value="{value}"'):
            text = text.replace(form, "")
    return MARKER in text


def _client(world: World, actor: str) -> Client:
    client = Client()
    if actor != ANON:
        client.force_login(world.users[actor])
    return client


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once per module inside a transaction that is rolled back at the end; each test
    runs in a savepoint inside it."""
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=fast):
        with transaction.atomic():
            yield _build_world()
            transaction.set_rollback(True)


@pytest.mark.parametrize("name", sorted(ROUTES))
@pytest.mark.django_db
def test_isolation_matrix(name, world):
    # given
    route = ROUTES[name]
    failures = []
    # when / then
    for actor in ACTORS:
        sides = (OWN, OTHER) if route.args else (OWN,)
        for side in sides:
            client = _client(world, actor)
            args = route.args(world, side, actor) if route.args else []
            url = reverse(name, args=args)
            with transaction.atomic():
                if route.json_body is not None:
                    response = getattr(client, route.method)(
                        url, route.json_body, content_type="application/json"
                    )
                else:
                    response = getattr(client, route.method)(url)
                transaction.set_rollback(True)
            want = expected_status(route, actor, side)
            if response.status_code != want:
                failures.append(
                    f"{actor} {side} {route.method.upper()} {url}: {response.status_code} != {want}"
                )
                continue
            if actor != SUPERUSER and leaks(response):
                failures.append(
                    f"{actor} {side} {url}: the {response.status_code} response shows another "
                    "sponsor's data"
                )
    assert not failures, "\n".join(failures)


ADMIN_URLS = ["admin:index", "admin:sponsors_sponsor_changelist", "admin:qms_auditevent_changelist"]


@pytest.mark.django_db
def test_admin_is_for_superusers_only(world):
    for actor in ACTORS:
        client = _client(world, actor)
        for name in ADMIN_URLS:
            response = client.get(reverse(name))
            want = 200 if actor == SUPERUSER else 302
            assert response.status_code == want, (actor, name, response.status_code)


# --- the shared raw lot --------------------------------------------------------------------------

# Recall and trace from the raw lot both sponsors' batches consumed: the walk crosses into the
# other sponsor's batches, lots and customers, and must stop at the actor's scope. The lot is a
# site lot, so there is no "other side" to ask for.
SHARED_LOT_ROUTES = [
    "batches:recall",
    "batches:recall-csv",
    "batches:recall-pdf",
    "portal:recall",
    "portal:recall-csv",
    "portal:recall-pdf",
    "api:lot-recall-scope",
    "api:lot-trace",
    "api:epcis-export",
]


@pytest.mark.parametrize("name", SHARED_LOT_ROUTES)
@pytest.mark.django_db
def test_recall_and_trace_of_the_shared_raw_lot_show_own_sponsor_only(name, world):
    # given: pages walk either way (?direction=), API routes each one way
    route = dataclasses.replace(ROUTES[name], args=lambda w, s, a: [w.mfg["raw"].lot_number])
    url = reverse(name, args=route.args(world, OWN, None))
    queries = [{}] if route.kind == "api" else [{"direction": "forward"}, {"direction": "backward"}]
    failures = []
    # when / then
    for actor in ACTORS:
        want = expected_status(route, actor, OWN)
        for query in queries:
            response = _client(world, actor).get(url, query)
            if response.status_code != want:
                failures.append(f"{actor} GET {url} {query}: {response.status_code} != {want}")
            elif actor != SUPERUSER and leaks(response):
                failures.append(f"{actor} GET {url} {query}: shows another sponsor's data")
    owners = [a for a in ACTORS if expected_status(route, a, OWN) == 200 and a != SUPERUSER]
    assert owners, f"{name}: no own-sponsor actor reaches the shared lot"
    assert not failures, "\n".join(failures)


def test_every_recall_and_trace_route_is_asked_for_the_shared_lot():
    recall_like = {
        name
        for name in ROUTES
        if any(word in name for word in ("recall", "trace", "epcis-export"))
        and ROUTES[name].method == "get"
    }
    missing = sorted(recall_like - set(SHARED_LOT_ROUTES))
    assert not missing, f"recall/trace routes not asked for the shared raw lot: {missing}"


# --- list filters ----------------------------------------------------------------------------


def _other_records(world) -> dict:
    """The other sponsor's record of each model the world holds."""
    mfg, other = world.mfg[OTHER], OTHER
    records = [
        world.sponsors[other],
        world.products[other],
        world.agreements[other],
        world.notifications[other][0],
        world.events[other],
        world.mfg["tanks"][other],
        world.documents[other]["document"],
        world.documents[other]["version"],
        world.documents[other]["record"],
        world.changes[other]["change"],
        *(mfg[key] for key in ("material", "mbr", "batch", "lot", "shipment", "deviation")),
        mfg["capa"],
        mfg["shipment"].customer,
    ]
    return {type(record): record for record in records}


def _other_value(world, model, name: str, flt) -> str:
    """The other sponsor's value for a filter: its field path walked from the other sponsor's
    record of the listed model (`product__code` of a batch list: ZZOTHER-P1; a choice of
    products: the ZZOTHER product's key). A filter with no such path gets the marker itself."""
    if isinstance(flt, django_filters.OrderingFilter):
        return next(iter(flt.param_map), "")
    records = _other_records(world)
    obj = records.get(model)
    value = None
    for part in (flt.field_name or name).split("__"):
        try:
            model_field = model._meta.get_field(part)
        except (FieldDoesNotExist, AttributeError):
            value = obj = None
            break
        if model_field.is_relation and model_field.related_model is not None:
            model = model_field.related_model
            obj = getattr(obj, part, None) if obj is not None else records.get(model)
            value = obj
        else:
            value = getattr(obj, part, None) if obj is not None else None
            obj = None
    if hasattr(value, "pk"):
        value = getattr(value, flt.extra.get("to_field_name") or "pk")
    if value is None:
        return world.sponsors[OTHER].code if "sponsor" in name else MARKER
    return str(value).lower() if isinstance(value, bool) else str(value)


def _page_filtersets(name: str) -> list:
    """The FilterSets a page's view function builds from the query string."""
    func = inspect.unwrap(resolve(reverse(name)).func)
    module = sys.modules[func.__module__]
    found = []
    for symbol in func.__code__.co_names:
        candidate = getattr(module, symbol, None)
        if isinstance(candidate, type) and issubclass(candidate, django_filters.FilterSet):
            found.append(candidate)
    return found


def _api_filterset(name: str, user):
    """The filterset DRF's filter backend gives a list endpoint, built as for a request."""
    url = reverse(name)
    func = resolve(url).func
    view = func.cls(**func.initkwargs)
    view.action_map = {"get": "list"}
    request = view.initialize_request(APIRequestFactory().get(url))
    request.user = user
    view.request, view.args, view.kwargs, view.action, view.format_kwarg = (
        request,
        (),
        {},
        "list",
        None,
    )
    return DjangoFilterBackend().get_filterset_class(view, view.get_queryset())


LIST_PAGES = sorted(
    name
    for name, route in ROUTES.items()
    if route.kind in ("cmo", "portal", "any_user")
    and route.method == "get"
    and route.args is None
    and route.ok == 200
)
API_LISTS = sorted(name for name in ROUTES if name.startswith("api:") and name.endswith("-list"))


def _filter_params(world, name: str) -> dict:
    """Each filter parameter of a list route, with the other sponsor's value."""
    params = {}
    if name in API_LISTS:
        filtersets = [_api_filterset(name, world.users[SUPERUSER])]
    else:
        filtersets = _page_filtersets(name)
    for filterset in filter(None, filtersets):
        model = filterset._meta.model
        for param, flt in filterset.base_filters.items():
            params[param] = _other_value(world, model, param, flt)
    return params


@pytest.mark.parametrize("name", API_LISTS + LIST_PAGES)
@pytest.mark.django_db
def test_list_filtered_by_the_other_sponsors_values_shows_nothing_of_theirs(name, world):
    # given
    route = ROUTES[name]
    params = _filter_params(world, name)
    if not params:
        pytest.skip(f"{name} has no filter parameters")
    actors = [a for a in ACTORS if a != SUPERUSER and expected_status(route, a, OWN) == 200]
    url = reverse(name)
    failures = []
    # when / then
    for actor in actors:
        client = _client(world, actor)
        for param, value in [*params.items(), ("*", None)]:
            query = params if param == "*" else {param: value}
            response = client.get(url, query)
            if response.status_code not in (200, 400):
                failures.append(f"{actor} GET {url} {query}: {response.status_code}")
            elif leaks(response, echoed=query.values()):
                failures.append(f"{actor} GET {url} {query}: shows another sponsor's data")
    assert not failures, "\n".join(failures)


def test_every_page_filterset_is_asked_with_the_other_sponsors_values():
    """A FilterSet that no list page of the matrix builds is one the test above never tries."""
    used = {fs for name in LIST_PAGES for fs in _page_filtersets(name)}
    defined = set()
    pending = list(django_filters.FilterSet.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        module = cls.__module__.split(".")[0]
        if module not in ("django_filters", "rest_framework", "tests") and "api" not in (
            cls.__module__
        ):
            defined.add(cls)
    missing = sorted(f"{cls.__module__}.{cls.__name__}" for cls in defined - used)
    assert not missing, f"page FilterSets no list page of the matrix builds: {missing}"
