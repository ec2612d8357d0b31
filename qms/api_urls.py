from django.urls import include, path
from rest_framework.routers import DefaultRouter

from batches.api import (
    BatchViewSet,
    EquipmentViewSet,
    LotViewSet,
    MasterBatchRecordViewSet,
    MaterialViewSet,
    ShipmentViewSet,
)
from changecontrol import api as changecontrol_api
from deviations.api import (
    BatchDispositionView,
    CapaViewSet,
    DeviationViewSet,
    NotificationViewSet,
)
from documents import api as documents_api
from sponsors.api import ProductViewSet, QualityAgreementViewSet, SponsorViewSet

from .api import AuditEventViewSet, LogoutAllView, LogoutView, TokenView

router = DefaultRouter()
router.register("sponsors", SponsorViewSet, basename="sponsor")
router.register("products", ProductViewSet, basename="product")
router.register("quality-agreements", QualityAgreementViewSet, basename="quality-agreement")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("materials", MaterialViewSet, basename="material")
router.register("lots", LotViewSet, basename="lot")
router.register("batches", BatchViewSet, basename="batch")
router.register("master-batch-records", MasterBatchRecordViewSet, basename="master-batch-record")
router.register("equipment", EquipmentViewSet, basename="equipment")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register("deviations", DeviationViewSet, basename="deviation")
router.register("capas", CapaViewSet, basename="capa")
router.register("notifications", NotificationViewSet, basename="notification")
documents_api.register(router)
changecontrol_api.register(router)

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("auth/logout/", LogoutView.as_view(), name="logout"),
    path("auth/logoutall/", LogoutAllView.as_view(), name="logoutall"),
    path("epcis/", include("batches.epcis_urls")),
    path(
        "batches/<str:number>/disposition/",
        BatchDispositionView.as_view(),
        name="batch-disposition",
    ),
    *documents_api.urlpatterns,
    *changecontrol_api.urlpatterns,
    path("", include(router.urls)),
]
