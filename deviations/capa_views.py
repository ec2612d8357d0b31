"""CMO pages of CAPA: the list with aging, opening a CAPA, and the CAPA page (corrections of the
CAPA and its actions with their reason for change, actions, effectiveness check, closure by
e-signature, signatures and audit trail)."""

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from qms.access import cmo_required
from qms.errors import RuleViolation
from qms.forms import signature_password_field
from qms.models import Notification
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for
from sponsors.models import Sponsor
from sponsors.selectors import sponsor_list

from . import capa as services
from .models import Capa, CapaAction, Deviation
from .selectors import deadlines_of, deviation_list
from .views import PAGE_SIZE

DATE = forms.DateInput(attrs={"type": "date"})


class CapaFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    sponsor = django_filters.ModelChoiceFilter(queryset=Sponsor.objects.none(), label="Sponsor")
    status = django_filters.ChoiceFilter(choices=Capa.Status.choices, label="Status")
    source_kind = django_filters.ChoiceFilter(choices=Capa.SourceKind.choices, label="Source")
    overdue = django_filters.BooleanFilter(
        field_name="is_overdue", label="Overdue", widget=forms.NullBooleanSelect
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("number", "number"),
            ("opened_at", "opened"),
            ("days_open", "age"),
            ("overdue_actions", "overdue_actions"),
            ("status", "status"),
        ),
        label="Sort",
    )

    class Meta:
        model = Capa
        fields = ["q", "sponsor", "status", "source_kind", "overdue"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(number__icontains=value)
            | Q(title__icontains=value)
            | Q(deviation__number__icontains=value)
            | Q(source_reference__icontains=value)
        )


@cmo_required
def capa_list(request):
    capas = services.capa_list(user=request.user)
    filterset = CapaFilter(request.GET, queryset=capas, user=request.user)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter": filterset,
        "page": page,
        "may_open": bool(sponsor_ids_for(request.user, "change")),
    }
    template = "deviations/capa_table.html" if request.htmx else "deviations/capa_list.html"
    return render(request, template, context)


def _user_named(username: str, label: str):
    username = (username or "").strip()
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username, is_active=True)
    except get_user_model().DoesNotExist as missing:
        raise forms.ValidationError(f"No active user {username!r} to be the {label}.") from missing


class CapaForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    source_kind = forms.ChoiceField(choices=Capa.SourceKind.choices, label="Source")
    deviation = forms.CharField(
        required=False, help_text="The deviation number, when the source is a deviation."
    )
    source_reference = forms.CharField(
        required=False,
        max_length=200,
        help_text="The audit finding or supplier issue reference.",
    )
    sponsor = forms.ModelChoiceField(
        queryset=Sponsor.objects.none(),
        required=False,
        empty_label="Site-wide",
        help_text="A CAPA from a deviation takes the deviation's sponsor.",
    )
    owner = forms.CharField(required=False, help_text="Username; empty: you.")
    effectiveness_due = forms.DateField(required=False, widget=DATE)
    effectiveness_criteria = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["sponsor"].queryset = sponsor_list(user=user, action="change")

    def clean_deviation(self):
        number = self.cleaned_data.get("deviation", "").strip()
        if not number:
            return None
        try:
            return deviation_list(user=self.user).get(number=number)
        except Deviation.DoesNotExist as missing:
            raise forms.ValidationError(f"No deviation {number} in your scope.") from missing

    def clean_owner(self):
        return _user_named(self.cleaned_data.get("owner"), "owner")


