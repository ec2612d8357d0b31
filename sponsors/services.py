"""Business actions on sponsors, products, quality agreements and access grants. Each is one
transaction, attributed in the audit trail, and refuses bad input with a RuleViolation."""

from datetime import datetime
from enum import StrEnum

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from qms.audit import audit_context
from qms.bounds import date_check
from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import signature_apply, signer_verify
from qms.tenancy import ACTION_CODENAMES, forget_scope, sponsor_ids_for

from .models import (
    ROLE_ACTIONS,
    SPONSOR_SIDE_ROLES,
    AccessGrant,
    ChangeCategory,
    ChangeRule,
    Obligation,
    Product,
    QualityAgreement,
    Role,
    Sponsor,
    UserProfile,
)


class SponsorError(StrEnum):
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    NOT_PERMITTED = "not_permitted"
    NOT_DRAFT = "agreement_not_draft"
    EFFECTIVE_DATE = "agreement_effective_date"
    REASON_REQUIRED = "reason_required"
    WRONG_ORGANISATION = "grant_wrong_organisation"
    EXPIRY_REQUIRED = "grant_expiry_required"
    ALREADY_REVOKED = "grant_already_revoked"


def _validation_detail(record, error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        parts = [
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in error.message_dict.items()
        ]
    else:
        parts = error.messages
    return f"{record} is not valid — " + "; ".join(parts)


def _full_clean(record, exclude=None) -> None:
    try:
        record.full_clean(exclude=exclude)
    except ValidationError as error:
        raise RuleViolation(SponsorError.INVALID, _validation_detail(record, error)) from error


def _require(user, sponsor: Sponsor, action: str, what: str) -> None:
    if sponsor.pk not in sponsor_ids_for(user, action):
        raise RuleViolation(
            SponsorError.NOT_PERMITTED,
            f"{user.get_username()} may not {what} for sponsor {sponsor.code}.",
        )


# --- sponsors and products ----------------------------------------------------------------


def sponsor_create(*, code: str, name: str, contact_email: str = "", by=None) -> Sponsor:
    sponsor = Sponsor(code=code, name=name, contact_email=contact_email)
    _full_clean(sponsor)
    with transaction.atomic(), audit_context(actor=by):
        sponsor.save()
    return sponsor


def product_create(*, sponsor: Sponsor, code: str, name: str, regulatory_basis: str, by) -> Product:
    if by is not None and not by.is_superuser:
        _require(by, sponsor, "change", "add products")
    product = Product(sponsor=sponsor, code=code, name=name, regulatory_basis=regulatory_basis)
    _full_clean(product)
    with transaction.atomic(), audit_context(actor=by):
        product.save()
    return product


# --- quality agreements -------------------------------------------------------------------

AGREEMENT_TERMS = (
    "title",
    "reference",
    "minor_deviation_notice_hours",
    "major_deviation_notice_hours",
    "critical_deviation_notice_hours",
    "oos_notice_hours",
    "investigation_summary_business_days",
    "capa_notice_hours",
    "sponsor_closes_minor",
    "sponsor_closes_major",
    "sponsor_closes_critical",
    "release_authority",
    "evidence_handoff_hours",
    "audit_notice_days",
)


def quality_agreement_create_draft(
    *, sponsor: Sponsor, by, rules: dict[str, tuple[str, int]] | None = None, **terms
) -> QualityAgreement:
    """A new draft version, starting from the latest version's terms and change rules."""
    unknown = set(terms) - set(AGREEMENT_TERMS)
    if unknown:
        raise RuleViolation(SponsorError.INVALID, f"Unknown agreement terms: {sorted(unknown)}")
    with transaction.atomic(), audit_context(actor=by):
        latest = (
            QualityAgreement.objects.select_for_update()
            .filter(sponsor=sponsor)
            .order_by("-version")
            .first()
        )
        base_terms = {name: getattr(latest, name) for name in AGREEMENT_TERMS} if latest else {}
        base_rules = (
            {
                rule.category: (rule.obligation, rule.lead_time_days)
                for rule in latest.change_rules.all()
            }
            if latest
            else {}
        )
        agreement = QualityAgreement(
            sponsor=sponsor,
            version=(latest.version + 1) if latest else 1,
            **{**base_terms, **terms},
        )
        _full_clean(agreement)
        agreement.save()
        merged = {**base_rules, **(rules or {})}
        _write_rules(agreement, merged)
    return agreement


def _write_rules(agreement: QualityAgreement, rules: dict[str, tuple[str, int]]) -> None:
    unknown = set(rules) - set(ChangeCategory.values)
    if unknown:
        raise RuleViolation(SponsorError.INVALID, f"Unknown change categories: {sorted(unknown)}")
    existing = {rule.category: rule for rule in agreement.change_rules.all()}
    for category in ChangeCategory.values:
        obligation, lead = rules.get(category, (Obligation.NONE, 0))
        rule = existing.get(category) or ChangeRule(agreement=agreement, category=category)
        if rule.pk and (rule.obligation, rule.lead_time_days) == (obligation, lead):
            continue
        rule.obligation, rule.lead_time_days = obligation, lead
        try:
            rule.full_clean(exclude=["agreement", "sponsor"])
        except ValidationError as error:
            raise RuleViolation(
                SponsorError.INVALID,
                f"{agreement}, change rule {category}: " + _validation_detail(rule, error),
            ) from error
        rule.save()


def quality_agreement_update(
    *,
    agreement: QualityAgreement,
    by,
    reason: str = "",
    rules: dict[str, tuple[str, int]] | None = None,
    **terms,
) -> QualityAgreement:
    """Change terms. Once a version is effective (or superseded), every change needs a reason."""
    unknown = set(terms) - set(AGREEMENT_TERMS)
    if unknown:
        raise RuleViolation(SponsorError.INVALID, f"Unknown agreement terms: {sorted(unknown)}")
    if not by.is_superuser:
        _require(by, agreement.sponsor, "change", "change quality agreements")
    if not agreement.is_draft and not reason.strip():
        raise RuleViolation(
            SponsorError.REASON_REQUIRED,
            f"{agreement} is {agreement.status}: a reason for the change is required.",
        )
    with transaction.atomic(), audit_context(actor=by, reason=reason.strip() or None):
        locked = QualityAgreement.objects.select_for_update().get(pk=agreement.pk)
        for name, value in terms.items():
            setattr(locked, name, value)
        _full_clean(locked)
        locked.save()
        if rules:
            current = {
                r.category: (r.obligation, r.lead_time_days) for r in locked.change_rules.all()
            }
            _write_rules(locked, {**current, **rules})
    return locked


def quality_agreement_make_effective(
    *,
    agreement: QualityAgreement,
    user,
    password: str,
    effective_from: datetime | None = None,
    request=None,
) -> Signature:
    """Approve a draft by e-signature and put it in force from `effective_from` (default now).
    The version it follows is marked superseded; it still governs events before that date."""
    if not user.is_superuser:
        _require(user, agreement.sponsor, "approve", "approve quality agreements")
    signer_verify(user=user, password=password, request=request)
    effective_from = effective_from or timezone.now()
    date_check(effective_from, f"{agreement}: the effective date", SponsorError.EFFECTIVE_DATE)
    with transaction.atomic(), audit_context(actor=user, reason=f"approved {agreement}"):
        locked = QualityAgreement.objects.select_for_update().get(pk=agreement.pk)
        if not locked.is_draft:
            raise RuleViolation(
                SponsorError.NOT_DRAFT,
                f"{locked} is {locked.status}; only a draft can be approved and made effective.",
            )
        _full_clean(locked)
        previous = list(
            QualityAgreement.objects.select_for_update()
            .filter(sponsor=locked.sponsor, status=QualityAgreement.Status.EFFECTIVE)
            .exclude(pk=locked.pk)
        )
        for older in previous:
            if older.effective_from >= effective_from:
                raise RuleViolation(
                    SponsorError.EFFECTIVE_DATE,
                    f"{locked} cannot take effect on {effective_from:%Y-%m-%d %H:%M} UTC: "
                    f"{older} is effective from {older.effective_from:%Y-%m-%d %H:%M} UTC.",
                )
        locked.status = QualityAgreement.Status.EFFECTIVE
        locked.effective_from = effective_from
        locked.save()
        signature = signature_apply(record=locked, user=user, meaning=Signature.Meaning.APPROVED)
        with audit_context(reason=f"superseded by {locked}"):
            for older in previous:
                older.status = QualityAgreement.Status.SUPERSEDED
                older.save(update_fields=["status"])
    agreement.refresh_from_db()
    return signature


# --- roles and access grants --------------------------------------------------------------


def user_profile_set(*, user, sponsor: Sponsor | None, by=None, job_title: str = "") -> UserProfile:
    with transaction.atomic(), audit_context(actor=by):
        profile, _ = UserProfile.objects.update_or_create(
            user=user, defaults={"sponsor": sponsor, "job_title": job_title}
        )
    return profile


def _user_organisation(user) -> Sponsor | None:
    profile = UserProfile.objects.filter(user=user).select_related("sponsor").first()
    return profile.sponsor if profile else None


def access_grant_check(*, user, sponsor: Sponsor, role: str, expires_at: datetime | None) -> None:
    """Sponsor-side roles are only for the sponsor's own people, CMO roles only for CMO staff;
    an auditor's grant must expire."""
    if role not in Role.values:
        raise RuleViolation(SponsorError.INVALID, f"Unknown role {role!r}.")
    date_check(expires_at, "The access grant's expiry", SponsorError.INVALID)
    organisation = _user_organisation(user)
    name = user.get_username()
    if role in SPONSOR_SIDE_ROLES and (organisation is None or organisation.pk != sponsor.pk):
        raise RuleViolation(
            SponsorError.WRONG_ORGANISATION,
            f"{name} does not belong to sponsor {sponsor.code}; the role "
            f"{Role(role).label} is for the sponsor's own people.",
        )
    if role not in SPONSOR_SIDE_ROLES and organisation is not None:
        raise RuleViolation(
            SponsorError.WRONG_ORGANISATION,
            f"{name} belongs to sponsor {organisation.code}; the role {Role(role).label} is "
            "for CMO staff.",
        )
    if role == Role.SPONSOR_AUDITOR and expires_at is None:
        raise RuleViolation(
            SponsorError.EXPIRY_REQUIRED,
            f"An auditor's access to {sponsor.code} needs an expiry date.",
        )


def access_grant_create(
    *,
    user,
    sponsor: Sponsor,
    role: str,
    by=None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    reason: str = "",
) -> AccessGrant:
    """Give `user` a role on `sponsor` for a period, and the guardian permissions of the role."""
    access_grant_check(user=user, sponsor=sponsor, role=role, expires_at=expires_at)
    grant = AccessGrant(
        user=user,
        sponsor=sponsor,
        role=role,
        starts_at=starts_at or timezone.now(),
        expires_at=expires_at,
        granted_by=by,
        reason=reason,
    )
    _full_clean(grant, exclude=["granted_by"])
    with transaction.atomic(), audit_context(actor=by, reason=reason or None):
        try:
            grant.save()
        except IntegrityError as error:
            raise RuleViolation(SponsorError.INVALID, f"{grant} is not valid: {error}") from error
        _sync_permissions(user, sponsor)
    forget_scope(user)
    return grant


def access_grant_revoke(*, grant: AccessGrant, by=None, reason: str = "") -> AccessGrant:
    with transaction.atomic(), audit_context(actor=by, reason=reason or "access revoked"):
        locked = AccessGrant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            raise RuleViolation(
                SponsorError.ALREADY_REVOKED,
                f"{locked} was already revoked on {locked.revoked_at:%Y-%m-%d %H:%M} UTC.",
            )
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        _sync_permissions(locked.user, locked.sponsor)
    forget_scope(grant.user)
    return locked


def _sync_permissions(user, sponsor: Sponsor) -> None:
    """The guardian permissions on `sponsor` are exactly those of the user's unrevoked grants."""
    wanted: set[str] = set()
    for role in AccessGrant.objects.filter(
        user=user, sponsor=sponsor, revoked_at__isnull=True
    ).values_list("role", flat=True):
        wanted.update(ROLE_ACTIONS[role])
    for action, codename in ACTION_CODENAMES.items():
        if action in wanted:
            assign_perm(f"sponsors.{codename}", user, sponsor)
        else:
            remove_perm(f"sponsors.{codename}", user, sponsor)
