"""CMO pages of change control: the change request list, drafting and editing, the change page
(risk, per-sponsor obligations, products, tasks, every action with its refusal inline), and which
lots were made under which master batch record or document version."""

from datetime import UTC

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from batches.models import Equipment, MasterBatchRecord
from qms.access import cmo_required
from qms.errors import RuleViolation
from qms.records import audit_events_for
from qms.signatures import signature_check, signatures_by_record
from qms.tenancy import sponsor_ids_for
from sponsors.models import ChangeCategory, Product, Sponsor
from sponsors.selectors import sponsor_list
from suppliers.models import Supplier

from . import selectors, services
from .models import ChangeRequest, ChangeTask, RiskLevel, SponsorObligation

PAGE_SIZE = 25
SCORES = [(n, str(n)) for n in range(1, 6)]


class ChangeFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=ChangeRequest.Status.choices, label="Status")
    category = django_filters.ChoiceFilter(choices=ChangeCategory.choices, label="Category")
    pending_sponsor = django_filters.ModelChoiceFilter(
        queryset=Sponsor.objects.none(),
        method="with_pending",
        label="Sponsor with pending obligation",
    )
    risk_level = django_filters.ChoiceFilter(choices=RiskLevel.choices, label="Risk")
    sort = django_filters.OrderingFilter(
        fields=(
            ("number", "number"),
            ("created_at", "created"),
            ("proposed_effective_date", "proposed"),
            ("status", "status"),
        ),
        label="Sort",
    )

    class Meta:
        model = ChangeRequest
        fields = ["q", "status", "category", "pending_sponsor", "risk_level"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["pending_sponsor"].queryset = sponsor_list(user=user)

    def search(self, queryset, name, value):
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))

    def with_pending(self, queryset, name, value):
        return selectors.with_pending_obligation_of(queryset, value)


@cmo_required
def change_list(request):
    changes = selectors.change_list(user=request.user)
    filterset = ChangeFilter(request.GET, queryset=changes, user=request.user)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter": filterset,
        "page": page,
        "may_create": bool(sponsor_ids_for(request.user, "change")),
    }
    template = "changecontrol/_change_table.html" if request.htmx else "changecontrol/list.html"
    return render(request, template, context)


# --- drafting -----------------------------------------------------------------------------


class ChangeForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    category = forms.ChoiceField(choices=ChangeCategory.choices)
    products = forms.ModelMultipleChoiceField(
        queryset=Product.objects.none(),
        label="Affected products",
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Products of one or several sponsors.",
    )
    document_version = forms.ModelChoiceField(
        queryset=None, required=False, label="Document version"
    )
    mbr = forms.ModelChoiceField(
        queryset=MasterBatchRecord.objects.none(),
        required=False,
        label="Master batch record version",
    )
    equipment = forms.ModelChoiceField(
        queryset=Equipment.objects.none(), required=False, label="Equipment"
    )
    supplier = forms.ModelChoiceField(
        queryset=Supplier.objects.all(), required=False, label="Supplier"
    )
    subject_text = forms.CharField(
        max_length=300,
        required=False,
        label="Subject",
        help_text="What changes, when it is none of the records above.",
    )
    proposed_effective_date = forms.DateField(
        required=False,
        label="Proposed effective date",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        from documents.models import DocumentVersion

        self.fields["products"].queryset = (
            Product.objects.for_user(user, "change")
            .filter(is_active=True)
            .select_related("sponsor")
            .order_by("sponsor__code", "code")
        )
        self.fields["products"].label_from_instance = lambda p: f"{p.sponsor.name} — {p}"
        self.fields["document_version"].queryset = (
            DocumentVersion.objects.for_user(user, "change")
            .filter(status__in=["draft", "in_review", "approved"])
            .select_related("document")
            .order_by("document__number", "version")
        )
        self.fields["mbr"].queryset = (
            MasterBatchRecord.objects.for_user(user, "change")
            .filter(status__in=services.EDITABLE_MBR)
            .select_related("product")
            .order_by("product__code", "version")
        )
        self.fields["equipment"].queryset = Equipment.objects.for_user(user).order_by("code")

    def clean(self):
        data = super().clean()
        carried = [
            name for name in ("document_version", "mbr", "equipment", "supplier") if data.get(name)
        ]
        if len(carried) > 1:
            raise forms.ValidationError(
                "Choose one record the change carries (document version, MBR version, equipment "
                "or supplier); describe anything else in the subject."
            )
        if not carried and not (data.get("subject_text") or "").strip():
            raise forms.ValidationError(
                "Say what the change changes: choose a record or write a subject."
            )
        return data


@cmo_required
def change_create(request):
    form = ChangeForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            change = services.change_create(by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Change {change.number} drafted.")
            return redirect(change.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "changecontrol/create.html", {"form": form}, status=status)


def _change(request, number: str) -> ChangeRequest:
    try:
        return selectors.change_get(user=request.user, number=number)
    except ChangeRequest.DoesNotExist as missing:
        raise Http404(f"No change {number} in your scope.") from missing


@cmo_required
def change_edit(request, number: str):
    change = _change(request, number)
    if change.status != ChangeRequest.Status.DRAFT:
        messages.error(
            request,
            f"Change {change.number} is {change.get_status_display().lower()}: only a draft can "
            "be edited.",
        )
        return redirect(change.get_absolute_url())
    initial = {
        "title": change.title,
        "description": change.description,
        "category": change.category,
        "products": [row.product for row in change.visible_products if row.removed_at is None],
        "document_version": change.document_version,
        "mbr": change.mbr,
        "equipment": change.equipment,
        "supplier": change.supplier,
        "subject_text": change.subject_text,
        "proposed_effective_date": change.proposed_effective_date,
    }
    form = ChangeForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.change_update(change=change, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Change {change.number} saved.")
            return redirect(change.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "change": change}
    return render(request, "changecontrol/create.html", context, status=status)


# --- the change page ----------------------------------------------------------------------


class AssessForm(forms.Form):
    severity = forms.TypedChoiceField(
        choices=SCORES, coerce=int, help_text="1 = negligible harm, 5 = catastrophic."
    )
    probability = forms.TypedChoiceField(
        choices=SCORES, coerce=int, help_text="1 = very unlikely, 5 = almost certain."
    )
    detectability = forms.TypedChoiceField(
        choices=SCORES, coerce=int, help_text="1 = certain to be detected, 5 = undetectable."
    )
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    proposed_effective_date = forms.DateField(
        required=False,
        label="Proposed effective date",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class TaskForm(forms.Form):
    description = forms.CharField(max_length=300)
    owner = forms.ModelChoiceField(queryset=None)
    due_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = (
            get_user_model()
            .objects.filter(is_active=True, profile__sponsor__isnull=True)
            .order_by("username")
        )


class RescopeForm(forms.Form):
    sponsor = forms.ModelChoiceField(queryset=Sponsor.objects.none(), label="Remove the sponsor")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, sponsors=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sponsor"].queryset = Sponsor.objects.filter(
            pk__in=[s.pk for s in sponsors]
        ).order_by("code")


class MakeEffectiveForm(forms.Form):
    effective_at = forms.DateTimeField(
        required=False,
        label="Effective from (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: now.",
    )
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason",
        help_text="Required when effective before the proposed effective date; shown to the "
        "sponsors.",
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


def _sponsors_of(rows) -> list[Sponsor]:
    found = {}
    for row in rows:
        if row.removed_at is None:
            found.setdefault(row.sponsor_id, row.sponsor)
    return sorted(found.values(), key=lambda s: s.code)


def _may(user, sponsor_ids, action: str) -> bool:
    if user.is_superuser:
        return True
    allowed = sponsor_ids_for(user, action)
    return bool(allowed) and set(sponsor_ids) <= allowed


def _obligation_signatures(obligations) -> dict[int, list]:
    if not obligations:
        return {}
    by_pk = {str(o.pk): o for o in obligations}
    found: dict[int, list] = {}
    for key, signatures in signatures_by_record(SponsorObligation, obligations).items():
        record = by_pk[key]
        found[record.pk] = [
            (signature, signature_check(signature, record)) for signature in signatures
        ]
    return found


def change_context(request, change: ChangeRequest, **given) -> dict:
    user = request.user
    Status = ChangeRequest.Status
    products = list(selectors.change_products(change=change, user=user))
    obligations = list(selectors.change_obligations(change=change, user=user))
    signatures = _obligation_signatures(obligations)
    for obligation in obligations:
        obligation.signature_rows = signatures[obligation.pk]
    tasks = list(change.tasks.select_related("owner", "completed_by"))
    active_ids = set(
        change.affected_products.filter(removed_at__isnull=True).values_list(
            "sponsor_id", flat=True
        )
    )
    may_change = _may(user, active_ids, "change")
    may_approve = _may(user, active_ids, "approve")
    status = change.status
    submitted = status in (Status.AWAITING_SPONSORS, Status.APPROVED)
    is_open = status in services.OPEN_STATUSES
    rejected = [o for o in obligations if o.status == SponsorObligation.Status.REJECTED]

    def form(name, factory, condition):
        if name in given:
            return given[name]
        return factory() if condition else None

    initial_risk = {
        "severity": change.risk_severity,
        "probability": change.risk_probability,
        "detectability": change.risk_detectability,
        "rationale": change.risk_rationale,
        "proposed_effective_date": change.proposed_effective_date,
    }
    return {
        "change": change,
        "products": products,
        "obligations": obligations,
        "tasks": tasks,
        "blocked_by": rejected,
        "may_change": may_change,
        "may_approve": may_approve,
        "may_edit": may_change and status == Status.DRAFT,
        "assess_form": form(
            "assess_form",
            lambda: AssessForm(initial=initial_risk),
            may_change and status in (Status.DRAFT, Status.ASSESSMENT),
        ),
        "may_submit": may_change and status == Status.ASSESSMENT,
        "submit_error": given.get("submit_error", ""),
        "task_form": form("task_form", TaskForm, may_change and (is_open or status == "effective")),
        "task_error": given.get("task_error", ""),
        "rescope_form": form(
            "rescope_form",
            lambda: RescopeForm(sponsors=_sponsors_of(products), prefix="rescope"),
            may_change and submitted and len(active_ids) > 1,
        ),
        "effective_form": form("effective_form", MakeEffectiveForm, may_approve and submitted),
        "unmet": given.get("unmet", []),
        "may_close": may_approve and status == Status.EFFECTIVE,
        "close_error": given.get("close_error", ""),
        "reject_form": form(
            "reject_form",
            lambda: ReasonForm(prefix="reject"),
            may_approve
            and status in (Status.ASSESSMENT, Status.AWAITING_SPONSORS, Status.APPROVED),
        ),
        "cancel_form": form(
            "cancel_form", lambda: ReasonForm(prefix="cancel"), may_change and is_open
        ),
        "audit_events": list(audit_events_for(change, *products, *obligations, *tasks)),
        "signatures": [row for obligation in obligations for row in obligation.signature_rows],
    }


@cmo_required
def change_detail(request, number: str):
    change = _change(request, number)
    return render(request, "changecontrol/detail.html", change_context(request, change))


def _rerender(request, change, **given):
    context = change_context(request, change, **given)
    return render(request, "changecontrol/detail.html", context, status=400)


def _done(request, change, text: str):
    messages.success(request, text)
    return redirect(change.get_absolute_url())


@cmo_required
@require_POST
def change_assess(request, number: str):
    change = _change(request, number)
    form = AssessForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.change_assess(
                change=change,
                by=request.user,
                severity=data["severity"],
                probability=data["probability"],
                detectability=data["detectability"],
                rationale=data["rationale"],
                proposed_effective_date=data["proposed_effective_date"],
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            change.refresh_from_db()
            return _done(
                request,
                change,
                f"Risk of {change.number} assessed: {change.get_risk_level_display().lower()}.",
            )
    return _rerender(request, change, assess_form=form)


@cmo_required
@require_POST
def change_submit(request, number: str):
    change = _change(request, number)
    try:
        services.change_submit(change=change, by=request.user)
    except RuleViolation as error:
        return _rerender(request, change, submit_error=error.detail)
    change.refresh_from_db()
    return _done(
        request, change, f"Change {change.number} submitted: {change.get_status_display()}."
    )


@cmo_required
@require_POST
def change_task_add(request, number: str):
    change = _change(request, number)
    form = TaskForm(request.POST)
    if form.is_valid():
        try:
            services.change_task_add(change=change, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, change, f"Task added to {change.number}.")
    return _rerender(request, change, task_form=form)


@cmo_required
@require_POST
def change_task_complete(request, number: str, pk: int):
    change = _change(request, number)
    task = get_object_or_404(ChangeTask, change=change, pk=pk)
    try:
        services.change_task_complete(task=task, by=request.user)
    except RuleViolation as error:
        return _rerender(request, change, task_error=error.detail)
    return _done(request, change, f"Task “{task.description}” completed.")


@cmo_required
@require_POST
def change_rescope(request, number: str):
    change = _change(request, number)
    sponsors = _sponsors_of(selectors.change_products(change=change, user=request.user))
    form = RescopeForm(request.POST, sponsors=sponsors, prefix="rescope")
    if form.is_valid():
        sponsor = form.cleaned_data["sponsor"]
        try:
            services.change_rescope(
                change=change, sponsor=sponsor, reason=form.cleaned_data["reason"], by=request.user
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(
                request, change, f"Change {change.number} re-scoped: {sponsor.name} removed."
            )
    return _rerender(request, change, rescope_form=form)


@cmo_required
@require_POST
def change_make_effective(request, number: str):
    change = _change(request, number)
    form = MakeEffectiveForm(request.POST)
    if form.is_valid():
        effective_at = form.cleaned_data["effective_at"]
        if effective_at is not None and timezone.is_naive(effective_at):
            effective_at = timezone.make_aware(effective_at, UTC)
        try:
            services.change_make_effective(
                change=change,
                by=request.user,
                effective_at=effective_at,
                reason=form.cleaned_data["reason"],
            )
        except services.ObligationsUnmet as error:
            form.add_error(None, f"Change {change.number} cannot become effective.")
            return _rerender(request, change, effective_form=form, unmet=error.unmet)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            change.refresh_from_db()
            return _done(
                request,
                change,
                f"Change {change.number} effective from {change.effective_at:%Y-%m-%d %H:%M} UTC.",
            )
    return _rerender(request, change, effective_form=form)


@cmo_required
@require_POST
def change_close(request, number: str):
    change = _change(request, number)
    try:
        services.change_close(change=change, by=request.user)
    except RuleViolation as error:
        return _rerender(request, change, close_error=error.detail)
    return _done(request, change, f"Change {change.number} closed.")


def _ending(request, number: str, service, prefix: str, verb: str):
    change = _change(request, number)
    form = ReasonForm(request.POST, prefix=prefix)
    if form.is_valid():
        try:
            service(change=change, by=request.user, reason=form.cleaned_data["reason"])
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, change, f"Change {change.number} {verb}.")
    return _rerender(request, change, **{f"{prefix}_form": form})


@cmo_required
@require_POST
def change_reject(request, number: str):
    return _ending(request, number, services.change_reject, "reject", "rejected")


@cmo_required
@require_POST
def change_cancel(request, number: str):
    return _ending(request, number, services.change_cancel, "cancel", "cancelled")


# --- lots by version ----------------------------------------------------------------------


class VersionPickForm(forms.Form):
    product = forms.ModelChoiceField(queryset=Product.objects.none(), required=False)
    mbr_version = forms.IntegerField(required=False, min_value=1, label="MBR version")
    document = forms.CharField(required=False, label="Document number")
    version = forms.IntegerField(required=False, min_value=1, label="Document version")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = (
            Product.objects.for_user(user)
            .select_related("sponsor")
            .order_by("sponsor__code", "code")
        )


@cmo_required
def lots_by_version(request):
    """Pick an MBR version (product + version) or a document version (number + version)."""
    form = VersionPickForm(request.GET or None, user=request.user)
    if request.GET and form.is_valid():
        data = form.cleaned_data
        if data["product"] is not None and data["mbr_version"]:
            mbr = (
                MasterBatchRecord.objects.for_user(request.user)
                .filter(product=data["product"], version=data["mbr_version"])
                .first()
            )
            if mbr is not None:
                return redirect(reverse("changecontrol:lots-by-mbr", args=[mbr.pk]))
            form.add_error(
                "mbr_version", f"{data['product'].code} has no MBR v{data['mbr_version']}."
            )
        elif data["document"] and data["version"]:
            return redirect(
                reverse(
                    "changecontrol:lots-by-document-version",
                    args=[data["document"].strip(), data["version"]],
                )
            )
        else:
            form.add_error(None, "Choose a product and MBR version, or a document and version.")
    status = 400 if request.GET and form.errors else 200
    return render(request, "changecontrol/lots_by_version.html", {"form": form}, status=status)


@cmo_required
def lots_by_mbr(request, pk: int):
    mbrs = MasterBatchRecord.objects.for_user(request.user).select_related("product", "sponsor")
    mbr = get_object_or_404(mbrs, pk=pk)
    batches = selectors.batches_made_under_mbr(mbr=mbr, user=request.user)
    page = Paginator(batches, PAGE_SIZE).get_page(request.GET.get("page"))
    versions = [
        (version, reverse("changecontrol:lots-by-mbr", args=[version.pk]))
        for version in mbrs.filter(product=mbr.product).order_by("version")
    ]
    context = {
        "record": mbr,
        "title": f"{mbr} — {mbr.title}",
        "record_url": mbr.get_absolute_url(),
        "effective_from": mbr.effective_from,
        "status": mbr.get_status_display(),
        "versions": versions,
        "changes": list(selectors.changes_carrying(mbr, request.user)),
        "rows": [
            (batch, lot)
            for batch in page.object_list
            for lot in (list(batch.output_lots.all()) or [None])
        ],
        "page": page,
    }
    return render(request, "changecontrol/lots_for_version.html", context)


@cmo_required
def lots_by_document_version(request, number: str, version: int):
    from documents.models import DocumentVersion

    versions = DocumentVersion.objects.for_user(request.user).select_related("document")
    record = get_object_or_404(versions, document__number=number, version=version)
    lots = selectors.lots_made_under_document_version(version=record, user=request.user)
    page = Paginator(lots, PAGE_SIZE).get_page(request.GET.get("page"))
    siblings = [
        (
            sibling,
            reverse("changecontrol:lots-by-document-version", args=[number, sibling.version]),
        )
        for sibling in versions.filter(document=record.document).order_by("version")
    ]
    context = {
        "record": record,
        "title": f"{record} — {record.document.title}",
        "record_url": record.get_absolute_url(),
        "effective_from": record.effective_from,
        "status": record.get_status_display(),
        "versions": siblings,
        "changes": list(selectors.changes_carrying(record, request.user)),
        "rows": [(lot.produced_by, lot) for lot in page.object_list],
        "page": page,
    }
    return render(request, "changecontrol/lots_for_version.html", context)
