"""API of the manufacturing record: materials, lots with recall scope and trace, batches,
master batch records, equipment and shipments. Every row is read through `for_user` or a
selector, so a sponsor's people never see another sponsor's rows; the writes (`api_writes`) are
for CMO staff and connected systems and go through the services."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from qms.api import ERROR_RESPONSES
from qms.api_query import StrictQueryParameters

from .api_serializers import (
    BatchDetailSerializer,
    BatchSerializer,
    EquipmentDetailSerializer,
    EquipmentSerializer,
    GenealogySerializer,
    LotDetailSerializer,
    LotSerializer,
    MasterBatchRecordSerializer,
    MaterialSerializer,
    ShipmentSerializer,
    with_record_state,
)
from .api_writes import (
    BatchWrites,
    EquipmentWrites,
    LotWrites,
    MasterBatchRecordWrites,
    ShipmentWrites,
    lot_detail_queryset,
    mbr_queryset,
)
from .models import Batch, Equipment, Material, Shipment
from .selectors import (
    batch_detail,
    batch_list,
    equipment_history,
    lot_list,
    recall_scope_forward,
    recall_trace_backward,
)

CODE_REGEX = r"[^/]+"
ID_REGEX = r"[0-9]+"


def _path_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.PATH, description=description, pattern=r"^[^/]+$"
    )


def _read_only(lookup: OpenApiParameter | None = None, *, listing: str, record: str):
    """Summaries and the lookup parameter of a viewset's reads; the error answers (404 for a
    record outside the caller's sponsor scope) come from `qms.api.add_error_responses`."""
    return extend_schema_view(
        list=extend_schema(summary=listing),
        retrieve=extend_schema(summary=record, parameters=[lookup] if lookup else None),
    )


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
class LotViewSet(LotWrites, viewsets.ReadOnlyModelViewSet):
    lookup_field = "lot_number"
    lookup_value_regex = CODE_REGEX
    filterset_fields = {
        "material__code": ["exact"],
        "status": ["exact"],
        "sponsor__code": ["exact"],
    }

    def get_queryset(self):
        if self.action == "retrieve":
            return lot_detail_queryset(self.request.user)
        return lot_list(user=self.request.user)

    def get_serializer_class(self):
        return LotDetailSerializer if self.action == "retrieve" else LotSerializer

    @extend_schema(
        summary="Recall scope: every descendant lot, batch, shipment and customer",
        parameters=[LOT_NUMBER],
        responses={200: GenealogySerializer, 404: ERROR_RESPONSES[404]},
        filters=False,
    )
    @action(
        detail=True,
        url_path="recall-scope",
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def recall_scope(self, request, lot_number=None):
        genealogy = recall_scope_forward(lot=self.get_object(), user=request.user)
        return Response(GenealogySerializer(genealogy).data)

    @extend_schema(
        summary="Backward trace: every ancestor lot with its supplier and receipt",
        parameters=[LOT_NUMBER],
        responses={200: GenealogySerializer, 404: ERROR_RESPONSES[404]},
        filters=False,
    )
    @action(detail=True, filter_backends=[StrictQueryParameters], pagination_class=None)
    def trace(self, request, lot_number=None):
        genealogy = recall_trace_backward(lot=self.get_object(), user=request.user)
        return Response(GenealogySerializer(genealogy).data)


@_read_only(
    _path_parameter("number", "Batch number."),
    listing="Batches in your scope",
    record="One batch record: steps, consumption, equipment, output lots, packaging, "
    "disposition, signatures and linked deviations",
)
class BatchViewSet(BatchWrites, viewsets.ReadOnlyModelViewSet):
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
        return with_record_state(batch, self.request.user)


@_read_only(
    listing="Master batch record versions in your scope, with bill of materials and steps",
    record="One master batch record version",
)
class MasterBatchRecordViewSet(MasterBatchRecordWrites, viewsets.ReadOnlyModelViewSet):
    serializer_class = MasterBatchRecordSerializer
    lookup_value_regex = ID_REGEX
    filterset_fields = {"product__code": ["exact"], "status": ["exact"], "sponsor__code": ["exact"]}

    def get_queryset(self):
        return mbr_queryset(self.request.user)


@_read_only(
    _path_parameter("code", "Equipment code."),
    listing="Equipment in your scope",
    record="One piece of equipment with its uses (your sponsors' batches only) and cleanings",
)
class EquipmentViewSet(EquipmentWrites, viewsets.ReadOnlyModelViewSet):
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
class ShipmentViewSet(ShipmentWrites, viewsets.ReadOnlyModelViewSet):
    serializer_class = ShipmentSerializer
    lookup_value_regex = ID_REGEX
    filterset_fields = {
        "customer__code": ["exact"],
        "lot__lot_number": ["exact"],
        "sponsor__code": ["exact"],
    }

    def get_queryset(self):
        return Shipment.objects.for_user(self.request.user).select_related(
            "lot__material", "customer", "sponsor"
        )
