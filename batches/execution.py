"""Batch execution at the line: plan and start a batch, record the next step against its limits,
the second person's verification, consumption of scanned input lots, equipment use, completion,
submission for review and packaging evidence; and cleaning of shared equipment. Each POST calls
one service; a refusal is shown on the page it came from (400), a success redirects back."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from qms.access import cmo_required
from qms.forms import form_submit

from . import forms, selectors, services
from .models import Batch, CleaningRecord, Equipment, MbrStep, PackagingRecord
from .views import equipment_context, may, with_form_ids

OPEN_STATUSES = (Batch.Status.IN_PROGRESS, Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW)


def _batch(request, number: str) -> Batch:
    try:
        return selectors.batch_detail(user=request.user, number=number)
    except Batch.DoesNotExist as missing:
        raise Http404(f"No batch {number} in your scope.") from missing


def _who(user) -> str:
    return user.get_full_name() or user.get_username()


def execution_context(request, batch: Batch, **given) -> dict:
    """The batch at the line: the next step first, what is left, the steps awaiting a second
    person, materials against the bill, equipment, completion and packaging; each form only
    where the user may act and the batch's status allows it. `given` holds a bound form (and
    for a verification, `verify_step`: the step it was for) to show again with its errors."""
    user = request.user
    may_change = may(user, "change", batch.sponsor_id)
    running = batch.status == Batch.Status.IN_PROGRESS
    steps = list(batch.mbr.steps.all())
    executed = {done.step_id: done for done in batch.executed_steps.all()}
    remaining = [step for step in steps if step.pk not in executed]
    next_step = remaining[0] if remaining else None
    awaiting = []
    for step in steps:
        done = executed.get(step.pk)
        if done is None or not step.requires_verification or done.verified_by_id is not None:
            continue
        form = None
        if given.get("verify_step") == step.sequence:
            form = given["verify_form"]
        elif may_change and done.performed_by_id != user.pk:
            form = forms.SignForm()
        if form is not None:
            form.auto_id = f"verify{step.sequence}_%s"
        awaiting.append({"step": step, "done": done, "form": form})
    consumptions = list(batch.consumptions.all())
    bill = []
    for line in batch.mbr.bom_lines.all():
        used = [c for c in consumptions if c.lot.material_id == line.material_id]
        bill.append({"line": line, "consumed": sum(c.quantity for c in used), "lots": len(used)})
    uses = list(batch.equipment_uses.all())
    packaging = getattr(batch, "packaging", None)
    may_package = may_change and batch.status in OPEN_STATUSES

    def offer(name, make, allowed):
        return given.get(name) or (make() if allowed else None)

    return with_form_ids(
        {
            "batch": batch,
            "steps": steps,
            "executed": executed,
            "done_count": len(executed),
            "remaining": remaining,
            "next_step": next_step,
            "later_steps": remaining[1:],
            "awaiting": awaiting,
            "bill": bill,
            "consumptions": consumptions,
            "uses": uses,
            "open_uses": [use for use in uses if use.ended_at is None],
            "output_lots": list(batch.output_lots.all()),
            "packaging": packaging,
            "may_change": may_change,
            "start_form": offer(
                "start_form", forms.ActForm, may_change and batch.status == Batch.Status.PLANNED
            ),
            "step_form": given.get("step_form")
            or (forms.StepForm(step=next_step) if may_change and running and next_step else None),
            "consume_form": offer(
                "consume_form", lambda: forms.ConsumeForm(user=user), may_change and running
            ),
            "equipment_form": offer(
                "equipment_form", lambda: forms.EquipmentUseForm(user=user), may_change and running
            ),
            "complete_form": offer(
                "complete_form", forms.CompleteForm, may_change and running and next_step is None
            ),
            "submit_form": offer(
                "submit_form", forms.ActForm, may_change and batch.status == Batch.Status.COMPLETED
            ),
            "packaging_form": offer(
                "packaging_form", forms.PackagingStartForm, may_package and packaging is None
            ),
            "clearance_form": offer(
                "clearance_form",
                forms.SignForm,
                may_package and packaging is not None and packaging.line_cleared_at is None,
            ),
            "reconcile_form": offer(
                "reconcile_form",
                forms.ReconcileForm,
                may_package and packaging is not None and not packaging.is_reconciled,
            ),
            "end_error": given.get("end_error"),
            "awaits_release": batch.status in (Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW),
        }
    )


def _refused(request, batch: Batch, **given):
    batch = _batch(request, batch.number)
    context = execution_context(request, batch, **given)
    return render(request, "batches/execution.html", context, status=400)


def _done(request, batch: Batch, message: str):
    messages.success(request, message)
    return redirect(reverse("batches:execution", args=[batch.number]))


@cmo_required
def batch_execution(request, number: str):
    batch = _batch(request, number)
    return render(request, "batches/execution.html", execution_context(request, batch))


@cmo_required
def batch_plan(request):
    form = forms.BatchPlanForm(request.POST or None, user=request.user)
    if request.method == "POST":
        done, batch = form_submit(
            form,
            lambda data: services.batch_plan(
                product=data["product"], number=data["number"], by=request.user
            ),
        )
        if done:
            messages.success(
                request, f"Batch {batch} planned under {batch.mbr} ({batch.mbr.title})."
            )
            return redirect(reverse("batches:execution", args=[batch.number]))
    status = 400 if request.method == "POST" else 200
    return render(request, "batches/batch_plan.html", {"form": form}, status=status)


@cmo_required
@require_POST
def batch_start(request, number: str):
    batch = _batch(request, number)
    form = forms.ActForm(request.POST)
    done, _ = form_submit(form, lambda data: services.batch_start(batch=batch, by=request.user))
    if done:
        return _done(request, batch, f"Batch {batch} started under {batch.mbr}.")
    return _refused(request, batch, start_form=form)


def _step(batch: Batch, sequence: int) -> MbrStep:
    step = next((s for s in batch.mbr.steps.all() if s.sequence == sequence), None)
    if step is None:
        raise Http404(f"{batch.mbr} has no step {sequence}.")
    return step


@cmo_required
@require_POST
def step_record(request, number: str, sequence: int):
    batch = _batch(request, number)
    step = _step(batch, sequence)
    form = forms.StepForm(request.POST, step=step)
    done, executed = form_submit(
        form,
        lambda data: services.batch_record_step(
            batch=batch,
            step=step,
            performed_by=request.user,
            value=data["value"],
            note=data["note"],
        ),
    )
    if done:
        state = "within limits" if executed.is_in_limits else "OUT OF LIMITS, with comment"
        return _done(request, batch, f"Step {step.sequence} ({step.title}) recorded, {state}.")
    return _refused(request, batch, step_form=form)


@cmo_required
@require_POST
def step_verify(request, number: str, sequence: int):
    batch = _batch(request, number)
    step = _step(batch, sequence)
    executed = next((e for e in batch.executed_steps.all() if e.step_id == step.pk), None)
    if executed is None:
        raise Http404(f"Step {sequence} of batch {batch} is not recorded.")
    form = forms.SignForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.batch_verify_step(
            executed=executed,
            verified_by=request.user,
            password=data["password"],
            request=request,
        ),
    )
    if done:
        return _done(
            request, batch, f"Step {step.sequence} ({step.title}) verified by {_who(request.user)}."
        )
    return _refused(request, batch, verify_form=form, verify_step=step.sequence)


@cmo_required
@require_POST
def batch_consume(request, number: str):
    batch = _batch(request, number)
    form = forms.ConsumeForm(request.POST, user=request.user)
    done, consumption = form_submit(
        form,
        lambda data: services.batch_consume(
            batch=batch, lot=data["lot"], quantity=data["quantity"], by=request.user
        ),
    )
    if done:
        return _done(
            request,
            batch,
            f"{consumption.quantity.normalize():f} {consumption.lot.unit} of lot "
            f"{consumption.lot} ({consumption.lot.material.code}) consumed.",
        )
    return _refused(request, batch, consume_form=form)


@cmo_required
@require_POST
def equipment_use_start(request, number: str):
    batch = _batch(request, number)
    form = forms.EquipmentUseForm(request.POST, user=request.user)
    done, use = form_submit(
        form,
        lambda data: services.equipment_use_start(
            batch=batch, equipment=data["equipment"], by=request.user
        ),
    )
    if done:
        return _done(request, batch, f"{use.equipment.code} in use for batch {batch}.")
    return _refused(request, batch, equipment_form=form)


@cmo_required
@require_POST
def equipment_use_end(request, number: str, pk: int):
    batch = _batch(request, number)
    use = next((u for u in batch.equipment_uses.all() if u.pk == pk), None)
    if use is None:
        raise Http404(f"Batch {batch} has no equipment use {pk}.")
    form = forms.ActForm(request.POST)
    done, _ = form_submit(form, lambda data: services.equipment_use_end(use=use, by=request.user))
    if done:
        return _done(request, batch, f"{use.equipment.code} released by batch {batch}.")
    return _refused(request, batch, end_error=form.non_field_errors())


@cmo_required
@require_POST
def batch_complete(request, number: str):
    batch = _batch(request, number)
    form = forms.CompleteForm(request.POST)
    done, lot = form_submit(
        form,
        lambda data: services.batch_complete(
            batch=batch,
            output_lot_number=data["output_lot_number"],
            quantity=data["quantity"],
            expires_on=data["expires_on"],
            by=request.user,
        ),
    )
    if done:
        return _done(
            request,
            batch,
            f"Batch {batch} completed: lot {lot}, {lot.quantity.normalize():f} {lot.unit}, "
            "in quarantine.",
        )
    return _refused(request, batch, complete_form=form)


@cmo_required
@require_POST
def batch_submit(request, number: str):
    batch = _batch(request, number)
    form = forms.ActForm(request.POST)
    done, _ = form_submit(
        form, lambda data: services.batch_submit_for_review(batch=batch, by=request.user)
    )
    if done:
        return _done(request, batch, f"Batch {batch} submitted for review.")
    return _refused(request, batch, submit_form=form)


def _packaging(batch: Batch) -> PackagingRecord:
    packaging = getattr(batch, "packaging", None)
    if packaging is None:
        raise Http404(f"No packaging is recorded for batch {batch}.")
    return packaging


@cmo_required
@require_POST
def packaging_start(request, number: str):
    batch = _batch(request, number)
    form = forms.PackagingStartForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.packaging_start(
            batch=batch, label_version=data["label_version"], by=request.user
        ),
    )
    if done:
        return _done(request, batch, f"Packaging of batch {batch} started.")
    return _refused(request, batch, packaging_form=form)


@cmo_required
@require_POST
def packaging_clearance(request, number: str):
    batch = _batch(request, number)
    packaging = _packaging(batch)
    form = forms.SignForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.packaging_clear_line(
            packaging=packaging, user=request.user, password=data["password"], request=request
        ),
    )
    if done:
        return _done(request, batch, f"Line clearance for batch {batch} signed.")
    return _refused(request, batch, clearance_form=form)


@cmo_required
@require_POST
def packaging_reconciliation(request, number: str):
    batch = _batch(request, number)
    packaging = _packaging(batch)
    form = forms.ReconcileForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.packaging_reconcile(packaging=packaging, by=request.user, **data),
    )
    if done:
        return _done(request, batch, f"Labels of batch {batch} reconciled: balanced.")
    return _refused(request, batch, reconcile_form=form)


# --- cleaning of shared equipment -----------------------------------------------------------


def _equipment(request, code: str) -> Equipment:
    return get_object_or_404(Equipment.objects.for_user(request.user), code=code)


def _equipment_refused(request, equipment: Equipment, **given):
    context = equipment_context(request, equipment, **given)
    return render(request, "batches/equipment_detail.html", context, status=400)


@cmo_required
@require_POST
def cleaning_record(request, code: str):
    equipment = _equipment(request, code)
    form = forms.CleaningForm(request.POST)
    done, cleaning = form_submit(
        form,
        lambda data: services.cleaning_record(
            equipment=equipment,
            method=data["method"],
            performed_by=request.user,
            at=data["performed_at"],
        ),
    )
    if done:
        messages.success(
            request, f"Cleaning of {equipment.code} recorded; a second person verifies it."
        )
        return redirect(equipment.get_absolute_url())
    return _equipment_refused(request, equipment, cleaning_form=form)


@cmo_required
@require_POST
def cleaning_verify(request, code: str, pk: int):
    equipment = _equipment(request, code)
    cleaning = get_object_or_404(CleaningRecord, equipment=equipment, pk=pk)
    form = forms.SignForm(request.POST)
    done, _ = form_submit(
        form,
        lambda data: services.cleaning_verify(
            cleaning=cleaning,
            verified_by=request.user,
            password=data["password"],
            request=request,
        ),
    )
    if done:
        messages.success(request, f"Cleaning of {equipment.code} verified by {_who(request.user)}.")
        return redirect(equipment.get_absolute_url())
    return _equipment_refused(
        request,
        equipment,
        verify_errors=[*form.non_field_errors(), *form.errors.get("password", [])],
    )
