"""CMO pages of the manufacturing record: lots, batches, master batch records, equipment, and the
recall scope with its CSV and PDF exports. Every read goes through the selectors or `for_user`."""

import django_filters
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from qms.access import cmo_required
from qms.records import record_trail
from qms.signatures import signatures_for
from sponsors.models import Sponsor
from sponsors.selectors import product_list, sponsor_list

from . import exports, selectors
from .models import (
    Batch,
    CleaningRecord,
    Consumption,
    Equipment,
    LabResult,
    Lot,
    MasterBatchRecord,
    Material,
    PackagingRecord,
)

PAGE_SIZE = 25


class LotFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="lot_number", lookup_expr="icontains", label="Lot")
    material = django_filters.ModelChoiceFilter(queryset=Material.objects.none(), label="Material")
    status = django_filters.ChoiceFilter(choices=Lot.Status.choices, label="Status")
    sponsor = django_filters.ModelChoiceFilter(
        queryset=Sponsor.objects.none(), method="for_sponsor", label="Sponsor"
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("lot_number", "lot"),
            ("material__code", "material"),
            ("status", "status"),
            ("created_at", "created"),
        ),
        label="Sort",
    )

    class Meta:
        model = Lot
        fields = ["q", "material", "status", "sponsor"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["material"].queryset = Material.objects.for_user(user)
        self.filters["sponsor"].queryset = sponsor_list(user=user)

    def for_sponsor(self, queryset, name, value):
        """The sponsor's own lots and the site lots its batches consumed."""
        used = Consumption.objects.filter(lot=OuterRef("pk"), batch__sponsor=value)
        return queryset.filter(Q(sponsor=value) | (Q(sponsor__isnull=True) & Exists(used)))


class BatchFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="number", lookup_expr="icontains", label="Batch")
    product = django_filters.ModelChoiceFilter(queryset=None, label="Product")
    status = django_filters.ChoiceFilter(choices=Batch.Status.choices, label="Status")
    sponsor = django_filters.ModelChoiceFilter(queryset=Sponsor.objects.none(), label="Sponsor")
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
        fields = ["q", "product", "status", "sponsor"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["product"].queryset = product_list(user=user)
        self.filters["sponsor"].queryset = sponsor_list(user=user)


def _lot(request, lot_number: str) -> Lot:
    try:
        return selectors.lot_get(user=request.user, lot_number=lot_number)
    except Lot.DoesNotExist as missing:
        raise Http404(f"No lot {lot_number} in your scope.") from missing


def _direction(request) -> str:
    return "backward" if request.GET.get("direction") == "backward" else "forward"


@cmo_required
def lot_list(request):
    filterset = LotFilter(
        request.GET, queryset=selectors.lot_list(user=request.user), user=request.user
    )
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page}
    template = "batches/_lot_table.html" if request.htmx else "batches/lot_list.html"
    return render(request, template, context)


@cmo_required
def lot_detail(request, lot_number: str):
    lot = _lot(request, lot_number)
    lab_results = list(
        LabResult.objects.for_user(request.user).filter(lot=lot).select_related("analyst")
    )
    forward = selectors.recall_scope_forward(lot=lot, user=request.user)
    context = {
        "lot": lot,
        "balance": selectors.lot_balance(lot),
        "lab_results": lab_results,
        "trace": selectors.recall_trace_backward(lot=lot, user=request.user),
        "scope": forward,
        "shipments": [s for s in forward.shipments if s.lot_id == lot.pk],
        **record_trail(lot, *lab_results),
    }
    return render(request, "batches/lot_detail.html", context)


@cmo_required
def recall(request, lot_number: str):
    lot = _lot(request, lot_number)
    direction = _direction(request)
    genealogy = exports.genealogy_for(lot=lot, user=request.user, direction=direction)
    context = {"lot": lot, "direction": direction, "genealogy": genealogy}
    return render(request, "batches/recall.html", context)


@cmo_required
def recall_csv(request, lot_number: str):
    lot = _lot(request, lot_number)
    direction = _direction(request)
    genealogy = exports.genealogy_for(lot=lot, user=request.user, direction=direction)
    response = HttpResponse(exports.recall_csv(genealogy), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(genealogy, "csv")}"'
    return response


