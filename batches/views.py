"""CMO pages of the manufacturing record: lots, batches, master batch records, equipment, and the
recall scope with its CSV and PDF exports. Every read goes through the selectors or `for_user`.
The record pages carry the forms of the acts on them (posted to `lots`, `execution` and `mbrs`)
where the user may act and the record's status allows it."""

import django_filters
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.forms import BaseForm
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from qms.access import cmo_required
from qms.records import record_trail
from qms.signatures import signatures_for
from qms.tenancy import sponsor_ids_for
from sponsors.models import Sponsor
from sponsors.selectors import product_list, sponsor_list

from . import exports, forms, selectors, services
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


def with_form_ids(context: dict) -> dict:
    """Give each form of a page its own element ids (`<name>_<field>`), so that two forms with
    a field of the same name keep their labels apart."""
    for key, value in context.items():
        if isinstance(value, BaseForm):
            value.auto_id = f"{key.removesuffix('_form')}_%s"
    return context


def may(user, action: str, sponsor_id: int | None) -> bool:
    """May `user` perform `action` on a record of `sponsor_id` (None: a site record, which needs
    the action on at least one sponsor)? Decides whether a page offers the act; the service
    checks again."""
    if user.is_superuser:
        return True
    ids = sponsor_ids_for(user, action)
    return bool(ids) if sponsor_id is None else sponsor_id in ids


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
    return render(request, "batches/lot_detail.html", lot_context(request, lot))


def lot_results(lot: Lot, user) -> list[LabResult]:
    """The lot's lab results, each with `oos_investigations`: the deviations its OOS opened
    that the user may see."""
    from deviations.selectors import deviation_list

    return list(
        LabResult.objects.for_user(user)
        .filter(lot=lot)
        .select_related("analyst")
        .prefetch_related(
            Prefetch(
                "investigations",
                queryset=deviation_list(user=user).filter(source__isnull=True).order_by("number"),
                to_attr="oos_investigations",
            )
        )
    )


def lot_context(request, lot: Lot, **given) -> dict:
    """The lot page, with the forms of the acts the user may perform on the lot as it stands;
    `given` holds a bound form to show again with its errors."""
    user = request.user
    lab_results = lot_results(lot, user)
    forward = selectors.recall_scope_forward(lot=lot, user=user)
    in_quarantine = lot.status == Lot.Status.QUARANTINE
    may_dispose = lot.is_received and in_quarantine and may(user, "approve", lot.sponsor_id)
    may_ship = (
        lot.sponsor_id is not None
        and lot.status == Lot.Status.RELEASED
        and may(user, "change", lot.sponsor_id)
    )
    return with_form_ids(
        {
            "lot": lot,
            "balance": selectors.lot_balance(lot),
            "lab_results": lab_results,
            "open_issues": services.lot_open_issues(lot) if lot.sponsor_id else [],
            "trace": selectors.recall_trace_backward(lot=lot, user=user),
            "scope": forward,
            "shipments": [s for s in forward.shipments if s.lot_id == lot.pk],
            "disposition_form": given.get("disposition_form")
            or (forms.LotDispositionForm() if may_dispose else None),
            "lab_result_form": given.get("lab_result_form")
            or (forms.LabResultForm() if may(user, "change", lot.sponsor_id) else None),
            "ship_form": given.get("ship_form") or (forms.ShipmentForm() if may_ship else None),
            **record_trail(lot, *lab_results),
        }
    )


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
    context = {
        **batch_record_context(batch),
        "may_execute": batch.status not in (Batch.Status.RELEASED, Batch.Status.REJECTED)
        and may(request.user, "change", batch.sponsor_id),
    }
    return render(request, "batches/batch_detail.html", context)


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


def mbr_get(request, pk: int) -> MasterBatchRecord:
    mbrs = MasterBatchRecord.objects.for_user(request.user).select_related(
        "product", "sponsor", "created_by", "based_on"
    )
    return get_object_or_404(mbrs.prefetch_related("bom_lines__material", "steps"), pk=pk)


@cmo_required
def mbr_detail(request, pk: int):
    return render(request, "batches/mbr_detail.html", mbr_context(request, mbr_get(request, pk)))


def mbr_context(request, mbr: MasterBatchRecord, **given) -> dict:
    """The MBR page, with the acts its status allows the user: draft the next version, review
    (a second person), approve (QA, not the author), make effective."""
    user = request.user
    bom = list(mbr.bom_lines.all())
    steps = list(mbr.steps.all())
    versions = list(
        MasterBatchRecord.objects.for_user(user).filter(product=mbr.product_id).order_by("-version")
    )
    batches = (
        selectors.batch_list(user=user)
        .filter(mbr=mbr)
        .prefetch_related("output_lots")
        .order_by("-planned_at", "-id")
    )
    status = MasterBatchRecord.Status
    may_change = may(user, "change", mbr.sponsor_id)
    may_approve = may(user, "approve", mbr.sponsor_id)
    is_author = mbr.created_by_id is not None and mbr.created_by_id == user.pk
    has_open_draft = any(v.status in (status.DRAFT, status.REVIEWED) for v in versions)
    return with_form_ids(
        {
            "mbr": mbr,
            "bom": bom,
            "steps": steps,
            "versions": versions,
            "open_draft": next((v for v in versions if v.status == status.DRAFT), None),
            "is_author": is_author,
            "page": Paginator(batches, PAGE_SIZE).get_page(request.GET.get("page")),
            "new_version_form": given.get("new_version_form")
            or (forms.ActForm() if may_change and not has_open_draft else None),
            "may_edit": may_change and mbr.status == status.DRAFT,
            "review_form": given.get("review_form")
            or (
                forms.SignForm()
                if may_change and mbr.status == status.DRAFT and not is_author
                else None
            ),
            "approve_form": given.get("approve_form")
            or (
                forms.SignForm()
                if may_approve and mbr.status == status.REVIEWED and not is_author
                else None
            ),
            "effective_form": given.get("effective_form")
            or (
                forms.MbrEffectiveForm() if may_approve and mbr.status == status.APPROVED else None
            ),
            **record_trail(mbr, *bom, *steps),
        }
    )


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
    return render(request, "batches/equipment_detail.html", equipment_context(request, equipment))


def equipment_context(request, equipment: Equipment, **given) -> dict:
    """The equipment page, with cleaning: recorded by one person, verified by another."""
    user = request.user
    uses = selectors.equipment_history(user=user, equipment=equipment)
    cleanings = list(
        CleaningRecord.objects.filter(equipment=equipment).select_related(
            "performed_by", "verified_by"
        )[:50]
    )
    may_clean = may(user, "change", None)
    for cleaning in cleanings:
        cleaning.may_verify = (
            may_clean and not cleaning.is_verified and cleaning.performed_by_id != user.pk
        )
    return with_form_ids(
        {
            "equipment": equipment,
            "is_expired": equipment.qualified_until < timezone.now().date(),
            "page": Paginator(uses, 50).get_page(request.GET.get("page")),
            "cleanings": cleanings,
            "cleaning_form": given.get("cleaning_form")
            or (forms.CleaningForm() if may_clean else None),
            "verify_errors": given.get("verify_errors"),
            **record_trail(equipment, *cleanings),
        }
    )
