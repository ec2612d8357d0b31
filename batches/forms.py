"""Forms of the manufacturing-record pages: receipt, disposition and lab results of lots, batch
execution at the line, packaging evidence, cleaning, shipments and master batch record drafts.
Lot fields take a scanned GS1 label or a typed lot number (`barcodes.lot_from_scan`)."""

from decimal import Decimal

from django import forms
from django.db.models import Q

from qms.forms import as_utc, signature_password_field
from sponsors.selectors import product_list
from suppliers.models import Supplier

from .barcodes import lot_from_scan
from .models import Customer, Equipment, Material, MbrStep, Unit

DATE = forms.DateInput(attrs={"type": "date"})
MOMENT = forms.DateTimeInput(attrs={"type": "datetime-local"})
NUMBER = {"inputmode": "decimal", "autocomplete": "off"}
SCAN_HELP = "Scan the GS1 label (GTIN and lot) or type the lot number; the scanner's Enter submits."


def quantity_field(label="Quantity", **kwargs) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        max_digits=14,
        decimal_places=3,
        widget=forms.NumberInput(attrs={**NUMBER, "step": "any"}),
        **kwargs,
    )


def limit_field(label) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        max_digits=14,
        decimal_places=4,
        widget=forms.NumberInput(attrs={**NUMBER, "step": "any"}),
    )


class LotField(forms.CharField):
    """A lot by its label: a scanned GS1 element string or a typed lot number, in the scope of
    the form's user."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", "Lot")
        kwargs.setdefault("help_text", SCAN_HELP)
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={
                    "class": "scan",
                    "autocomplete": "off",
                    "autocapitalize": "off",
                    "spellcheck": "false",
                    "placeholder": "Scan or type",
                }
            ),
        )
        super().__init__(max_length=200, **kwargs)
        self.user = None

    def clean(self, value):
        text = super().clean(value)
        return lot_from_scan(text, user=self.user)


class UserForm(forms.Form):
    """A form acting for `user`: its lot fields resolve in the user's scope."""

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        for field in self.fields.values():
            if isinstance(field, LotField):
                field.user = user


class ActForm(forms.Form):
    """A button: the act needs no input beyond who presses it."""


class SignForm(forms.Form):
    password = signature_password_field()


# --- lots ---------------------------------------------------------------------------------


