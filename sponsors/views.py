"""CMO pages for sponsors, products and quality agreements."""

from datetime import UTC

import django_filters
from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from qms.access import cmo_required
from qms.errors import RuleViolation
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for

from . import selectors, services
from .models import Product, QualityAgreement, Sponsor


def dashboard(request):
    sponsors = selectors.sponsor_dashboard(user=request.user)
    return render(request, "sponsors/dashboard.html", {"sponsors": sponsors})


@cmo_required
def sponsor_detail(request, code: str):
    sponsor = get_object_or_404(selectors.sponsor_list(user=request.user), code=code)
    context = {
        "sponsor": sponsor,
        "products": selectors.product_list(user=request.user, sponsor=sponsor),
        "agreements": selectors.agreement_list(user=request.user, sponsor=sponsor),
        "in_force": selectors.agreement_in_force(sponsor=sponsor),
        "grants": selectors.grant_list(user=request.user, sponsor=sponsor),
        **record_trail(sponsor),
    }
    return render(request, "sponsors/sponsor_detail.html", context)


class ProductFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    sponsor = django_filters.ModelChoiceFilter(queryset=Sponsor.objects.none(), label="Sponsor")
    regulatory_basis = django_filters.ChoiceFilter(
        choices=Product.RegulatoryBasis.choices, label="Regulatory basis"
    )
    sort = django_filters.OrderingFilter(
        fields=(("code", "code"), ("name", "name"), ("sponsor__code", "sponsor")),
        label="Sort",
    )

    class Meta:
        model = Product
        fields = ["q", "sponsor", "regulatory_basis"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = selectors.sponsor_list(user=user)

    def search(self, queryset, name, value):
        return queryset.filter(name__icontains=value) | queryset.filter(code__icontains=value)


@cmo_required
def product_list(request):
    filterset = ProductFilter(
        request.GET, queryset=selectors.product_list(user=request.user), user=request.user
    )
    page = Paginator(filterset.qs, 25).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page}
    template = "sponsors/_product_table.html" if request.htmx else "sponsors/product_list.html"
    return render(request, template, context)


@cmo_required
def product_detail(request, pk: int):
    product = get_object_or_404(selectors.product_list(user=request.user), pk=pk)
    return render(
        request, "sponsors/product_detail.html", {"product": product, **record_trail(product)}
    )


class ApproveAgreementForm(forms.Form):
    effective_from = forms.DateTimeField(
        required=False,
        help_text="UTC; empty means now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Re-enter your password to sign (21 CFR 11.200).",
    )


def _agreement(request, code: str, version: int) -> QualityAgreement:
    return get_object_or_404(
        selectors.agreement_list(user=request.user).prefetch_related("change_rules"),
        sponsor__code=code,
        version=version,
    )


def agreement_context(request, agreement: QualityAgreement) -> dict:
    rules = list(agreement.change_rules.all())
    return {"agreement": agreement, "rules": rules, **record_trail(agreement, *rules)}


@cmo_required
def agreement_detail(request, code: str, version: int, form=None):
    agreement = _agreement(request, code, version)
    may_approve = agreement.is_draft and (
        request.user.is_superuser
        or agreement.sponsor_id in sponsor_ids_for(request.user, "approve")
    )
    context = agreement_context(request, agreement)
    context["approve_form"] = form or (ApproveAgreementForm() if may_approve else None)
    return render(request, "sponsors/agreement_detail.html", context, status=400 if form else 200)


@cmo_required
@require_POST
def agreement_approve(request, code: str, version: int):
    agreement = _agreement(request, code, version)
    form = ApproveAgreementForm(request.POST)
    if form.is_valid():
        effective_from = form.cleaned_data["effective_from"]
        if effective_from is not None and timezone.is_naive(effective_from):
            effective_from = timezone.make_aware(effective_from, UTC)
        try:
            services.quality_agreement_make_effective(
                agreement=agreement,
                user=request.user,
                password=form.cleaned_data["password"],
                effective_from=effective_from,
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{agreement} approved and effective.")
            return redirect(agreement.get_absolute_url())
    return agreement_detail(request, code, version, form=form)