@cmo_required
def capa_create(request):
    initial = {}
    if request.method == "GET" and request.GET.get("deviation"):
        initial = {"deviation": request.GET["deviation"], "source_kind": "deviation"}
    form = CapaForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            capa = services.capa_open(by=request.user, **data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{capa} opened.")
            return redirect(capa.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "deviations/capa_create.html", {"form": form}, status=status)


REASON_HELP = "Required when you change or clear a value already recorded (21 CFR 11.10(e))."


def reason_field() -> forms.CharField:
    return forms.CharField(required=False, label="Reason for change", help_text=REASON_HELP)


class CapaEditForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    owner = forms.CharField(help_text="Username.")
    effectiveness_due = forms.DateField(required=False, widget=DATE)
    effectiveness_criteria = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    reason = reason_field()

    def clean_owner(self):
        return _user_named(self.cleaned_data.get("owner"), "owner")


class ActionEditForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    owner = forms.CharField(help_text="Username.")
    due_date = forms.DateField(widget=DATE)
    reason = reason_field()

    def clean_owner(self):
        return _user_named(self.cleaned_data.get("owner"), "owner")


class ActionForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    owner = forms.CharField(required=False, help_text="Username of the action's owner.")
    due_date = forms.DateField(required=False, widget=DATE)

    def clean_owner(self):
        return _user_named(self.cleaned_data.get("owner"), "owner")


class CompleteActionForm(forms.Form):
    note = forms.CharField(label="What was done", widget=forms.Textarea(attrs={"rows": 2}))


class EffectivenessStartForm(forms.Form):
    due_date = forms.DateField(required=False, widget=DATE, label="Check due")
    criteria = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Acceptance criteria"
    )
    reason = reason_field()