@cmo_required
def recall_pdf(request, lot_number: str):
    lot = _lot(request, lot_number)
    direction = _direction(request)
    genealogy = exports.genealogy_for(lot=lot, user=request.user, direction=direction)
    pdf = exports.recall_pdf(genealogy, user=request.user, at=timezone.now())
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(genealogy, "pdf")}"'
    return response


@cmo_required
def batch_list(request):
    filterset = BatchFilter(
        request.GET, queryset=selectors.batch_list(user=request.user), user=request.user
    )
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page}
    template = "batches/_batch_table.html" if request.htmx else "batches/batch_list.html"
    return render(request, template, context)


@cmo_required
def batch_detail(request, number: str):
    try:
        batch = selectors.batch_detail(user=request.user, number=number)
    except Batch.DoesNotExist as missing:
        raise Http404(f"No batch {number} in your scope.") from missing
    return render(request, "batches/batch_detail.html", batch_record_context(batch))


def batch_record_context(batch: Batch) -> dict:
    """Template context for `batches/_batch_record.html` and the record trail, from a batch
    read through `selectors.batch_detail`."""
    executed = {e.step_id: e for e in batch.executed_steps.all()}
    steps = [(step, executed.get(step.pk)) for step in batch.mbr.steps.all()]
    consumptions = list(batch.consumptions.all())
    uses = list(batch.equipment_uses.all())
    output_lots = list(batch.output_lots.all())
    lab_results = [result for lot in output_lots for result in lot.lab_results.all()]
    packaging = getattr(batch, "packaging", None)
    related = [*consumptions, *executed.values(), *uses, *output_lots, *lab_results]
    if packaging is not None:
        related.append(packaging)
    return {
        "batch": batch,
        "steps": steps,
        "consumptions": consumptions,
        "uses": uses,
        "output_lots": [(lot, signatures_for(lot)) for lot in output_lots],
        "packaging": packaging,
        "packaging_signatures": signatures_for(packaging) if packaging else [],
        "labels_balanced": _labels_balanced(packaging),
        **record_trail(batch, *related),
    }


def _labels_balanced(packaging: PackagingRecord | None) -> bool:
    if packaging is None or not packaging.is_reconciled:
        return False
    counts = (
        packaging.labels_used,
        packaging.labels_destroyed,
        packaging.labels_returned,
        packaging.labels_issued,
    )
    if None in counts:
        return False
    return packaging.labels_issued == sum(counts[:3])


@cmo_required
def mbr_detail(request, pk: int):
    mbrs = MasterBatchRecord.objects.for_user(request.user).select_related("product", "sponsor")
    mbr = get_object_or_404(
        mbrs.prefetch_related("bom_lines__material", "steps"),
        pk=pk,
    )
    bom = list(mbr.bom_lines.all())
    steps = list(mbr.steps.all())
    batches = (
        selectors.batch_list(user=request.user)
        .filter(mbr=mbr)
        .prefetch_related("output_lots")
        .order_by("-planned_at", "-id")
    )
    context = {
        "mbr": mbr,
        "bom": bom,
        "steps": steps,
        "versions": mbrs.filter(product=mbr.product).order_by("-version"),
        "page": Paginator(batches, PAGE_SIZE).get_page(request.GET.get("page")),
        **record_trail(mbr, *bom, *steps),
    }
    return render(request, "batches/mbr_detail.html", context)


@cmo_required
def equipment_list(request):
    equipment = Equipment.objects.for_user(request.user).order_by("code")
    page = Paginator(equipment, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request, "batches/equipment_list.html", {"page": page, "today": timezone.now().date()}
    )


@cmo_required
def equipment_detail(request, code: str):
    equipment = get_object_or_404(Equipment.objects.for_user(request.user), code=code)
    uses = selectors.equipment_history(user=request.user, equipment=equipment)
    cleanings = list(
        CleaningRecord.objects.filter(equipment=equipment).select_related(
            "performed_by", "verified_by"
        )[:50]
    )
    context = {
        "equipment": equipment,
        "is_expired": equipment.qualified_until < timezone.now().date(),
        "page": Paginator(uses, 50).get_page(request.GET.get("page")),
        "cleanings": cleanings,
        **record_trail(equipment, *cleanings),
    }
    return render(request, "batches/equipment_detail.html", context)
