from django.urls import path

from . import portal

app_name = "portal_deviations"

urlpatterns = [
    path("", portal.deviation_list, name="list"),
    path("releases/", portal.release_list, name="releases"),
    path("<str:number>/", portal.deviation_detail, name="detail"),
    path("<str:number>/acknowledge/", portal.deviation_acknowledge, name="acknowledge"),
    path("<str:number>/decide/", portal.deviation_decide, name="decide"),
]
