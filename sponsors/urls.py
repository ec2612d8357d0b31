from django.urls import path

from . import views

app_name = "sponsors"

urlpatterns = [
    path("sponsors/<slug:code>/", views.sponsor_detail, name="detail"),
    path(
        "sponsors/<slug:code>/agreements/<int:version>/",
        views.agreement_detail,
        name="agreement",
    ),
    path(
        "sponsors/<slug:code>/agreements/<int:version>/approve/",
        views.agreement_approve,
        name="agreement-approve",
    ),
    path("products/", views.product_list, name="products"),
    path("products/<int:pk>/", views.product_detail, name="product"),
]
