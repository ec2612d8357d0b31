"""factory_boy factories for the tests; grants go through the service so guardian permissions
are real."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from sponsors import services
from sponsors.models import Product, QualityAgreement, Role, Sponsor

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class SponsorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sponsor

    code = factory.Sequence(lambda n: f"sponsor{n}")
    name = factory.LazyAttribute(lambda s: f"{s.code.title()} Pharma")
    contact_email = factory.LazyAttribute(lambda s: f"quality@{s.code}.example")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sponsor = factory.SubFactory(SponsorFactory)
    code = factory.Sequence(lambda n: f"P-{n:04d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    regulatory_basis = Product.RegulatoryBasis.DRUG


class QualityAgreementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QualityAgreement

    sponsor = factory.SubFactory(SponsorFactory)
    version = factory.Sequence(lambda n: n + 1)
    status = QualityAgreement.Status.DRAFT
    minor_deviation_notice_hours = None
    major_deviation_notice_hours = 72
    critical_deviation_notice_hours = 24


def make_user(
    *,
    sponsor=None,
    role=None,
    organisation=None,
    expires_in=timedelta(days=30),
    starts_ago=timedelta(minutes=1),
    **kw,
):
    """A user; with `role`, granted that role on `sponsor` (sponsor-side roles make the user a
    member of the sponsor's organisation)."""
    user = UserFactory(**kw)
    if role in (Role.SPONSOR_AUDITOR, Role.SPONSOR_APPROVER):
        organisation = organisation or sponsor
    if organisation is not None:
        services.user_profile_set(user=user, sponsor=organisation)
    if role is not None:
        expires_at = timezone.now() + expires_in if role == Role.SPONSOR_AUDITOR else None
        services.access_grant_create(
            user=user,
            sponsor=sponsor,
            role=role,
            starts_at=timezone.now() - starts_ago,
            expires_at=expires_at,
        )
    return user
