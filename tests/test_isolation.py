"""The isolation matrix: every URL pattern and API route × every role × own/other sponsor.

Each route the URLconf exposes must have an entry in ROUTES; a new route without one fails
`test_every_route_is_covered`. For each entry, every actor requests the route for a record of
their own sponsor (A) and of the other sponsor (B, whose records all carry the marker ZZOTHER);
the status must be the expected one and no response of a sponsor-A actor may contain ZZOTHER."""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from qms.models import AuditEvent, Deadline, Notification
from sponsors.models import QualityAgreement, Role
from tests.factories import ProductFactory, QualityAgreementFactory, SponsorFactory, make_user

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
    return world


@dataclass(frozen=True)
class Route:
    """How to request a route for a side's record, and what each actor should get."""

    kind: str  # "cmo", "portal", "api", "open", "any_user"
    args: object = None  # callable(world, side) -> list, or None for routes without arguments
    method: str = "get"
    ok: int = 200
    scoped: bool = True  # does the route show one sponsor's record (so other → 404)?
    personal: bool = False  # the record belongs to one user: nobody else sees it, not even admin


def _own_notification(world, side, actor):
    if side == OTHER:
        return [world.notifications[OTHER][0].pk]
    user = world.users.get(actor)
    mine = [n for n in world.notifications[OWN] if user is not None and n.recipient_id == user.pk]
    return [mine[0].pk] if mine else [world.notifications[OWN][0].pk]


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
    "api:sponsor-list": Route("api", scoped=False),
    "api:sponsor-detail": Route("api", args=lambda w, s, a: [w.sponsors[s].code]),
    "api:product-list": Route("api", scoped=False),
    "api:product-detail": Route("api", args=lambda w, s, a: [w.products[s].pk]),
    "api:quality-agreement-list": Route("api", scoped=False),
    "api:quality-agreement-detail": Route("api", args=lambda w, s, a: [w.agreements[s].pk]),
    "api:audit-event-list": Route("api", scoped=False),
    "api:audit-event-detail": Route("api", args=lambda w, s, a: [w.events[s].seq]),
    "schema": Route("open", scoped=False),
    "api-docs": Route("open", scoped=False),
}


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


def expected_status(route: Route, actor: str, side: str) -> int:
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
    if route.scoped and side == OTHER and not superuser_sees_all:
        return 404
    if route.scoped and actor == AUDITOR_EXPIRED and route.kind in ("api", "any_user"):
        return 404
    if route.kind == "any_user" and route.args is None and actor in SPONSOR_ACTORS:
        return route.ok if route is not ROUTES["home"] else 302
    return route.ok


def _client(world: World, actor: str) -> Client:
    client = Client()
    if actor != ANON:
        client.force_login(world.users[actor])
    return client


@pytest.mark.parametrize("name", sorted(ROUTES))
@pytest.mark.django_db
def test_isolation_matrix(name):
    # given
    route = ROUTES[name]
    world = _build_world()
    failures = []
    # when / then
    for actor in ACTORS:
        sides = (OWN, OTHER) if route.args else (OWN,)
        for side in sides:
            client = _client(world, actor)
            args = route.args(world, side, actor) if route.args else []
            url = reverse(name, args=args)
            response = getattr(client, route.method)(url)
            want = expected_status(route, actor, side)
            if response.status_code != want:
                failures.append(
                    f"{actor} {side} {route.method.upper()} {url}: {response.status_code} != {want}"
                )
                continue
            leaked = MARKER.encode() in response.content
            if actor != SUPERUSER and response.status_code == 200 and leaked:
                failures.append(f"{actor} {side} {url}: response shows another sponsor's data")
    assert not failures, "\n".join(failures)


ADMIN_URLS = ["admin:index", "admin:sponsors_sponsor_changelist", "admin:qms_auditevent_changelist"]


@pytest.mark.django_db
def test_admin_is_for_superusers_only():
    world = _build_world()
    for actor in ACTORS:
        client = _client(world, actor)
        for name in ADMIN_URLS:
            response = client.get(reverse(name))
            want = 200 if actor == SUPERUSER else 302
            assert response.status_code == want, (actor, name, response.status_code)
