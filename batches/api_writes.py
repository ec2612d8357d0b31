"""Writes of the manufacturing record over the API, for connected systems (MES, LIMS, ERP) and
CMO staff. Each route calls the one service that owns the act, after a serializer has checked
the input and resolved every key it names (lot and batch numbers; material, product, equipment,
customer and supplier codes) within the caller's change scope, so another sponsor's record is
as unknown as one that does not exist. Refusals are the services' own (409 `{"error",
"detail"}`); every write accepts an `Idempotency-Key` header (`qms.idempotency`)."""

from django.db.models import F, Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from qms.api import ERROR_RESPONSES, ErrorSerializer
from qms.api_fields import AwareDateTimeField, BoundedCharField, BoundedDateField, BoundedTextField
from qms.api_query import StrictQueryParameters
from qms.bounds import FUTURE_TOLERANCE
from qms.idempotency import IDEMPOTENCY_KEY_PARAMETER, KEY_REUSED_RESPONSE, idempotent
from qms.signatures import signature_check
from qms.tenancy import sponsor_ids_for
from sponsors.models import Product
from suppliers.models import Supplier

from . import services
from .api_serializers import (
    BatchDetailSerializer,
    BatchEquipmentUseSerializer,
    CleaningRecordSerializer,
    ConsumptionSerializer,
    ExecutedStepSerializer,
    LabResultSerializer,
    LotDetailSerializer,
    MasterBatchRecordSerializer,
    PackagingSerializer,
    RecordSignatureSerializer,
    ShipmentSerializer,
    batch_detail_data,
)
from .models import (
    Batch,
    CleaningRecord,
    Customer,
    Equipment,
    ExecutedStep,
    LabResult,
    Lot,
    MasterBatchRecord,
    Material,
    MbrStep,
    PackagingRecord,
    Shipment,
    Unit,
)
from .selectors import lot_list

CONFLICT = OpenApiResponse(ErrorSerializer, description="Refused by a business rule (named)")


class MayRecord(BasePermission):
    """Writes record manufacturing data: they need the change permission on a sponsor (CMO
    staff). Sponsor users, approvers included, only read the manufacturing record; this is on
    top of the API-wide permissions."""

    message = (
        "Recording manufacturing data needs the change permission on a sponsor; sponsor users "
        "have read access only."
    )

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or bool(sponsor_ids_for(request.user, "change"))


def write_schema(*, summary: str, request, responses: dict, parameters=(), description=None):
    """The OpenAPI description of a write: its input, its answers (the refusal by a named rule
    included) and the Idempotency-Key header."""
    return extend_schema(
        summary=summary,
        description=description,
        parameters=[*parameters, IDEMPOTENCY_KEY_PARAMETER],
        request=request,
        responses={
            **responses,
            400: ERROR_RESPONSES[400],
            403: ERROR_RESPONSES[403],
            404: ERROR_RESPONSES[404],
            409: CONFLICT,
            422: KEY_REUSED_RESPONSE,
        },
        filters=False,
    )


def _path(name: str, kind, description: str) -> OpenApiParameter:
    pattern = None if kind is int else r"^[^/]+$"
    return OpenApiParameter(
        name, kind, OpenApiParameter.PATH, description=description, pattern=pattern
    )


LOT_NUMBER = _path("lot_number", str, "Lot number.")
BATCH_NUMBER = _path("number", str, "Batch number.")
STEP_SEQUENCE = _path("sequence", int, "Step number in the batch's master batch record.")
USE_ID = _path("use_id", int, "Id of the equipment use (`equipment_uses[].id`).")
EQUIPMENT_CODE = _path("code", str, "Equipment code.")
CLEANING_ID = _path("cleaning_id", int, "Id of the cleaning record (`cleanings[].id`).")


def _write_action(url_path: str, url_name: str, methods=("post",)):
    return action(
        detail=True,
        methods=list(methods),
        url_path=url_path,
        url_name=url_name,
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )


def _valid(serializer_class, request, **kwargs) -> dict:
    data = serializer_class(data=request.data, context={"request": request}, **kwargs)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


# --- input --------------------------------------------------------------------------------


class ScopedKey(serializers.CharField):
    """A record named by its key, resolved within the caller's change scope."""

    def __init__(self, scope, slug_field: str = "code", **kwargs):
        self.scope, self.slug_field = scope, slug_field
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        user = self.context["request"].user
        found = self.scope(user).filter(**{self.slug_field: value}).first()
        if found is None:
            raise serializers.ValidationError(f"Unknown, or not in your sponsor scope: {value}.")
        return found


