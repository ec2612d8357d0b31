"""Admin screens for the site's materials, equipment and customers. Lots, batches and their
evidence change only through the services (pages and API), so they are read-only here."""

from django.contrib import admin

from .models import Batch, CleaningRecord, Customer, Equipment, Lot, MasterBatchRecord, Material


@admin.register(Material)
class MaterialAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "unit", "product", "gtin"]
    list_filter = ["kind", "sponsor"]
    search_fields = ["code", "name", "gtin"]
    autocomplete_fields = ["product"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Equipment)
class EquipmentAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "location", "qualified_until", "status"]
    list_filter = ["status", "kind"]
    search_fields = ["code", "name"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "country", "gln"]
    search_fields = ["code", "name", "gln"]

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Lot)
class LotAdmin(ReadOnlyAdmin):
    list_display = ["lot_number", "material", "sponsor", "status", "quantity", "unit"]
    list_filter = ["status", "sponsor", "material__kind"]
    search_fields = ["lot_number", "supplier_lot_number"]


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["number", "product", "sponsor", "status", "started_at", "completed_at"]
    list_filter = ["status", "sponsor"]
    search_fields = ["number"]


@admin.register(MasterBatchRecord)
class MasterBatchRecordAdmin(ReadOnlyAdmin):
    list_display = ["product", "version", "status", "effective_from"]
    list_filter = ["status", "sponsor"]


@admin.register(CleaningRecord)
class CleaningRecordAdmin(ReadOnlyAdmin):
    list_display = ["equipment", "method", "performed_by", "performed_at", "verified_by"]
    list_filter = ["equipment"]