class EffectivenessForm(forms.Form):
    result = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    is_effective = forms.TypedChoiceField(
        choices=[("yes", "Effective"), ("no", "Not effective")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
        label="Effective?",
    )
    reason = forms.CharField(required=False, help_text="Required when not effective.")


class CloseForm(forms.Form):
    password = signature_password_field()


def _capa(request, number: str) -> Capa:
    return get_object_or_404(services.capa_list(user=request.user), number=number)


def capa_context(request, capa: Capa, **given) -> dict:
    user = request.user
    actions = list(
        CapaAction.objects.filter(capa=capa)
        .select_related("owner", "completed_by")
        .order_by("sequence")
    )
    today = timezone.localdate()
    deadlines = list(deadlines_of(capa))
    notices = list(
        Notification.objects.for_user(user)
        .filter(deadline__in=deadlines)
        .select_related("recipient", "deadline")
        .order_by("created_at", "id")
    )
    scope = capa.sponsor_id
    may_change = user.is_superuser or (
        scope in sponsor_ids_for(user, "change") if scope else bool(sponsor_ids_for(user, "change"))
    )
    may_approve = user.is_superuser or (
        scope in sponsor_ids_for(user, "approve")
        if scope
        else bool(sponsor_ids_for(user, "approve"))
    )
    status = capa.status
    working = status in (Capa.Status.OPEN, Capa.Status.IN_PROGRESS)
    initial_check = {"due_date": capa.effectiveness_due, "criteria": capa.effectiveness_criteria}
    editable = may_change and capa.is_open
    return {
        "capa": capa,
        "actions": [
            {
                "action": action,
                "is_overdue": not action.is_complete and action.due_date < today,
                "form": given.get("complete_forms", {}).get(action.pk)
                or (CompleteActionForm() if editable else None),
                "edit_form": given.get("action_edit_forms", {}).get(action.pk)
                or (
                    ActionEditForm(
                        initial=_action_initial(action), auto_id=_action_ids(action.sequence)
                    )
                    if editable and not action.is_complete
                    else None
                ),
            }
            for action in actions
        ],
        "edit_form": given.get("edit_form")
        or (CapaEditForm(initial=_capa_initial(capa), auto_id=CAPA_IDS) if editable else None),
        "deadlines": deadlines,
        "notices": notices,
        "action_form": given.get("action_form")
        or (ActionForm() if may_change and working else None),
        "start_form": given.get("start_form")
        or (
            EffectivenessStartForm(initial=initial_check)
            if may_change and status == Capa.Status.IN_PROGRESS
            else None
        ),
        "effectiveness_form": given.get("effectiveness_form")
        or (
            EffectivenessForm()
            if may_change and status == Capa.Status.EFFECTIVENESS_CHECK
            else None
        ),
        "close_form": given.get("close_form")
        or (CloseForm() if may_approve and status == Capa.Status.EFFECTIVENESS_CHECK else None),
        **record_trail(capa, *actions, *deadlines),
    }


CAPA_IDS = "id_capa_%s"


def _action_ids(sequence: int) -> str:
    return f"id_action{sequence}_%s"


def _capa_initial(capa: Capa) -> dict:
    return {
        "title": capa.title,
        "description": capa.description,
        "owner": capa.owner.get_username(),
        "effectiveness_due": capa.effectiveness_due,
        "effectiveness_criteria": capa.effectiveness_criteria,
    }


def _action_initial(action: CapaAction) -> dict:
    return {
        "description": action.description,
        "owner": action.owner.get_username(),
        "due_date": action.due_date,
    }


@cmo_required
def capa_detail(request, number: str):
    capa = _capa(request, number)
    return render(request, "deviations/capa_detail.html", capa_context(request, capa))


def _rerender(request, capa, **given):
    return render(
        request, "deviations/capa_detail.html", capa_context(request, capa, **given), status=400
    )


@cmo_required
@require_POST
def capa_action_add(request, number: str):
    capa = _capa(request, number)
    form = ActionForm(request.POST)
    if form.is_valid():
        try:
            action = services.capa_action_add(capa=capa, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Action {action} added.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, action_form=form)


@cmo_required
@require_POST
def capa_edit(request, number: str):
    capa = _capa(request, number)
    form = CapaEditForm(request.POST, auto_id=CAPA_IDS)
    if form.is_valid():
        try:
            services.capa_update(capa=capa, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{capa} saved.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, edit_form=form)


def _action(capa: Capa, sequence: int) -> CapaAction:
    try:
        return CapaAction.objects.select_related("capa").get(capa=capa, sequence=sequence)
    except CapaAction.DoesNotExist as missing:
        raise Http404(f"{capa} has no action A{sequence}.") from missing


@cmo_required
@require_POST
def capa_action_edit(request, number: str, sequence: int):
    capa = _capa(request, number)
    action = _action(capa, sequence)
    form = ActionEditForm(request.POST, auto_id=_action_ids(sequence))
    if form.is_valid():
        try:
            services.capa_action_update(action=action, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Action {action} saved.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, action_edit_forms={action.pk: form})


@cmo_required
@require_POST
def capa_action_complete(request, number: str, sequence: int):
    capa = _capa(request, number)
    action = _action(capa, sequence)
    form = CompleteActionForm(request.POST)
    if form.is_valid():
        try:
            services.capa_action_complete(
                action=action, note=form.cleaned_data["note"], by=request.user
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Action {action} completed.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, complete_forms={action.pk: form})


@cmo_required
@require_POST
def capa_effectiveness_start(request, number: str):
    capa = _capa(request, number)
    form = EffectivenessStartForm(request.POST)
    if form.is_valid():
        try:
            services.capa_effectiveness_start(capa=capa, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Effectiveness check of {capa} started.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, start_form=form)


@cmo_required
@require_POST
def capa_effectiveness(request, number: str):
    capa = _capa(request, number)
    form = EffectivenessForm(request.POST)
    if form.is_valid():
        try:
            services.capa_effectiveness_record(capa=capa, by=request.user, **form.cleaned_data)
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            capa.refresh_from_db()
            messages.success(
                request, f"Effectiveness check of {capa} recorded: {capa.get_status_display()}."
            )
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, effectiveness_form=form)


@cmo_required
@require_POST
def capa_close(request, number: str):
    capa = _capa(request, number)
    form = CloseForm(request.POST)
    if form.is_valid():
        try:
            services.capa_close(
                capa=capa,
                user=request.user,
                password=form.cleaned_data["password"],
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{capa} signed: closed.")
            return redirect(capa.get_absolute_url())
    return _rerender(request, capa, close_form=form)
