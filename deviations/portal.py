"""The sponsor portal's quality events: the sponsor's own deviation records (never a site record
or another sponsor's), acknowledgement, the approver's closure decision, and batch release."""

import django_filters
from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from batches.disposition import batch_disposition, release_checks
from batches.models import Batch
from batches.selectors import batch_list
from qms.access import portal_required
from qms.errors import RuleViolation
from qms.forms import signature_password_field
from qms.models import Notification
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for
from sponsors.models import Severity
from sponsors.portal import _own_sponsor

from . import selectors, services
from .models import Deviation
from .views import PAGE_SIZE, duration, with_overdue

SPONSOR_DEADLINES = ("deviation_notice", "investigation_summary", services.CLOSURE_APPROVAL)


class PortalDeviationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    severity = django_filters.ChoiceFilter(choices=Severity.choices, label="Severity")
    status = django_filters.ChoiceFilter(choices=Deviation.Status.choices, label="Status")
    category = django_filters.ChoiceFilter(choices=Deviation.Category.choices, label="Category")
    awaiting_acknowledgement = django_filters.BooleanFilter(
        method="only_awaiting_acknowledgement",
        label="Notice awaiting acknowledgement",
        widget=forms.NullBooleanSelect,
    )

    class Meta:
        model = Deviation
        fields = ["q", "severity", "status", "category", "awaiting_acknowledgement"]

    def search(self, queryset, name, value):
        return queryset.filter(number__icontains=value) | queryset.filter(title__icontains=value)

    def only_awaiting_acknowledgement(self, queryset, name, value):
        awaiting = selectors.awaiting_acknowledgement(queryset, user=self.request.user)
        return awaiting if value else queryset.exclude(pk__in=awaiting.values("pk"))


def _own_deviations(request, sponsor):
    return (
        selectors.deviation_list(user=request.user)
        .filter(sponsor=sponsor)
        .select_related(None)
        .select_related("sponsor", "agreement")
    )


def _may_decide(user, sponsor) -> bool:
    return sponsor.pk in sponsor_ids_for(user, "sponsor_approve")


@portal_required
def deviation_list(request):
    sponsor = _own_sponsor(request)
    deviations = with_overdue(_own_deviations(request, sponsor), request.user)
    filterset = PortalDeviationFilter(request.GET, queryset=deviations, request=request)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    awaiting = _own_deviations(request, sponsor).filter(
        status=Deviation.Status.PENDING_SPONSOR_APPROVAL
    )
    context = {
        "sponsor": sponsor,
        "filter": filterset,
        "page": page,
        "awaiting": list(awaiting.order_by("number")),
        "may_decide": _may_decide(request.user, sponsor),
    }
    return render(request, "portal/deviation_list.html", context)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", "Approve closure"), ("reject", "Reject closure")],
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when you reject.",
    )
    password = signature_password_field()


def _deviation(request, sponsor, number: str) -> Deviation:
    return get_object_or_404(
        _own_deviations(request, sponsor).prefetch_related("lots__material", "batches__product"),
        number=number,
    )


def _detail(request, sponsor, deviation, *, decision_form=None, ack_error="", status=200):
    deadlines = list(selectors.deadlines_of(deviation).filter(kind__in=SPONSOR_DEADLINES))
    notices = list(
        Notification.objects.for_user(request.user)
        .filter(deadline__in=deadlines)
        .select_related("recipient", "deadline")
        .order_by("created_at", "id")
    )
    awaiting = deviation.status == Deviation.Status.PENDING_SPONSOR_APPROVAL
    if decision_form is None and awaiting and _may_decide(request.user, sponsor):
        decision_form = DecisionForm()
    context = {
        "sponsor": sponsor,
        "deviation": deviation,
        "lots": list(deviation.lots.all()),
        "batches": list(deviation.batches.all()),
        "deadlines": deadlines,
        "notices": notices,
        "time_to_acknowledge": duration(deviation.time_to_acknowledge),
        "may_acknowledge": deviation.sponsor_acknowledged_at is None
        and _may_decide(request.user, sponsor),
        "ack_error": ack_error,
        "decision_form": decision_form,
        **record_trail(deviation),
    }
    return render(request, "portal/deviation_detail.html", context, status=status)


@portal_required
def deviation_detail(request, number: str):
    sponsor = _own_sponsor(request)
    return _detail(request, sponsor, _deviation(request, sponsor, number))


@portal_required
@require_POST
def deviation_acknowledge(request, number: str):
    sponsor = _own_sponsor(request)
    deviation = _deviation(request, sponsor, number)
    try:
        services.deviation_acknowledge(deviation=deviation, user=request.user)
    except RuleViolation as error:
        return _detail(request, sponsor, deviation, ack_error=error.detail, status=409)
    messages.success(request, f"{deviation} acknowledged.")
    return redirect(reverse("portal_deviations:detail", args=[deviation.number]))


@portal_required
@require_POST
def deviation_decide(request, number: str):
    sponsor = _own_sponsor(request)
    deviation = _deviation(request, sponsor, number)
    form = DecisionForm(request.POST)
    if form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            services.deviation_sponsor_decide(
                deviation=deviation,
                user=request.user,
                password=form.cleaned_data["password"],
                approve=approve,
                comment=form.cleaned_data["comment"],
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            verb = "approved" if approve else "rejected"
            messages.success(request, f"Closure of {deviation} {verb}.")
            return redirect(reverse("portal_deviations:detail", args=[deviation.number]))
    return _detail(request, sponsor, deviation, decision_form=form, status=400)


class ReleaseForm(forms.Form):
    batch = forms.CharField(widget=forms.HiddenInput)
    password = signature_password_field()


@portal_required
def release_list(request):
    """The sponsor's batches released by CMO QA and awaiting the sponsor's own release."""
    sponsor = _own_sponsor(request)
    may_release = _may_decide(request.user, sponsor)
    batches = (
        batch_list(user=request.user)
        .filter(
            sponsor=sponsor,
            status__in=(Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW),
            cmo_released_at__isnull=False,
        )
        .order_by("cmo_released_at", "id")
    )
    form = None
    if request.method == "POST":
        form = ReleaseForm(request.POST)
        if not may_release:
            form.add_error(None, "Only your sponsor's approver may release batches.")
        elif form.is_valid():
            batch = get_object_or_404(batches, number=form.cleaned_data["batch"])
            try:
                batch_disposition(
                    batch=batch,
                    user=request.user,
                    password=form.cleaned_data["password"],
                    release=True,
                    request=request,
                )
            except RuleViolation as error:
                form.add_error(None, error.detail)
            else:
                messages.success(request, f"Batch {batch} released.")
                return redirect(reverse("portal_deviations:releases"))
    page = Paginator(batches, PAGE_SIZE).get_page(request.GET.get("page"))
    checks = release_checks(page.object_list)
    rows = [
        (batch, checks[batch.pk])
        for batch in page.object_list
        if checks[batch.pk].sponsor_release_required
    ]
    context = {
        "sponsor": sponsor,
        "page": page,
        "rows": rows,
        "may_release": may_release,
        "form_errors": form.non_field_errors() if form is not None else None,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/deviation_releases.html", context, status=status)
