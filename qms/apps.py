"""The kernel app: audit trail, e-signatures, deadlines and notifications."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save, pre_save


def _install_audit_triggers(sender, using="default", **kwargs):
    from .audit import install_capture_triggers

    install_capture_triggers(using=using)


class QmsConfig(AppConfig):
    name = "qms"
    verbose_name = "QMS kernel"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from guardian.models import UserObjectPermission

        from . import api_fields
        from .audit import audited
        from .sessions import user_credentials_track, user_sessions_end

        user_model = get_user_model()
        audited(user_model, sponsor=None, exclude=("password", "last_login"))
        audited(UserObjectPermission, sponsor=None)
        post_migrate.connect(_install_audit_triggers, sender=self, dispatch_uid="qms-audit")
        pre_save.connect(user_credentials_track, sender=user_model, dispatch_uid="qms-credentials")
        post_save.connect(user_sessions_end, sender=user_model, dispatch_uid="qms-sessions-end")
        api_fields.install()
