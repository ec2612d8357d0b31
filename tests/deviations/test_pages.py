"""The deviation and disposition pages: each renders its facts, every form works end to end with
its refusals shown inline, another sponsor's records are 404s, a site deviation's impact record
shows nothing of other sponsors, and list pages cost constant queries."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services as bs
from batches.models import Batch
from deviations import services as ds
from deviations.models import Deviation
from deviations.selectors import deadlines_of
from qms.notifications import deadlines_send_due
from sponsors.models import Role
from sponsors.services import quality_agreement_create_draft, quality_agreement_make_effective
from tests.factories import PASSWORD, make_user
from tests.querycount import assert_constant_queries

pytestmark = pytest.mark.django_db

MARKER = "ZZOTHER"


def _agreement(plant, sponsor, **terms):
    draft = quality_agreement_create_draft(sponsor=sponsor, by=plant.qa, **terms)
    quality_agreement_make_effective(
        agreement=draft,
        user=plant.qa,
        password=PASSWORD,
        effective_from=timezone.now() - timedelta(days=30),
    )


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def _post(client, url, data, status=302) -> str:
    response = client.post(url, data)
    assert response.status_code == status, (url, response.status_code, response.content[:3000])
    return response.content.decode()


def _ready_batch(plant, product):
    """A completed batch with every piece of evidence: only deviations can block it."""
    batch, lot = plant.run_batch(product, [], release=False)
    packaging = bs.packaging_start(batch=batch, label_version="LBL-1", by=plant.operator)
    bs.packaging_clear_line(packaging=packaging, user=plant.operator, password=PASSWORD)
    bs.packaging_reconcile(
        packaging=packaging, issued=10, used=8, destroyed=1, returned=1, by=plant.operator
    )
    return batch, lot


def _record(plant, *, severity="major", ago=timedelta(0), **links):
    moment = timezone.now() - ago
    return ds.deviation_record(
        title=links.pop("title", "Blend time exceeded"),
        description="Blend ran 17 min against 10–15 min.",
        category="deviation",
        severity=severity,
        occurred_at=moment,
        discovered_at=moment,
        by=plant.qa,
        **links,
    )


@pytest.fixture
def terms(plant):
    _agreement(
        plant,
        plant.sponsor_a,
        major_deviation_notice_hours=48,
        critical_deviation_notice_hours=24,
        sponsor_closes_major=True,
    )
    _agreement(
        plant, plant.sponsor_b, major_deviation_notice_hours=96, critical_deviation_notice_hours=72
    )
    return plant


@pytest.fixture
def site_deviation(terms):
    """A critical deviation on a raw lot both sponsors' batches consumed."""
    plant = terms
    raw = plant.receive(plant.api)
    plant.run_batch(plant.product_a, [(raw, "5")])
    plant.run_batch(plant.product_b, [(raw, "5")])
    return _record(plant, severity="critical", lots=[raw], title="Foreign particles in API drum")


@pytest.fixture
def approver_a(plant):
    return make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_APPROVER, username="sp-appr-a")


@pytest.fixture
def auditor_a(plant):
    return make_user(sponsor=plant.sponsor_a, role=Role.SPONSOR_AUDITOR, username="sp-aud-a")


@pytest.fixture
def auditor_b(plant):
    return make_user(sponsor=plant.sponsor_b, role=Role.SPONSOR_AUDITOR, username="sp-aud-b")


# --- CMO: list ------------------------------------------------------------------------------


def test_deviation_list_shows_site_and_sponsor_records_and_filters_by_severity(
    terms, site_deviation
):
    batch, _ = _ready_batch(terms, terms.product_a)
    sponsor_dev = _record(terms, batches=[batch])
    client = _client(terms.qa)
    html = _get(client, reverse("deviations:list"))
    assert site_deviation.number in html and sponsor_dev.number in html
    assert f"{site_deviation.number}-ALPHA" in html
    html = _get(client, reverse("deviations:list") + "?severity=major")
    assert sponsor_dev.number in html and f"{site_deviation.number}<" not in html


def test_deviation_list_sponsor_filter_includes_site_deviations_that_affected_it(
    terms, site_deviation
):
    html = _get(_client(terms.qa), reverse("deviations:list") + f"?sponsor={terms.sponsor_b.pk}")
    assert f">{site_deviation.number}<" in html
    assert f"{site_deviation.number}-ZZOTHER" in html
    assert f"{site_deviation.number}-ALPHA" not in html


