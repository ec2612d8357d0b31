"""Roles on sponsors: guardian object permissions on Sponsor, counted only while an access grant
is valid; the one scoping method `for_user`."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_perms

from qms.errors import RuleViolation
from qms.models import AuditEvent
from qms.tenancy import sponsor_ids_for
from sponsors import services
from sponsors.models import AccessGrant, Product, Role, Sponsor
from tests.factories import ProductFactory, UserFactory, make_user

pytestmark = pytest.mark.django_db


def test_cmo_staff_sees_only_assigned_sponsors(cmo_staff, product_a, product_b):
    assert list(Product.objects.for_user(cmo_staff)) == [product_a]
    assert sponsor_ids_for(cmo_staff, "change") == {product_a.sponsor_id}
    assert sponsor_ids_for(cmo_staff, "approve") == frozenset()


def test_qa_approver_may_approve(qa_approver, sponsor_a):
    assert sponsor_ids_for(qa_approver, "approve") == {sponsor_a.pk}


def test_sponsor_approver_may_sign_for_the_sponsor_but_not_change(sponsor_approver_a, sponsor_a):
    assert sponsor_ids_for(sponsor_approver_a, "sponsor_approve") == {sponsor_a.pk}
    assert sponsor_ids_for(sponsor_approver_a, "change") == frozenset()


def test_auditor_reads_only_while_the_grant_is_valid(sponsor_a, product_a):
    current = make_user(sponsor=sponsor_a, role=Role.SPONSOR_AUDITOR)
    expired = make_user(
        sponsor=sponsor_a,
        role=Role.SPONSOR_AUDITOR,
        starts_ago=timedelta(days=10),
        expires_in=-timedelta(days=1),
    )
    not_yet = UserFactory()
    services.user_profile_set(user=not_yet, sponsor=sponsor_a)
    services.access_grant_create(
        user=not_yet,
        sponsor=sponsor_a,
        role=Role.SPONSOR_AUDITOR,
        starts_at=timezone.now() + timedelta(days=1),
        expires_at=timezone.now() + timedelta(days=5),
    )

    assert list(Product.objects.for_user(current)) == [product_a]
    assert list(Product.objects.for_user(expired)) == []
    assert list(Product.objects.for_user(not_yet)) == []
    # the guardian permission is still there; the grant is what expired
    assert "view_sponsor" in get_perms(expired, sponsor_a)


def test_guardian_permission_without_a_grant_gives_no_access(sponsor_a, product_a):
    user = UserFactory()
    assign_perm("sponsors.view_sponsor", user, sponsor_a)
    assert list(Product.objects.for_user(user)) == []


def test_revoking_removes_access_and_permissions(cmo_staff, sponsor_a, product_a, superuser):
    grant = AccessGrant.objects.get(user=cmo_staff, sponsor=sponsor_a)

    services.access_grant_revoke(grant=grant, by=superuser, reason="left the company")

    cmo_staff.refresh_from_db()
    assert list(Product.objects.for_user(cmo_staff)) == []
    assert get_perms(cmo_staff, sponsor_a) == []


def test_revoking_twice_is_refused(cmo_staff, sponsor_a):
    grant = AccessGrant.objects.get(user=cmo_staff, sponsor=sponsor_a)
    services.access_grant_revoke(grant=grant)
    with pytest.raises(RuleViolation, match="was already revoked on"):
        services.access_grant_revoke(grant=grant)


def test_granting_and_revoking_are_audited(sponsor_a, superuser):
    user = UserFactory()
    before = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0

    grant = services.access_grant_create(
        user=user, sponsor=sponsor_a, role=Role.CMO_STAFF, by=superuser, reason="new hire"
    )
    services.access_grant_revoke(grant=grant, by=superuser, reason="moved to another site")

    events = AuditEvent.objects.filter(seq__gt=before)
    grant_events = events.filter(model="sponsors.accessgrant", object_id=str(grant.pk))
    assert [e.action for e in grant_events] == ["create", "update"]
    assert grant_events[0].reason == "new hire"
    assert grant_events[1].reason == "moved to another site"
    assert grant_events[1].actor_username == superuser.username
    assert grant_events[1].sponsor_id == sponsor_a.pk
    permission_events = events.filter(model="guardian.userobjectpermission")
    assert {e.action for e in permission_events} == {"create", "delete"}


def test_sponsor_role_only_for_the_sponsors_own_people(sponsor_a, sponsor_b):
    outsider = make_user(organisation=sponsor_b)
    with pytest.raises(RuleViolation) as refused:
        services.access_grant_create(
            user=outsider,
            sponsor=sponsor_a,
            role=Role.SPONSOR_AUDITOR,
            expires_at=timezone.now() + timedelta(days=1),
        )
    assert refused.value.code == "grant_wrong_organisation"
    assert refused.value.detail == (
        f"{outsider.username} does not belong to sponsor alpha; the role Sponsor auditor is for "
        "the sponsor's own people."
    )
    assert not AccessGrant.objects.filter(user=outsider).exists()


def test_cmo_role_not_for_sponsor_users(sponsor_a):
    member = make_user(organisation=sponsor_a)
    with pytest.raises(RuleViolation, match="belongs to sponsor alpha; the role CMO staff is for"):
        services.access_grant_create(user=member, sponsor=sponsor_a, role=Role.CMO_STAFF)


def test_auditor_grant_must_expire(sponsor_a):
    member = make_user(organisation=sponsor_a)
    with pytest.raises(RuleViolation, match="An auditor's access to alpha needs an expiry date."):
        services.access_grant_create(user=member, sponsor=sponsor_a, role=Role.SPONSOR_AUDITOR)


def test_superuser_sees_every_sponsor(superuser, sponsor_a, sponsor_b):
    assert set(Sponsor.objects.for_user(superuser)) == {sponsor_a, sponsor_b}


def test_inactive_or_anonymous_users_see_nothing(cmo_staff, sponsor_a):
    from django.contrib.auth.models import AnonymousUser

    assert sponsor_ids_for(AnonymousUser()) == frozenset()
    cmo_staff.is_active = False
    assert sponsor_ids_for(cmo_staff) == frozenset()


def test_unknown_action_fails_closed(cmo_staff):
    with pytest.raises(ValueError, match="unknown sponsor action 'delete'"):
        Product.objects.for_user(cmo_staff, "delete")


def test_sponsor_user_lands_on_the_portal(auditor_a):
    client = Client()
    client.force_login(auditor_a)
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home")


def test_sponsor_user_cannot_open_cmo_pages(auditor_a, product_a):
    client = Client()
    client.force_login(auditor_a)
    assert client.get(reverse("sponsors:products")).status_code == 403
    assert client.get(reverse("sponsors:product", args=[product_a.pk])).status_code == 403


def test_portal_shows_only_own_sponsor(auditor_a, product_a, product_b):
    client = Client()
    client.force_login(auditor_a)
    response = client.get(reverse("portal:home"))
    assert response.status_code == 200
    assert product_a.name.encode() in response.content
    assert b"ZZOTHER" not in response.content


def test_expired_auditor_is_refused_by_the_portal(sponsor_a):
    expired = make_user(
        sponsor=sponsor_a,
        role=Role.SPONSOR_AUDITOR,
        starts_ago=timedelta(days=10),
        expires_in=-timedelta(days=1),
    )
    client = Client()
    client.force_login(expired)
    response = client.get(reverse("portal:home"))
    assert response.status_code == 403
    assert b"Your access to the portal is not valid now" in response.content


def test_cmo_home_counts_open_items_per_sponsor(cmo_staff, sponsor_a, sponsor_b):
    ProductFactory.create_batch(3, sponsor=sponsor_a)
    ProductFactory(sponsor=sponsor_a, is_active=False)
    ProductFactory.create_batch(2, sponsor=sponsor_b)
    services.quality_agreement_create_draft(sponsor=sponsor_a, by=cmo_staff)
    client = Client()
    client.force_login(cmo_staff)

    response = client.get(reverse("home"))

    [row] = response.context["sponsors"]
    assert row == sponsor_a
    assert (row.active_products, row.draft_agreements, row.agreement_version) == (3, 1, None)
    assert b"ZZOTHER" not in response.content


def test_admin_grants_a_role_through_the_service(superuser, sponsor_a, product_a):
    staff = UserFactory()
    client = Client()
    client.force_login(superuser)

    response = client.post(
        reverse("admin:sponsors_accessgrant_add"),
        {
            "user": staff.pk,
            "sponsor": sponsor_a.pk,
            "role": Role.CMO_STAFF,
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
            "reason": "new hire",
        },
    )

    assert response.status_code == 302
    grant = AccessGrant.objects.get(user=staff)
    assert grant.granted_by == superuser
    assert set(get_perms(staff, sponsor_a)) == {"view_sponsor", "change_sponsor"}
    assert list(Product.objects.for_user(staff)) == [product_a]


def test_admin_refuses_a_sponsor_role_for_cmo_staff(superuser, sponsor_a):
    staff = UserFactory()
    client = Client()
    client.force_login(superuser)

    response = client.post(
        reverse("admin:sponsors_accessgrant_add"),
        {
            "user": staff.pk,
            "sponsor": sponsor_a.pk,
            "role": Role.SPONSOR_AUDITOR,
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
            "expires_at_0": "2027-01-01",
            "expires_at_1": "00:00:00",
        },
    )

    assert response.status_code == 200
    assert f"{staff.username} does not belong to sponsor alpha" in response.content.decode()
    assert not AccessGrant.objects.filter(user=staff).exists()


def test_admin_revoke_action(superuser, cmo_staff, sponsor_a):
    grant = AccessGrant.objects.get(user=cmo_staff)
    client = Client()
    client.force_login(superuser)

    client.post(
        reverse("admin:sponsors_accessgrant_changelist"),
        {"action": "revoke", "_selected_action": [grant.pk]},
    )

    grant.refresh_from_db()
    assert grant.revoked_at is not None
    assert get_perms(cmo_staff, sponsor_a) == []