def _changeable(model):
    return lambda user: model.objects.for_user(user, "change")


def _suppliers(user):
    """Suppliers are site-wide records without a sponsor: the write permission (change on a
    sponsor, CMO staff) is their scope."""
    return Supplier.objects.all()


def _not_future(value):
    if value is not None and value > timezone.now() + FUTURE_TOLERANCE:
        raise serializers.ValidationError("A recorded time cannot be in the future.")


def _positive(value):
    if value is not None and value <= 0:
        raise serializers.ValidationError("The quantity must be positive.")


def moment(help_text: str = "UTC; now when left out.") -> AwareDateTimeField:
    return AwareDateTimeField(
        required=False, allow_null=True, default=None, validators=[_not_future], help_text=help_text
    )


def quantity(help_text: str = "", *, required: bool = True) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=14,
        decimal_places=3,
        validators=[_positive],
        required=required,
        help_text=help_text,
    )


def password() -> serializers.CharField:
    return serializers.CharField(
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        help_text="Your password: the e-signature (21 CFR 11.200).",
    )


def optional_text(max_length: int | None = None, help_text: str = "") -> serializers.CharField:
    """Optional free text: one bounded line with `max_length`, else bounded multi-line text."""
    if max_length is None:
        return BoundedTextField(required=False, allow_blank=True, default="", help_text=help_text)
    return BoundedCharField(
        required=False, allow_blank=True, default="", max_length=max_length, help_text=help_text
    )


class ReceiptSerializer(serializers.Serializer):
    material = ScopedKey(_changeable(Material), help_text="Material code.")
    lot_number = BoundedCharField(max_length=60)
    quantity = quantity("In the material's unit.")
    supplier = ScopedKey(_suppliers, help_text="Supplier code.")
    supplier_lot_number = optional_text(60)
    receipt_reference = optional_text(60, "Goods receipt note.")
    received_at = moment()
    expires_on = BoundedDateField(required=False, allow_null=True, default=None)


class LotDispositionSerializer(serializers.Serializer):
    password = password()
    release = serializers.BooleanField(help_text="true releases the lot; false rejects it.")


class LabResultInputSerializer(serializers.Serializer):
    test = BoundedCharField(max_length=120)
    method = BoundedCharField(max_length=120)
    value = serializers.DecimalField(max_digits=14, decimal_places=4)
    low_limit = serializers.DecimalField(
        max_digits=14, decimal_places=4, required=False, allow_null=True, default=None
    )
    high_limit = serializers.DecimalField(
        max_digits=14, decimal_places=4, required=False, allow_null=True, default=None
    )
    unit = optional_text(20)
    tested_at = moment()

    def validate(self, data):
        low, high = data["low_limit"], data["high_limit"]
        if low is None and high is None:
            raise serializers.ValidationError("Give the specification: a low or high limit.")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"low_limit": f"The low limit {low} is above the high limit {high}."}
            )
        return data


class ProductKeySerializer(serializers.Serializer):
    """A product named by its code; codes are unique per sponsor, so a code two sponsors in
    scope share needs the sponsor's code too."""

    product = BoundedCharField(max_length=60, help_text="Product code.")
    sponsor = BoundedCharField(
        max_length=60,
        required=False,
        help_text="Sponsor code, where the product code alone is ambiguous.",
    )

    def validate(self, data):
        user = self.context["request"].user
        products = Product.objects.for_user(user, "change").filter(code=data["product"])
        if "sponsor" in data:
            products = products.filter(sponsor__code=data["sponsor"])
        found = list(products.select_related("sponsor")[:5])
        if not found:
            raise serializers.ValidationError(
                {"product": f"Unknown, or not in your sponsor scope: {data['product']}."}
            )
        if len(found) > 1:
            sponsors = ", ".join(sorted(product.sponsor.code for product in found))
            raise serializers.ValidationError(
                {
                    "sponsor": f"Product code {data['product']} is used by several sponsors "
                    f"({sponsors}): name the sponsor."
                }
            )
        data["product"] = found[0]
        data.pop("sponsor", None)
        return data


class BatchPlanSerializer(ProductKeySerializer):
    number = BoundedCharField(max_length=40, help_text="The new batch number.")
    planned_at = AwareDateTimeField(
        required=False, allow_null=True, default=None, help_text="UTC; now when left out."
    )


class BatchStartSerializer(serializers.Serializer):
    started_at = moment()