def test_deviation_list_overdue_filter_shows_only_deviations_past_an_unsent_deadline(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    late = _record(terms, batches=[batch], ago=timedelta(days=3), title="Late one")
    on_time = _record(terms, batches=[batch], title="Fresh one")
    html = _get(_client(terms.qa), reverse("deviations:list") + "?overdue=true")
    assert late.number in html and on_time.number not in html
    assert "overdue" in html


# --- CMO: record ----------------------------------------------------------------------------


def _form(**overrides):
    moment = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "title": "Seal leak on Tank 4",
        "description": "Gasket weeping at the manway.",
        "category": "deviation",
        "severity": "major",
        "occurred_at": moment,
        "discovered_at": moment,
        "lots": "",
        "batches": "",
        "equipment": "",
        "immediate_action": "Tank quarantined.",
    }
    return {**data, **overrides}


def test_record_form_creates_a_sponsor_deviation_with_its_deadlines(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    client = _client(terms.qa)
    _get(client, reverse("deviations:create"))
    _post(client, reverse("deviations:create"), _form(batches=batch.number))
    deviation = Deviation.objects.get(title="Seal leak on Tank 4")
    assert deviation.sponsor == terms.sponsor_a
    assert list(deviation.batches.all()) == [batch]
    assert deadlines_of(deviation).filter(kind="deviation_notice").exists()


def test_record_form_on_equipment_creates_a_site_deviation_with_impact_records(terms):
    bs_use = bs.batch_plan(product=terms.product_b, number="B-TANK", by=terms.operator)
    bs.batch_start(batch=bs_use, by=terms.operator, started_at=timezone.now() - timedelta(hours=4))
    bs.equipment_use_start(
        batch=bs_use,
        equipment=terms.tank,
        by=terms.operator,
        at=timezone.now() - timedelta(hours=3),
    )
    _post(_client(terms.qa), reverse("deviations:create"), _form(equipment="TANK-4"))
    site = Deviation.objects.get(title="Seal leak on Tank 4", sponsor__isnull=True)
    assert [i.sponsor.code for i in site.impacts.all()] == ["zzother"]


def test_record_form_refuses_lots_of_two_sponsors_inline(terms):
    batch_a, lot_a = _ready_batch(terms, terms.product_a)
    batch_b, lot_b = _ready_batch(terms, terms.product_b)
    html = _post(
        _client(terms.qa),
        reverse("deviations:create"),
        _form(lots=f"{lot_a.lot_number}, {lot_b.lot_number}"),
        status=400,
    )
    assert "belong to several sponsors (alpha, zzother): record one deviation per sponsor" in html
    assert not Deviation.objects.filter(title="Seal leak on Tank 4").exists()


def test_record_form_treats_another_sponsors_batch_as_unknown(terms):
    batch_b, _ = _ready_batch(terms, terms.product_b)
    only_alpha = make_user(sponsor=terms.sponsor_a, role=Role.CMO_STAFF, username="only-alpha")
    html = _post(
        _client(only_alpha),
        reverse("deviations:create"),
        _form(batches=f"{batch_b.number} NOPE-1"),
        status=400,
    )
    assert f"No batch {batch_b.number}, NOPE-1 that you may record deviations on." in html


def test_record_form_refuses_discovery_before_occurrence(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    now = timezone.now()
    html = _post(
        _client(terms.qa),
        reverse("deviations:create"),
        _form(
            batches=batch.number,
            occurred_at=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            discovered_at=(now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
        ),
        status=400,
    )
    assert "A deviation cannot be discovered before it occurred." in html


# --- CMO: deviation page ----------------------------------------------------------------------


def test_deviation_page_shows_facts_links_deadlines_notices_and_trail(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[batch])
    deadlines_send_due()
    html = _get(_client(terms.qa), deviation.get_absolute_url())
    assert "Blend time exceeded" in html and batch.number in html
    assert "notify Alpha Therapeutics within 48 h" in html
    assert "Notified" in html
    assert "Investigation summary" in html
    assert 'id="audit-trail"' in html and "Not signed." in html
    assert 'action="{}"'.format(reverse("deviations:close", args=[deviation.number])) not in html


def test_deviation_page_shows_an_unsent_notice_past_due_in_red(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[batch], ago=timedelta(days=3))
    html = _get(_client(terms.qa), deviation.get_absolute_url())
    assert 'class="flag"' in html and "— overdue" in html


def test_site_deviation_page_shows_each_impact_record_with_its_own_deadlines(site_deviation):
    html = _get(_client(site_deviation.recorded_by), site_deviation.get_absolute_url())
    assert f"{site_deviation.number}-ALPHA" in html and f"{site_deviation.number}-ZZOTHER" in html
    assert "notify Alpha Therapeutics within 24 h" in html
    assert "notify ZZOTHER Biologics within 72 h" in html


def test_investigate_then_close_by_signature(terms):
    plant = terms
    batch, _ = _ready_batch(plant, plant.product_a)
    deviation = _record(plant, severity="minor", batches=[batch])
    client = _client(plant.qa)
    _post(
        client,
        reverse("deviations:investigate", args=[deviation.number]),
        {
            "impact_assessment": "No product impact.",
            "root_cause": "Timer mis-set.",
            "immediate_action": "Timer reset.",
            "disposition": "use_as_is",
            "reason": "",
        },
    )
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.UNDER_INVESTIGATION
    assert deviation.disposition == "use_as_is"
    _post(client, reverse("deviations:close", args=[deviation.number]), {"password": PASSWORD})
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.CLOSED
    html = _get(client, deviation.get_absolute_url())
    assert "— closed —" in html


def test_close_refused_inline_while_root_cause_missing(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[batch])
    ds.deviation_investigate(deviation=deviation, by=terms.qa, impact_assessment="None.")
    html = _post(
        _client(terms.qa),
        reverse("deviations:close", args=[deviation.number]),
        {"password": PASSWORD},
        status=400,
    )
    assert f"{deviation.number} cannot be closed: root cause missing." in html


def test_close_refused_inline_with_a_wrong_password(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[batch])
    ds.deviation_investigate(
        deviation=deviation, by=terms.qa, impact_assessment="a", root_cause="b"
    )
    html = _post(
        _client(terms.qa),
        reverse("deviations:close", args=[deviation.number]),
        {"password": "wrong"},
        status=400,
    )
    assert "Signature refused: the password for plant-qa is not correct." in html


def test_severity_change_needs_a_reason_and_recomputes_deadlines(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[batch])
    client = _client(terms.qa)
    url = reverse("deviations:severity", args=[deviation.number])
    html = _post(client, url, {"severity": "critical", "reason": ""}, status=400)
    assert "This field is required." in html
    _post(client, url, {"severity": "critical", "reason": "Sterility assurance affected."})
    deviation.refresh_from_db()
    assert deviation.severity == "critical"
    html = _get(client, deviation.get_absolute_url())
    assert "notify Alpha Therapeutics within 24 h" in html


def test_other_sponsors_deviation_is_not_found_for_cmo_staff_of_one_sponsor(terms):
    batch_b, _ = _ready_batch(terms, terms.product_b)
    deviation = _record(terms, batches=[batch_b])
    only_alpha = make_user(sponsor=terms.sponsor_a, role=Role.CMO_STAFF, username="only-alpha")
    _get(_client(only_alpha), deviation.get_absolute_url(), status=404)


# --- CMO: release queue and disposition --------------------------------------------------------


def test_release_queue_lists_each_batch_with_its_blocking_reasons(terms):
    blocked, _ = _ready_batch(terms, terms.product_a)
    deviation = _record(terms, batches=[blocked])
    ready, _ = _ready_batch(terms, terms.product_b)
    html = _get(_client(terms.qa), reverse("deviations:release-queue"))
    assert blocked.number in html and ready.number in html
    assert f"deviation {deviation.number} (major) is open" in html
    assert "ready" in html


def test_release_queue_says_when_the_sponsor_must_release(terms):
    _agreement(terms, terms.sponsor_a, release_authority="sponsor")
    _ready_batch(terms, terms.product_a)
    html = _get(_client(terms.qa), reverse("deviations:release-queue"))
    assert "the sponsor releases" in html


def test_release_from_the_queue_by_signature(terms):
    batch, lot = _ready_batch(terms, terms.product_b)
    client = _client(terms.qa)
    url = reverse("deviations:release-batch", args=[batch.number])
    assert "Sign disposition" in _get(client, url)
    _post(client, url, {"decision": "release", "password": PASSWORD})
    batch.refresh_from_db()
    lot.refresh_from_db()
    assert (batch.status, lot.status) == ("released", "released")
    assert "— released —" in _get(client, url)


def test_release_refused_inline_naming_every_reason(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    first = _record(terms, batches=[batch])
    second = _record(terms, severity="critical", batches=[batch], title="Second")
    html = _post(
        _client(terms.qa),
        reverse("deviations:release-batch", args=[batch.number]),
        {"decision": "release", "password": PASSWORD},
        status=400,
    )
    assert f"Batch {batch.number} cannot be released: " in html
    assert f"deviation {first.number} (major) is open" in html
    assert f"deviation {second.number} (critical) is open" in html
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED


def test_reject_from_the_disposition_form(terms):
    batch, lot = _ready_batch(terms, terms.product_a)
    _post(
        _client(terms.qa),
        reverse("deviations:release-batch", args=[batch.number]),
        {"decision": "reject", "password": PASSWORD},
    )
    lot.refresh_from_db()
    assert lot.status == "rejected"


def test_cmo_staff_without_approval_sees_no_disposition_form(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    client = _client(terms.operator)
    url = reverse("deviations:release-batch", args=[batch.number])
    assert "Sign disposition" not in _get(client, url)
    _post(client, url, {"decision": "release", "password": PASSWORD}, status=403)


# --- portal -------------------------------------------------------------------------------------


def test_portal_list_shows_own_impact_record_only(site_deviation, auditor_a):
    html = _get(_client(auditor_a), reverse("portal_deviations:list"))
    assert f"{site_deviation.number}-ALPHA" in html
    assert MARKER not in html
    assert f">{site_deviation.number}<" not in html


def test_portal_impact_record_of_a_site_deviation_shows_nothing_of_other_sponsors(
    site_deviation, auditor_a
):
    deadlines_send_due()
    number = f"{site_deviation.number}-ALPHA"
    html = _get(_client(auditor_a), reverse("portal_deviations:detail", args=[number]))
    assert "Foreign particles in API drum" in html and "24 h" in html
    assert MARKER not in html.upper()
    assert "zzother" not in html.lower()


def test_portal_site_deviation_itself_is_not_found(site_deviation, auditor_a):
    url = reverse("portal_deviations:detail", args=[site_deviation.number])
    _get(_client(auditor_a), url, status=404)


def test_portal_other_sponsors_deviation_is_not_found(site_deviation, approver_a):
    number = f"{site_deviation.number}-ZZOTHER"
    client = _client(approver_a)
    _get(client, reverse("portal_deviations:detail", args=[number]), status=404)
    _post(client, reverse("portal_deviations:acknowledge", args=[number]), {}, status=404)
    data = {"decision": "approve", "password": PASSWORD}
    _post(client, reverse("portal_deviations:decide", args=[number]), data, status=404)


def test_portal_acknowledge_records_the_time_to_acknowledge(site_deviation, approver_a):
    number = f"{site_deviation.number}-ALPHA"
    client = _client(approver_a)
    _post(client, reverse("portal_deviations:acknowledge", args=[number]), {})
    impact = Deviation.objects.get(number=number)
    assert impact.sponsor_acknowledged_by == approver_a
    html = _get(client, reverse("portal_deviations:detail", args=[number]))
    assert "after 0 h" in html and ">Acknowledge<" not in html
    html = _post(client, reverse("portal_deviations:acknowledge", args=[number]), {}, status=409)
    assert f"{number} was already acknowledged on" in html


def test_portal_auditor_cannot_acknowledge_and_sees_no_button(site_deviation, auditor_a):
    number = f"{site_deviation.number}-ALPHA"
    client = _client(auditor_a)
    html = _get(client, reverse("portal_deviations:detail", args=[number]))
    assert ">Acknowledge<" not in html
    assert "The notice awaits the sponsor approver's acknowledgement." in html

    response = client.post(reverse("portal_deviations:acknowledge", args=[number]), {})

    assert response.status_code in (403, 409)
    assert "read-only" in response.content.decode()
    assert Deviation.objects.get(number=number).sponsor_acknowledged_at is None


def _pending_sponsor_approval(plant):
    batch, _ = _ready_batch(plant, plant.product_a)
    deviation = _record(plant, batches=[batch])
    ds.deviation_investigate(
        deviation=deviation, by=plant.qa, impact_assessment="a", root_cause="b"
    )
    ds.deviation_close(deviation=deviation, user=plant.qa, password=PASSWORD)
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL
    return deviation


def test_portal_sponsor_approver_approves_closure_by_signature(terms, approver_a):
    deviation = _pending_sponsor_approval(terms)
    client = _client(approver_a)
    url = reverse("portal_deviations:detail", args=[deviation.number])
    html = _get(client, reverse("portal_deviations:list"))
    assert "Awaiting your approval" in html and deviation.number in html
    assert "Closure awaiting your approval" in _get(client, url)
    data = {"decision": "approve", "comment": "", "password": PASSWORD}
    _post(client, reverse("portal_deviations:decide", args=[deviation.number]), data)
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.CLOSED
    assert "— approved —" in _get(client, url)


def test_portal_sponsor_approver_rejection_needs_a_comment(terms, approver_a):
    deviation = _pending_sponsor_approval(terms)
    client = _client(approver_a)
    url = reverse("portal_deviations:decide", args=[deviation.number])
    html = _post(client, url, {"decision": "reject", "password": PASSWORD}, status=400)
    assert f"Say why the closure of {deviation.number} is rejected." in html
    data = {"decision": "reject", "comment": "Root cause not shown.", "password": PASSWORD}
    _post(client, url, data)
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.UNDER_INVESTIGATION


def test_portal_auditor_sees_a_pending_closure_read_only(terms, auditor_a):
    deviation = _pending_sponsor_approval(terms)
    client = _client(auditor_a)
    html = _get(client, reverse("portal_deviations:detail", args=[deviation.number]))
    assert "awaits the sponsor approver" in html and "Closure awaiting your approval" not in html
    data = {"decision": "approve", "comment": "", "password": PASSWORD}
    response = client.post(reverse("portal_deviations:decide", args=[deviation.number]), data)
    html = response.content.decode()
    if response.status_code == 403:
        assert "Your access is read-only: you may not change records." in html
    else:
        assert response.status_code == 400
        assert f"sp-aud-a may not decide on {deviation.number} for the sponsor." in html
    deviation.refresh_from_db()
    assert deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL


def test_portal_pages_refuse_cmo_users(terms):
    _get(_client(terms.qa), reverse("portal_deviations:list"), status=403)


def test_portal_sponsor_approver_releases_a_batch_awaiting_the_sponsor(terms, approver_a):
    _agreement(terms, terms.sponsor_a, release_authority="sponsor")
    batch, lot = _ready_batch(terms, terms.product_a)
    bs_client = _client(terms.qa)
    _post(
        bs_client,
        reverse("deviations:release-batch", args=[batch.number]),
        {"decision": "release", "password": PASSWORD},
    )
    batch.refresh_from_db()
    assert batch.status == Batch.Status.UNDER_REVIEW
    client = _client(approver_a)
    html = _get(client, reverse("portal_deviations:releases"))
    assert batch.number in html and "the sponsor releases" in html
    html = _post(
        client,
        reverse("portal_deviations:releases"),
        {"batch": batch.number, "password": "wrong"},
        status=400,
    )
    assert "Signature refused" in html
    _post(
        client, reverse("portal_deviations:releases"), {"batch": batch.number, "password": PASSWORD}
    )
    batch.refresh_from_db()
    lot.refresh_from_db()
    assert (batch.status, lot.status) == ("released", "released")


def test_portal_auditor_cannot_release(terms, auditor_a):
    _agreement(terms, terms.sponsor_a, release_authority="sponsor")
    batch, _ = _ready_batch(terms, terms.product_a)
    from batches.disposition import batch_disposition

    batch_disposition(batch=batch, user=terms.qa, password=PASSWORD, release=True)
    client = _client(auditor_a)
    html = _get(client, reverse("portal_deviations:releases"))
    assert batch.number in html and "read-only" in html
    html = _post(
        client,
        reverse("portal_deviations:releases"),
        {"batch": batch.number, "password": PASSWORD},
        status=403,
    )
    assert "Your access is read-only: you may not change records." in html


def test_portal_releases_list_no_other_sponsors_batch(terms, auditor_b):
    _agreement(terms, terms.sponsor_a, release_authority="sponsor")
    batch, _ = _ready_batch(terms, terms.product_a)
    from batches.disposition import batch_disposition

    batch_disposition(batch=batch, user=terms.qa, password=PASSWORD, release=True)
    html = _get(_client(auditor_b), reverse("portal_deviations:releases"))
    assert batch.number not in html


# --- query counts -------------------------------------------------------------------------------


def _record_on(terms, batch):
    def grow(n):
        for _ in range(n):
            _record(terms, batches=[batch])

    return grow


def test_deviation_list_query_count_is_constant(terms):
    batch, _ = _ready_batch(terms, terms.product_a)
    client = _client(terms.qa)
    assert_constant_queries(client, reverse("deviations:list"), _record_on(terms, batch))


def test_portal_deviation_list_query_count_is_constant(terms, auditor_a):
    batch, _ = _ready_batch(terms, terms.product_a)
    client = _client(auditor_a)
    assert_constant_queries(client, reverse("portal_deviations:list"), _record_on(terms, batch))


def test_release_queue_query_count_is_constant(terms):
    client = _client(terms.qa)

    def grow(n):
        for index in range(n):
            batch, _ = terms.run_batch(terms.product_a, [], release=False)
            if index % 2:
                _record(terms, batches=[batch])

    def more(n):
        for index in range(n):
            product = terms.product_a if index % 2 else terms.product_b
            batch, _ = terms.run_batch(product, [], release=False)
            if index % 3 == 0:
                _record(terms, batches=[batch])

    assert_constant_queries(client, reverse("deviations:release-queue"), grow, more=more)
