"""The sponsor portal: a sponsor's own people read their sponsor's records, and nothing else,
while their access grant is valid."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from qms.access import portal_required
from qms.records import record_trail
from qms.tenancy import sponsor_ids_for

from . import selectors
from .models import Obligation
from .views import agreement_context


def _own_sponsor(request):
    sponsor = selectors.user_sponsor(request.user)
    if sponsor is None or sponsor.pk not in sponsor_ids_for(request.user, "view"):
        raise PermissionDenied(
            "Your access to the portal is not valid now: ask the CMO to renew your access grant."
        )
    return sponsor


def _awaiting(user, sponsor) -> dict[str, int]:
    """What awaits the sponsor's people: deviation closures awaiting its approval, deviation
    notices awaiting acknowledgement, change-control obligations awaiting its decision."""
    from changecontrol.models import ChangeRequest, SponsorObligation
    from deviations.selectors import sponsor_awaiting

    decisions = (
        SponsorObligation.objects.for_user(user)
        .filter(
            sponsor=sponsor,
            kind=Obligation.APPROVE,
            status=SponsorObligation.Status.PENDING,
            change__status=ChangeRequest.Status.AWAITING_SPONSORS,
        )
        .count()
    )
    return {**sponsor_awaiting(user=user, sponsor=sponsor), "changes": decisions}


@portal_required
def home(request):
    sponsor = _own_sponsor(request)
    context = {
        "sponsor": sponsor,
        "products": selectors.product_list(user=request.user, sponsor=sponsor),
        "agreements": selectors.agreement_list(user=request.user, sponsor=sponsor),
        "in_force": selectors.agreement_in_force(sponsor=sponsor),
        "open_deviations": selectors.sponsor_open_deviations(user=request.user, sponsor=sponsor),
        "awaiting": _awaiting(request.user, sponsor),
        "may_decide": sponsor.pk in sponsor_ids_for(request.user, "sponsor_approve"),
    }
    return render(request, "portal/home.html", context)


@portal_required
def product_detail(request, pk: int):
    sponsor = _own_sponsor(request)
    product = get_object_or_404(selectors.product_list(user=request.user, sponsor=sponsor), pk=pk)
    return render(
        request, "portal/product_detail.html", {"product": product, **record_trail(product)}
    )


@portal_required
def agreement_detail(request, version: int):
    sponsor = _own_sponsor(request)
    agreement = get_object_or_404(
        selectors.agreement_list(user=request.user, sponsor=sponsor).prefetch_related(
            "change_rules"
        ),
        version=version,
    )
    return render(request, "portal/agreement_detail.html", agreement_context(request, agreement))
