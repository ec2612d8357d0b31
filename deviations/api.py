"""API of quality events and disposition: deviations (record, investigation, sponsor approval,
acknowledgement; filters by lot, batch and product), batch release/reject by e-signature, and the
caller's in-app notifications. Sponsor-scoped."""

import django_filters.rest_framework as django_filters
from django.db.models import Prefetch, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from batches.disposition import batch_disposition
from batches.models import Batch, Equipment, Lot
from qms.api import ERROR_RESPONSES, ErrorSerializer
from qms.api_fields import AwareDateTimeField, BoundedCharField, BoundedTextField
from qms.api_query import StrictQueryParameters
from qms.bounds import FUTURE_TOLERANCE
from qms.models import Deadline, Notification, Signature
from qms.notifications import notifications_for
from qms.signatures import signatures_of
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.models import Severity

from .capa import capa_list
from .models import Capa, CapaAction, Deviation
from .selectors import deadlines_of, deviation_list
from .services import (
    deviation_acknowledge,
    deviation_investigate,
    deviation_record,
    deviation_sponsor_decide,
)

CONFLICT = OpenApiResponse(ErrorSerializer, description="Refused by a business rule (named)")
NUMBER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="Deviation number.", pattern=r"^[^/]+$"
)
BATCH_NUMBER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="Batch number.", pattern=r"^[^/]+$"
)


class SignatureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Signature
        fields = ["printed_name", "meaning", "signed_at", "content_hash"]


class DeadlineSerializer(serializers.ModelSerializer):
    is_overdue = serializers.BooleanField(
        read_only=True, help_text="Unmet past its due time, whatever reminders were sent."
    )
    is_late = serializers.BooleanField(
        read_only=True, help_text="Met after its due time (it stays late)."
    )
    late_by = serializers.DurationField(
        read_only=True,
        allow_null=True,
        help_text="How late, in whole minutes: met late, from due to met; overdue, to now.",
    )

    class Meta:
        model = Deadline
        fields = [
            "kind",
            "title",
            "status",
            "due_at",
            "notify_at",
            "notified_at",
            "met_at",
            "is_overdue",
            "is_late",
            "late_by",
        ]


class DeviationSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    source = serializers.SlugRelatedField(
        slug_field="number",
        read_only=True,
        allow_null=True,
        help_text="The site deviation of an impact record.",
    )
    time_to_acknowledge = serializers.DurationField(read_only=True, allow_null=True)

    class Meta:
        model = Deviation
        fields = [
            "number",
            "sponsor",
            "source",
            "title",
            "category",
            "severity",
            "status",
            "occurred_at",
            "discovered_at",
            "recorded_at",
            "sponsor_acknowledged_at",
            "time_to_acknowledge",
            "closed_at",
        ]


class ImpactSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Deviation
        fields = ["number", "sponsor", "severity", "status", "sponsor_acknowledged_at"]


class DeviationDetailSerializer(DeviationSerializer):
    agreement_version = serializers.IntegerField(
        source="agreement.version", read_only=True, allow_null=True
    )
    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    sponsor_acknowledged_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    lots = serializers.SlugRelatedField(slug_field="lot_number", many=True, read_only=True)
    batches = serializers.SlugRelatedField(slug_field="number", many=True, read_only=True)
    equipment = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    deadlines = DeadlineSerializer(source="visible_deadlines", many=True, read_only=True)
    impacts = ImpactSerializer(
        source="visible_impacts",
        many=True,
        read_only=True,
        help_text="Per-sponsor impact records of a site deviation (CMO users, sponsors in scope).",
    )
    signatures = SignatureSerializer(source="record_signatures", many=True, read_only=True)

    class Meta(DeviationSerializer.Meta):
        fields = [
            *DeviationSerializer.Meta.fields,
            "description",
            "agreement_version",
            "recorded_by",
            "sponsor_acknowledged_by",
            "immediate_action",
            "impact_assessment",
            "root_cause",
            "disposition",
            "lots",
            "batches",
            "equipment",
            "deadlines",
            "impacts",
            "signatures",
        ]