class StepRecordSerializer(serializers.Serializer):
    sequence = serializers.IntegerField(min_value=1, help_text="Step number in the MBR.")
    value = serializers.DecimalField(
        max_digits=14, decimal_places=4, required=False, allow_null=True, default=None
    )
    note = optional_text(help_text="Required when the value is outside the step's limits.")
    performed_at = moment()


class StepVerifySerializer(serializers.Serializer):
    password = password()
    verified_at = moment()


class ConsumptionInputSerializer(serializers.Serializer):
    lot = ScopedKey(_changeable(Lot), "lot_number", help_text="Lot number of the input.")
    quantity = quantity("In the lot's unit.")
    consumed_at = moment()


class EquipmentUseInputSerializer(serializers.Serializer):
    equipment = ScopedKey(_changeable(Equipment), help_text="Equipment code.")
    started_at = moment()


class EquipmentUseEndSerializer(serializers.Serializer):
    ended_at = moment()


class PackagingInputSerializer(serializers.Serializer):
    label_version = BoundedCharField(max_length=60)


class LineClearanceSerializer(serializers.Serializer):
    password = password()
    cleared_at = moment()


class ReconciliationSerializer(serializers.Serializer):
    issued = serializers.IntegerField(min_value=0)
    used = serializers.IntegerField(min_value=0)
    destroyed = serializers.IntegerField(min_value=0)
    returned = serializers.IntegerField(min_value=0)
    reconciled_at = moment()


class BatchCompleteSerializer(serializers.Serializer):
    output_lot_number = BoundedCharField(max_length=60)
    quantity = quantity("The yield, in the output material's unit.")
    completed_at = moment()
    expires_on = BoundedDateField(required=False, allow_null=True, default=None)
    material = ScopedKey(
        _changeable(Material),
        required=False,
        allow_null=True,
        default=None,
        help_text="Code of another intermediate or finished material of the product; the "
        "product's finished material when left out.",
    )


class CleaningInputSerializer(serializers.Serializer):
    method = BoundedCharField(max_length=200)
    performed_at = moment()


class CleaningVerifySerializer(serializers.Serializer):
    password = password()
    verified_at = moment()


class ShipmentInputSerializer(serializers.Serializer):
    lot = ScopedKey(_changeable(Lot), "lot_number", help_text="Lot number.")
    customer = ScopedKey(_changeable(Customer), help_text="Customer code.")
    quantity = quantity("In the lot's unit.")
    reference = optional_text(60, "Delivery note.")
    shipped_at = moment()


class BomLineInputSerializer(serializers.Serializer):
    material = ScopedKey(_changeable(Material), help_text="Material code.")
    quantity = quantity()
    unit = serializers.ChoiceField(choices=Unit.choices)


class MbrStepInputSerializer(serializers.ModelSerializer):
    class Meta:
        model = MbrStep
        fields = list(services.STEP_FIELDS)

    def validate(self, data):
        low, high = data.get("low_limit"), data.get("high_limit")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"low_limit": f"The low limit {low} is above the high limit {high}."}
            )
        return data


class MbrContentSerializer(serializers.Serializer):
    """The content of a draft; PUT replaces all of it, PATCH the fields given (the bill and the
    steps each as a whole)."""

    title = BoundedCharField(max_length=200)
    batch_size = quantity()
    batch_unit = serializers.ChoiceField(choices=Unit.choices)
    theoretical_yield = quantity("Expected output per batch, in the output unit.")
    bom = BomLineInputSerializer(many=True, help_text="The bill of materials, in order.")
    steps = MbrStepInputSerializer(many=True, help_text="The steps, in order (numbered from 1).")
    reason = optional_text(help_text="Why the draft changed (audit trail).")


class MbrCreateSerializer(ProductKeySerializer):
    """The product; for a product that has no master batch record yet, also the content of its
    first version (later versions are copies of the version in force)."""

    title = BoundedCharField(max_length=200, required=False)
    batch_size = quantity(required=False)
    batch_unit = serializers.ChoiceField(choices=Unit.choices, required=False)
    theoretical_yield = quantity("Expected output per batch, in the output unit.", required=False)
    bom = BomLineInputSerializer(many=True, required=False, help_text="The bill of materials.")
    steps = MbrStepInputSerializer(many=True, required=False, help_text="The steps, in order.")

    FIRST_VERSION = ("title", "batch_size", "batch_unit", "theoretical_yield", "steps")

    def validate(self, data):
        data = super().validate(data)
        product = data["product"]
        data["is_first"] = not MasterBatchRecord.objects.filter(product=product).exists()
        if not data["is_first"]:
            return data
        missing = [name for name in self.FIRST_VERSION if name not in data]
        if missing:
            raise serializers.ValidationError(
                {
                    name: f"{product.code} has no master batch record yet: its first version "
                    "needs this field."
                    for name in missing
                }
            )
        return data


