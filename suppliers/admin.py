"""Admin screen for suppliers."""

from django.contrib import admin

from .models import Supplier


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "country", "status"]
    list_filter = ["status"]
    search_fields = ["code", "name"]

    def has_delete_permission(self, request, obj=None):
        return False
