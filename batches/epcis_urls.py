from django.urls import path

from .api_epcis import EpcisLotView, EpcisView

urlpatterns = [
    path("", EpcisView.as_view(), name="epcis-import"),
    path("lots/<str:lot_number>/", EpcisLotView.as_view(), name="epcis-export"),
]