class ReceiptForm(UserForm):
    material = forms.ModelChoiceField(queryset=Material.objects.none())
    lot_number = forms.CharField(max_length=60, label="Lot number (ours)")
    supplier = forms.ModelChoiceField(queryset=Supplier.objects.none())
    supplier_lot_number = forms.CharField(max_length=60, required=False)
    quantity = quantity_field()
    expires_on = forms.DateField(required=False, widget=DATE, label="Expires on")
    receipt_reference = forms.CharField(
        max_length=60, required=False, help_text="Goods receipt note or delivery number."
    )
    received_at = forms.DateTimeField(
        required=False, widget=MOMENT, label="Received (UTC)", help_text="Empty: now."
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        receivable = [k for k in Material.Kind.values if k not in Material.SPONSOR_KINDS]
        self.fields["material"].queryset = Material.objects.for_user(user, "change").filter(
            kind__in=receivable
        )
        self.fields["supplier"].queryset = Supplier.objects.order_by("code")

    def clean_received_at(self):
        return as_utc(self.cleaned_data["received_at"])


class LotDispositionForm(SignForm):
    decision = forms.ChoiceField(
        choices=[("release", "Release"), ("reject", "Reject")], widget=forms.RadioSelect
    )

    field_order = ["decision", "password"]


class LabResultForm(forms.Form):
    test = forms.CharField(max_length=120)
    method = forms.CharField(max_length=120)
    low_limit = limit_field("Low limit")
    high_limit = limit_field("High limit")
    value = forms.DecimalField(
        max_digits=14, decimal_places=4, widget=forms.NumberInput(attrs={**NUMBER, "step": "any"})
    )
    unit = forms.CharField(max_length=20, required=False)
    tested_at = forms.DateTimeField(
        required=False, widget=MOMENT, label="Tested (UTC)", help_text="Empty: now."
    )

    def clean_tested_at(self):
        return as_utc(self.cleaned_data["tested_at"])

    def clean(self):
        data = super().clean()
        low, high = data.get("low_limit"), data.get("high_limit")
        if low is not None and high is not None and low > high:
            self.add_error("high_limit", f"The high limit is below the low limit {low}.")
        return data


class CustomerField(forms.CharField):
    """A customer by code or GS1 location number (GLN); customers are site-wide, so the page
    does not list them."""

    def clean(self, value):
        text = super().clean(value).strip()
        customer = Customer.objects.filter(Q(code__iexact=text) | Q(gln=text)).first()
        if customer is None:
            raise forms.ValidationError(f"No customer {text} is known here.")
        return customer


class ShipmentForm(forms.Form):
    customer = CustomerField(max_length=40, help_text="Customer code or GLN.")
    quantity = quantity_field()
    reference = forms.CharField(
        max_length=60, required=False, help_text="Delivery note or order number."
    )


# --- batches ------------------------------------------------------------------------------


class BatchPlanForm(UserForm):
    product = forms.ModelChoiceField(queryset=None)
    number = forms.CharField(max_length=40, label="Batch number")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.fields["product"].queryset = product_list(user=user).order_by("code")


class StepForm(forms.Form):
    """The value of one step against its limits; a value outside them needs a comment."""

    value = forms.DecimalField(
        required=False,
        max_digits=14,
        decimal_places=4,
        widget=forms.NumberInput(attrs={**NUMBER, "step": "any"}),
    )
    note = forms.CharField(
        required=False,
        label="Comment",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when the value is outside the limits.",
    )

    def __init__(self, *args, step: MbrStep, **kwargs):
        super().__init__(*args, **kwargs)
        self.step = step
        has_limits = step.low_limit is not None or step.high_limit is not None
        self.fields["value"].required = has_limits
        self.fields["value"].label = f"{step.parameter or 'Value'}" + (
            f" ({step.unit})" if step.unit else ""
        )
        if not (has_limits or step.parameter):
            self.fields["value"].widget = forms.HiddenInput()

    def clean(self):
        data = super().clean()
        value = data.get("value")
        if "value" in data and not self.step.in_limits(value) and not data.get("note", "").strip():
            shown = "No value" if value is None else f"{value.normalize():f} {self.step.unit}"
            self.add_error(
                "note",
                f"{shown.strip()} is outside the limits {self.step.limits_display}: "
                "a comment is required.",
            )
        return data


class ConsumeForm(UserForm):
    quantity = quantity_field()
    lot = LotField()


class EquipmentUseForm(forms.Form):
    equipment = forms.ModelChoiceField(queryset=None)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["equipment"].queryset = Equipment.objects.for_user(user).order_by("code")


class CompleteForm(forms.Form):
    output_lot_number = forms.CharField(max_length=60, label="Output lot number")
    quantity = quantity_field(label="Quantity made")
    expires_on = forms.DateField(required=False, widget=DATE, label="Expires on")


class PackagingStartForm(forms.Form):
    label_version = forms.CharField(max_length=60, help_text="The label and its version issued.")


class ReconcileForm(forms.Form):
    issued = forms.IntegerField(min_value=0, widget=forms.NumberInput(attrs=NUMBER))
    used = forms.IntegerField(min_value=0, widget=forms.NumberInput(attrs=NUMBER))
    destroyed = forms.IntegerField(min_value=0, widget=forms.NumberInput(attrs=NUMBER))
    returned = forms.IntegerField(min_value=0, widget=forms.NumberInput(attrs=NUMBER))


class CleaningForm(forms.Form):
    method = forms.CharField(max_length=200, help_text="The cleaning procedure followed.")
    performed_at = forms.DateTimeField(
        required=False, widget=MOMENT, label="Performed (UTC)", help_text="Empty: now."
    )

    def clean_performed_at(self):
        return as_utc(self.cleaned_data["performed_at"])


# --- master batch records -----------------------------------------------------------------


class MbrEffectiveForm(forms.Form):
    effective_from = forms.DateTimeField(
        required=False, widget=MOMENT, label="Effective from (UTC)", help_text="Empty: now."
    )

    def clean_effective_from(self):
        return as_utc(self.cleaned_data["effective_from"])


class MbrForm(forms.Form):
    title = forms.CharField(max_length=200)
    batch_size = quantity_field(label="Batch size")
    batch_unit = forms.ChoiceField(choices=Unit.choices)
    theoretical_yield = quantity_field(label="Theoretical yield")
    reason = forms.CharField(
        max_length=200, required=False, help_text="What this edit changes (audit trail)."
    )


class FirstMbrForm(forms.Form):
    """The first version of a product's master batch record: its header and first step; the
    rest of the steps and the bill of materials are added on the draft's edit page."""

    title = forms.CharField(max_length=200)
    batch_size = quantity_field(label="Batch size")
    batch_unit = forms.ChoiceField(choices=Unit.choices)
    theoretical_yield = quantity_field(label="Theoretical yield")
    first_step = forms.CharField(max_length=200, label="First step")


class BomLineForm(forms.Form):
    material = forms.ModelChoiceField(queryset=Material.objects.none())
    quantity = quantity_field()
    unit = forms.ChoiceField(choices=Unit.choices)

    def __init__(self, *args, materials, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["material"].queryset = materials
        for name, field in self.fields.items():
            field.widget.attrs.setdefault(
                "aria-label", "Delete" if name == "DELETE" else field.label
            )


class StepDefinitionForm(forms.Form):
    title = forms.CharField(max_length=200)
    instruction = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    parameter = forms.CharField(max_length=100, required=False)
    unit = forms.CharField(max_length=20, required=False)
    low_limit = limit_field("Low limit")
    high_limit = limit_field("High limit")
    sop_reference = forms.CharField(max_length=60, required=False, label="SOP")
    requires_verification = forms.BooleanField(
        required=False, initial=True, label="Second-person check"
    )
    opens_deviation = forms.BooleanField(required=False, label="Out of limits opens a deviation")

    def clean(self):
        data = super().clean()
        low, high = data.get("low_limit"), data.get("high_limit")
        if low is not None and high is not None and low > high:
            self.add_error("high_limit", f"The high limit is below the low limit {low}.")
        return data


def mbr_materials(user, mbr):
    """What a bill of materials may list: site materials and the MBR's own sponsor's."""
    return (
        Material.objects.for_user(user)
        .filter(Q(sponsor__isnull=True) | Q(sponsor_id=mbr.sponsor_id))
        .order_by("code")
    )


STEP_FORM_FIELDS = list(StepDefinitionForm.base_fields)
BomFormSet = forms.formset_factory(BomLineForm, extra=2, can_delete=True)
StepFormSet = forms.formset_factory(StepDefinitionForm, extra=2, can_delete=True)


def mbr_edit_forms(mbr, user, data=None):
    """The draft's header form and its bill-of-materials and step formsets, filled from the
    draft unless `data` was posted."""
    materials = mbr_materials(user, mbr)
    if data is None:
        header = MbrForm(
            initial={
                "title": mbr.title,
                "batch_size": mbr.batch_size,
                "batch_unit": mbr.batch_unit,
                "theoretical_yield": mbr.theoretical_yield,
            }
        )
        bom = BomFormSet(
            prefix="bom",
            initial=[
                {"material": line.material_id, "quantity": line.quantity, "unit": line.unit}
                for line in mbr.bom_lines.all()
            ],
            form_kwargs={"materials": materials},
        )
        steps = StepFormSet(
            prefix="steps",
            initial=[
                {field: getattr(step, field) for field in STEP_FORM_FIELDS}
                for step in mbr.steps.all()
            ],
        )
    else:
        header = MbrForm(data)
        bom = BomFormSet(data, prefix="bom", form_kwargs={"materials": materials})
        steps = StepFormSet(data, prefix="steps")
    return header, bom, steps


def mbr_content_from(header, bom, steps) -> dict:
    """The content `mbr_update_draft` takes, from valid forms; deleted and blank rows dropped,
    steps in the order given."""
    lines = [
        (row["material"], Decimal(row["quantity"]), row["unit"])
        for row in bom.cleaned_data
        if row and not row.get("DELETE")
    ]
    step_rows = []
    for row in steps.cleaned_data:
        if not row or row.get("DELETE"):
            continue
        step_rows.append({field: row[field] for field in STEP_FORM_FIELDS})
    data = header.cleaned_data
    return {
        "title": data["title"],
        "batch_size": data["batch_size"],
        "batch_unit": data["batch_unit"],
        "theoretical_yield": data["theoretical_yield"],
        "bom": lines,
        "steps": step_rows,
        "reason": data["reason"],
    }
