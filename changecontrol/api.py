"""API of change control: change requests (CMO users see the sponsors in their scope; a sponsor's
people see only their own slice, with the impact assessment, tasks and what the change carries),
each change's obligations, making a change effective (409 with the unmet obligations; a reason
when before the proposed date) and the sponsor approver's e-signed decision, which may accept an
earlier effective date."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from batches.models import Equipment, MasterBatchRecord
from deviations.api import SignatureSerializer
from qms.api import ERROR_RESPONSES, ErrorSerializer
from qms.api_fields import AwareDateTimeField, BoundedCharField, BoundedDateField, BoundedTextField
from qms.api_query import StrictQueryParameters
from qms.signatures import signatures_by_record
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.models import ChangeCategory, Product
from sponsors.selectors import user_sponsor
from suppliers.models import Supplier

from . import selectors, services
from .models import ChangeProduct, ChangeRequest, ChangeTask, SponsorObligation

CONFLICT = OpenApiResponse(ErrorSerializer, description="Refused by a business rule (named)")
NUMBER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="Change number.", pattern=r"^[^/]+$"
)
SPONSOR_CODE = OpenApiParameter(
    "sponsor_code", str, OpenApiParameter.PATH, description="The obligation's sponsor code."
)


class ObligationSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    sponsor_name = serializers.CharField(source="sponsor.name", read_only=True)
    agreement_version = serializers.IntegerField(
        source="agreement.version", read_only=True, allow_null=True
    )
    notice_sent_at = AwareDateTimeField(source="sent_at", read_only=True, allow_null=True)
    state = serializers.CharField(source="state_display", read_only=True)
    decided_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    signatures = SignatureSerializer(source="record_signatures", many=True, read_only=True)

    class Meta:
        model = SponsorObligation
        fields = [
            "sponsor",
            "sponsor_name",
            "kind",
            "lead_time_days",
            "agreement_version",
            "status",
            "state",
            "notice_sent_at",
            "decided_by",
            "decided_at",
            "comment",
            "accepts_effective_from",
            "signatures",
        ]


class AffectedProductSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    product = serializers.CharField(source="product.code", read_only=True)
    product_id = serializers.IntegerField(read_only=True)
    removed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ChangeProduct
        fields = ["sponsor", "product", "product_id", "removed_at", "removed_by", "removed_reason"]


class ChangeRequestSerializer(serializers.ModelSerializer):
    """The CMO view: every part of the change that concerns the sponsors in the caller's
    scope."""

    document_version = serializers.SerializerMethodField(
        help_text="The carried document version, when in your sponsor scope."
    )
    mbr = serializers.SerializerMethodField(
        help_text="Id of the carried MBR version, when in your sponsor scope."
    )
    equipment = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    supplier = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    risk_priority = serializers.IntegerField(read_only=True, allow_null=True)
    products = AffectedProductSerializer(source="visible_products", many=True, read_only=True)
    obligations = ObligationSerializer(source="visible_obligations", many=True, read_only=True)

    class Meta:
        model = ChangeRequest
        fields = [
            "number",
            "title",
            "description",
            "category",
            "status",
            "document_version",
            "mbr",
            "equipment",
            "supplier",
            "subject_text",
            "risk_severity",
            "risk_probability",
            "risk_detectability",
            "risk_priority",
            "risk_level",
            "risk_rationale",
            "proposed_effective_date",
            "effective_at",
            "early_effective_reason",
            "created_by",
            "created_at",
            "submitted_at",
            "closed_at",
            "status_reason",
            "products",
            "obligations",
        ]

    def get_document_version(self, change) -> str | None:
        version = getattr(change, "visible_document_version", None)
        return str(version) if version is not None else None

    def get_mbr(self, change) -> int | None:
        mbr = getattr(change, "visible_mbr", None)
        return mbr.pk if mbr is not None else None


class CarriedSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["document_version", "mbr", "equipment", "supplier"])
    reference = serializers.CharField(help_text="e.g. SOP-QA-014 v5, MBR ACM-IBU200 v3.")
    number = serializers.CharField(help_text="Document number, product code, or record code.")
    version = serializers.IntegerField(allow_null=True)
    title = serializers.CharField()
    status = serializers.CharField(allow_blank=True)


class SliceTaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChangeTask
        fields = ["description", "due_date", "completed_at"]


class SponsorSliceSerializer(serializers.ModelSerializer):
    """A sponsor's view of a change: its text, dates and status, the ICH Q9 risk assessment, the
    implementation tasks, what it carries (when that is the sponsor's own or the site's), the
    sponsor's own products and its own obligation; nothing of any other sponsor."""

    risk_priority = serializers.IntegerField(read_only=True, allow_null=True)
    carries = serializers.SerializerMethodField()
    tasks = SliceTaskSerializer(many=True, read_only=True)
    products = serializers.SerializerMethodField()
    obligation = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = [
            "number",
            "title",
            "description",
            "category",
            "status",
            "subject_text",
            "carries",
            "risk_severity",
            "risk_probability",
            "risk_detectability",
            "risk_priority",
            "risk_level",
            "risk_rationale",
            "tasks",
            "proposed_effective_date",
            "effective_at",
            "early_effective_reason",
            "products",
            "obligation",
        ]

    @extend_schema_field(CarriedSerializer(allow_null=True))
    def get_carries(self, change):
        carried = selectors.sponsor_carried(change)
        return CarriedSerializer(carried).data if carried is not None else None

    def get_products(self, change) -> list[str]:
        return [row.product.code for row in change.own_products]

    @extend_schema_field(ObligationSerializer(allow_null=True))
    def get_obligation(self, change):
        own = change.own_obligations
        return ObligationSerializer(own[0]).data if own else None


