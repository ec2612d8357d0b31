"""A sponsor approves a change seeing its impact: the portal page and the API slice show the
ICH Q9 assessment (S, P, D, priority, level, rationale), the implementation tasks, the version the
change carries (when it is the sponsor's own or the site's) and the proposed date; still nothing
of another sponsor (its products, obligation, decision, or a record of its own the change
carries)."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services as bs
from changecontrol import services as cs
from documents import services as ds
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

RATIONALE = "NIR end point validated on three lots; a wrong end point is caught at blend testing."
FOREIGN_TO_ACME = (
    "Borealis",
    "borealis",
    "BOR-CATH7",
    "Central venous catheter",
    "Cygnus",
    "CYG-VITD3",
    "BOR-SOP-7",
    "Borealis has concerns",
)


def _portal(user, change) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("portal_changecontrol:detail", args=[change.number]))
    assert response.status_code == 200
    return response.content.decode()


def _api(user, change) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(reverse("api:change-request-detail", args=[change.number]))
    assert response.status_code == 200
    return response.json()


def _document_version(three, code, number, title):
    document = ds.document_create(
        number=number, title=title, doc_type="sop", sponsor=three.sponsors[code], by=three.qa
    )
    return ds.version_create_draft(document=document, change_summary="Revision.", by=three.qa)


def _submit(three, change, *, tasks=("Retrain granulation operators",)):
    """Assess (S4 × P3 × D2 = 24, medium), add tasks, submit, and let Borealis reject."""
    cs.change_assess(
        change=change,
        by=three.staff,
        severity=4,
        probability=3,
        detectability=2,
        rationale=RATIONALE,
    )
    for days, description in enumerate(tasks, start=5):
        cs.change_task_add(
            change=change,
            description=description,
            owner=three.staff,
            due_date=timezone.localdate() + timedelta(days=days),
            by=three.staff,
        )
    cs.change_submit(change=change, by=three.staff)
    three.decide(change, "borealis", approve=False, comment="Borealis has concerns.")
    change.refresh_from_db()
    return change


def _assert_no_other_sponsor(text: str) -> None:
    for foreign in FOREIGN_TO_ACME:
        assert foreign not in text, foreign


def test_the_portal_shows_the_sponsor_the_impact_assessment_tasks_and_carried_version(three):
    # given: a change of Acme's and Borealis's products carrying Acme's SOP draft
    version = _document_version(three, "acme", "ACM-SOP-12", "Granulation end point")
    change = three.draft(
        codes=("acme", "borealis"),
        category="process_parameter",
        document_version=version,
        subject_text="",
    )
    change = _submit(three, change)
    # when
    for user in (three.approvers["acme"], three.auditors["acme"]):
        html = _portal(user, change)
        # then
        assert "<dt>Severity</dt><dd>4</dd>" in html
        assert "<dt>Probability</dt><dd>3</dd>" in html
        assert "<dt>Detectability</dt><dd>2</dd>" in html
        assert "<dt>Risk priority number</dt><dd>24</dd>" in html
        assert "<strong>Medium</strong>" in html
        assert RATIONALE in html
        assert "Retrain granulation operators" in html
        assert f"{timezone.localdate() + timedelta(days=5):%Y-%m-%d}" in html
        assert "Document version" in html and "ACM-SOP-12 v1</a> — Granulation end point" in html
        assert f'href="{reverse("portal_documents:detail", args=["ACM-SOP-12"])}"' in html
        assert f"{change.proposed_effective_date:%Y-%m-%d}" in html
        _assert_no_other_sponsor(html)


def test_the_api_slice_shows_the_impact_assessment_tasks_and_carried_mbr(three):
    # given: a process-parameter change carrying a draft of Acme's next MBR version
    mbr = bs.mbr_create_draft(
        product=three.products["acme"],
        title="Ibuprofen 200 mg, NIR granulation end point",
        batch_size="100000",
        batch_unit="ea",
        theoretical_yield="100000",
        bom=[],
        steps=[{"title": "Granulate", "parameter": "NIR end point", "unit": "%"}],
        by=three.staff,
    )
    change = three.draft(
        codes=("acme", "borealis"), category="process_parameter", mbr=mbr, subject_text=""
    )
    change = _submit(three, change, tasks=("Update the MBR", "Retrain granulation operators"))
    # when
    body = _api(three.approvers["acme"], change)
    # then
    assert (
        body["risk_severity"],
        body["risk_probability"],
        body["risk_detectability"],
        body["risk_priority"],
        body["risk_level"],
        body["risk_rationale"],
    ) == (4, 3, 2, 24, "medium", RATIONALE)
    assert body["carries"] == {
        "kind": "mbr",
        "reference": "MBR ACM-IBU200 v1",
        "number": "ACM-IBU200",
        "version": 1,
        "title": "Ibuprofen 200 mg, NIR granulation end point",
        "status": "draft",
    }
    assert [(t["description"], t["completed_at"]) for t in body["tasks"]] == [
        ("Update the MBR", None),
        ("Retrain granulation operators", None),
    ]
    assert body["proposed_effective_date"] == f"{change.proposed_effective_date:%Y-%m-%d}"
    assert body["products"] == ["ACM-IBU200"]
    assert body["obligation"]["sponsor"] == "acme"
    _assert_no_other_sponsor(json.dumps(body))


def test_a_record_of_another_sponsor_carried_by_the_change_stays_out_of_the_slice(three):
    # given: the change of both sponsors carries Borealis's own SOP draft
    version = _document_version(three, "borealis", "BOR-SOP-7", "Catheter line clearance")
    change = three.draft(
        codes=("acme", "borealis"),
        category="process_parameter",
        document_version=version,
        subject_text="Line clearance after granulation",
    )
    change = _submit(three, change)
    # when
    html = _portal(three.approvers["acme"], change)
    body = _api(three.approvers["acme"], change)
    # then: Acme sees the change's own text, not Borealis's record
    assert '<dd id="carried">Line clearance after granulation</dd>' in html
    assert body["carries"] is None
    assert body["subject_text"] == "Line clearance after granulation"
    _assert_no_other_sponsor(html)
    _assert_no_other_sponsor(json.dumps(body))
    # and Borealis sees its own record
    theirs = _api(three.approvers["borealis"], change)
    assert theirs["carries"]["reference"] == "BOR-SOP-7 v1"
    assert "BOR-SOP-7 v1</a> — Catheter line clearance" in _portal(
        three.approvers["borealis"], change
    )


def test_the_slice_shows_a_completed_task_and_the_site_document_it_carries(three):
    # given: a site-wide SOP carried by a change of Acme's product
    document = ds.document_create(
        number="SOP-QA-014", title="Line clearance", doc_type="sop", by=three.qa
    )
    version = ds.version_create_draft(document=document, change_summary="Rev 5.", by=three.qa)
    change = three.draft(codes=("acme",), document_version=version, subject_text="")
    cs.change_assess(
        change=change, by=three.staff, severity=1, probability=1, detectability=1, rationale="x"
    )
    task = cs.change_task_add(
        change=change,
        description="Post the SOP at the line",
        owner=three.staff,
        due_date=timezone.localdate(),
        by=three.staff,
    )
    cs.change_submit(change=change, by=three.staff)
    cs.change_task_complete(task=task, by=three.staff)
    # when
    body = _api(three.auditors["acme"], change)
    html = _portal(three.auditors["acme"], change)
    # then
    assert body["carries"]["reference"] == "SOP-QA-014 v1"
    assert body["carries"]["title"] == "Line clearance"
    assert body["tasks"][0]["completed_at"] is not None
    assert "SOP-QA-014 v1 — Line clearance" in html
    assert "<strong>Low</strong>" in html


@pytest.mark.parametrize("who", ["approvers", "auditors"])
def test_the_slice_list_costs_the_same_queries_with_tasks_and_carried_records(three, who):
    # given: changes each carrying an Acme SOP draft and two tasks
    def grow(n):
        for i in range(n):
            version = _document_version(three, "acme", f"ACM-SOP-{grow.count + i}", "SOP")
            change = three.draft(codes=("acme",), document_version=version, subject_text="")
            cs.change_assess(
                change=change,
                by=three.staff,
                severity=2,
                probability=2,
                detectability=2,
                rationale="Minor.",
            )
            for description in ("Issue", "Train"):
                cs.change_task_add(
                    change=change,
                    description=description,
                    owner=three.staff,
                    due_date=timezone.localdate(),
                    by=three.staff,
                )
            cs.change_submit(change=change, by=three.staff)
        grow.count += n

    grow.count = 0
    client = APIClient()
    client.force_authenticate(getattr(three, who)["acme"])
    url = reverse("api:change-request-list")

    def carries_versions(response):
        assert all(
            row["carries"]["kind"] == "document_version" for row in response.json()["results"]
        )

    assert_constant_queries(client, url, grow, check=carries_versions)


def test_the_decision_notice_gives_the_risk_assessment(three):
    change = three.submitted(category="process_parameter", codes=("acme",))
    notice = three.obligation(change, "acme").notice
    assert "Risk (ICH Q9): low — severity 3, probability 2, detectability 2" in notice.body
