"""Sponsor scoping, in one place: every sponsor-owned read goes through `.for_user(user, action)`.

A user may act on a sponsor's records when they hold the django-guardian object permission for
that action on the `Sponsor` row *and* an access grant for that sponsor is valid right now
(started, not expired, not revoked). Anything that cannot be decided is denied."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast
from django.utils import timezone

ACTION_CODENAMES = {
    "view": "view_sponsor",
    "change": "change_sponsor",
    "approve": "approve_sponsor",
    "sponsor_approve": "sponsor_approve_sponsor",
}

_CACHE_ATTR = "_qms_sponsor_scope"


def sponsor_ids_for(user, action: str = "view") -> frozenset[int]:
    """The ids of the sponsors on which `user` may perform `action` now (memoised on the user
    object for the length of a request)."""
    if action not in ACTION_CODENAMES:
        raise ValueError(f"unknown sponsor action {action!r}")
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cache = user.__dict__.setdefault(_CACHE_ATTR, {})
    if action not in cache:
        cache[action] = _compute_sponsor_ids(user, action)
    return cache[action]


def forget_scope(user) -> None:
    """Drop the memoised scope after the user's grants changed."""
    if user is not None:
        user.__dict__.pop(_CACHE_ATTR, None)


def _compute_sponsor_ids(user, action: str) -> frozenset[int]:
    from guardian.models import UserObjectPermission

    from sponsors.models import AccessGrant, Sponsor

    if user.is_superuser:
        return frozenset(Sponsor.objects.values_list("id", flat=True))
    permitted = (
        UserObjectPermission.objects.filter(
            user_id=user.pk,
            permission__codename=ACTION_CODENAMES[action],
            permission__content_type__app_label="sponsors",
            permission__content_type__model="sponsor",
        )
        .annotate(sponsor_pk=Cast("object_pk", models.BigIntegerField()))
        .values("sponsor_pk")
    )
    granted = AccessGrant.objects.active(at=timezone.now()).filter(user_id=user.pk)
    ids = Sponsor.objects.filter(pk__in=granted.values("sponsor_id")).filter(pk__in=permitted)
    return frozenset(ids.values_list("id", flat=True))


class SponsorScopedQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        lookup = f"{self.model.sponsor_lookup}__in"
        return self.filter(**{lookup: sponsor_ids_for(user, action)})


SponsorScopedManager = models.Manager.from_queryset(SponsorScopedQuerySet)


def is_cmo_user(user) -> bool:
    from sponsors.selectors import user_sponsor

    return user_sponsor(user) is None


class SharedQuerySet(models.QuerySet):
    """Rows that belong to one sponsor or, with no sponsor, to the site (raw-material lots,
    equipment, customers). CMO users with any sponsor in scope see the site's rows; a sponsor's
    people see a site row only where it touches their own sponsor's records, as the model's
    `sponsor_link(ids)` says."""

    def for_user(self, user, action: str = "view"):
        ids = sponsor_ids_for(user, action)
        if not ids:
            return self.none()
        has_sponsor = any(f.name == "sponsor" for f in self.model._meta.concrete_fields)
        cmo = is_cmo_user(user)
        if not has_sponsor:
            return self.all() if cmo else self.filter(self.model.sponsor_link(ids))
        own = Q(sponsor_id__in=ids)
        if cmo:
            return self.filter(own | Q(sponsor__isnull=True))
        return self.filter(own | (Q(sponsor__isnull=True) & self.model.sponsor_link(ids)))


SharedManager = models.Manager.from_queryset(SharedQuerySet)


class SponsorOwned(models.Model):
    """A record that belongs to exactly one sponsor; read it only through `for_user`."""

    sponsor = models.ForeignKey("sponsors.Sponsor", on_delete=models.PROTECT, db_index=True)

    sponsor_lookup = "sponsor_id"
    objects = SponsorScopedManager()

    class Meta:
        abstract = True
