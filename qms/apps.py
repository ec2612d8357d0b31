"""The kernel app: audit trail, e-signatures, deadlines and notifications."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_audit_triggers(sender, using="default", **kwargs):
    from .audit import install_capture_triggers

    install_capture_triggers(using=using)


class QmsConfig(AppConfig):
    name = "qms"
    verbose_name = "QMS kernel"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from guardian.models import UserObjectPermission

        from .audit import audited

        audited(get_user_model(), sponsor=None, exclude=("password", "last_login"))
        audited(UserObjectPermission, sponsor=None)
        post_migrate.connect(_install_audit_triggers, sender=self, dispatch_uid="qms-audit")
