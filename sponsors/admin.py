"""Admin screens: sponsors, products, quality agreements (with their change rules), user
organisations and access grants. Grants go through the services so permissions follow them."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.utils.html import format_html

from qms.audit import audit_context
from qms.errors import RuleViolation

from . import services
from .models import (
    AccessGrant,
    ChangeCategory,
    ChangeRule,
    Product,
    QualityAgreement,
    Sponsor,
    UserProfile,
)


class ProductInline(admin.TabularInline):
    model = Product
    extra = 0
    fields = ["code", "name", "regulatory_basis", "is_active"]


@admin.register(Sponsor)
class SponsorAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "contact_email", "is_active"]
    search_fields = ["code", "name"]
    inlines = [ProductInline]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "sponsor", "regulatory_basis", "is_active"]
    list_filter = ["sponsor", "regulatory_basis", "is_active"]
    search_fields = ["code", "name"]

    def has_delete_permission(self, request, obj=None):
        return False


class ChangeRuleInline(admin.TabularInline):
    model = ChangeRule
    fields = ["category", "obligation", "lead_time_days"]
    extra = 0
    max_num = len(ChangeCategory.values)
    can_delete = False

    def get_extra(self, request, obj=None, **kwargs):
        return len(ChangeCategory.values) if obj is None else 0


class QualityAgreementForm(forms.ModelForm):
    reason = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Why this change is made. Required once the version is effective or superseded.",
    )

    class Meta:
        model = QualityAgreement
        fields = ["sponsor", *services.AGREEMENT_TERMS]

    def clean(self):
        cleaned = super().clean()
        if (
            self.instance.pk
            and not self.instance.is_draft
            and not cleaned.get("reason", "").strip()
        ):
            raise ValidationError(
                f"{self.instance} is {self.instance.status}: a reason for the change is required."
            )
        return cleaned


@admin.register(QualityAgreement)
class QualityAgreementAdmin(admin.ModelAdmin):
    form = QualityAgreementForm
    inlines = [ChangeRuleInline]
    list_display = ["sponsor", "version", "status", "effective_from", "release_authority"]
    list_filter = ["sponsor", "status", "release_authority"]
    readonly_fields = ["version", "status", "effective_from", "approve_link"]

    @admin.display(description="Approval")
    def approve_link(self, obj):
        if obj is None or obj.pk is None:
            return "Save the draft first; it is approved by e-signature on its page."
        return format_html(
            '<a href="{}">Open the agreement page to sign</a>', obj.get_absolute_url()
        )

    def has_delete_permission(self, request, obj=None):
        return obj is not None and obj.is_draft

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        reason = request.POST.get("reason", "").strip() if request.method == "POST" else ""
        with audit_context(actor=request.user, reason=reason or None):
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change:
            latest = QualityAgreement.objects.filter(sponsor=obj.sponsor).aggregate(
                v=Max("version")
            )
            obj.version = (latest["v"] or 0) + 1
        super().save_model(request, obj, form, change)


class AccessGrantForm(forms.ModelForm):
    class Meta:
        model = AccessGrant
        fields = ["user", "sponsor", "role", "starts_at", "expires_at", "reason"]

    def clean(self):
        cleaned = super().clean()
        if all(cleaned.get(name) for name in ("user", "sponsor", "role")):
            try:
                services.access_grant_check(
                    user=cleaned["user"],
                    sponsor=cleaned["sponsor"],
                    role=cleaned["role"],
                    expires_at=cleaned.get("expires_at"),
                )
            except RuleViolation as error:
                raise ValidationError(error.detail) from error
        return cleaned


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    form = AccessGrantForm
    list_display = [
        "user",
        "sponsor",
        "role",
        "starts_at",
        "expires_at",
        "revoked_at",
        "granted_by",
    ]
    list_filter = ["sponsor", "role"]
    search_fields = ["user__username", "user__last_name"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        grant = services.access_grant_create(
            user=obj.user,
            sponsor=obj.sponsor,
            role=obj.role,
            by=request.user,
            starts_at=obj.starts_at,
            expires_at=obj.expires_at,
            reason=obj.reason,
        )
        obj.pk = grant.pk
        obj._state.adding = False

    @admin.action(description="Revoke the selected grants")
    def revoke(self, request, queryset):
        for grant in queryset:
            try:
                services.access_grant_revoke(
                    grant=grant, by=request.user, reason="revoked in admin"
                )
            except RuleViolation as error:
                self.message_user(request, error.detail, messages.WARNING)


class UserProfileInline(admin.StackedInline):
    model = UserProfile
    can_delete = False
    fk_name = "user"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class QmsUserAdmin(UserAdmin):
    inlines = [UserProfileInline]
    list_display = ["username", "first_name", "last_name", "email", "organisation", "is_active"]

    @admin.display(description="Organisation")
    def organisation(self, obj):
        profile = getattr(obj, "profile", None)
        return profile.sponsor.code if profile and profile.sponsor_id else "CMO"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("profile__sponsor")


admin.site.site_header = "QMS administration"
admin.site.index_title = "Sponsors, agreements, users and roles"