class DeviationRecordSerializer(serializers.Serializer):
    title = BoundedCharField(max_length=200)
    description = BoundedTextField()
    category = serializers.ChoiceField(choices=Deviation.Category.choices)
    severity = serializers.ChoiceField(choices=Severity.choices)
    occurred_at = AwareDateTimeField()
    discovered_at = AwareDateTimeField()
    immediate_action = BoundedTextField(required=False, allow_blank=True, default="")
    lots = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Lot numbers."
    )
    batches = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Batch numbers."
    )
    equipment = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Equipment codes."
    )

    def validate(self, data):
        if data["occurred_at"] > data["discovered_at"]:
            raise serializers.ValidationError(
                {"occurred_at": "A deviation cannot be discovered before it occurred."}
            )
        if data["discovered_at"] > timezone.now() + FUTURE_TOLERANCE:
            raise serializers.ValidationError(
                {"discovered_at": "A deviation cannot be discovered in the future."}
            )
        if not (data["lots"] or data["batches"] or data["equipment"]):
            raise serializers.ValidationError(
                "Link the deviation to at least one lot, batch or equipment."
            )
        user = self.context["request"].user
        data["lots"] = self._resolve(
            "lots", Lot.objects.for_user(user, "change"), "lot_number", data["lots"]
        )
        data["batches"] = self._resolve(
            "batches", Batch.objects.for_user(user, "change"), "number", data["batches"]
        )
        data["equipment"] = self._resolve(
            "equipment", Equipment.objects.for_user(user, "change"), "code", data["equipment"]
        )
        return data

    @staticmethod
    def _resolve(name, queryset, key, wanted):
        wanted = list(dict.fromkeys(wanted))
        found = {getattr(row, key): row for row in queryset.filter(**{f"{key}__in": wanted})}
        unknown = [value for value in wanted if value not in found]
        if unknown:
            raise serializers.ValidationError(
                {name: f"Unknown, or not in your sponsor scope: {', '.join(unknown)}."}
            )
        return [found[value] for value in wanted]


class InvestigationSerializer(serializers.Serializer):
    impact_assessment = serializers.CharField(required=False, allow_blank=True, default=None)
    root_cause = serializers.CharField(required=False, allow_blank=True, default=None)
    immediate_action = serializers.CharField(required=False, allow_blank=True, default=None)
    disposition = serializers.ChoiceField(
        choices=Deviation.Disposition.choices, required=False, allow_blank=True, default=None
    )
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Required to change or clear a finding already recorded (21 CFR 11.10(e)).",
    )


class SponsorDecisionSerializer(serializers.Serializer):
    password = serializers.CharField(
        style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )
    approve = serializers.BooleanField(help_text="true approves the closure; false rejects it.")
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Required when rejecting."
    )


class SignedDeviationSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=Deviation.Status.choices)
    signature = SignatureSerializer()


class DispositionSerializer(serializers.Serializer):
    password = serializers.CharField(
        style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )
    release = serializers.BooleanField(help_text="true releases the batch; false rejects it.")


class DispositionResultSerializer(serializers.Serializer):
    batch = serializers.CharField()
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    signature = SignatureSerializer()


class NotificationSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    kind = serializers.CharField(source="deadline.kind", read_only=True, allow_null=True)
    due_at = AwareDateTimeField(source="deadline.due_at", read_only=True, allow_null=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "sponsor",
            "subject",
            "body",
            "url",
            "kind",
            "due_at",
            "created_at",
            "read_at",
        ]


def _signature_body(signature: Signature) -> dict:
    return SignatureSerializer(signature).data


class DeviationApiFilter(django_filters.FilterSet):
    """The list's filters. A deviation concerns a lot when it is linked to the lot or to the batch
    that produced it, and a batch when linked to the batch or to one of its output lots."""

    sponsor__code = django_filters.CharFilter(field_name="sponsor__code", label="Sponsor code")
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    status = django_filters.ChoiceFilter(choices=Deviation.Status.choices)
    category = django_filters.ChoiceFilter(choices=Deviation.Category.choices)
    lot = django_filters.CharFilter(method="concerning_lot", label="Lot number")
    batch = django_filters.CharFilter(method="concerning_batch", label="Batch number")
    product = django_filters.CharFilter(method="concerning_product", label="Product code")

    class Meta:
        model = Deviation
        fields = ["sponsor__code", "severity", "status", "category", "lot", "batch", "product"]

    @staticmethod
    def _linked(queryset, condition: Q):
        return queryset.filter(pk__in=Deviation.objects.filter(condition).values("pk"))

    def concerning_lot(self, queryset, name, value):
        return self._linked(
            queryset,
            Q(lots__lot_number=value) | Q(batches__output_lots__lot_number=value),
        )

    def concerning_batch(self, queryset, name, value):
        return self._linked(queryset, Q(batches__number=value) | Q(lots__produced_by__number=value))

    def concerning_product(self, queryset, name, value):
        return self._linked(
            queryset,
            Q(batches__product__code=value)
            | Q(lots__material__product__code=value)
            | Q(lots__produced_by__product__code=value),
        )


