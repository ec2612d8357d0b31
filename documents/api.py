"""API of controlled documents and training: documents (by number), document versions (created
with a multipart upload), and training records. Reads are scoped like the pages; writes are for
CMO staff and go through the same services (a refused rule answers 409)."""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from deviations.api import SignatureSerializer
from qms.api import ERROR_RESPONSES, ErrorSerializer
from qms.api_fields import AwareDateTimeField
from qms.parsers import BoundedJSONParser
from qms.signatures import signatures_of
from qms.tenancy import is_cmo_user, sponsor_ids_for
from sponsors.selectors import sponsor_list

from . import selectors, services
from .models import Document, DocumentType, DocumentVersion, TrainingRecord

CONFLICT = OpenApiResponse(ErrorSerializer, description="Refused by a business rule (named)")
NUMBER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="Document number.", pattern=r"^[^/]+$"
)
WRITE_RESPONSES = {
    400: ERROR_RESPONSES[400],
    403: ERROR_RESPONSES[403],
    409: CONFLICT,
}


def _cmo_writer(user, what: str) -> None:
    if not is_cmo_user(user) or not (user.is_superuser or sponsor_ids_for(user, "change")):
        raise exceptions.PermissionDenied(f"Only CMO staff {what}.")


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = DocumentVersion
        fields = ["id", "version", "status", "effective_from", "sha256"]


class DocumentSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(
        slug_field="code",
        read_only=True,
        allow_null=True,
        help_text="Null for a site-wide document.",
    )
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    in_force_version = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The version in force now."
    )
    latest_version = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Document
        fields = [
            "number",
            "title",
            "doc_type",
            "sponsor",
            "owner",
            "created_at",
            "in_force_version",
            "latest_version",
        ]


class DocumentDetailSerializer(DocumentSerializer):
    versions = VersionSummarySerializer(source="visible_versions", many=True, read_only=True)

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "versions"]


class DocumentCreateSerializer(serializers.Serializer):
    number = serializers.CharField(max_length=60)
    title = serializers.CharField(max_length=200)
    doc_type = serializers.ChoiceField(choices=DocumentType.choices)
    sponsor = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Sponsor code; empty for a site-wide document.",
    )

    def validate_sponsor(self, value):
        if not value:
            return None
        user = self.context["request"].user
        sponsor = sponsor_list(user=user, action="change").filter(code=value).first()
        if sponsor is None:
            raise serializers.ValidationError(f"Unknown, or not in your sponsor scope: {value}.")
        return sponsor


@extend_schema_view(
    list=extend_schema(summary="Controlled documents in your scope; filter by type and sponsor"),
    retrieve=extend_schema(
        summary="One document with the versions you may see", parameters=[NUMBER]
    ),
)
class DocumentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    lookup_field = "number"
    lookup_value_regex = r"[^/]+"
    filterset_fields = {"doc_type": ["exact"], "sponsor__code": ["exact"]}

    def get_queryset(self):
        return selectors.document_list(user=self.request.user).order_by("number")

    def get_serializer_class(self):
        if self.action == "create":
            return DocumentCreateSerializer
        return DocumentSerializer if self.action == "list" else DocumentDetailSerializer

    def get_object(self):
        document = super().get_object()
        document.visible_versions = list(
            _versions_for(self.request.user).filter(document=document).order_by("version")
        )
        return document

    @extend_schema(
        summary="Create a controlled document (CMO staff)",
        request=DocumentCreateSerializer,
        responses={201: DocumentDetailSerializer, **WRITE_RESPONSES},
    )
    def create(self, request):
        _cmo_writer(request.user, "create documents")
        data = DocumentCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        document = services.document_create(by=request.user, **data.validated_data)
        created = self.get_queryset().get(pk=document.pk)
        created.visible_versions = []
        return Response(DocumentDetailSerializer(created).data, status=status.HTTP_201_CREATED)


def _versions_for(user):
    if is_cmo_user(user):
        return selectors.version_list(user=user)
    return selectors.released_version_list(user=user)


class DocumentVersionSerializer(serializers.ModelSerializer):
    document = serializers.SlugRelatedField(slug_field="number", read_only=True)
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reviewed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    approved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = DocumentVersion
        fields = [
            "id",
            "document",
            "version",
            "status",
            "change_summary",
            "file_name",
            "content_type",
            "file_size",
            "sha256",
            "effective_from",
            "superseded_at",
            "withdrawn_at",
            "held_by_change",
            "author",
            "created_at",
            "submitted_at",
            "reviewed_by",
            "reviewed_at",
            "approved_by",
            "approved_at",
        ]


class DocumentVersionDetailSerializer(DocumentVersionSerializer):
    signatures = SignatureSerializer(source="record_signatures", many=True, read_only=True)

    class Meta(DocumentVersionSerializer.Meta):
        fields = [*DocumentVersionSerializer.Meta.fields, "signatures"]


class VersionCreateSerializer(serializers.Serializer):
    document = serializers.CharField(help_text="Document number.")
    change_summary = serializers.CharField()
    file = serializers.FileField(
        required=False, help_text="PDF, DOCX, XLSX, PNG, JPG, TXT or CSV (multipart upload)."
    )

    def validate_document(self, value):
        user = self.context["request"].user
        document = selectors.document_list(user=user).filter(number=value).first()
        if document is None:
            raise serializers.ValidationError(f"Unknown, or not in your sponsor scope: {value}.")
        return document