class ChangeCreateSerializer(serializers.Serializer):
    title = BoundedCharField(max_length=200)
    description = BoundedTextField()
    category = serializers.ChoiceField(choices=ChangeCategory.choices)
    products = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the affected products."
    )
    document = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Number of a carried document."
    )
    document_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Its version."
    )
    mbr = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Id of a carried MBR version."
    )
    equipment = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Code of the equipment changed."
    )
    supplier = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Code of the supplier changed."
    )
    subject_text = serializers.CharField(required=False, allow_blank=True, default="")
    proposed_effective_date = BoundedDateField(required=False, allow_null=True, default=None)

    def validate(self, data):
        user = self.context["request"].user
        wanted = list(dict.fromkeys(data["products"]))
        found = {p.pk: p for p in Product.objects.for_user(user, "change").filter(pk__in=wanted)}
        unknown = [str(pk) for pk in wanted if pk not in found]
        if unknown:
            raise serializers.ValidationError(
                {"products": f"Unknown, or not in your sponsor scope: {', '.join(unknown)}."}
            )
        data["products"] = [found[pk] for pk in wanted]
        number, version = data.pop("document"), data.pop("document_version")
        data["document_version"] = None
        if number or version:
            from documents.models import DocumentVersion

            data["document_version"] = self._one(
                "document_version",
                DocumentVersion.objects.for_user(user, "change"),
                document__number=number,
                version=version,
            )
        data["mbr"] = (
            self._one("mbr", MasterBatchRecord.objects.for_user(user, "change"), pk=data["mbr"])
            if data["mbr"] is not None
            else None
        )
        data["equipment"] = (
            self._one("equipment", Equipment.objects.for_user(user), code=data["equipment"])
            if data["equipment"]
            else None
        )
        data["supplier"] = (
            self._one("supplier", Supplier.objects.all(), code=data["supplier"])
            if data["supplier"]
            else None
        )
        return data

    @staticmethod
    def _one(name, queryset, **lookup):
        found = queryset.filter(**lookup).first()
        if found is None:
            raise serializers.ValidationError({name: "Unknown, or not in your sponsor scope."})
        return found


class MakeEffectiveSerializer(serializers.Serializer):
    effective_at = AwareDateTimeField(
        required=False, allow_null=True, default=None, help_text="Empty: now."
    )
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Required when the effective date is before the proposed effective date.",
    )


class UnmetSerializer(serializers.Serializer):
    sponsor = serializers.CharField()
    sponsor_name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    problem = serializers.CharField()


UNMET_CONFLICT = OpenApiResponse(
    inline_serializer(
        "ChangeObligationsUnmet",
        {
            "error": serializers.CharField(),
            "detail": serializers.CharField(),
            "unmet_obligations": UnmetSerializer(
                many=True,
                required=False,
                help_text="Only when the refusal is for unmet sponsor obligations.",
            ),
        },
    ),
    description="Refused: each unmet obligation by sponsor (or another named rule).",
)


class DecisionSerializer(serializers.Serializer):
    password = serializers.CharField(
        style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )
    approve = serializers.BooleanField(help_text="true approves the change; false rejects it.")
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Required when rejecting."
    )
    accepts_effective_from = BoundedDateField(
        required=False,
        allow_null=True,
        default=None,
        help_text="With an approval only: the earliest effective date your sponsor accepts, "
        "when earlier than the agreement's lead time after the notice allows. The signature "
        "covers it.",
    )


class DecisionResultSerializer(serializers.Serializer):
    change = serializers.CharField()
    sponsor = serializers.CharField()
    status = serializers.ChoiceField(choices=SponsorObligation.Status.choices)
    signature = SignatureSerializer()


def _with_signatures(obligations) -> list[SponsorObligation]:
    """Attach each obligation's signatures (`record_signatures`) in one query."""
    obligations = list(obligations)
    found = signatures_by_record(SponsorObligation, obligations)
    for obligation in obligations:
        obligation.record_signatures = found[str(obligation.pk)]
    return obligations


def _sign(changes) -> None:
    _with_signatures(
        obligation
        for change in changes
        for name in ("visible_obligations", "own_obligations")
        for obligation in getattr(change, name, [])
    )


def _either(many: bool = False) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name="ChangeRequestOrSlice",
        serializers=[ChangeRequestSerializer, SponsorSliceSerializer],
        resource_type_field_name=None,
        many=many,
    )


