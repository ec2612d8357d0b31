"""Acts on lots: receipt into quarantine, disposition of a received lot by e-signature, lab
results (an OOS result opens its investigation), shipment; and the shipments list. Each POST calls
one service; a refusal is shown on the page it came from (400), a success redirects back."""

import django_filters
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from qms.access import cmo_required
from qms.forms import form_submit
from sponsors.models import Sponsor
from sponsors.selectors import sponsor_list

from . import forms, services
from .models import LabResult, Lot, Shipment
from .views import PAGE_SIZE, _lot, lot_context


def _lot_refused(request, lot: Lot, **given):
    lot.refresh_from_db()
    return render(
        request, "batches/lot_detail.html", lot_context(request, lot, **given), status=400
    )


@cmo_required
def lot_receive(request):
    form = forms.ReceiptForm(request.POST or None, user=request.user)
    if request.method == "POST":
        done, lot = form_submit(
            form,
            lambda data: services.lot_receive(
                material=data["material"],
                lot_number=data["lot_number"],
                quantity=data["quantity"],
                supplier=data["supplier"],
                supplier_lot_number=data["supplier_lot_number"],
                receipt_reference=data["receipt_reference"],
                received_at=data["received_at"],
                expires_on=data["expires_on"],
                by=request.user,
            ),
        )
        if done:
            messages.success(
                request,
                f"Lot {lot} received: {lot.quantity.normalize():f} {lot.unit} of "
                f"{lot.material.code}, in quarantine.",
            )
            return redirect(lot.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "batches/lot_receive.html", {"form": form}, status=status)


@cmo_required
@require_POST
def lot_disposition(request, lot_number: str):
    lot = _lot(request, lot_number)
    form = forms.LotDispositionForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.lot_disposition(
            lot=lot,
            user=request.user,
            password=data["password"],
            release=data["decision"] == "release",
            request=request,
        ),
    )
    if done:
        messages.success(request, f"Lot {lot} signed: {lot.get_status_display().lower()}.")
        return redirect(lot.get_absolute_url())
    return _lot_refused(request, lot, disposition_form=form)


@cmo_required
@require_POST
def lab_result_add(request, lot_number: str):
    lot = _lot(request, lot_number)
    form = forms.LabResultForm(request.POST)
    done, result = form_submit(
        form,
        lambda data: services.lab_result_record(
            lot=lot,
            test=data["test"],
            method=data["method"],
            value=data["value"],
            low_limit=data["low_limit"],
            high_limit=data["high_limit"],
            unit=data["unit"],
            tested_at=data["tested_at"],
            analyst=request.user,
        ),
    )
    if done:
        if result.outcome == LabResult.Outcome.OOS:
            from deviations.selectors import deviation_list

            investigation = (
                deviation_list(user=request.user)
                .filter(lab_result=result, source__isnull=True)
                .first()
            )
            opened = f": OOS investigation {investigation} opened" if investigation else ""
            messages.warning(
                request,
                f"{result.test} on lot {lot} is out of specification "
                f"({result.value.normalize():f} {result.unit}, specification "
                f"{result.spec_display}){opened}.",
            )
        else:
            messages.success(request, f"{result.test} on lot {lot} recorded: within specification.")
        return redirect(lot.get_absolute_url())
    return _lot_refused(request, lot, lab_result_form=form)


@cmo_required
@require_POST
def lot_ship(request, lot_number: str):
    lot = _lot(request, lot_number)
    form = forms.ShipmentForm(request.POST)
    done, shipment = form_submit(
        form,
        lambda data: services.shipment_create(
            lot=lot,
            customer=data["customer"],
            quantity=data["quantity"],
            reference=data["reference"],
            by=request.user,
        ),
    )
    if done:
        messages.success(
            request,
            f"{shipment.quantity.normalize():f} {lot.unit} of lot {lot} shipped to "
            f"{shipment.customer}.",
        )
        return redirect(lot.get_absolute_url())
    return _lot_refused(request, lot, ship_form=form)


class ShipmentFilter(django_filters.FilterSet):
    sponsor = django_filters.ModelChoiceFilter(queryset=Sponsor.objects.none(), label="Sponsor")
    customer = django_filters.CharFilter(method="for_customer", label="Customer")
    lot = django_filters.CharFilter(
        field_name="lot__lot_number", lookup_expr="icontains", label="Lot"
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("shipped_at", "shipped"),
            ("lot__lot_number", "lot"),
            ("customer__name", "customer"),
        ),
        label="Sort",
    )

    class Meta:
        model = Shipment
        fields = ["sponsor", "customer", "lot"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)

    def for_customer(self, queryset, name, value):
        return queryset.filter(
            Q(customer__code__icontains=value) | Q(customer__name__icontains=value)
        )


@cmo_required
def shipment_list(request):
    shipments = Shipment.objects.for_user(request.user).select_related(
        "lot__material", "customer", "sponsor", "recorded_by"
    )
    filterset = ShipmentFilter(request.GET, queryset=shipments, user=request.user)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page}
    template = "batches/_shipment_table.html" if request.htmx else "batches/shipment_list.html"
    return render(request, template, context)
