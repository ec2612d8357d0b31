"""CMO pages of quality events: the deviation list, recording, the deviation page (deadlines,
notices, investigation, severity change, closure), and the release queue with disposition."""

import re

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import CharField, Exists, OuterRef, Q
from django.db.models.functions import Cast
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from batches.disposition import batch_disposition, release_checks
from batches.models import Batch, Equipment, Lot
from batches.selectors import batch_list
from qms.access import cmo_required
from qms.errors import RuleViolation
from qms.forms import as_utc, signature_password_field
from qms.models import Deadline, Notification
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for
from sponsors.models import Severity, Sponsor
from sponsors.selectors import sponsor_list

from . import selectors, services
from .models import Deviation

PAGE_SIZE = 25


def duration(delta) -> str:
    if delta is None:
        return ""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] if days else []
    return " ".join([*parts, f"{hours} h", f"{minutes} min"])


def with_overdue(deviations, user):
    """Annotate `has_overdue_deadline`: a deadline of the deviation (or of a site deviation's
    impact records in the user's scope) is unmet past its due time, whatever reminders were
    sent."""
    overdue = (
        Deadline.objects.for_user(user)
        .overdue()
        .filter(content_type=ContentType.objects.get_for_model(Deviation))
    )
    own = overdue.filter(object_id=Cast(OuterRef("pk"), CharField()))
    impacts = Deviation.objects.for_user(user).filter(source=OuterRef("pk"), sponsor__isnull=False)
    return deviations.annotate(
        has_overdue_deadline=Exists(own) | Exists(impacts.filter(Exists(own)))
    )


class DeviationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    sponsor = django_filters.ModelChoiceFilter(
        queryset=Sponsor.objects.none(), method="for_sponsor", label="Sponsor"
    )
    severity = django_filters.ChoiceFilter(choices=Severity.choices, label="Severity")
    status = django_filters.ChoiceFilter(choices=Deviation.Status.choices, label="Status")
    category = django_filters.ChoiceFilter(choices=Deviation.Category.choices, label="Category")
    overdue = django_filters.BooleanFilter(
        method="only_overdue",
        label="Overdue deadline",
        widget=forms.NullBooleanSelect,
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("number", "number"),
            ("discovered_at", "discovered"),
            ("severity", "severity"),
            ("status", "status"),
        ),
        label="Sort",
    )

    class Meta:
        model = Deviation
        fields = ["q", "sponsor", "severity", "status", "category", "overdue"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)

    def search(self, queryset, name, value):
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))

    def for_sponsor(self, queryset, name, value):
        """The sponsor's deviations and the site deviations that affected it."""
        impacted = Deviation.objects.filter(source=OuterRef("pk"), sponsor=value)
        return queryset.filter(Q(sponsor=value) | Exists(impacted))

    def only_overdue(self, queryset, name, value):
        return queryset.filter(has_overdue_deadline=value)


@cmo_required
def deviation_list(request):
    deviations = with_overdue(selectors.deviation_list(user=request.user), request.user)
    filterset = DeviationFilter(request.GET, queryset=deviations, user=request.user)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter": filterset,
        "page": page,
        "may_record": bool(sponsor_ids_for(request.user, "change")),
    }
    template = "deviations/_deviation_table.html" if request.htmx else "deviations/list.html"
    return render(request, template, context)


NUMBER_SPLIT = re.compile(r"[\s,;]+")


def _numbers(text: str) -> list[str]:
    return list(dict.fromkeys(n for n in NUMBER_SPLIT.split(text or "") if n))


class DeviationForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    category = forms.ChoiceField(choices=Deviation.Category.choices)
    severity = forms.ChoiceField(choices=Severity.choices)
    occurred_at = forms.DateTimeField(
        label="Occurred (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    discovered_at = forms.DateTimeField(
        label="Discovered (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    lots = forms.CharField(required=False, help_text="Lot numbers, separated by commas.")
    batches = forms.CharField(required=False, help_text="Batch numbers, separated by commas.")
    equipment = forms.CharField(required=False, help_text="Equipment codes, separated by commas.")
    immediate_action = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def _lookup(self, name, queryset, field, label):
        wanted = _numbers(self.cleaned_data.get(name, ""))
        found = {getattr(row, field): row for row in queryset.filter(**{f"{field}__in": wanted})}
        unknown = [n for n in wanted if n not in found]
        if unknown:
            raise forms.ValidationError(
                f"No {label} {', '.join(unknown)} that you may record deviations on."
            )
        return [found[n] for n in wanted]

    def clean_lots(self):
        return self._lookup("lots", Lot.objects.for_user(self.user, "change"), "lot_number", "lot")

    def clean_batches(self):
        return self._lookup(
            "batches", Batch.objects.for_user(self.user, "change"), "number", "batch"
        )

    def clean_equipment(self):
        return self._lookup(
            "equipment", Equipment.objects.for_user(self.user, "change"), "code", "equipment"
        )


@cmo_required
def deviation_create(request):
    form = DeviationForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            deviation = services.deviation_record(
                title=data["title"],
                description=data["description"],
                category=data["category"],
                severity=data["severity"],
                occurred_at=as_utc(data["occurred_at"]),
                discovered_at=as_utc(data["discovered_at"]),
                lots=data["lots"],
                batches=data["batches"],
                equipment=data["equipment"],
                immediate_action=data["immediate_action"],
                by=request.user,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{deviation} recorded.")
            return redirect(deviation.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "deviations/create.html", {"form": form}, status=status)


class InvestigationForm(forms.Form):
    impact_assessment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    root_cause = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    immediate_action = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    disposition = forms.ChoiceField(choices=Deviation.Disposition.choices, required=False)
    reason = forms.CharField(
        required=False,
        help_text="Required when you change or clear a finding already recorded (21 CFR 11.10(e)).",
    )


class SeverityForm(forms.Form):
    severity = forms.ChoiceField(choices=Severity.choices)
    reason = forms.CharField(help_text="Required: the deadlines are recomputed.")


class CloseForm(forms.Form):
    password = signature_password_field()


def _deviation(request, number: str) -> Deviation:
    return get_object_or_404(
        selectors.deviation_list(user=request.user).prefetch_related(
            "lots__material", "batches__product", "equipment"
        ),
        number=number,
    )


def deviation_context(request, deviation: Deviation, **forms_given) -> dict:
    user = request.user
    impacts = []
    if deviation.is_site_record:
        impacts = list(
            selectors.deviation_list(user=user)
            .filter(source=deviation)
            .prefetch_related("lots", "batches")
            .order_by("number")
        )
    deadlines = list(selectors.deadlines_of(deviation))
    impact_rows = [
        {
            "record": impact,
            "deadlines": list(selectors.deadlines_of(impact)),
            "time_to_acknowledge": duration(impact.time_to_acknowledge),
        }
        for impact in impacts
    ]
    every_deadline = deadlines + [d for row in impact_rows for d in row["deadlines"]]
    notices = list(
        Notification.objects.for_user(user)
        .filter(deadline__in=every_deadline)
        .select_related("recipient", "deadline")
        .order_by("created_at", "id")
    )
    is_open = deviation.is_open
    may_change = user.is_superuser or (
        deviation.sponsor_id in sponsor_ids_for(user, "change")
        if deviation.sponsor_id
        else bool(sponsor_ids_for(user, "change"))
    )
    may_approve = user.is_superuser or (
        deviation.sponsor_id in sponsor_ids_for(user, "approve")
        if deviation.sponsor_id
        else bool(sponsor_ids_for(user, "approve"))
    )
    investigating = deviation.status in (
        Deviation.Status.OPEN,
        Deviation.Status.UNDER_INVESTIGATION,
    )
    may_revise = is_open and may_change
    initial = {
        "impact_assessment": deviation.impact_assessment,
        "root_cause": deviation.root_cause,
        "immediate_action": deviation.immediate_action,
        "disposition": deviation.disposition,
    }
    context = {
        "deviation": deviation,
        "lots": list(deviation.lots.all()),
        "batches": list(deviation.batches.all()),
        "equipment": list(deviation.equipment.all()),
        "impacts": impact_rows,
        "deadlines": deadlines,
        "notices": notices,
        "time_to_acknowledge": duration(deviation.time_to_acknowledge),
        "investigation_form": forms_given.get("investigation_form")
        or (InvestigationForm(initial=initial) if investigating and may_change else None),
        "severity_form": forms_given.get("severity_form")
        or (SeverityForm(initial={"severity": deviation.severity}) if may_revise else None),
        "close_form": forms_given.get("close_form")
        or (
            CloseForm()
            if deviation.status == Deviation.Status.UNDER_INVESTIGATION and may_approve
            else None
        ),
        **record_trail(deviation, *impacts, *every_deadline),
    }
    return context


@cmo_required
def deviation_detail(request, number: str):
    deviation = _deviation(request, number)
    return render(request, "deviations/detail.html", deviation_context(request, deviation))


def _rerender(request, deviation, **form):
    context = deviation_context(request, deviation, **form)
    return render(request, "deviations/detail.html", context, status=400)


@cmo_required
@require_POST
def deviation_investigate(request, number: str):
    deviation = _deviation(request, number)
    form = InvestigationForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.deviation_investigate(
                deviation=deviation,
                by=request.user,
                impact_assessment=data["impact_assessment"],
                root_cause=data["root_cause"],
                immediate_action=data["immediate_action"],
                disposition=data["disposition"],
                reason=data["reason"],
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Investigation of {deviation} saved.")
            return redirect(deviation.get_absolute_url())
    return _rerender(request, deviation, investigation_form=form)


@cmo_required
@require_POST
def deviation_severity(request, number: str):
    deviation = _deviation(request, number)
    form = SeverityForm(request.POST)
    if form.is_valid():
        try:
            services.deviation_change_severity(
                deviation=deviation,
                severity=form.cleaned_data["severity"],
                reason=form.cleaned_data["reason"],
                by=request.user,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Severity of {deviation} changed; deadlines recomputed.")
            return redirect(deviation.get_absolute_url())
    return _rerender(request, deviation, severity_form=form)


@cmo_required
@require_POST
def deviation_close(request, number: str):
    deviation = _deviation(request, number)
    form = CloseForm(request.POST)
    if form.is_valid():
        try:
            services.deviation_close(
                deviation=deviation,
                user=request.user,
                password=form.cleaned_data["password"],
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            deviation.refresh_from_db()
            messages.success(request, f"{deviation} signed: {deviation.get_status_display()}.")
            return redirect(deviation.get_absolute_url())
    return _rerender(request, deviation, close_form=form)


# --- release queue and disposition ----------------------------------------------------------

AWAITING_RELEASE = (Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW)


class ReleaseQueueFilter(django_filters.FilterSet):
    sponsor = django_filters.ModelChoiceFilter(queryset=Sponsor.objects.none(), label="Sponsor")
    status = django_filters.ChoiceFilter(
        choices=[(s.value, s.label) for s in AWAITING_RELEASE], label="Status"
    )

    class Meta:
        model = Batch
        fields = ["sponsor", "status"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)


@cmo_required
def release_queue(request):
    batches = (
        batch_list(user=request.user)
        .filter(status__in=AWAITING_RELEASE)
        .order_by("completed_at", "id")
    )
    filterset = ReleaseQueueFilter(request.GET, queryset=batches, user=request.user)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    checks = release_checks(page.object_list)
    rows = [(batch, checks[batch.pk]) for batch in page.object_list]
    return render(
        request, "deviations/release_queue.html", {"filter": filterset, "page": page, "rows": rows}
    )


class DispositionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("release", "Release"), ("reject", "Reject")], widget=forms.RadioSelect
    )
    password = signature_password_field()


def _batch(request, number: str) -> Batch:
    try:
        return batch_list(user=request.user).get(number=number)
    except Batch.DoesNotExist as missing:
        raise Http404(f"No batch {number} in your scope.") from missing


@cmo_required
def release_batch(request, number: str):
    batch = _batch(request, number)
    may_sign = request.user.is_superuser or batch.sponsor_id in sponsor_ids_for(
        request.user, "approve"
    )
    form = DispositionForm(request.POST or None) if may_sign else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(f"You may not dispose of batch {batch}.")
        if form.is_valid():
            try:
                batch_disposition(
                    batch=batch,
                    user=request.user,
                    password=form.cleaned_data["password"],
                    release=form.cleaned_data["decision"] == "release",
                    request=request,
                )
            except RuleViolation as error:
                form.add_error(None, error.detail)
            else:
                batch.refresh_from_db()
                messages.success(
                    request, f"Batch {batch} signed: {batch.get_status_display().lower()}."
                )
                return redirect(reverse("deviations:release-batch", args=[batch.number]))
    check = release_checks([batch])[batch.pk]
    deviations = list(
        selectors.deviation_list(user=request.user)
        .filter(Q(batches=batch) | Q(lots__produced_by=batch))
        .distinct()
        .order_by("number")
    )
    context = {
        "batch": batch,
        "check": check,
        "form": form,
        "deviations": deviations,
        "awaiting": batch.status in AWAITING_RELEASE,
        **record_trail(batch),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "deviations/release_batch.html", context, status=status)
