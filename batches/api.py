"""API of the manufacturing record: materials, lots with recall scope and trace, batches, master
batch records, equipment and shipments. Read-only; every row comes through `for_user` or a
selector, so a sponsor's people never see another sponsor's rows."""

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from qms.api import ERROR_RESPONSES

from .models import (
    Batch,
    BomLine,
    CleaningRecord,
    Consumption,
    Customer,
    Equipment,
    EquipmentUse,
    ExecutedStep,
    LabResult,
    Lot,
    MasterBatchRecord,
    Material,
    MbrStep,
    PackagingRecord,
    Shipment,
)
from .selectors import (
    batch_detail,
    batch_list,
    equipment_history,
    lot_list,
    recall_scope_forward,
    recall_trace_backward,
)

CODE_REGEX = r"[^/]+"


def _path_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.PATH, description=description, pattern=r"^[^/]+$"
    )


def _read_only(lookup: OpenApiParameter | None = None, *, listing: str, record: str):
    """Summaries and the lookup parameter of a read-only viewset; the error answers (404 for a
    record outside the caller's sponsor scope) come from `qms.api.add_error_responses`."""
    return extend_schema_view(
        list=extend_schema(summary=listing),
        retrieve=extend_schema(summary=record, parameters=[lookup] if lookup else None),
    )


class SlugField(serializers.SlugRelatedField):
    def __init__(self, slug_field: str = "code", **kwargs):
        super().__init__(slug_field=slug_field, read_only=True, **kwargs)


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["code", "name", "country", "gln"]


class MaterialSerializer(serializers.ModelSerializer):
    product = SlugField()
    sponsor = SlugField()

    class Meta:
        model = Material
        fields = ["code", "name", "kind", "unit", "gtin", "product", "sponsor"]


class LabResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabResult
        fields = [
            "test",
            "method",
            "low_limit",
            "high_limit",
            "unit",
            "value",
            "outcome",
            "tested_at",
        ]


class LotSerializer(serializers.ModelSerializer):
    material = SlugField()
    sponsor = SlugField()
    produced_by = SlugField("number")
    supplier = SlugField()

    class Meta:
        model = Lot
        fields = [
            "lot_number",
            "material",
            "sponsor",
            "status",
            "quantity",
            "unit",
            "produced_by",
            "supplier",
            "supplier_lot_number",
            "receipt_reference",
            "received_at",
            "expires_on",
            "created_at",
        ]


class LotDetailSerializer(LotSerializer):
    lab_results = LabResultSerializer(many=True, read_only=True)

    class Meta(LotSerializer.Meta):
        fields = [*LotSerializer.Meta.fields, "lab_results"]


class GenealogyLotSerializer(LotSerializer):
    depth = serializers.IntegerField(read_only=True, help_text="Steps from the origin lot.")

    class Meta(LotSerializer.Meta):
        fields = ["depth", *LotSerializer.Meta.fields]


class BatchSerializer(serializers.ModelSerializer):
    product = SlugField()
    sponsor = SlugField()
    mbr_version = serializers.IntegerField(source="mbr.version", read_only=True)
    yield_percent = serializers.DecimalField(
        max_digits=7, decimal_places=1, read_only=True, allow_null=True
    )

    class Meta:
        model = Batch
        fields = [
            "number",
            "product",
            "sponsor",
            "mbr",
            "mbr_version",
            "status",
            "planned_at",
            "started_at",
            "completed_at",
            "actual_yield",
            "yield_percent",
        ]


class GenealogyBatchSerializer(serializers.ModelSerializer):
    product = SlugField()
    sponsor = SlugField()

    class Meta:
        model = Batch
        fields = ["number", "product", "sponsor", "status", "started_at", "completed_at"]


class ExecutedStepSerializer(serializers.ModelSerializer):
    sequence = serializers.IntegerField(source="step.sequence", read_only=True)
    title = serializers.CharField(source="step.title", read_only=True)
    parameter = serializers.CharField(source="step.parameter", read_only=True)
    unit = serializers.CharField(source="step.unit", read_only=True)
    low_limit = serializers.DecimalField(
        source="step.low_limit", max_digits=14, decimal_places=4, read_only=True, allow_null=True
    )
    high_limit = serializers.DecimalField(
        source="step.high_limit", max_digits=14, decimal_places=4, read_only=True, allow_null=True
    )
    performed_by = SlugField("username")
    verified_by = SlugField("username")

    class Meta:
        model = ExecutedStep
        fields = [
            "sequence",
            "title",
            "parameter",
            "unit",
            "low_limit",
            "high_limit",
            "value",
            "is_in_limits",
            "note",
            "performed_by",
            "performed_at",
            "verified_by",
            "verified_at",
        ]


class ConsumptionSerializer(serializers.ModelSerializer):
    lot = SlugField("lot_number")
    material = serializers.CharField(source="lot.material.code", read_only=True)
    unit = serializers.CharField(source="lot.unit", read_only=True)

    class Meta:
        model = Consumption
        fields = ["lot", "material", "quantity", "unit", "consumed_at"]


