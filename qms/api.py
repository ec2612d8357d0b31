"""REST API kernel: JSON errors, token login, and the audit-event endpoint. Every viewset reads
through `for_user`, exactly like the pages."""

from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from .api_query import UnknownQueryParameter
from .errors import RuleViolation
from .models import AuditEvent


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()


ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated"),
    403: OpenApiResponse(ErrorSerializer, description="Not permitted"),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or not in your sponsor scope"),
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular hook: document the JSON error body on every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        "required": ["error", "detail"],
    }
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for code, description in (
                ("400", "Invalid input"),
                ("401", "Not authenticated"),
                ("403", "Not permitted"),
                ("404", "Not found, or not in your sponsor scope"),
            ):
                operation["responses"].setdefault(
                    code, {"description": description, "content": error_body}
                )
    return result


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
    exceptions.ValidationError: "invalid",
    UnknownQueryParameter: "unknown_query_parameter",
}


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(
            f"{key}: {_flatten(value)}" if key != "non_field_errors" else _flatten(value)
            for key, value in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc, context):
    """Every API error is `{"error": code, "detail": text}`; business rules are 409."""
    if isinstance(exc, RuleViolation):
        return Response({"error": exc.code, "detail": exc.detail}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found, or not in your sponsor scope.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if not isinstance(exc, exceptions.APIException):
        return None
    code = next((name for cls, name in _CODES.items() if isinstance(exc, cls)), "error")
    body = {"error": code, "detail": _flatten(exc.detail)}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["fields"] = exc.detail
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    return Response(body, status=exc.status_code, headers=headers)


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenThrottle(AnonRateThrottle):
    rate = "30/minute"


class TokenView(APIView):
    """Exchange a username and password for an API token (hashed at rest, expiring)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenThrottle]

    def get_authenticate_header(self, request):
        return "Token"

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: inline_serializer(
                "TokenResponse",
                {"token": serializers.CharField(), "expiry": serializers.DateTimeField()},
            ),
            400: ERROR_RESPONSES[400],
            401: ERROR_RESPONSES[401],
            403: ERROR_RESPONSES[403],
        },
        auth=[],
    )
    def post(self, request):
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if getattr(request._request, "axes_locked_out", False):
            raise exceptions.PermissionDenied(
                "This account is locked after 5 failed attempts; try again in 15 minutes."
            )
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Unable to log in with these credentials.")
        instance, token = AuthToken.objects.create(user)
        return Response({"token": token, "expiry": instance.expiry})


class AuditEventSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "occurred_at",
            "actor_username",
            "model",
            "object_id",
            "action",
            "changes",
            "reason",
            "sponsor",
            "prev_hash",
            "hash",
        ]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail of the sponsors in your scope, oldest first; filter by record."""

    lookup_field = "seq"
    serializer_class = AuditEventSerializer
    filterset_fields = {"model": ["exact"], "object_id": ["exact"], "seq": ["gt", "lte"]}

    def get_queryset(self):
        return (
            AuditEvent.objects.for_user(self.request.user).select_related("sponsor").order_by("seq")
        )
