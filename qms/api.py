"""REST API kernel: JSON errors, token login, and the audit-event endpoint. Every viewset reads
through `for_user`, exactly like the pages."""

from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox import views as knox_views
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView, set_rollback

from .api_query import UnknownQueryParameter
from .errors import RuleViolation
from .models import AuditEvent
from .tenancy import is_cmo_user


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()


ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated"),
    403: OpenApiResponse(ErrorSerializer, description="Not permitted"),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or not in your sponsor scope"),
}

CONFLICT_DETAIL = (
    "The record could not be saved: it conflicts with another record "
    "(for example a number already used)."
)
DATA_DETAIL = "A value is too long or out of range for its field."


def add_error_responses(result, generator, request, public):
    """drf-spectacular hook: document the JSON error body (in each JSON media type the operation
    answers in) on every operation, and the refusals that only some operations give: 409 (a
    business rule or a conflicting record) wherever a request changes something, 415 (a media
    type the endpoint does not parse) wherever it takes a body, 429 wherever the view is
    throttled."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        "required": ["error", "detail"],
    }
    error_schema = {"schema": {"$ref": "#/components/schemas/Error"}}
    throttled = set()
    for path, _regex, method, callback in getattr(generator, "endpoints", None) or ():
        view = generator.create_view(callback, method)
        if view.get_throttles():
            throttled.add((generator.coerce_path(path, method, view), method.lower()))
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            answered_in = sorted(
                {
                    media_type
                    for code, response in operation["responses"].items()
                    if code.startswith("2")
                    for media_type in response.get("content", {})
                    if media_type.endswith(("/json", "+json"))
                }
            )
            error_body = {media_type: error_schema for media_type in answered_in} or {
                "application/json": error_schema
            }
            refusals = [
                ("400", "Invalid input"),
                ("401", "Not authenticated"),
                ("403", "Not permitted"),
                ("404", "Not found, or not in your sponsor scope"),
            ]
            if method in ("post", "put", "patch", "delete"):
                refusals.append(("409", "Refused by a business rule, or conflicts with a record"))
            if "requestBody" in operation:
                refusals.append(("415", "Unsupported media type"))
            if (path, method) in throttled:
                refusals.append(("429", "Too many requests; retry after `Retry-After` seconds"))
            for code, description in refusals:
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
    """Every API error is `{"error": code, "detail": text}`; business rules are 409. A database
    refusal (a unique or check constraint) is a 409 too, without the database's message, which
    names constraints and values; a value the database cannot hold is a 400. A lost connection
    stays a server error."""
    if isinstance(exc, RuleViolation):
        return Response({"error": exc.code, "detail": exc.detail}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):
        set_rollback()
        return Response(
            {"error": "invalid", "detail": DATA_DETAIL}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError | InterfaceError):
        set_rollback()
        return Response(
            {"error": "conflict", "detail": CONFLICT_DETAIL}, status=status.HTTP_409_CONFLICT
        )
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
    username = serializers.CharField(max_length=150)
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


RevokedSerializer = inline_serializer("Revoked", {"revoked": serializers.IntegerField()})


class LogoutView(knox_views.LogoutView):
    """Revoke the API token this request carries."""

    permission_classes = [IsAuthenticated]

    def get_authenticate_header(self, request):
        return "Token"

    @extend_schema(
        request=None,
        responses={200: RevokedSerializer, 401: ERROR_RESPONSES[401]},
        description="Revoke the token sent with this request; it no longer authenticates.",
    )
    def post(self, request, format=None):
        super().post(request, format=format)
        return Response({"revoked": 1})


class LogoutAllView(knox_views.LogoutAllView):
    """Revoke every API token of the caller, signed in with a token or in the browser."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def get_authenticate_header(self, request):
        return "Token"

    @extend_schema(
        request=None,
        responses={200: RevokedSerializer, 401: ERROR_RESPONSES[401]},
        description="Revoke every API token of the caller, the one in use included.",
    )
    def post(self, request, format=None):
        revoked = AuthToken.objects.filter(user=request.user).count()
        super().post(request, format=format)
        return Response({"revoked": revoked})


class AuditEventSerializer(serializers.ModelSerializer):
    # Not read-only so that the schema may document them as optional: a sponsor user's events
    # (`SponsorAuditEventSerializer`) leave them out. The endpoint is read-only all the same.
    seq = serializers.IntegerField(required=False, help_text="CMO users only.")
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    prev_hash = serializers.CharField(required=False, help_text="CMO users only.")
    hash = serializers.CharField(required=False, help_text="CMO users only.")

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


class SponsorAuditEventSerializer(AuditEventSerializer):
    """A sponsor user's view of an event: no global sequence number and no chain hashes, which
    would tell how many events of other sponsors lie between theirs."""

    class Meta(AuditEventSerializer.Meta):
        fields = [
            name
            for name in AuditEventSerializer.Meta.fields
            if name not in {"seq", "prev_hash", "hash"}
        ]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail of the sponsors in your scope, oldest first; filter by record. CMO users
    see each event's sequence number and chain hashes and open one event by `seq`; sponsor users
    see neither, may not filter by `seq`, and have no single-event route (every `seq` is a 404
    for them): they find a record's events by `model` and `object_id`."""

    lookup_field = "seq"
    serializer_class = AuditEventSerializer

    @property
    def is_cmo_caller(self) -> bool:
        return is_cmo_user(self.request.user)

    @property
    def filterset_fields(self):
        fields = {"model": ["exact"], "object_id": ["exact"]}
        if self.is_cmo_caller:
            fields["seq"] = ["gt", "lte"]
        return fields

    def get_serializer_class(self):
        return AuditEventSerializer if self.is_cmo_caller else SponsorAuditEventSerializer

    def get_queryset(self):
        events = AuditEvent.objects.for_user(self.request.user)
        if self.action == "retrieve" and not self.is_cmo_caller:
            events = events.none()
        return events.select_related("sponsor").order_by("seq")