class MbrSignSerializer(serializers.Serializer):
    password = password()


class MbrMakeEffectiveSerializer(serializers.Serializer):
    effective_from = AwareDateTimeField(
        required=False, allow_null=True, default=None, help_text="UTC; now when left out."
    )


# --- output -------------------------------------------------------------------------------


class LotDispositionResultSerializer(serializers.Serializer):
    lot_number = BoundedCharField(max_length=60)
    status = serializers.ChoiceField(choices=Lot.Status.choices)
    signature = RecordSignatureSerializer()


class LabResultRecordedSerializer(LabResultSerializer):
    lot = serializers.SlugRelatedField(slug_field="lot_number", read_only=True)
    deviation = BoundedCharField(
        max_length=60,
        source="oos_deviation",
        allow_null=True,
        read_only=True,
        help_text="Number of the OOS investigation the result opened; null when in spec.",
    )

    class Meta(LabResultSerializer.Meta):
        fields = [*LabResultSerializer.Meta.fields, "lot", "deviation"]


class LineClearanceResultSerializer(serializers.Serializer):
    batch = BoundedCharField(max_length=60)
    line_cleared_at = AwareDateTimeField()
    signature = RecordSignatureSerializer()


class MbrSignedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=MasterBatchRecord.Status.choices)
    signature = RecordSignatureSerializer()


def _signed(label: str, signature, record) -> dict:
    check = signature_check(signature, record)
    return {
        "record": label,
        "meaning": signature.meaning,
        "printed_name": signature.printed_name,
        "signed_at": signature.signed_at,
        "is_valid": check.is_valid,
        "problem": check.problem,
    }


def lot_detail_queryset(user):
    results = LabResult.objects.for_user(user).order_by("tested_at", "id")
    return lot_list(user=user).prefetch_related(Prefetch("lab_results", queryset=results))


def mbr_queryset(user, action: str = "view"):
    return (
        MasterBatchRecord.objects.for_user(user, action)
        .select_related("product", "sponsor")
        .prefetch_related("bom_lines__material", "steps")
    )


def _executed_step_data(executed: ExecutedStep) -> dict:
    executed = ExecutedStep.objects.select_related("step", "performed_by", "verified_by").get(
        pk=executed.pk
    )
    return ExecutedStepSerializer(executed).data


# --- routes -------------------------------------------------------------------------------


class Writes:
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, MayRecord]


class LotWrites(Writes):
    def _lot_to_change(self, lot_number: str) -> Lot:
        lots = Lot.objects.for_user(self.request.user, "change").select_related("material")
        return get_object_or_404(lots, lot_number=lot_number)

    def _lot_data(self, lot: Lot) -> dict:
        return LotDetailSerializer(lot_detail_queryset(self.request.user).get(pk=lot.pk)).data

    @write_schema(
        summary="Receive a delivered lot; it is booked in quarantine",
        description="Refused (409) when the supplier is not approved or the material is made "
        "here (an intermediate or finished material).",
        request=ReceiptSerializer,
        responses={201: LotDetailSerializer},
    )
    @idempotent
    def create(self, request):
        lot = services.lot_receive(by=request.user, **_valid(ReceiptSerializer, request))
        return Response(self._lot_data(lot), status=status.HTTP_201_CREATED)

    @write_schema(
        summary="Release or reject a received lot in quarantine, by e-signature",
        description="A produced lot is released only through its batch's disposition; a lot "
        "with an out-of-specification result or an open deviation is not released (409).",
        parameters=[LOT_NUMBER],
        request=LotDispositionSerializer,
        responses={200: LotDispositionResultSerializer},
    )
    @_write_action("disposition", "disposition")
    @idempotent
    def disposition(self, request, lot_number=None):
        lot = self._lot_to_change(lot_number)
        data = _valid(LotDispositionSerializer, request)
        signature = services.lot_disposition(lot=lot, user=request.user, request=request, **data)
        body = {"lot_number": lot.lot_number, "status": lot.status}
        body["signature"] = _signed("lot", signature, lot)
        return Response(LotDispositionResultSerializer(body).data)

    @write_schema(
        summary="Record a lab result on a lot; an out-of-specification result opens an OOS "
        "investigation at once",
        parameters=[LOT_NUMBER],
        request=LabResultInputSerializer,
        responses={201: LabResultRecordedSerializer},
    )
    @_write_action("lab-results", "lab-results")
    @idempotent
    def lab_results(self, request, lot_number=None):
        from deviations.models import Deviation

        lot = self._lot_to_change(lot_number)
        data = _valid(LabResultInputSerializer, request)
        result = services.lab_result_record(lot=lot, analyst=request.user, **data)
        result.oos_deviation = (
            Deviation.objects.for_user(request.user)
            .filter(lab_result=result)
            .order_by(F("source_id").asc(nulls_first=True), "number")
            .values_list("number", flat=True)
            .first()
        )
        return Response(LabResultRecordedSerializer(result).data, status=status.HTTP_201_CREATED)