class BatchEquipmentUseSerializer(serializers.ModelSerializer):
    equipment = SlugField()

    class Meta:
        model = EquipmentUse
        fields = ["equipment", "started_at", "ended_at"]


class OutputLotSerializer(serializers.ModelSerializer):
    lab_results = LabResultSerializer(many=True, read_only=True)

    class Meta:
        model = Lot
        fields = ["lot_number", "status", "quantity", "unit", "expires_on", "lab_results"]


class PackagingSerializer(serializers.ModelSerializer):
    class Meta:
        model = PackagingRecord
        fields = [
            "label_version",
            "line_cleared_at",
            "labels_issued",
            "labels_used",
            "labels_destroyed",
            "labels_returned",
            "reconciled_at",
            "is_reconciled",
        ]


class BatchDetailSerializer(BatchSerializer):
    executed_steps = ExecutedStepSerializer(many=True, read_only=True)
    consumptions = ConsumptionSerializer(many=True, read_only=True)
    equipment_uses = BatchEquipmentUseSerializer(many=True, read_only=True)
    output_lots = OutputLotSerializer(many=True, read_only=True)
    packaging = PackagingSerializer(read_only=True, allow_null=True)

    class Meta(BatchSerializer.Meta):
        fields = [
            *BatchSerializer.Meta.fields,
            "executed_steps",
            "consumptions",
            "equipment_uses",
            "output_lots",
            "packaging",
        ]


class BomLineSerializer(serializers.ModelSerializer):
    material = SlugField()

    class Meta:
        model = BomLine
        fields = ["material", "quantity", "unit"]


class MbrStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = MbrStep
        fields = [
            "sequence",
            "title",
            "instruction",
            "parameter",
            "unit",
            "low_limit",
            "high_limit",
            "requires_verification",
            "sop_reference",
        ]


class MasterBatchRecordSerializer(serializers.ModelSerializer):
    product = SlugField()
    sponsor = SlugField()
    bom_lines = BomLineSerializer(many=True, read_only=True)
    steps = MbrStepSerializer(many=True, read_only=True)

    class Meta:
        model = MasterBatchRecord
        fields = [
            "id",
            "product",
            "sponsor",
            "version",
            "title",
            "status",
            "batch_size",
            "batch_unit",
            "theoretical_yield",
            "effective_from",
            "created_at",
            "bom_lines",
            "steps",
        ]


class EquipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Equipment
        fields = ["code", "name", "kind", "location", "qualified_until", "status"]


class EquipmentUseSerializer(serializers.ModelSerializer):
    batch = SlugField("number")
    product = serializers.CharField(source="batch.product.code", read_only=True)
    sponsor = SlugField()

    class Meta:
        model = EquipmentUse
        fields = ["batch", "product", "sponsor", "started_at", "ended_at"]


class CleaningRecordSerializer(serializers.ModelSerializer):
    performed_by = SlugField("username")
    verified_by = SlugField("username")

    class Meta:
        model = CleaningRecord
        fields = [
            "method",
            "performed_by",
            "performed_at",
            "verified_by",
            "verified_at",
            "is_verified",
        ]


class EquipmentDetailSerializer(EquipmentSerializer):
    uses = EquipmentUseSerializer(
        source="visible_uses",
        many=True,
        read_only=True,
        help_text="Batches on this equipment, only those of sponsors in your scope.",
    )
    cleanings = CleaningRecordSerializer(source="cleaning_records", many=True, read_only=True)

    class Meta(EquipmentSerializer.Meta):
        fields = [*EquipmentSerializer.Meta.fields, "uses", "cleanings"]


class ShipmentSerializer(serializers.ModelSerializer):
    lot = SlugField("lot_number")
    material = serializers.CharField(source="lot.material.code", read_only=True)
    unit = serializers.CharField(source="lot.unit", read_only=True)
    customer = CustomerSerializer(read_only=True)
    sponsor = SlugField()

    class Meta:
        model = Shipment
        fields = [
            "id",
            "lot",
            "material",
            "sponsor",
            "customer",
            "quantity",
            "unit",
            "shipped_at",
            "reference",
        ]


class SponsorGroupSerializer(serializers.Serializer):
    sponsor = serializers.SerializerMethodField(help_text="Sponsor code; null for site materials.")
    label = serializers.CharField()
    lots = serializers.SerializerMethodField()
    batches = serializers.SerializerMethodField()
    shipments = serializers.SerializerMethodField()

    def get_sponsor(self, group) -> str | None:
        for record in (*group.lots, *group.batches, *group.shipments):
            if record.sponsor_id:
                return record.sponsor.code
        return None

    def get_lots(self, group) -> list[str]:
        return [lot.lot_number for lot in group.lots]

    def get_batches(self, group) -> list[str]:
        return [batch.number for batch in group.batches]

    def get_shipments(self, group) -> list[int]:
        return [shipment.pk for shipment in group.shipments]


class GenealogySerializer(serializers.Serializer):
    origin = LotSerializer()
    direction = serializers.ChoiceField(choices=["forward", "backward"])
    lots = GenealogyLotSerializer(many=True)
    batches = GenealogyBatchSerializer(many=True)
    shipments = ShipmentSerializer(many=True)
    customers = CustomerSerializer(many=True)
    groups = SponsorGroupSerializer(many=True)


