"""This app's entries of the isolation matrix (tests/test_isolation.py).

The own side's change affects products of both sponsors (alpha and ZZOTHER) and carries a draft
of ZZOTHER's own SOP, so every page and endpoint an alpha actor can reach must show alpha's slice
only (its impact assessment and tasks, never ZZOTHER's record); the other side's change affects
the ZZOTHER product only. Both are submitted (each sponsor must approve) and carry one task."""

import dataclasses
from datetime import timedelta

from django.utils import timezone

from changecontrol import services as change_services
from documents import services as document_services
from sponsors.models import ChangeRule, Role
from sponsors.services import access_grant_create
from tests.factories import make_user

OWN, OTHER = "own", "other"
MARKER = "ZZOTHER"


def _number(w, s, a):
    return [w.changes[s]["change"].number]


def _task_complete(actor, side):
    """Only the superuser holds every sponsor the own change affects: the alpha-only CMO users
    are refused (400) on it; sponsor users are kept off CMO pages."""
    from tests.test_isolation import CMO_ACTORS, SUPERUSER

    if actor == SUPERUSER:
        return 302
    if actor not in CMO_ACTORS:
        return 403
    return 400 if side == OWN else 404


def _read_only_for_auditors(route):
    """A decision is a write: a sponsor auditor's read-only access is refused (403) before any
    record is looked up; every other actor gets what the general rules say."""

    def expect(actor, side):
        from tests.test_isolation import AUDITOR, AUDITOR_EXPIRED, expected_status

        if actor in (AUDITOR, AUDITOR_EXPIRED):
            return 403
        return expected_status(route, actor, side)

    return dataclasses.replace(route, expect=expect)


def _routes() -> dict:
    from tests.test_isolation import Route

    def cmo_post(ok=400):
        return Route("cmo", args=_number, method="post", ok=ok)

    return {
        "changecontrol:list": Route("cmo", scoped=False),
        "changecontrol:create": Route("cmo", scoped=False),
        "changecontrol:lots-by-version": Route("cmo", scoped=False),
        "changecontrol:lots-by-mbr": Route("cmo", args=lambda w, s, a: [w.mfg[s]["mbr"].pk]),
        "changecontrol:lots-by-document-version": Route(
            "cmo",
            args=lambda w, s, a: [w.changes[s]["document"].number, 1],
        ),
        "changecontrol:detail": Route("cmo", args=_number),
        "changecontrol:edit": Route("cmo", args=_number, ok=302),
        "changecontrol:assess": cmo_post(),
        "changecontrol:submit": cmo_post(),
        "changecontrol:task-add": cmo_post(),
        "changecontrol:task-complete": Route(
            "cmo",
            args=lambda w, s, a: [w.changes[s]["change"].number, w.changes[s]["task"].pk],
            method="post",
            expect=_task_complete,
        ),
        "changecontrol:rescope": cmo_post(),
        "changecontrol:make-effective": cmo_post(),
        "changecontrol:close": cmo_post(),
        "changecontrol:reject": cmo_post(),
        "changecontrol:cancel": cmo_post(),
        "portal_changecontrol:list": Route("portal", scoped=False),
        "portal_changecontrol:detail": Route("portal", args=_number),
        "portal_changecontrol:decide": _read_only_for_auditors(
            Route("portal", args=_number, method="post", ok=400)
        ),
        "api:change-request-list": Route("api", scoped=False),
        "api:change-request-detail": Route("api", args=_number),
        "api:change-request-obligations": Route("api", args=_number),
        "api:change-request-make-effective": Route(
            "api", args=_number, method="post", json_body="{}", ok=409, cmo_writes=True
        ),
        "api:change-request-obligation-decision": _read_only_for_auditors(
            Route(
                "api",
                args=lambda w, s, a: [w.changes[s]["change"].number, w.sponsors[s].code],
                method="post",
                json_body="{}",
                ok=400,
            )
        ),
    }


def __getattr__(name: str):
    """`ROUTES`, built when tests/test_isolation.py reads it (its Route class is defined by
    then; this module is imported before it is)."""
    if name == "ROUTES":
        routes = _routes()
        globals()["ROUTES"] = routes
        return routes
    raise AttributeError(name)


def build(world) -> dict:
    sponsors = world.sponsors
    qa = make_user(sponsor=sponsors[OWN], role=Role.CMO_QA_APPROVER, username="m-change-qa")
    access_grant_create(user=qa, sponsor=sponsors[OTHER], role=Role.CMO_QA_APPROVER)
    for side in (OWN, OTHER):
        ChangeRule.objects.create(
            agreement=world.agreements[side],
            category="sop",
            obligation="approve",
            lead_time_days=30,
        )
    documents, versions = {}, {}
    for side in (OWN, OTHER):
        tag = MARKER if side == OTHER else "Alpha"
        documents[side] = document_services.document_create(
            number=f"{tag}-SOP-CC",
            title=f"{tag} cleaning SOP",
            doc_type="sop",
            sponsor=sponsors[side],
            by=qa,
        )
        versions[side] = document_services.version_create_draft(
            document=documents[side], change_summary=f"{tag} first issue", by=qa
        )
    out = {}
    for side, products, carried in (
        (OWN, [world.products[OWN], world.products[OTHER]], versions[OTHER]),
        (OTHER, [world.products[OTHER]], None),
    ):
        tag = MARKER if side == OTHER else "Alpha"
        change = change_services.change_create(
            title=f"{tag} line clearance revision",
            description=f"{tag} adds a second-person check.",
            category="sop",
            products=products,
            document_version=carried,
            subject_text=f"{tag} SOP-QA-014 revision 5",
            proposed_effective_date=timezone.localdate() + timedelta(days=60),
            by=qa,
        )
        change_services.change_assess(
            change=change,
            by=qa,
            severity=3,
            probability=2,
            detectability=2,
            rationale=f"{tag} procedural change.",
        )
        change_services.change_submit(change=change, by=qa)
        task = change_services.change_task_add(
            change=change,
            description=f"{tag} retrain operators",
            owner=qa,
            due_date=timezone.localdate() + timedelta(days=10),
            by=qa,
        )
        out[side] = {"change": change, "task": task, "document": documents[side]}
    return out
