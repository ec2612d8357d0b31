"""Electronic signatures (21 CFR 11.50, 11.70, 11.200).

A signature re-checks the signer's password through `authenticate()`, the same path as login, so
failed attempts on either count toward one lockout. It records the meaning, the UTC time, the
printed name as it was at signing, and a hash of the record's content; a seal keyed with
SIGNATURE_SEAL_KEY (not Django's SECRET_KEY) binds all of it to the one record signed, so a
copied signature or a changed record shows as invalid."""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from .errors import KernelError, RuleViolation
from .models import Signature

_SEAL_SALT = "qms.signature.seal"


def record_content(record) -> dict:
    """What a signature on `record` covers: its model, its key and its content."""
    if hasattr(record, "signature_content"):
        content = record.signature_content()
    else:
        content = {
            field.attname: getattr(record, field.attname) for field in record._meta.concrete_fields
        }
    return {"model": record._meta.label_lower, "pk": str(record.pk), "content": content}


def record_content_hash(record) -> str:
    canonical = json.dumps(record_content(record), cls=DjangoJSONEncoder, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _seal_message(sig: Signature) -> str:
    return "\x1f".join(
        [
            f"{sig.content_type.app_label}.{sig.content_type.model}",
            str(sig.object_id),
            str(sig.signer_id),
            sig.printed_name,
            sig.meaning,
            sig.signed_at.astimezone(UTC).isoformat(),
            sig.content_hash,
        ]
    )


def _seal(message: str, secret: str) -> str:
    return salted_hmac(_SEAL_SALT, message, secret=secret, algorithm="sha256").hexdigest()


def printed_name(user) -> str:
    return user.get_full_name().strip() or user.get_username()


def _signing_request(request) -> HttpRequest:
    if request is not None:
        return getattr(request, "_request", request)
    synthetic = HttpRequest()
    synthetic.method = "POST"
    synthetic.path = "/e-signature/"
    synthetic.META = {"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "qms-signature"}
    return synthetic


def signer_verify(*, user, password: str, request=None) -> None:
    """21 CFR 11.200(a): the signer proves identity with the password at each signing. Run this
    before the signing transaction opens, so a failure is counted even though the action is
    refused. A failure counts toward the lockout of the signer at this client address only
    (`signing` marks it for `qms.sessions.LockoutHandler`), never toward the address's limit."""
    http_request = _signing_request(request)
    if not password:
        raise RuleViolation(
            KernelError.SIGNATURE_PASSWORD, "Enter your password to sign (21 CFR 11.200)."
        )
    authenticated = authenticate(
        http_request, username=user.get_username(), password=password, signing=True
    )
    if getattr(http_request, "axes_locked_out", False):
        raise RuleViolation(
            KernelError.SIGNATURE_LOCKED,
            f"Account {user.get_username()} is locked after repeated failed attempts; "
            "try again in 15 minutes.",
        )
    if authenticated is None or authenticated.pk != user.pk:
        raise RuleViolation(
            KernelError.SIGNATURE_PASSWORD,
            f"Signature refused: the password for {user.get_username()} is not correct.",
        )


def signature_apply(*, record, user, meaning: str, sponsor_id: int | None = None) -> Signature:
    """Record a signature on `record`; call inside the domain service's transaction, after
    `signer_verify`."""
    if meaning not in Signature.Meaning.values:
        raise RuleViolation(
            KernelError.SIGNATURE_MEANING, f"Unknown signature meaning {meaning!r}."
        )
    signature = Signature(
        content_type=ContentType.objects.get_for_model(record),
        object_id=str(record.pk),
        sponsor_id=sponsor_id if sponsor_id is not None else getattr(record, "sponsor_id", None),
        signer=user,
        printed_name=printed_name(user),
        meaning=meaning,
        signed_at=timezone.now().replace(microsecond=0),
        content_hash=record_content_hash(record),
    )
    signature.seal = _seal(_seal_message(signature), settings.SIGNATURE_SEAL_KEY)
    signature.save()
    return signature


@dataclass(frozen=True)
class SignatureCheck:
    is_valid: bool
    problem: str = ""

    @property
    def label(self) -> str:
        return "valid" if self.is_valid else "invalid — re-sign required"


def signature_check(signature: Signature, record=None) -> SignatureCheck:
    """Is the signature still what was signed, on this record?"""
    message = _seal_message(signature)
    keys = [settings.SIGNATURE_SEAL_KEY, *settings.SIGNATURE_SEAL_KEY_FALLBACKS]
    if not any(hmac.compare_digest(signature.seal, _seal(message, key)) for key in keys):
        return SignatureCheck(False, "the signature does not belong to this record")
    if record is None:
        record = signature.record
    if record is None:
        return SignatureCheck(False, "the signed record no longer exists")
    if (record._meta.label_lower, str(record.pk)) != (
        f"{signature.content_type.app_label}.{signature.content_type.model}",
        signature.object_id,
    ):
        return SignatureCheck(False, "the signature does not belong to this record")
    if record_content_hash(record) != signature.content_hash:
        return SignatureCheck(False, "the record changed after it was signed")
    return SignatureCheck(True)


def signatures_of(record):
    """The signatures on `record`, oldest first."""
    return Signature.objects.filter(
        content_type=ContentType.objects.get_for_model(record), object_id=str(record.pk)
    ).select_related("content_type")


def signatures_for(record) -> list[tuple[Signature, SignatureCheck]]:
    """The signatures on `record`, oldest first, each with its check."""
    return [(sig, signature_check(sig, record)) for sig in signatures_of(record)]


def signatures_by_record(model, records) -> dict[str, list[Signature]]:
    """The signatures on each of `records` (rows of `model`), oldest first, in one query: a list
    per record's primary key as text."""
    content_type = ContentType.objects.get_for_model(model)
    found: dict[str, list[Signature]] = {str(record.pk): [] for record in records}
    if found:
        for signature in Signature.objects.filter(
            content_type=content_type, object_id__in=list(found)
        ).order_by("signed_at", "id"):
            found[signature.object_id].append(signature)
    return found
