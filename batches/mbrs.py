"""Master batch record versions: draft the next version as a copy of the one in force, edit the
draft (header, bill of materials, steps), review by a second person and approval by QA (both
e-signatures, never by the author), and make the approved version effective."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from qms.access import cmo_required
from qms.forms import form_submit
from sponsors.selectors import product_list

from . import forms, services
from .models import MasterBatchRecord
from .views import mbr_context, mbr_get


def _mbr_refused(request, mbr: MasterBatchRecord, **given):
    mbr = mbr_get(request, mbr.pk)
    return render(
        request, "batches/mbr_detail.html", mbr_context(request, mbr, **given), status=400
    )


def _first_version(request, product):
    """A product without any master batch record: its first version is written from a header
    and a first step, then completed on the draft's edit page."""
    form = forms.FirstMbrForm(request.POST or None)
    if request.method == "POST":
        done, draft = form_submit(
            form,
            lambda data: services.mbr_create_draft(
                product=product,
                title=data["title"],
                batch_size=data["batch_size"],
                batch_unit=data["batch_unit"],
                theoretical_yield=data["theoretical_yield"],
                bom=[],
                steps=[{"title": data["first_step"]}],
                by=request.user,
            ),
        )
        if done:
            messages.success(
                request, f"{draft} drafted: add its steps and bill of materials, then review."
            )
            return redirect(reverse("batches:mbr-edit", args=[draft.pk]))
    status = 400 if request.method == "POST" else 200
    return render(
        request, "batches/mbr_first.html", {"product": product, "form": form}, status=status
    )


@cmo_required
@require_http_methods(["GET", "HEAD", "POST"])
def mbr_new_version(request, pk: int):
    product = get_object_or_404(product_list(user=request.user), pk=pk)
    if not MasterBatchRecord.objects.for_user(request.user).filter(product=product).exists():
        return _first_version(request, product)
    if request.method != "POST":
        latest = MasterBatchRecord.objects.for_user(request.user).filter(product=product)
        return redirect(latest.order_by("-version").first().get_absolute_url())
    form = forms.ActForm(request.POST)
    done, draft = form_submit(
        form, lambda data: services.mbr_draft_new_version(product=product, by=request.user)
    )
    if done:
        source = f" as a copy of v{draft.based_on.version}" if draft.based_on_id else ""
        messages.success(request, f"{draft} drafted{source}: edit it, then have it reviewed.")
        return redirect(reverse("batches:mbr-edit", args=[draft.pk]))
    in_force = services.mbr_in_force(product) or (
        MasterBatchRecord.objects.for_user(request.user)
        .filter(product=product)
        .order_by("-version")
        .first()
    )
    if in_force is None:
        context = {"product": product, "form": form}
        return render(request, "batches/mbr_first.html", context, status=400)
    return _mbr_refused(request, in_force, new_version_form=form)


@cmo_required
def mbr_edit(request, pk: int):
    mbr = mbr_get(request, pk)
    if mbr.status != MasterBatchRecord.Status.DRAFT:
        messages.info(
            request,
            f"{mbr} is {mbr.get_status_display().lower()}: only a draft is edited; draft a new "
            "version instead.",
        )
        return redirect(mbr.get_absolute_url())
    data = request.POST if request.method == "POST" else None
    header, bom, steps = forms.mbr_edit_forms(mbr, request.user, data)
    if request.method == "POST":
        valid = [form.is_valid() for form in (header, bom, steps)]
        if all(valid):
            done, _ = form_submit(
                header,
                lambda _data: services.mbr_update_draft(
                    mbr=mbr, by=request.user, **forms.mbr_content_from(header, bom, steps)
                ),
            )
            if done:
                messages.success(request, f"{mbr} saved.")
                return redirect(mbr.get_absolute_url())
    context = {"mbr": mbr, "form": header, "bom": bom, "steps": steps}
    status = 400 if request.method == "POST" else 200
    return render(request, "batches/mbr_edit.html", context, status=status)


@cmo_required
@require_POST
def mbr_review(request, pk: int):
    mbr = mbr_get(request, pk)
    form = forms.SignForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.mbr_review(
            mbr=mbr, user=request.user, password=data["password"], request=request
        ),
    )
    if done:
        messages.success(request, f"{mbr} reviewed: QA approves it next.")
        return redirect(mbr.get_absolute_url())
    return _mbr_refused(request, mbr, review_form=form)


@cmo_required
@require_POST
def mbr_approve(request, pk: int):
    mbr = mbr_get(request, pk)
    form = forms.SignForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.mbr_approve(
            mbr=mbr, user=request.user, password=data["password"], request=request
        ),
    )
    if done:
        messages.success(request, f"{mbr} approved: make it effective when it is to be used.")
        return redirect(mbr.get_absolute_url())
    return _mbr_refused(request, mbr, approve_form=form)


@cmo_required
@require_POST
def mbr_make_effective(request, pk: int):
    mbr = mbr_get(request, pk)
    form = forms.MbrEffectiveForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.mbr_make_effective(
            mbr=mbr, by=request.user, effective_from=data["effective_from"]
        ),
    )
    if done:
        messages.success(request, f"{mbr} effective from {mbr.effective_from:%Y-%m-%d %H:%M} UTC.")
        return redirect(mbr.get_absolute_url())
    return _mbr_refused(request, mbr, effective_form=form)