@_read_only(
    _path_parameter("code", "Material code."),
    listing="Materials: site-wide ones in your scope and your sponsors' products",
    record="One material, by code",
)
class MaterialViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MaterialSerializer
    lookup_field = "code"
    lookup_value_regex = CODE_REGEX
    filterset_fields = {"kind": ["exact"], "sponsor__code": ["exact"], "product__code": ["exact"]}

    def get_queryset(self):
        return Material.objects.for_user(self.request.user).select_related("product", "sponsor")


LOT_NUMBER = _path_parameter("lot_number", "Lot number.")


@_read_only(
    LOT_NUMBER,
    listing="Lots in your scope; filter by material, status, sponsor",
    record="One lot, by lot number, with its lab results",
)
class LotViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "lot_number"
    lookup_value_regex = CODE_REGEX
    filterset_fields = {
        "material__code": ["exact"],
        "status": ["exact"],
        "sponsor__code": ["exact"],
    }

    def get_queryset(self):
        lots = lot_list(user=self.request.user)
        if self.action == "retrieve":
            results = LabResult.objects.for_user(self.request.user).order_by("tested_at", "id")
            lots = lots.prefetch_related(Prefetch("lab_results", queryset=results))
        return lots

    def get_serializer_class(self):
        return LotDetailSerializer if self.action == "retrieve" else LotSerializer

    @extend_schema(
        summary="Recall scope: every descendant lot, batch, shipment and customer",
        parameters=[LOT_NUMBER],
        responses={200: GenealogySerializer, 404: ERROR_RESPONSES[404]},
        filters=False,
    )
    @action(detail=True, url_path="recall-scope", filter_backends=[], pagination_class=None)
    def recall_scope(self, request, lot_number=None):
        genealogy = recall_scope_forward(lot=self.get_object(), user=request.user)
        return Response(GenealogySerializer(genealogy).data)

    @extend_schema(
        summary="Backward trace: every ancestor lot with its supplier and receipt",
        parameters=[LOT_NUMBER],
        responses={200: GenealogySerializer, 404: ERROR_RESPONSES[404]},
        filters=False,
    )
    @action(detail=True, filter_backends=[], pagination_class=None)
    def trace(self, request, lot_number=None):
        genealogy = recall_trace_backward(lot=self.get_object(), user=request.user)
        return Response(GenealogySerializer(genealogy).data)


@_read_only(
    _path_parameter("number", "Batch number."),
    listing="Batches in your scope",
    record="One batch record: executed steps, consumption, equipment, output lots, packaging",
)
class BatchViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "number"
    lookup_value_regex = CODE_REGEX
    filterset_fields = {"product__code": ["exact"], "status": ["exact"], "sponsor__code": ["exact"]}

    def get_queryset(self):
        return batch_list(user=self.request.user)

    def get_serializer_class(self):
        return BatchDetailSerializer if self.action == "retrieve" else BatchSerializer

    def get_object(self):
        try:
            batch = batch_detail(user=self.request.user, number=self.kwargs["number"])
        except Batch.DoesNotExist:
            raise Http404 from None
        self.check_object_permissions(self.request, batch)
        return batch


@_read_only(
    listing="Master batch record versions in your scope, with bill of materials and steps",
    record="One master batch record version",
)
class MasterBatchRecordViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MasterBatchRecordSerializer
    filterset_fields = {"product__code": ["exact"], "status": ["exact"], "sponsor__code": ["exact"]}

    def get_queryset(self):
        return (
            MasterBatchRecord.objects.for_user(self.request.user)
            .select_related("product", "sponsor")
            .prefetch_related("bom_lines__material", "steps")
        )


@_read_only(
    _path_parameter("code", "Equipment code."),
    listing="Equipment in your scope",
    record="One piece of equipment with its uses (your sponsors' batches only) and cleanings",
)
class EquipmentViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "code"
    lookup_value_regex = CODE_REGEX
    filterset_fields = {"status": ["exact"], "kind": ["exact"]}

    def get_queryset(self):
        return Equipment.objects.for_user(self.request.user)

    def get_serializer_class(self):
        return EquipmentDetailSerializer if self.action == "retrieve" else EquipmentSerializer

    def get_object(self):
        equipment = super().get_object()
        if self.action == "retrieve":
            user = self.request.user
            equipment.visible_uses = list(equipment_history(user=user, equipment=equipment))
            equipment.cleaning_records = list(
                equipment.cleanings.select_related("performed_by", "verified_by")
            )
        return equipment


@_read_only(listing="Shipments of your sponsors' lots", record="One shipment")
class ShipmentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ShipmentSerializer
    filterset_fields = {
        "customer__code": ["exact"],
        "lot__lot_number": ["exact"],
        "sponsor__code": ["exact"],
    }

    def get_queryset(self):
        return Shipment.objects.for_user(self.request.user).select_related(
            "lot__material", "customer", "sponsor"
        )
