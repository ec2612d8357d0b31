"""API for sponsors, products and quality agreements: read-only, sponsor-scoped."""

from rest_framework import serializers, viewsets

from .models import ChangeRule, Product, QualityAgreement, Sponsor


class SponsorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Sponsor
        fields = ["id", "code", "name", "contact_email", "is_active"]


class ProductSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Product
        fields = ["id", "sponsor", "code", "name", "regulatory_basis", "is_active"]


class ChangeRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChangeRule
        fields = ["category", "obligation", "lead_time_days"]


class QualityAgreementSerializer(serializers.ModelSerializer):
    sponsor = serializers.SlugRelatedField(slug_field="code", read_only=True)
    change_rules = ChangeRuleSerializer(many=True, read_only=True)

    class Meta:
        model = QualityAgreement
        fields = [
            "id",
            "sponsor",
            "version",
            "title",
            "reference",
            "status",
            "effective_from",
            "minor_deviation_notice_hours",
            "major_deviation_notice_hours",
            "critical_deviation_notice_hours",
            "oos_notice_hours",
            "investigation_summary_business_days",
            "capa_notice_hours",
            "sponsor_closes_minor",
            "sponsor_closes_major",
            "sponsor_closes_critical",
            "release_authority",
            "evidence_handoff_hours",
            "audit_notice_days",
            "change_rules",
        ]


class SponsorViewSet(viewsets.ReadOnlyModelViewSet):
    """The sponsors in your scope, by code."""

    serializer_class = SponsorSerializer
    lookup_field = "code"
    filterset_fields = ["is_active"]

    def get_queryset(self):
        return Sponsor.objects.for_user(self.request.user).order_by("code")


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ProductSerializer
    filterset_fields = {
        "sponsor__code": ["exact"],
        "regulatory_basis": ["exact"],
        "is_active": ["exact"],
    }

    def get_queryset(self):
        return Product.objects.for_user(self.request.user).select_related("sponsor")


class QualityAgreementViewSet(viewsets.ReadOnlyModelViewSet):
    """Every version of the agreements in your scope, with their change rules."""

    serializer_class = QualityAgreementSerializer
    filterset_fields = {"sponsor__code": ["exact"], "status": ["exact"]}

    def get_queryset(self):
        return (
            QualityAgreement.objects.for_user(self.request.user)
            .select_related("sponsor")
            .prefetch_related("change_rules")
        )
