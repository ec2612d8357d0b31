"""Who stays signed in: a password change or a deactivation ends the user's API tokens and web
sessions, and the login lockout (21 CFR 11.300(d)) counts failures per account and address, with
a stricter limit per address against password spraying."""

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessFailureLog
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.utils import timezone

SIGNING_PATH = "e-signature"


def _credentials_changed(instance) -> bool:
    previous = (
        type(instance)._default_manager.filter(pk=instance.pk).values("password", "is_active")
    )
    row = previous.first()
    return row is not None and (
        row["password"] != instance.password or (row["is_active"] and not instance.is_active)
    )


def user_credentials_track(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """pre_save: note whether this save changes the password or deactivates the user."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    instance._qms_end_sessions = _credentials_changed(instance)


def user_sessions_end(sender, instance, raw=False, **kwargs) -> None:
    """post_save: after a password change or a deactivation, every API token and every web
    session of the user ends (21 CFR 11.300(b): credentials that change or are withdrawn stop
    working everywhere at once)."""
    if raw or not instance.__dict__.pop("_qms_end_sessions", False):
        return
    from knox.models import AuthToken

    AuthToken.objects.filter(user_id=instance.pk).delete()
    user_pk = str(instance.pk)
    ended = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get(SESSION_KEY)) == user_pk
    ]
    Session.objects.filter(session_key__in=ended).delete()


def is_signing(credentials) -> bool:
    return bool(credentials and credentials.get("signing"))


class LockoutHandler(AxesDatabaseHandler):
    """Failures lock the pair (username, client address) after AXES_FAILURE_LIMIT, so a stranger
    elsewhere cannot lock a named account; an address with AXES_ADDRESS_FAILURE_LIMIT failed
    logins on any usernames within the cool-off is locked too. A failed e-signature
    (`signer_verify`, credentials marked `signing`) counts toward the signer's own pair only,
    never toward the address limit, and a signer is not refused for other users' failures."""

    def address_failures(self, request) -> int:
        return (
            AccessFailureLog.objects.filter(
                ip_address=request.axes_ip_address,
                attempt_time__gte=get_cool_off_threshold(request),
            )
            .exclude(path_info=SIGNING_PATH)
            .count()
        )

    def is_address_locked(self, request, credentials=None) -> bool:
        if is_signing(credentials):
            return False
        return self.address_failures(request) >= settings.AXES_ADDRESS_FAILURE_LIMIT

    def is_locked(self, request, credentials=None) -> bool:
        return super().is_locked(request, credentials) or self.is_address_locked(
            request, credentials
        )

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None:
            return super().user_login_failed(sender, credentials, request, **kwargs)
        path_info = request.axes_path_info
        if is_signing(credentials):
            request.axes_path_info = SIGNING_PATH
        try:
            super().user_login_failed(sender, credentials, request, **kwargs)
        finally:
            request.axes_path_info = path_info
        if not request.axes_locked_out and self.is_address_locked(request, credentials):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send(
                "axes",
                request=request,
                username=credentials.get("username"),
                ip_address=request.axes_ip_address,
            )
