from django.urls import path

from . import portal

app_name = "portal"

urlpatterns = [
    path("", portal.home, name="home"),
    path("products/<int:pk>/", portal.product_detail, name="product"),
    path("agreements/<int:version>/", portal.agreement_detail, name="agreement"),
]
