"""The CMO change-control pages: the list with its filters (constant queries), drafting and
editing, the change page with its per-sponsor obligations and every action (refusals inline, the
unmet obligations listed), and a CMO user limited to one sponsor seeing only that sponsor."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from changecontrol.models import ChangeProduct, ChangeRequest, SponsorObligation
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from tests.factories import make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def _post(client, url, data=None, status=302) -> str:
    response = client.post(url, data or {})
    assert response.status_code == status, (url, response.status_code, response.content[:3000])
    return response.content.decode()


def _detail(change) -> str:
    return reverse("changecontrol:detail", args=[change.number])


def _action(name, change) -> str:
    return reverse(f"changecontrol:{name}", args=[change.number])


# --- list -----------------------------------------------------------------------------------


def test_list_filters_by_status_category_and_sponsor_with_a_pending_obligation(three):
    # given
    awaiting = three.submitted(title="Awaiting Acme")
    notified_only = three.submitted(codes=("borealis",), title="Borealis notice")
    deadlines_send_due(now=timezone.now())
    draft = three.draft(category="equipment", title="Still a draft")
    client = _client(three.qa)
    url = reverse("changecontrol:list")
    # when / then
    html = _get(client, url)
    assert all(c.number in html for c in (awaiting, notified_only, draft))
    assert "acme: sponsor approval required — approval pending" in html
    html = _get(client, url + "?status=draft")
    assert draft.number in html and awaiting.number not in html
    html = _get(client, url + "?category=equipment")
    assert draft.number in html and notified_only.number not in html
    html = _get(client, url + f"?pending_sponsor={three.sponsors['acme'].pk}")
    assert awaiting.number in html and notified_only.number not in html
    html = _get(client, url + f"?pending_sponsor={three.sponsors['borealis'].pk}")
    assert awaiting.number not in html and notified_only.number not in html


def _grow(three, n):
    """n submitted-looking changes, each with an obligation for every sponsor."""
    start = ChangeRequest.objects.count()
    changes = ChangeRequest.objects.bulk_create(
        ChangeRequest(
            number=f"CC-2000-{start + i + 1:04d}",
            title="Counted",
            description="Counted",
            category="sop",
            status="awaiting_sponsors",
            subject_text="x",
            created_by=three.staff,
        )
        for i in range(n)
    )
    ChangeProduct.objects.bulk_create(
        ChangeProduct(change=c, product=p, sponsor_id=p.sponsor_id)
        for c in changes
        for p in three.products.values()
    )
    SponsorObligation.objects.bulk_create(
        SponsorObligation(change=c, sponsor=s, kind="approve", status="pending")
        for c in changes
        for s in three.sponsors.values()
    )


def test_list_costs_the_same_queries_for_5_and_50_changes(three):
    client = _client(three.qa)
    url = reverse("changecontrol:list")
    assert_constant_queries(client, url, lambda n: _grow(three, n))


# --- drafting ---------------------------------------------------------------------------------


def test_draft_a_change_through_the_form(three):
    client = _client(three.staff)
    html = _get(client, reverse("changecontrol:create"))
    assert "Acme Pharmaceuticals — ACM-IBU200" in html
    response = client.post(
        reverse("changecontrol:create"),
        {
            "title": "New line clearance checklist",
            "description": "Adds a second-person check.",
            "category": "sop",
            "products": [three.products["acme"].pk, three.products["borealis"].pk],
            "subject_text": "SOP-QA-014 rev 5",
            "proposed_effective_date": "2099-01-31",
        },
    )
    change = ChangeRequest.objects.get(title="New line clearance checklist")
    assert response.status_code == 302 and response["Location"] == _detail(change)
    html = _get(client, _detail(change))
    assert "ACM-IBU200" in html and "BOR-CATH7" in html and "2099-01-31" in html
    assert "Edit the draft" in html


def test_draft_form_says_what_is_missing(three):
    client = _client(three.staff)
    html = _post(
        client,
        reverse("changecontrol:create"),
        {
            "title": "x",
            "description": "y",
            "category": "sop",
            "products": [three.products["acme"].pk],
        },
        status=400,
    )
    assert "Say what the change changes: choose a record or write a subject." in html


def test_edit_a_draft_and_not_afterwards(three):
    change = three.draft()
    client = _client(three.staff)
    _post(
        client,
        _action("edit", change),
        {
            "title": "Renamed",
            "description": "Same.",
            "category": "sop",
            "products": [three.products["cygnus"].pk],
            "subject_text": "SOP-QA-014",
        },
    )
    change.refresh_from_db()
    assert change.title == "Renamed"
    assert list(change.products.values_list("code", flat=True)) == ["CYG-VITD3"]
    _post(
        client,
        _action("assess", change),
        {"severity": 2, "probability": 2, "detectability": 2, "rationale": "Minor."},
    )
    response = client.get(_action("edit", change))
    assert response.status_code == 302
    html = _get(client, _detail(change))
    assert f"Change {change.number} is assessment: only a draft can be edited." in html


# --- the change page ----------------------------------------------------------------------


def test_assess_submit_and_see_each_sponsors_obligation(three):
    # given
    change = three.draft()
    client = _client(three.staff)
    # when
    _post(
        client,
        _action("assess", change),
        {"severity": 4, "probability": 4, "detectability": 4, "rationale": "Line clearance."},
    )
    html = _get(client, _detail(change))
    assert "Risk priority number</dt><dd>64" in html and "<strong>High</strong>" in html
    _post(client, _action("submit", change))
    deadlines_send_due(now=timezone.now())
    # then
    html = _get(client, _detail(change))
    assert "Awaiting sponsors" in html
    for text in (
        "Acme Pharmaceuticals</td>\n      <td>Sponsor approval required",
        "Borealis Medical Devices</td>\n      <td>Notify the sponsor",
        "Cygnus Nutrition</td>\n      <td>None",
        "Approval pending",
        "Notice sent",
    ):
        assert text in html, text


def test_assess_form_refusal_is_inline(three):
    change = three.draft()
    html = _post(
        _client(three.staff),
        _action("assess", change),
        {"severity": 3, "probability": 3, "detectability": 3, "rationale": " "},
        status=400,
    )
    assert "This field is required." in html


def test_submit_refusal_is_shown_on_the_page(three):
    change = three.draft()
    html = _post(_client(three.staff), _action("submit", change), status=400)
    assert (
        f"Change {change.number} is draft: only a change with a recorded risk assessment can be "
        "submitted."
    ) in html


def test_make_effective_lists_each_unmet_obligation_by_sponsor(three):
    change = three.submitted()
    html = _post(_client(three.qa), _action("make-effective", change), status=400)
    assert f"Change {change.number} cannot become effective." in html
    assert "<li>Sponsor Acme Pharmaceuticals: approval required, pending</li>" in html
    assert "<li>Sponsor Borealis Medical Devices: notice not sent yet, 30 days lead time" in html
    assert "Cygnus Nutrition:" not in html


def test_rejection_shows_blocked_then_rescope_and_make_effective(three):
    # given
    change = three.submitted(category="process_parameter")
    three.decide(change, "borealis")
    three.decide(change, "acme", approve=False, comment="Validation data missing.")
    client = _client(three.qa)
    html = _get(client, _detail(change))
    assert "Blocked: Acme Pharmaceuticals rejected the change." in html
    assert "Validation data missing." in html
    # when
    html = _post(
        client,
        _action("rescope", change),
        {"rescope-sponsor": three.sponsors["acme"].pk},
        status=400,
    )
    assert "This field is required." in html
    _post(
        client,
        _action("rescope", change),
        {"rescope-sponsor": three.sponsors["acme"].pk, "rescope-reason": "Acme keeps its process."},
    )
    # then
    html = _get(client, _detail(change))
    assert "removed</span>" in html and "Acme keeps its process." in html
    assert "Withdrawn (sponsor no longer affected)" in html
    day = timezone.localdate() + timedelta(days=60)
    _post(client, _action("make-effective", change), {"effective_at": f"{day:%Y-%m-%d}T12:00"})
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.EFFECTIVE


def test_tasks_then_close(three):
    change = three.submitted(codes=("cygnus",), proposed_effective_date=timezone.localdate())
    client = _client(three.qa)
    _post(
        client,
        _action("task-add", change),
        {
            "description": "Retrain operators",
            "owner": three.staff.pk,
            "due_date": f"{timezone.localdate() + timedelta(days=3):%Y-%m-%d}",
        },
    )
    _post(client, _action("make-effective", change))
    html = _post(client, _action("close", change), status=400)
    assert "cannot be closed: tasks still open: “Retrain operators”" in html
    task = change.tasks.get()
    _post(client, reverse("changecontrol:task-complete", args=[change.number, task.pk]))
    html = _post(
        client, reverse("changecontrol:task-complete", args=[change.number, task.pk]), status=400
    )
    assert "was already completed" in html
    _post(client, _action("close", change))
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.CLOSED


def test_cancel_and_reject_need_a_reason(three):
    change = three.submitted()
    client = _client(three.qa)
    assert "This field is required." in _post(client, _action("cancel", change), status=400)
    _post(client, _action("reject", change), {"reject-reason": "Risk too high."})
    change.refresh_from_db()
    assert (change.status, change.status_reason) == ("rejected", "Risk too high.")
    html = _get(client, _detail(change))
    assert "Risk too high." in html and 'id="make-effective"' not in html


def test_staff_limited_to_one_sponsor_sees_only_that_sponsor_and_may_not_act(three):
    # given
    change = three.submitted(category="process_parameter")
    three.decide(change, "borealis", approve=False, comment="Borealis has concerns.")
    acme_only = make_user(sponsor=three.sponsors["acme"], role=Role.CMO_QA_APPROVER, username="al")
    client = _client(acme_only)
    # when
    html = _get(client, _detail(change))
    # then
    assert "ACM-IBU200" in html and "Acme Pharmaceuticals" in html
    for foreign in ("Borealis", "BOR-CATH7", "Cygnus", "CYG-VITD3", "concerns"):
        assert foreign not in html, foreign
    assert 'id="make-effective"' not in html and 'id="cancel"' not in html
    html = _post(client, _action("make-effective", change), status=400)
    assert (
        f"al may not make change {change.number} effective: it affects products of a sponsor "
        "outside your permissions."
    ) in html
    assert "Borealis" not in html
    list_html = _get(client, reverse("changecontrol:list"))
    assert change.number in list_html and "borealis" not in list_html


def test_a_change_outside_scope_is_not_found(three):
    change = three.submitted(codes=("borealis",))
    acme_only = make_user(sponsor=three.sponsors["acme"], role=Role.CMO_STAFF, username="al")
    _get(_client(acme_only), _detail(change), status=404)
    _get(_client(three.approvers["borealis"]), _detail(change), status=403)
