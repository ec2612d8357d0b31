"""Safe retries of API writes. A write sent with an `Idempotency-Key` header is done at most
once: a retry by the same user with the same key, method, path and body answers what the first
request answered (status and body) and writes nothing; the same key on a different request is
refused (422). The key is claimed in the write's own transaction, so a duplicate that arrives
while the first is running waits for it. Only a success is kept, for 24 hours; a refused or
invalid request keeps nothing, and its retry is judged afresh."""

import json
from datetime import timedelta
from functools import wraps

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import salted_hmac
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .api import ErrorSerializer
from .errors import RuleViolation
from .models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LIFETIME = timedelta(hours=24)
KEY_MAX_LENGTH = 255
KEY_REUSED = "idempotency_key_reused"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A unique value per intended write (a UUID). A retry with the same key, method, "
    "path and body answers the first success again (header `Idempotent-Replayed: true`) and "
    "writes nothing; the same key on a different request is refused with 422. Kept 24 hours.",
)
KEY_REUSED_RESPONSE = OpenApiResponse(
    ErrorSerializer, description="The Idempotency-Key was already used for a different request"
)

# What the API exception handler answers; anything else is an error that rolls the write back.
_ANSWERED = (RuleViolation, exceptions.APIException, Http404, DjangoPermissionDenied)


def _checked_key(raw: str) -> str:
    key = raw.strip()
    if not key or len(key) > KEY_MAX_LENGTH or not key.isprintable():
        raise exceptions.ValidationError(
            {HEADER: [f"Send 1 to {KEY_MAX_LENGTH} printable characters, e.g. a UUID."]}
        )
    return key


def request_fingerprint(request) -> str:
    """A keyed hash of the method, path and body: equal for a retry, and not reversible to the
    body (which may hold a signing password) without the server key."""
    data = request.data
    if hasattr(data, "lists"):
        data = dict(data.lists())
    body = json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, default=str)
    message = "\n".join([request.method, request.path, body])
    return salted_hmac("qms.idempotency", message, algorithm="sha256").hexdigest()


def _replay(record: IdempotencyKey, request, fingerprint: str) -> Response:
    if (record.method, record.path, record.request_hash) != (
        request.method,
        request.path,
        fingerprint,
    ):
        same_route = (record.method, record.path) == (request.method, request.path)
        used_for = "with a different body" if same_route else f"for {record.method} {record.path}"
        return Response(
            {
                "error": KEY_REUSED,
                "detail": f"{HEADER} {record.key} was already used {used_for}; send a new key "
                "for a new request.",
            },
            status=422,
        )
    body = json.loads(record.response_body) if record.response_body else None
    return Response(body, status=record.response_status, headers={REPLAYED_HEADER: "true"})


def _claim(request, key: str, fingerprint: str) -> IdempotencyKey | Response:
    """Insert the key, or answer from the request that holds it. A concurrent request with the
    same key blocks on the unique index until the first one commits or rolls back."""
    mine = IdempotencyKey.objects.filter(user=request.user, key=key)
    mine.filter(created_at__lt=timezone.now() - KEY_LIFETIME).delete()
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    user=request.user,
                    key=key,
                    method=request.method,
                    path=request.path,
                    request_hash=fingerprint,
                )
        except IntegrityError:
            held = mine.first()
            if held is not None:
                return _replay(held, request, fingerprint)
    raise RuleViolation(KEY_REUSED, f"{HEADER} {key} is in use by another request; retry.")


def _rendered(response: Response) -> str:
    if response.data is None:
        return ""
    return JSONRenderer().render(response.data).decode("utf-8")


def idempotent(handler):
    """Make a DRF write handler (`def post(self, request, ...)`) safe to retry with an
    `Idempotency-Key` header; without the header it runs as it is. The handler runs in one
    transaction with the key's claim: a success is stored with the key, a refusal (409, 400,
    404) keeps nothing but what the handler itself committed (a failed signature attempt
    still counts toward the lockout), and an unexpected error rolls everything back."""

    @wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        raw = request.headers.get(HEADER)
        if raw is None:
            return handler(view, request, *args, **kwargs)
        key = _checked_key(raw)
        fingerprint = request_fingerprint(request)
        with transaction.atomic():
            claim = _claim(request, key, fingerprint)
            if isinstance(claim, Response):
                return claim
            try:
                response = handler(view, request, *args, **kwargs)
            except _ANSWERED as error:
                response = view.handle_exception(error)
            if 200 <= response.status_code < 300:
                claim.response_status = response.status_code
                claim.response_body = _rendered(response)
                claim.save(update_fields=["response_status", "response_body"])
            else:
                claim.delete()
        return response

    return wrapper


def idempotency_keys_purge(*, now=None) -> int:
    """Forget keys past their lifetime; returns how many."""
    cutoff = (now or timezone.now()) - KEY_LIFETIME
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