class VersionFilterMixin:
    filterset_fields = {
        "document__number": ["exact"],
        "status": ["exact"],
        "document__doc_type": ["exact"],
    }


@extend_schema_view(
    list=extend_schema(summary="Document versions in your scope (sponsor users: approved ones)"),
    retrieve=extend_schema(summary="One document version with its signatures"),
)
class DocumentVersionViewSet(
    VersionFilterMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]

    def get_queryset(self):
        return _versions_for(self.request.user).order_by("document__number", "version")

    def get_serializer_class(self):
        if self.action == "create":
            return VersionCreateSerializer
        if self.action == "list":
            return DocumentVersionSerializer
        return DocumentVersionDetailSerializer

    def get_object(self):
        version = super().get_object()
        version.record_signatures = list(signatures_of(version))
        return version

    @extend_schema(
        summary="Draft the next version of a document, with its file (CMO staff)",
        description="Send multipart/form-data with `file`. The file is refused (409) when empty, "
        "too large, of a type not accepted, or when its content does not match its extension.",
        request={"multipart/form-data": VersionCreateSerializer},
        responses={201: DocumentVersionDetailSerializer, **WRITE_RESPONSES},
    )
    def create(self, request):
        _cmo_writer(request.user, "draft document versions")
        data = VersionCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        version = services.version_create_draft(
            document=data.validated_data["document"],
            change_summary=data.validated_data["change_summary"],
            upload=data.validated_data.get("file"),
            by=request.user,
        )
        created = self.get_queryset().get(pk=version.pk)
        created.record_signatures = []
        return Response(
            DocumentVersionDetailSerializer(created).data, status=status.HTTP_201_CREATED
        )


class TrainingRecordSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    person = serializers.SerializerMethodField()
    document = serializers.CharField(source="version.document.number", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    trainer = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = TrainingRecord
        fields = ["id", "user", "person", "document", "version", "completed_at", "trainer", "note"]

    def get_person(self, record) -> str:
        return record.user.get_full_name() or record.user.get_username()


class TrainingRecordDetailSerializer(TrainingRecordSerializer):
    signatures = SignatureSerializer(source="record_signatures", many=True, read_only=True)

    class Meta(TrainingRecordSerializer.Meta):
        fields = [*TrainingRecordSerializer.Meta.fields, "signatures"]


class TrainingRecordCreateSerializer(serializers.Serializer):
    user = serializers.CharField(help_text="The trainee's username.")
    document = serializers.CharField(help_text="Document number.")
    version = serializers.IntegerField(min_value=1)
    trainee_password = serializers.CharField(
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        help_text="The trainee signs: read and understood.",
    )
    completed_at = AwareDateTimeField(required=False)
    note = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, data):
        user = self.context["request"].user
        trainee = get_user_model().objects.filter(username=data["user"], is_active=True).first()
        if trainee is None:
            raise serializers.ValidationError({"user": f"Unknown user: {data['user']}."})
        version = (
            selectors.version_list(user=user)
            .filter(document__number=data["document"], version=data["version"])
            .first()
        )
        if version is None:
            raise serializers.ValidationError(
                {
                    "version": f"Unknown, or not in your sponsor scope: {data['document']} "
                    f"v{data['version']}."
                }
            )
        data["user"], data["version"] = trainee, version
        del data["document"]
        return data


@extend_schema_view(
    list=extend_schema(
        summary="Training records in your scope; filter by person and document number"
    ),
    retrieve=extend_schema(summary="One training record with the trainee's signature"),
)
class TrainingRecordViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    filterset_fields = {"user__username": ["exact"], "version__document__number": ["exact"]}

    def get_queryset(self):
        return selectors.training_record_list(user=self.request.user).order_by(
            "-completed_at", "-id"
        )

    def get_serializer_class(self):
        if self.action == "create":
            return TrainingRecordCreateSerializer
        if self.action == "list":
            return TrainingRecordSerializer
        return TrainingRecordDetailSerializer

    def get_object(self):
        record = super().get_object()
        record.record_signatures = list(signatures_of(record))
        return record

    @extend_schema(
        summary="Record a person's training on a version, signed with the trainee's password",
        request=TrainingRecordCreateSerializer,
        responses={201: TrainingRecordDetailSerializer, **WRITE_RESPONSES},
    )
    def create(self, request):
        _cmo_writer(request.user, "record training")
        data = TrainingRecordCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        record = services.training_record(
            trainer=request.user, request=request, **data.validated_data
        )
        created = self.get_queryset().get(pk=record.pk)
        created.record_signatures = list(signatures_of(created))
        return Response(
            TrainingRecordDetailSerializer(created).data, status=status.HTTP_201_CREATED
        )


def register(router) -> None:
    """Register this app's viewsets on the API router."""
    router.register("documents", DocumentViewSet, basename="document")
    router.register("document-versions", DocumentVersionViewSet, basename="document-version")
    router.register("training-records", TrainingRecordViewSet, basename="training-record")


urlpatterns = []
