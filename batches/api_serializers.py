"""Serializers of the manufacturing record as the API shows it, and the batch record's state
that goes with its detail: signatures with their validity, disposition and linked deviations.
Each record carries the one key its route looks it up by (code, lot number, batch number; id
for master batch records, shipments and the records inside a batch)."""

from datetime import UTC

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from rest_framework import serializers

from qms.signatures import signature_check, signatures_by_record

from .disposition import release_check
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
from .selectors import batch_detail
from .services import STEP_FIELDS


class SlugField(serializers.SlugRelatedField):
    def __init__(self, slug_field: str = "code", **kwargs):
        super().__init__(slug_field=slug_field, read_only=True, **kwargs)


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["code", "name", "country", "gln"]


class MaterialSerializer(serializers.ModelSerializer):
    product = SlugField(allow_null=True)
    sponsor = SlugField(allow_null=True)

    class Meta:
        model = Material
        fields = ["code", "name", "kind", "unit", "gtin", "product", "sponsor"]


class LabResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabResult
        fields = [
            "id",
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
    sponsor = SlugField(allow_null=True)
    produced_by = SlugField("number", allow_null=True)
    supplier = SlugField(allow_null=True)

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
    verified_by = SlugField("username", allow_null=True)

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
        fields = ["id", "lot", "material", "quantity", "unit", "consumed_at"]


class BatchEquipmentUseSerializer(serializers.ModelSerializer):
    equipment = SlugField()

    class Meta:
        model = EquipmentUse
        fields = ["id", "equipment", "started_at", "ended_at"]


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


class RecordSignatureSerializer(serializers.Serializer):
    record = serializers.CharField(help_text='What was signed: "batch", "packaging", "step 2".')
    meaning = serializers.CharField()
    printed_name = serializers.CharField()
    signed_at = serializers.DateTimeField(default_timezone=UTC, help_text="UTC.")
    is_valid = serializers.BooleanField(
        help_text="The seal matches and the record is unchanged since signing."
    )
    problem = serializers.CharField(help_text="Why the signature is not valid; empty when it is.")


class DispositionStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    cmo_released_at = serializers.DateTimeField(allow_null=True)
    sponsor_release_required = serializers.BooleanField()
    sponsor_release_reason = serializers.CharField(
        help_text="Why the sponsor must release too (quality agreement term); empty otherwise."
    )
    evidence_complete = serializers.BooleanField()
    blockers = serializers.ListField(
        child=serializers.CharField(), help_text="Every reason the batch cannot be released now."
    )


class LinkedDeviationSerializer(serializers.Serializer):
    number = serializers.CharField()
    severity = serializers.CharField()
    status = serializers.CharField()


class BatchDetailSerializer(BatchSerializer):
    executed_steps = ExecutedStepSerializer(many=True, read_only=True)
    consumptions = ConsumptionSerializer(many=True, read_only=True)
    equipment_uses = BatchEquipmentUseSerializer(many=True, read_only=True)
    output_lots = OutputLotSerializer(many=True, read_only=True)
    packaging = PackagingSerializer(read_only=True, allow_null=True)
    evidence_handoff_hours = serializers.DecimalField(
        max_digits=9,
        decimal_places=1,
        read_only=True,
        allow_null=True,
        help_text="Hours from completion to a complete evidence set (the hand-off window).",
    )
    disposition = DispositionStateSerializer(source="disposition_state", read_only=True)
    signatures = RecordSignatureSerializer(source="record_signatures", many=True, read_only=True)
    deviations = LinkedDeviationSerializer(
        source="linked_deviations",
        many=True,
        read_only=True,
        help_text="Deviations on the batch or its output lots, as far as you may see them.",
    )

    class Meta(BatchSerializer.Meta):
        fields = [
            *BatchSerializer.Meta.fields,
            "evidence_complete_at",
            "evidence_handoff_hours",
            "disposition",
            "executed_steps",
            "consumptions",
            "equipment_uses",
            "output_lots",
            "packaging",
            "signatures",
            "deviations",
        ]


class BomLineSerializer(serializers.ModelSerializer):
    material = SlugField()

    class Meta:
        model = BomLine
        fields = ["material", "quantity", "unit"]


class MbrStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = MbrStep
        fields = ["sequence", *STEP_FIELDS]


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
        fields = ["id", "batch", "product", "sponsor", "started_at", "ended_at"]


class CleaningRecordSerializer(serializers.ModelSerializer):
    performed_by = SlugField("username")
    verified_by = SlugField("username", allow_null=True)

    class Meta:
        model = CleaningRecord
        fields = [
            "id",
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


def _signatures(batch: Batch) -> list[dict]:
    """The signatures on the batch record: the batch's own (disposition), its packaging's (line
    clearance) and its steps' (second-person verification), oldest first, each with its check;
    three queries whatever the batch's size."""
    packaging = getattr(batch, "packaging", None)
    parts = [
        ("batch", Batch, [batch]),
        ("packaging", PackagingRecord, [packaging] if packaging is not None else []),
        ("step", ExecutedStep, list(batch.executed_steps.all())),
    ]
    found = []
    for label, model, records in parts:
        signed = signatures_by_record(model, records)
        for record in records:
            name = f"step {record.step.sequence}" if model is ExecutedStep else label
            for signature in signed[str(record.pk)]:
                signature.content_type = ContentType.objects.get_for_id(signature.content_type_id)
                found.append((signature, name, signature_check(signature, record)))
    found.sort(key=lambda item: (item[0].signed_at, item[0].pk))
    return [
        {
            "record": name,
            "meaning": signature.meaning,
            "printed_name": signature.printed_name,
            "signed_at": signature.signed_at,
            "is_valid": check.is_valid,
            "problem": check.problem,
        }
        for signature, name, check in found
    ]


def with_record_state(batch: Batch, user) -> Batch:
    """Attach what the batch detail shows beyond its rows: signatures, disposition (release
    check) and the linked deviations the user may see."""
    from deviations.models import Deviation

    check = release_check(batch)
    batch.disposition_state = {
        "status": batch.status,
        "cmo_released_at": batch.cmo_released_at,
        "sponsor_release_required": check.sponsor_release_required,
        "sponsor_release_reason": check.sponsor_release_reason,
        "evidence_complete": check.evidence_complete,
        "blockers": check.blockers,
    }
    batch.record_signatures = _signatures(batch)
    batch.linked_deviations = [
        {"number": number, "severity": severity, "status": status}
        for number, severity, status in Deviation.objects.for_user(user)
        .filter(Q(batches=batch) | Q(lots__produced_by=batch))
        .distinct()
        .order_by("number")
        .values_list("number", "severity", "status")
    ]
    return batch


def batch_detail_data(*, user, number: str) -> dict:
    """The batch detail as the API answers it (read and after every write on the batch)."""
    batch = with_record_state(batch_detail(user=user, number=number), user)
    return BatchDetailSerializer(batch).data