@extend_schema_view(
    list=extend_schema(
        summary="Deviations in your scope; filter by sponsor, severity, status, category, lot, "
        "batch and product"
    ),
    retrieve=extend_schema(
        summary="One deviation with links, deadlines, acknowledgement and impact records",
        parameters=[NUMBER],
    ),
)
class DeviationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "number"
    lookup_value_regex = r"[^/]+"
    filterset_class = DeviationApiFilter

    def get_queryset(self):
        deviations = deviation_list(user=self.request.user)
        if self.action == "list":
            return deviations
        user = self.request.user
        return deviations.select_related("recorded_by", "sponsor_acknowledged_by").prefetch_related(
            Prefetch("lots", queryset=Lot.objects.for_user(user).order_by("lot_number")),
            Prefetch("batches", queryset=Batch.objects.for_user(user).order_by("number")),
            Prefetch("equipment", queryset=Equipment.objects.for_user(user).order_by("code")),
        )

    def get_serializer_class(self):
        if self.action == "create":
            return DeviationRecordSerializer
        if self.action == "investigation":
            return InvestigationSerializer
        if self.action == "list":
            return DeviationSerializer
        return DeviationDetailSerializer

    def get_object(self):
        deviation = super().get_object()
        if self.action == "retrieve":
            self._annotate(deviation)
        return deviation

    def _annotate(self, deviation: Deviation) -> Deviation:
        user = self.request.user
        deviation.visible_deadlines = list(deadlines_of(deviation).for_user(user))
        deviation.visible_impacts = (
            list(
                deviation.impacts.filter(sponsor_id__in=sponsor_ids_for(user, "view"))
                .select_related("sponsor")
                .order_by("number")
            )
            if deviation.is_site_record and is_cmo_user(user)
            else []
        )
        deviation.record_signatures = list(signatures_of(deviation))
        return deviation

    @extend_schema(
        summary="Record a deviation on lots, batches or equipment",
        description="Shared lots or equipment make a site deviation with one impact record per "
        "affected sponsor; linking two sponsors' own lots or batches is refused (409).",
        request=DeviationRecordSerializer,
        responses={
            201: DeviationDetailSerializer,
            400: ERROR_RESPONSES[400],
            403: ERROR_RESPONSES[403],
            409: CONFLICT,
        },
    )
    def create(self, request):
        if not sponsor_ids_for(request.user, "change"):
            raise exceptions.PermissionDenied("Only CMO staff record deviations.")
        data = DeviationRecordSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        deviation = deviation_record(by=request.user, **data.validated_data)
        created = self._annotate(self.get_queryset().get(pk=deviation.pk))
        return Response(DeviationDetailSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="CMO: record or change the investigation findings",
        description="A finding entered into an empty field needs no reason; changing or clearing "
        "a recorded finding without a reason is refused (409), naming the record and the field.",
        parameters=[NUMBER],
        request=InvestigationSerializer,
        responses={
            200: DeviationDetailSerializer,
            400: ERROR_RESPONSES[400],
            403: ERROR_RESPONSES[403],
            404: ERROR_RESPONSES[404],
            409: CONFLICT,
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def investigation(self, request, number=None):
        if not sponsor_ids_for(request.user, "change"):
            raise exceptions.PermissionDenied("Only CMO staff investigate deviations.")
        deviation = self.get_object()
        data = InvestigationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deviation_investigate(deviation=deviation, by=request.user, **data.validated_data)
        investigated = self._annotate(self.get_queryset().get(pk=deviation.pk))
        return Response(DeviationDetailSerializer(investigated).data)

    @extend_schema(
        summary="Sponsor approver: approve or reject the closure, by e-signature",
        parameters=[NUMBER],
        request=SponsorDecisionSerializer,
        responses={200: SignedDeviationSerializer, 404: ERROR_RESPONSES[404], 409: CONFLICT},
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="sponsor-approval",
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def sponsor_approval(self, request, number=None):
        deviation = self.get_object()
        data = SponsorDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        signature = deviation_sponsor_decide(
            deviation=deviation, user=request.user, request=request, **data.validated_data
        )
        return Response(
            {
                "number": deviation.number,
                "status": deviation.status,
                "signature": _signature_body(signature),
            }
        )

    @extend_schema(
        summary="Sponsor approver: acknowledge the notice of a deviation",
        description="Acknowledging is the sponsor approver's act: anyone else, a sponsor "
        "auditor included, is refused (409).",
        parameters=[NUMBER],
        request=None,
        responses={200: DeviationDetailSerializer, 404: ERROR_RESPONSES[404], 409: CONFLICT},
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def acknowledge(self, request, number=None):
        deviation = deviation_acknowledge(deviation=self.get_object(), user=request.user)
        acknowledged = self._annotate(self.get_queryset().get(pk=deviation.pk))
        return Response(DeviationDetailSerializer(acknowledged).data)


class BatchDispositionView(APIView):
    """Release or reject a batch and its output lots by e-signature."""

    @extend_schema(
        summary="Release or reject a batch by e-signature (refusals name every blocking reason)",
        parameters=[BATCH_NUMBER],
        request=DispositionSerializer,
        responses={
            200: DispositionResultSerializer,
            400: ERROR_RESPONSES[400],
            404: ERROR_RESPONSES[404],
            409: CONFLICT,
        },
    )
    def post(self, request, number):
        batch = get_object_or_404(Batch.objects.for_user(request.user), number=number)
        data = DispositionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        signature = batch_disposition(
            batch=batch, user=request.user, request=request, **data.validated_data
        )
        batch.refresh_from_db(fields=["status"])
        return Response(
            {"batch": batch.number, "status": batch.status, "signature": _signature_body(signature)}
        )


@extend_schema_view(
    list=extend_schema(summary="Your own in-app notifications, newest first"),
    retrieve=extend_schema(summary="One of your notifications"),
)
class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = NotificationSerializer

    def get_queryset(self):
        return notifications_for(self.request.user)


CAPA_NUMBER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="CAPA number.", pattern=r"^[^/]+$"
)


class CapaActionSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    completed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = CapaAction
        fields = [
            "sequence",
            "description",
            "owner",
            "due_date",
            "completed_at",
            "completed_by",
            "completion_note",
        ]


class CapaSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    deviation = serializers.SlugRelatedField(slug_field="number", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    days_open = serializers.IntegerField(read_only=True)
    open_actions = serializers.IntegerField(read_only=True)
    overdue_actions = serializers.IntegerField(read_only=True)
    is_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = Capa
        fields = [
            "number",
            "sponsor",
            "title",
            "source_kind",
            "deviation",
            "source_reference",
            "status",
            "owner",
            "opened_at",
            "closed_at",
            "days_open",
            "open_actions",
            "overdue_actions",
            "is_overdue",
        ]


class CapaDetailSerializer(CapaSerializer):
    opened_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    effectiveness_checked_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    actions = CapaActionSerializer(many=True, read_only=True)
    deadlines = DeadlineSerializer(source="visible_deadlines", many=True, read_only=True)
    signatures = SignatureSerializer(source="record_signatures", many=True, read_only=True)

    class Meta(CapaSerializer.Meta):
        fields = [
            *CapaSerializer.Meta.fields,
            "description",
            "opened_by",
            "effectiveness_due",
            "effectiveness_criteria",
            "effectiveness_result",
            "is_effective",
            "effectiveness_checked_by",
            "effectiveness_checked_at",
            "actions",
            "deadlines",
            "signatures",
        ]


class CapaApiFilter(django_filters.FilterSet):
    sponsor = django_filters.CharFilter(field_name="sponsor__code", label="Sponsor code")
    status = django_filters.ChoiceFilter(choices=Capa.Status.choices)
    source_kind = django_filters.ChoiceFilter(choices=Capa.SourceKind.choices)
    overdue = django_filters.BooleanFilter(
        field_name="is_overdue", label="An action or the effectiveness check is overdue"
    )

    class Meta:
        model = Capa
        fields = ["sponsor", "status", "source_kind", "overdue"]


@extend_schema_view(
    list=extend_schema(
        summary="CAPAs in your scope with aging; filter by sponsor, status, source, overdue"
    ),
    retrieve=extend_schema(
        summary="One CAPA with its actions, effectiveness check, deadlines and signatures",
        parameters=[CAPA_NUMBER],
    ),
)
class CapaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "number"
    lookup_value_regex = r"[^/]+"
    filterset_class = CapaApiFilter

    def get_queryset(self):
        capas = capa_list(user=self.request.user)
        if self.action == "list":
            return capas
        return capas.select_related("opened_by", "effectiveness_checked_by").prefetch_related(
            Prefetch(
                "actions",
                queryset=CapaAction.objects.select_related("owner", "completed_by").order_by(
                    "sequence"
                ),
            )
        )

    def get_serializer_class(self):
        return CapaSerializer if self.action == "list" else CapaDetailSerializer

    def get_object(self):
        capa = super().get_object()
        capa.visible_deadlines = list(deadlines_of(capa).for_user(self.request.user))
        capa.record_signatures = list(signatures_of(capa))
        return capa
