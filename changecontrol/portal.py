"""The sponsor portal's change control: the changes that affect the sponsor's products, each
shown only through the sponsor's own slice (the change itself with its impact assessment, tasks
and what it carries, the sponsor's own products and obligation), and the approver's e-signed
decision, which may accept an earlier effective date."""

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from deviations.views import PAGE_SIZE
from qms.access import portal_required
from qms.errors import RuleViolation
from qms.forms import signature_password_field
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for
from sponsors.models import Obligation
from sponsors.portal import _own_sponsor

from . import selectors, services
from .models import ChangeRequest, SponsorObligation


def _may_decide(user, sponsor) -> bool:
    return sponsor.pk in sponsor_ids_for(user, "sponsor_approve")


@portal_required
def change_list(request):
    sponsor = _own_sponsor(request)
    changes = selectors.sponsor_changes(user=request.user, sponsor=sponsor)
    page = Paginator(changes, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "sponsor": sponsor,
        "awaiting": list(selectors.sponsor_pending_approvals(user=request.user, sponsor=sponsor)),
        "page": page,
        "may_decide": _may_decide(request.user, sponsor),
    }
    return render(request, "portal/change_list.html", context)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", "Approve the change"), ("reject", "Reject the change")],
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when you reject.",
    )
    accepts_effective_from = forms.DateField(
        required=False,
        label="Earliest effective date you accept",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only to accept an effective date earlier than the lead time allows; leave "
        "empty otherwise. Your signature covers it.",
    )
    password = signature_password_field()


def _slice(request, sponsor, number: str) -> tuple[ChangeRequest, SponsorObligation | None]:
    change = (
        selectors.sponsor_changes(user=request.user, sponsor=sponsor).filter(number=number).first()
    )
    if change is None:
        raise Http404(f"No change {number} affects your products.")
    obligation = change.own_obligations[0] if change.own_obligations else None
    return change, obligation


def _awaits_decision(change, obligation) -> bool:
    return (
        obligation is not None
        and obligation.kind == Obligation.APPROVE
        and obligation.status == SponsorObligation.Status.PENDING
        and change.status == ChangeRequest.Status.AWAITING_SPONSORS
    )


def _detail(request, sponsor, change, obligation, *, decision_form=None, status=200):
    awaiting = _awaits_decision(change, obligation)
    if decision_form is None and awaiting and _may_decide(request.user, sponsor):
        decision_form = DecisionForm()
    context = {
        "sponsor": sponsor,
        "change": change,
        "obligation": obligation,
        "products": [row.product for row in change.own_products],
        "carried": selectors.sponsor_carried(change),
        "tasks": list(change.tasks.all()),
        "awaiting": awaiting,
        "decision_form": decision_form,
        **(record_trail(obligation) if obligation is not None else {}),
    }
    return render(request, "portal/change_detail.html", context, status=status)


@portal_required
def change_detail(request, number: str):
    sponsor = _own_sponsor(request)
    change, obligation = _slice(request, sponsor, number)
    return _detail(request, sponsor, change, obligation)


@portal_required
@require_POST
def change_decide(request, number: str):
    sponsor = _own_sponsor(request)
    change, obligation = _slice(request, sponsor, number)
    form = DecisionForm(request.POST)
    if form.is_valid():
        if obligation is None:
            form.add_error(None, f"Change {change.number} asks nothing of your sponsor.")
        else:
            approve = form.cleaned_data["decision"] == "approve"
            try:
                services.obligation_decide(
                    obligation=obligation,
                    user=request.user,
                    password=form.cleaned_data["password"],
                    approve=approve,
                    comment=form.cleaned_data["comment"],
                    accepts_effective_from=form.cleaned_data["accepts_effective_from"],
                    request=request,
                )
            except RuleViolation as error:
                form.add_error(None, error.detail)
            else:
                verb = "approved" if approve else "rejected"
                messages.success(request, f"Change {change.number} {verb} for {sponsor.name}.")
                return redirect(reverse("portal_changecontrol:detail", args=[change.number]))
    return _detail(request, sponsor, change, obligation, decision_form=form, status=400)
