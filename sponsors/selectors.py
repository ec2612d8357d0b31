"""Scoped reads about sponsors, their agreements and their users."""

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from qms.models import Deadline

from .models import AccessGrant, Product, QualityAgreement, Severity, Sponsor, UserProfile

_ORG_ATTR = "_qms_organisation"


def user_sponsor(user) -> Sponsor | None:
    """The sponsor organisation a user belongs to, or None for CMO staff (memoised)."""
    if not getattr(user, "is_authenticated", False):
        return None
    if _ORG_ATTR not in user.__dict__:
        profile = UserProfile.objects.filter(user_id=user.pk).select_related("sponsor").first()
        user.__dict__[_ORG_ATTR] = profile.sponsor if profile else None
    return user.__dict__[_ORG_ATTR]


def is_sponsor_user(user) -> bool:
    return user_sponsor(user) is not None


def agreement_in_force(*, sponsor: Sponsor, at: datetime | None = None) -> QualityAgreement | None:
    """The agreement version that governs an event of `sponsor` at time `at` (default now)."""
    return (
        QualityAgreement.objects.filter(sponsor=sponsor)
        .in_force(at or timezone.now())
        .prefetch_related("change_rules")
        .first()
    )


def sponsor_list(*, user, action: str = "view"):
    return Sponsor.objects.for_user(user, action).order_by("code")


def sponsor_get(*, user, code: str, action: str = "view") -> Sponsor:
    return Sponsor.objects.for_user(user, action).get(code=code)


def _count(queryset) -> Subquery:
    """A correlated COUNT(*) of `queryset` (already filtered on `sponsor=OuterRef("pk")`)."""
    return Coalesce(
        Subquery(queryset.order_by().values("sponsor").annotate(n=Count("pk")).values("n")[:1]),
        0,
    )


def sponsor_dashboard(*, user) -> list[Sponsor]:
    """Each sponsor the user works on, annotated with the counts of its open items (open
    deviations by severity, its own and impact records alike; deadlines unmet past their due
    time, whatever reminders were sent, and among them the deviation notices; batches awaiting
    release; open CAPAs) and the version of the agreement in force; one query however many
    sponsors and rows."""
    from batches.models import Batch, Lot
    from deviations.models import Capa, CapaAction, Deviation

    now = timezone.now()
    own = {"sponsor": OuterRef("pk")}
    in_force = QualityAgreement.objects.filter(**own).in_force(now).values("version")[:1]
    unmet = Deadline.objects.filter(**own).unmet()
    open_deviations = Deviation.objects.filter(**own).exclude(status=Deviation.Status.CLOSED)
    awaiting_release = Batch.objects.filter(
        **own, status__in=[Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW]
    )
    open_capas = Capa.objects.filter(**own).exclude(status=Capa.Status.CLOSED)
    overdue_action = CapaAction.objects.filter(
        capa=OuterRef("pk"), completed_at__isnull=True, due_date__lt=timezone.localdate(now)
    )
    return list(
        sponsor_list(user=user).annotate(
            active_products=_count(Product.objects.filter(**own, is_active=True)),
            draft_agreements=_count(
                QualityAgreement.objects.filter(**own, status=QualityAgreement.Status.DRAFT)
            ),
            agreement_version=Subquery(in_force),
            open_deadlines=_count(unmet),
            overdue_deadlines=_count(unmet.overdue(now)),
            overdue_notices=_count(
                unmet.overdue(now).filter(
                    kind__startswith="deviation_notice", escalates__isnull=True
                )
            ),
            open_minor_deviations=_count(open_deviations.filter(severity=Severity.MINOR)),
            open_major_deviations=_count(open_deviations.filter(severity=Severity.MAJOR)),
            open_critical_deviations=_count(open_deviations.filter(severity=Severity.CRITICAL)),
            open_capas=_count(open_capas),
            capas_with_overdue_actions=_count(open_capas.filter(Exists(overdue_action))),
            batches_in_progress=_count(
                Batch.objects.filter(
                    **own, status__in=[Batch.Status.PLANNED, Batch.Status.IN_PROGRESS]
                )
            ),
            batches_awaiting_release=_count(awaiting_release),
            batches_awaiting_sponsor=_count(awaiting_release.filter(cmo_released_at__isnull=False)),
            lots_in_quarantine=_count(Lot.objects.filter(**own, status=Lot.Status.QUARANTINE)),
        )
    )


def sponsor_open_deviations(*, user, sponsor: Sponsor) -> int:
    """How many of the sponsor's own deviation records (impact records included) are open."""
    from deviations.models import Deviation

    return (
        Deviation.objects.for_user(user)
        .filter(sponsor=sponsor)
        .exclude(status=Deviation.Status.CLOSED)
        .count()
    )


def product_list(*, user, sponsor: Sponsor | None = None):
    products = Product.objects.for_user(user).select_related("sponsor")
    if sponsor is not None:
        products = products.filter(sponsor=sponsor)
    return products


def agreement_list(*, user, sponsor: Sponsor | None = None):
    agreements = QualityAgreement.objects.for_user(user).select_related("sponsor")
    if sponsor is not None:
        agreements = agreements.filter(sponsor=sponsor)
    return agreements


def grant_list(*, user, sponsor: Sponsor):
    """Who has access to the sponsor; visible to those who may change the sponsor's records."""
    return (
        AccessGrant.objects.for_user(user, "change")
        .filter(sponsor=sponsor)
        .select_related("user", "sponsor", "granted_by")
        .order_by("revoked_at", "role", "user__username")
    )
