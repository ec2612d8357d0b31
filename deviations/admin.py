"""Admin: the site calendar is edited here; deviations and CAPAs change only through their
services (pages and API), so they are read-only."""

from django.contrib import admin

from .models import Capa, Deviation, SiteHoliday


@admin.register(SiteHoliday)
class SiteHolidayAdmin(admin.ModelAdmin):
    list_display = ["day", "name", "is_working_day"]
    list_filter = ["is_working_day"]
    date_hierarchy = "day"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Deviation)
class DeviationAdmin(ReadOnlyAdmin):
    list_display = ["number", "sponsor", "category", "severity", "status", "discovered_at"]
    list_filter = ["status", "severity", "category", "sponsor"]
    search_fields = ["number", "title"]


@admin.register(Capa)
class CapaAdmin(ReadOnlyAdmin):
    list_display = ["number", "sponsor", "status", "opened_at", "closed_at"]
    list_filter = ["status", "sponsor"]
    search_fields = ["number", "title"]
