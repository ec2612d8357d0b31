"""Read-only admin views of the kernel records: nothing here may alter the audit trail or a
signature."""

from django.contrib import admin
from knox.admin import AuthTokenAdmin as KnoxAuthTokenAdmin
from knox.models import AuthToken

from .models import AuditEvent, Deadline, Notification, Signature


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "occurred_at",
        "actor_username",
        "model",
        "object_id",
        "action",
        "reason",
    ]
    list_filter = ["action", "model"]
    search_fields = ["object_id", "actor_username", "reason"]


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    list_display = ["signed_at", "printed_name", "meaning", "content_type", "object_id", "sponsor"]
    list_filter = ["meaning", "sponsor"]


@admin.register(Deadline)
class DeadlineAdmin(ReadOnlyAdmin):
    list_display = ["key", "sponsor", "title", "due_at", "status", "notified_at"]
    list_filter = ["status", "sponsor", "kind"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "sponsor", "recipient", "email", "subject", "emailed_at"]
    list_filter = ["sponsor"]


admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(KnoxAuthTokenAdmin):
    """API tokens: listed by user and expiry (only a digest is stored), revoked by deleting."""

    list_display = ["token_key", "user", "created", "expiry"]
    list_filter = ["expiry"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request, queryset):
        revoked, _ = queryset.delete()
        self.message_user(request, f"{revoked} token(s) revoked.")
