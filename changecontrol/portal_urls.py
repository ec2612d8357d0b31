from django.urls import path

from . import portal

app_name = "portal_changecontrol"

urlpatterns = [
    path("", portal.change_list, name="list"),
    path("<str:number>/", portal.change_detail, name="detail"),
    path("<str:number>/decide/", portal.change_decide, name="decide"),
]