@extend_schema_view(
    list=extend_schema(
        summary="Change requests in your scope (a sponsor sees only its own slice)",
        responses={200: _either(many=True)},
    ),
    retrieve=extend_schema(
        summary="One change request (a sponsor sees only its own slice)",
        parameters=[NUMBER],
        responses={200: _either(), 404: ERROR_RESPONSES[404]},
    ),
)
class ChangeRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    lookup_field = "number"
    lookup_value_regex = r"[^/]+"

    filterset_fields = {"status": ["exact"], "category": ["exact"], "risk_level": ["exact"]}

    def _sponsor(self):
        if getattr(self, "request", None) is None:
            return None
        return None if is_cmo_user(self.request.user) else user_sponsor(self.request.user)

    def get_queryset(self):
        user = self.request.user
        sponsor = self._sponsor()
        if sponsor is not None:
            return selectors.sponsor_changes(user=user, sponsor=sponsor).order_by("-id")
        return selectors.change_list(user=user).order_by("-created_at", "-id")

    def get_serializer_class(self):
        if self.action == "create":
            return ChangeCreateSerializer
        if self._sponsor() is not None:
            return SponsorSliceSerializer
        return ChangeRequestSerializer

    def get_object(self):
        change = super().get_object()
        _sign([change])
        return change

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        _sign(page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Draft a change request (CMO staff)",
        request=ChangeCreateSerializer,
        responses={
            201: ChangeRequestSerializer,
            400: ERROR_RESPONSES[400],
            403: ERROR_RESPONSES[403],
            409: CONFLICT,
        },
    )
    def create(self, request):
        if not is_cmo_user(request.user) or not sponsor_ids_for(request.user, "change"):
            raise exceptions.PermissionDenied("Only CMO staff draft change requests.")
        data = ChangeCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        change = services.change_create(by=request.user, **data.validated_data)
        created = self.get_queryset().get(pk=change.pk)
        _sign([created])
        return Response(ChangeRequestSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="The obligations of a change that you may see",
        parameters=[NUMBER],
        responses={200: ObligationSerializer(many=True), 404: ERROR_RESPONSES[404]},
        filters=False,
    )
    @action(
        detail=True, methods=["get"], filter_backends=[StrictQueryParameters], pagination_class=None
    )
    def obligations(self, request, number=None):
        change = self.get_object()
        visible = selectors.change_obligations(change=change, user=request.user)
        sponsor = self._sponsor()
        if sponsor is not None:
            visible = visible.filter(sponsor=sponsor)
        return Response(ObligationSerializer(_with_signatures(visible), many=True).data)

    @extend_schema(
        summary="Make the change effective (CMO QA); 409 lists every unmet obligation",
        parameters=[NUMBER],
        request=MakeEffectiveSerializer,
        responses={
            200: ChangeRequestSerializer,
            400: ERROR_RESPONSES[400],
            403: ERROR_RESPONSES[403],
            404: ERROR_RESPONSES[404],
            409: UNMET_CONFLICT,
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="make-effective",
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def make_effective(self, request, number=None):
        if not is_cmo_user(request.user):
            raise exceptions.PermissionDenied("Only CMO QA makes a change effective.")
        change = self.get_object()
        data = MakeEffectiveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.change_make_effective(
                change=change,
                by=request.user,
                effective_at=data.validated_data["effective_at"],
                reason=data.validated_data["reason"],
            )
        except services.ObligationsUnmet as refusal:
            return Response(
                {
                    "error": refusal.code,
                    "detail": refusal.detail,
                    "unmet_obligations": refusal.unmet,
                },
                status=status.HTTP_409_CONFLICT,
            )
        done = self.get_queryset().get(pk=change.pk)
        _sign([done])
        return Response(ChangeRequestSerializer(done).data)

    @extend_schema(
        summary="Sponsor approver: approve or reject the change for your sponsor, by e-signature",
        parameters=[NUMBER, SPONSOR_CODE],
        request=DecisionSerializer,
        responses={
            200: DecisionResultSerializer,
            400: ERROR_RESPONSES[400],
            404: ERROR_RESPONSES[404],
            409: CONFLICT,
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"obligations/(?P<sponsor_code>[^/.]+)/decision",
        url_name="obligation-decision",
        filter_backends=[StrictQueryParameters],
        pagination_class=None,
    )
    def decision(self, request, number=None, sponsor_code=None):
        change = self.get_object()
        obligation = get_object_or_404(
            selectors.change_obligations(change=change, user=request.user),
            sponsor__code=sponsor_code,
        )
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        signature = services.obligation_decide(
            obligation=obligation, user=request.user, request=request, **data.validated_data
        )
        return Response(
            {
                "change": change.number,
                "sponsor": obligation.sponsor.code,
                "status": obligation.status,
                "signature": SignatureSerializer(signature).data,
            }
        )


def register(router) -> None:
    """Register this app's viewsets on the API router."""
    router.register("change-requests", ChangeRequestViewSet, basename="change-request")


urlpatterns = []
