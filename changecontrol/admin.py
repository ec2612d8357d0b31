"""Admin: change requests change only through their services (pages and API), so they are
read-only here."""

from django.contrib import admin

from .models import ChangeProduct, ChangeRequest, ChangeTask, SponsorObligation


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ChangeProductInline(admin.TabularInline):
    model = ChangeProduct
    fields = ["product", "sponsor", "removed_at", "removed_by", "removed_reason"]
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SponsorObligationInline(ChangeProductInline):
    model = SponsorObligation
    fields = [
        "sponsor",
        "agreement",
        "kind",
        "lead_time_days",
        "status",
        "decided_by",
        "comment",
        "accepts_effective_from",
    ]
    readonly_fields = fields


class ChangeTaskInline(ChangeProductInline):
    model = ChangeTask
    fields = ["description", "owner", "due_date", "completed_at", "completed_by"]
    readonly_fields = fields


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ["number", "title", "category", "status", "risk_level", "effective_at"]
    list_filter = ["status", "category", "risk_level"]
    search_fields = ["number", "title"]
    inlines = [ChangeProductInline, SponsorObligationInline, ChangeTaskInline]


@admin.register(SponsorObligation)
class SponsorObligationAdmin(ReadOnlyAdmin):
    list_display = ["change", "sponsor", "kind", "lead_time_days", "status", "decided_at"]
    list_filter = ["kind", "status", "sponsor"]
    search_fields = ["change__number"]