class BatchWrites(Writes):
    def _batch_to_change(self, number: str) -> Batch:
        batches = Batch.objects.for_user(self.request.user, "change").select_related(
            "product", "mbr"
        )
        return get_object_or_404(batches, number=number)

    def _batch_data(self, batch: Batch, code=status.HTTP_200_OK) -> Response:
        return Response(batch_detail_data(user=self.request.user, number=batch.number), code)

    def _packaging(self, batch: Batch) -> PackagingRecord:
        packaging = PackagingRecord.objects.filter(batch=batch).select_related("batch").first()
        if packaging is None:
            raise exceptions.NotFound(
                f"Packaging of batch {batch} is not recorded: start it first "
                f"(POST /api/v1/batches/{batch.number}/packaging/)."
            )
        return packaging

    @write_schema(
        summary="Plan a batch of a product under its effective master batch record",
        request=BatchPlanSerializer,
        responses={201: BatchDetailSerializer},
    )
    @idempotent
    def create(self, request):
        batch = services.batch_plan(by=request.user, **_valid(BatchPlanSerializer, request))
        return self._batch_data(batch, status.HTTP_201_CREATED)

    @write_schema(
        summary="Start a planned batch under the MBR version in force",
        parameters=[BATCH_NUMBER],
        request=BatchStartSerializer,
        responses={200: BatchDetailSerializer},
    )
    @_write_action("start", "start")
    @idempotent
    def start(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(BatchStartSerializer, request)
        services.batch_start(batch=batch, by=request.user, **data)
        return self._batch_data(batch)

    @write_schema(
        summary="Record a step as performed (the operator is the caller)",
        description="A step naming an SOP needs the caller trained on the SOP version in force; "
        "a value outside the limits needs a note.",
        parameters=[BATCH_NUMBER],
        request=StepRecordSerializer,
        responses={201: ExecutedStepSerializer},
    )
    @_write_action("steps", "steps")
    @idempotent
    def steps(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(StepRecordSerializer, request)
        step = batch.mbr.steps.filter(sequence=data["sequence"]).first()
        if step is None:
            raise exceptions.ValidationError(
                {
                    "sequence": f"{batch.mbr}, which batch {batch} runs under, has no step "
                    f"{data['sequence']}."
                }
            )
        executed = services.batch_record_step(
            batch=batch,
            step=step,
            performed_by=request.user,
            value=data["value"],
            note=data["note"],
            at=data["performed_at"],
        )
        return Response(_executed_step_data(executed), status=status.HTTP_201_CREATED)

    @write_schema(
        summary="Verify a recorded step: the second person's e-signature",
        description="Refused (409) when the caller performed the step, or is not trained on "
        "the SOP the step names.",
        parameters=[BATCH_NUMBER, STEP_SEQUENCE],
        request=StepVerifySerializer,
        responses={200: ExecutedStepSerializer},
    )
    @_write_action(r"steps/(?P<sequence>[0-9]+)/verify", "step-verify")
    @idempotent
    def verify_step(self, request, number=None, sequence=None):
        batch = self._batch_to_change(number)
        executed = (
            ExecutedStep.objects.filter(batch=batch, step__sequence=sequence)
            .select_related("batch", "step")
            .first()
        )
        if executed is None:
            raise exceptions.NotFound(f"Step {sequence} of batch {batch} is not recorded.")
        data = _valid(StepVerifySerializer, request)
        services.batch_verify_step(
            executed=executed,
            verified_by=request.user,
            password=data["password"],
            at=data["verified_at"],
            request=request,
        )
        return Response(_executed_step_data(executed))

    @write_schema(
        summary="Consume an input lot (released, on the bill of materials, enough left)",
        parameters=[BATCH_NUMBER],
        request=ConsumptionInputSerializer,
        responses={201: ConsumptionSerializer},
    )
    @_write_action("consumptions", "consumptions")
    @idempotent
    def consumptions(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(ConsumptionInputSerializer, request)
        consumption = services.batch_consume(
            batch=batch,
            lot=data["lot"],
            quantity=data["quantity"],
            by=request.user,
            at=data["consumed_at"],
        )
        return Response(ConsumptionSerializer(consumption).data, status=status.HTTP_201_CREATED)

    @write_schema(
        summary="Start using equipment for the batch",
        description="Refused (409) for equipment past its qualification date, in use, or that "
        "last ran another product without a verified cleaning since.",
        parameters=[BATCH_NUMBER],
        request=EquipmentUseInputSerializer,
        responses={201: BatchEquipmentUseSerializer},
    )
    @_write_action("equipment-uses", "equipment-uses")
    @idempotent
    def equipment_uses(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(EquipmentUseInputSerializer, request)
        use = services.equipment_use_start(
            batch=batch, equipment=data["equipment"], by=request.user, at=data["started_at"]
        )
        return Response(BatchEquipmentUseSerializer(use).data, status=status.HTTP_201_CREATED)

    @write_schema(
        summary="End a use of equipment by the batch",
        parameters=[BATCH_NUMBER, USE_ID],
        request=EquipmentUseEndSerializer,
        responses={200: BatchEquipmentUseSerializer},
    )
    @_write_action(r"equipment-uses/(?P<use_id>[0-9]+)/end", "equipment-use-end")
    @idempotent
    def end_equipment_use(self, request, number=None, use_id=None):
        batch = self._batch_to_change(number)
        use = batch.equipment_uses.select_related("equipment").filter(pk=use_id).first()
        if use is None:
            raise exceptions.NotFound(f"Batch {batch} has no equipment use {use_id}.")
        data = _valid(EquipmentUseEndSerializer, request)
        services.equipment_use_end(use=use, by=request.user, at=data["ended_at"])
        return Response(BatchEquipmentUseSerializer(use).data)

    @write_schema(
        summary="Start the packaging record of the batch (label version)",
        parameters=[BATCH_NUMBER],
        request=PackagingInputSerializer,
        responses={201: PackagingSerializer},
    )
    @_write_action("packaging", "packaging")
    @idempotent
    def packaging(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(PackagingInputSerializer, request)
        packaging = services.packaging_start(batch=batch, by=request.user, **data)
        return Response(PackagingSerializer(packaging).data, status=status.HTTP_201_CREATED)

    @write_schema(
        summary="Sign the line clearance before packaging (e-signature)",
        parameters=[BATCH_NUMBER],
        request=LineClearanceSerializer,
        responses={200: LineClearanceResultSerializer},
    )
    @_write_action("packaging/line-clearance", "line-clearance")
    @idempotent
    def line_clearance(self, request, number=None):
        batch = self._batch_to_change(number)
        packaging = self._packaging(batch)
        data = _valid(LineClearanceSerializer, request)
        signature = services.packaging_clear_line(
            packaging=packaging,
            user=request.user,
            password=data["password"],
            request=request,
            at=data["cleared_at"],
        )
        body = {"batch": batch.number, "line_cleared_at": packaging.line_cleared_at}
        body["signature"] = _signed("packaging", signature, packaging)
        return Response(LineClearanceResultSerializer(body).data)

    @write_schema(
        summary="Record the label reconciliation; it must balance (issued = used + destroyed "
        "+ returned)",
        parameters=[BATCH_NUMBER],
        request=ReconciliationSerializer,
        responses={200: PackagingSerializer},
    )
    @_write_action("packaging/reconciliation", "reconciliation")
    @idempotent
    def reconciliation(self, request, number=None):
        batch = self._batch_to_change(number)
        packaging = self._packaging(batch)
        data = _valid(ReconciliationSerializer, request)
        services.packaging_reconcile(
            packaging=packaging,
            issued=data["issued"],
            used=data["used"],
            destroyed=data["destroyed"],
            returned=data["returned"],
            by=request.user,
            at=data["reconciled_at"],
        )
        return Response(PackagingSerializer(packaging).data)

    @write_schema(
        summary="Complete production: the output lot is created in quarantine",
        description="Refused (409) while a step of the MBR is not recorded.",
        parameters=[BATCH_NUMBER],
        request=BatchCompleteSerializer,
        responses={200: BatchDetailSerializer},
    )
    @_write_action("complete", "complete")
    @idempotent
    def complete(self, request, number=None):
        batch = self._batch_to_change(number)
        data = _valid(BatchCompleteSerializer, request)
        services.batch_complete(
            batch=batch,
            output_lot_number=data["output_lot_number"],
            quantity=data["quantity"],
            by=request.user,
            at=data["completed_at"],
            expires_on=data["expires_on"],
            material=data["material"],
        )
        return self._batch_data(batch)

    @write_schema(
        summary="Submit a completed batch for QA review",
        parameters=[BATCH_NUMBER],
        request=None,
        responses={200: BatchDetailSerializer},
    )
    @_write_action("submit-for-review", "submit-for-review")
    @idempotent
    def submit_for_review(self, request, number=None):
        batch = self._batch_to_change(number)
        services.batch_submit_for_review(batch=batch, by=request.user)
        return self._batch_data(batch)


class EquipmentWrites(Writes):
    def _equipment_to_change(self, code: str) -> Equipment:
        return get_object_or_404(Equipment.objects.for_user(self.request.user, "change"), code=code)

    @write_schema(
        summary="Record a cleaning of the equipment (the caller performed it)",
        parameters=[EQUIPMENT_CODE],
        request=CleaningInputSerializer,
        responses={201: CleaningRecordSerializer},
    )
    @_write_action("cleanings", "cleanings")
    @idempotent
    def cleanings(self, request, code=None):
        equipment = self._equipment_to_change(code)
        data = _valid(CleaningInputSerializer, request)
        cleaning = services.cleaning_record(
            equipment=equipment,
            method=data["method"],
            performed_by=request.user,
            at=data["performed_at"],
        )
        return Response(CleaningRecordSerializer(cleaning).data, status=status.HTTP_201_CREATED)

    @write_schema(
        summary="Verify a cleaning: a second person, who re-enters the password",
        parameters=[EQUIPMENT_CODE, CLEANING_ID],
        request=CleaningVerifySerializer,
        responses={200: CleaningRecordSerializer},
    )
    @_write_action(r"cleanings/(?P<cleaning_id>[0-9]+)/verify", "cleaning-verify")
    @idempotent
    def verify_cleaning(self, request, code=None, cleaning_id=None):
        equipment = self._equipment_to_change(code)
        cleaning = CleaningRecord.objects.filter(equipment=equipment, pk=cleaning_id).first()
        if cleaning is None:
            raise exceptions.NotFound(f"{equipment.code} has no cleaning record {cleaning_id}.")
        data = _valid(CleaningVerifySerializer, request)
        services.cleaning_verify(
            cleaning=cleaning,
            verified_by=request.user,
            password=data["password"],
            at=data["verified_at"],
            request=request,
        )
        cleaning = CleaningRecord.objects.select_related("performed_by", "verified_by").get(
            pk=cleaning.pk
        )
        return Response(CleaningRecordSerializer(cleaning).data)


class ShipmentWrites(Writes):
    @write_schema(
        summary="Ship a released lot to a customer",
        description="Refused (409) for a lot that is not released under its batch's release "
        "authority (the sponsor's release included where required), with an open deviation "
        "or an OOS result without a closed investigation, or with too little left.",
        request=ShipmentInputSerializer,
        responses={201: ShipmentSerializer},
    )
    @idempotent
    def create(self, request):
        data = _valid(ShipmentInputSerializer, request)
        shipment = services.shipment_create(
            lot=data["lot"],
            customer=data["customer"],
            quantity=data["quantity"],
            by=request.user,
            reference=data["reference"],
            at=data["shipped_at"],
        )
        shipment = Shipment.objects.select_related("lot__material", "customer", "sponsor").get(
            pk=shipment.pk
        )
        return Response(ShipmentSerializer(shipment).data, status=status.HTTP_201_CREATED)


class MasterBatchRecordWrites(Writes):
    def _mbr_to_change(self, pk) -> MasterBatchRecord:
        return get_object_or_404(mbr_queryset(self.request.user, "change"), pk=pk)

    def _mbr_data(self, mbr: MasterBatchRecord, code=status.HTTP_200_OK) -> Response:
        mbr = mbr_queryset(self.request.user).get(pk=mbr.pk)
        return Response(MasterBatchRecordSerializer(mbr).data, code)

    def _signed_data(self, mbr: MasterBatchRecord, signature) -> Response:
        body = {"id": mbr.pk, "version": mbr.version, "status": mbr.status}
        body["signature"] = _signed("master batch record", signature, mbr)
        return Response(MbrSignedSerializer(body).data)

    @write_schema(
        summary="Draft the next version of a product's MBR, as a copy of the version in force",
        description="One draft at a time: refused (409) while a draft or reviewed version is "
        "open. For a product without any MBR, the body also carries the first version's "
        "content (title, batch size and unit, theoretical yield, steps, bill of materials).",
        request=MbrCreateSerializer,
        responses={201: MasterBatchRecordSerializer},
    )
    @idempotent
    def create(self, request):
        data = _valid(MbrCreateSerializer, request)
        product = data["product"]
        if data["is_first"]:
            mbr = services.mbr_create_draft(
                product=product,
                title=data["title"],
                batch_size=data["batch_size"],
                batch_unit=data["batch_unit"],
                theoretical_yield=data["theoretical_yield"],
                bom=[
                    (line["material"], line["quantity"], line["unit"])
                    for line in data.get("bom", [])
                ],
                steps=[dict(step) for step in data["steps"]],
                by=request.user,
            )
        else:
            mbr = services.mbr_draft_new_version(product=product, by=request.user)
        return self._mbr_data(mbr, status.HTTP_201_CREATED)

    def _update(self, request, pk, partial: bool) -> Response:
        mbr = self._mbr_to_change(pk)
        data = _valid(MbrContentSerializer, request, partial=partial)
        content = services.mbr_content(mbr)
        if "bom" in data:
            data["bom"] = [
                (line["material"], line["quantity"], line["unit"]) for line in data["bom"]
            ]
        if "steps" in data:
            data["steps"] = [dict(step) for step in data["steps"]]
        content.update(data)
        services.mbr_update_draft(mbr=mbr, by=request.user, **content)
        return self._mbr_data(mbr)

    @write_schema(
        summary="Replace the content of a draft MBR (title, sizes, bill of materials, steps)",
        description="Only a draft is edited (409 otherwise): a reviewed or approved version "
        "stays as signed.",
        parameters=[_path("id", int, "Master batch record id.")],
        request=MbrContentSerializer,
        responses={200: MasterBatchRecordSerializer},
    )
    @idempotent
    def update(self, request, pk=None):
        return self._update(request, pk, partial=False)

    @write_schema(
        summary="Change part of a draft MBR; the bill and the steps are each replaced whole",
        parameters=[_path("id", int, "Master batch record id.")],
        request=MbrContentSerializer,
        responses={200: MasterBatchRecordSerializer},
    )
    @idempotent
    def partial_update(self, request, pk=None):
        return self._update(request, pk, partial=True)

    @write_schema(
        summary='Review a draft: e-signature "reviewed" by someone other than the author',
        parameters=[_path("id", int, "Master batch record id.")],
        request=MbrSignSerializer,
        responses={200: MbrSignedSerializer},
    )
    @_write_action("review", "review")
    @idempotent
    def review(self, request, pk=None):
        mbr = self._mbr_to_change(pk)
        data = _valid(MbrSignSerializer, request)
        signature = services.mbr_review(mbr=mbr, user=request.user, request=request, **data)
        return self._signed_data(mbr, signature)

    @write_schema(
        summary='Approve a reviewed version: QA e-signature "approved", not by the author',
        parameters=[_path("id", int, "Master batch record id.")],
        request=MbrSignSerializer,
        responses={200: MbrSignedSerializer},
    )
    @_write_action("approve", "approve")
    @idempotent
    def approve(self, request, pk=None):
        mbr = self._mbr_to_change(pk)
        data = _valid(MbrSignSerializer, request)
        signature = services.mbr_approve(mbr=mbr, user=request.user, request=request, **data)
        return self._signed_data(mbr, signature)

    @write_schema(
        summary="Put an approved version in force; the version it follows is superseded",
        description="A version carried by an open change request becomes effective only with "
        "that change (409).",
        parameters=[_path("id", int, "Master batch record id.")],
        request=MbrMakeEffectiveSerializer,
        responses={200: MasterBatchRecordSerializer},
    )
    @_write_action("make-effective", "make-effective")
    @idempotent
    def make_effective(self, request, pk=None):
        mbr = self._mbr_to_change(pk)
        data = _valid(MbrMakeEffectiveSerializer, request)
        services.mbr_make_effective(mbr=mbr, by=request.user, **data)
        return self._mbr_data(mbr)
