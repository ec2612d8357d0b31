"""The sponsor portal's view of the manufacturing record: the sponsor's own batches and lots, the
site lots their batches consumed, and recall scope, read through the CMO pages' selectors."""

from decimal import Decimal

import django_filters
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from qms.access import portal_required
from qms.records import record_trail
from sponsors.portal import _own_sponsor
from sponsors.selectors import product_list

from . import exports, selectors
from .models import Batch, Consumption, LabResult
from .views import PAGE_SIZE, _direction, _lot, batch_record_context


class PortalBatchFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="number", lookup_expr="icontains", label="Batch")
    product = django_filters.ModelChoiceFilter(queryset=None, label="Product")
    status = django_filters.ChoiceFilter(choices=Batch.Status.choices, label="Status")
    sort = django_filters.OrderingFilter(
        fields=(
            ("number", "number"),
            ("product__code", "product"),
            ("status", "status"),
            ("planned_at", "planned"),
        ),
        label="Sort",
    )

    class Meta:
        model = Batch
        fields = ["q", "product", "status"]

    def __init__(self, *args, user=None, sponsor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["product"].queryset = product_list(user=user, sponsor=sponsor)


def _genealogy(request, lot_number: str):
    lot = _lot(request, lot_number)
    return exports.genealogy_for(lot=lot, user=request.user, direction=_direction(request))


@portal_required
def batch_list(request):
    sponsor = _own_sponsor(request)
    batches = selectors.batch_list(user=request.user).filter(sponsor=sponsor)
    filterset = PortalBatchFilter(request.GET, queryset=batches, user=request.user, sponsor=sponsor)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"sponsor": sponsor, "filter": filterset, "page": page, "portal": True}
    template = "batches/_batch_table.html" if request.htmx else "portal/batch_list.html"
    return render(request, template, context)


@portal_required
def batch_detail(request, number: str):
    _own_sponsor(request)
    try:
        batch = selectors.batch_detail(user=request.user, number=number)
    except Batch.DoesNotExist as missing:
        raise Http404(f"No batch {number} in your scope.") from missing
    context = {**batch_record_context(batch), "portal": True}
    return render(request, "portal/batch_detail.html", context)


@portal_required
def lot_detail(request, lot_number: str):
    """A lot of the sponsor, or a site lot their batches consumed; of a shared lot the page shows
    only what the sponsor's own batches consumed, never the site's remaining quantity."""
    sponsor = _own_sponsor(request)
    lot = _lot(request, lot_number)
    consumptions = list(
        Consumption.objects.for_user(request.user)
        .filter(lot=lot)
        .select_related("batch__product")
        .order_by("consumed_at", "id")
    )
    lab_results = list(
        LabResult.objects.for_user(request.user).filter(lot=lot).select_related("analyst")
    )
    forward = selectors.recall_scope_forward(lot=lot, user=request.user)
    shipments = [s for s in forward.shipments if s.lot_id == lot.pk]
    consumed = sum((c.quantity for c in consumptions), start=Decimal(0))
    shipped = sum((s.quantity for s in shipments), start=Decimal(0))
    is_own = lot.sponsor_id == sponsor.pk
    context = {
        "sponsor": sponsor,
        "lot": lot,
        "is_own": is_own,
        "consumptions": consumptions,
        "consumed": consumed,
        "shipped": shipped,
        "remaining": lot.quantity - consumed - shipped if is_own else None,
        "lab_results": lab_results,
        "trace": selectors.recall_trace_backward(lot=lot, user=request.user),
        "scope": forward,
        "shipments": shipments,
        "portal": True,
        **record_trail(lot, *lab_results),
    }
    return render(request, "portal/lot_detail.html", context)


@portal_required
def recall(request, lot_number: str):
    sponsor = _own_sponsor(request)
    genealogy = _genealogy(request, lot_number)
    context = {
        "sponsor": sponsor,
        "lot": genealogy.origin,
        "direction": genealogy.direction,
        "genealogy": genealogy,
        "portal": True,
    }
    return render(request, "portal/recall.html", context)


def _attachment(body, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@portal_required
def recall_csv(request, lot_number: str):
    _own_sponsor(request)
    genealogy = _genealogy(request, lot_number)
    return _attachment(
        exports.recall_csv(genealogy),
        "text/csv; charset=utf-8",
        exports.filename(genealogy, "csv"),
    )


@portal_required
def recall_pdf(request, lot_number: str):
    _own_sponsor(request)
    genealogy = _genealogy(request, lot_number)
    return _attachment(
        exports.recall_pdf(genealogy, user=request.user, at=timezone.now()),
        "application/pdf",
        exports.filename(genealogy, "pdf"),
    )
