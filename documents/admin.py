"""Admin: controlled documents are read here; their versions, requirements and training records
change only through the services (pages and API), so they are read-only. A document's title and
owner may be corrected (the audit trail records it)."""

from django.contrib import admin

from .models import BatchDocument, Document, DocumentVersion, TrainingRecord, TrainingRequirement


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class VersionInline(admin.TabularInline):
    model = DocumentVersion
    fields = ["version", "status", "effective_from", "file_name", "sha256", "held_by_change"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RequirementInline(admin.TabularInline):
    model = TrainingRequirement
    fields = ["role", "user", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["number", "title", "doc_type", "sponsor", "owner"]
    list_filter = ["doc_type", "sponsor"]
    search_fields = ["number", "title"]
    readonly_fields = ["number", "doc_type", "sponsor", "created_at"]
    fields = ["number", "title", "doc_type", "sponsor", "owner", "created_at"]
    inlines = [VersionInline, RequirementInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DocumentVersion)
class DocumentVersionAdmin(ReadOnlyAdmin):
    list_display = ["document", "version", "status", "effective_from", "held_by_change", "sha256"]
    list_filter = ["status", "held_by_change", "document__doc_type"]
    search_fields = ["document__number", "document__title", "sha256"]


@admin.register(TrainingRequirement)
class TrainingRequirementAdmin(ReadOnlyAdmin):
    list_display = ["document", "role", "user", "created_at"]
    list_filter = ["role"]
    search_fields = ["document__number", "user__username"]


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ReadOnlyAdmin):
    list_display = ["user", "version", "completed_at", "trainer"]
    search_fields = ["user__username", "version__document__number"]
    date_hierarchy = "completed_at"


@admin.register(BatchDocument)
class BatchDocumentAdmin(ReadOnlyAdmin):
    list_display = ["batch", "version", "sponsor"]
    search_fields = ["batch__number", "version__document__number"]
