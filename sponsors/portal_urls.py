from django.urls import path

from batches import portal as batches_portal

from . import portal

app_name = "portal"

urlpatterns = [
    path("", portal.home, name="home"),
    path("products/<int:pk>/", portal.product_detail, name="product"),
    path("agreements/<int:version>/", portal.agreement_detail, name="agreement"),
    path("batches/", batches_portal.batch_list, name="batches"),
    path("batches/<str:number>/", batches_portal.batch_detail, name="batch"),
    path("lots/<str:lot_number>/", batches_portal.lot_detail, name="lot"),
    path("lots/<str:lot_number>/recall/", batches_portal.recall, name="recall"),
    path("lots/<str:lot_number>/recall.csv", batches_portal.recall_csv, name="recall-csv"),
    path("lots/<str:lot_number>/recall.pdf", batches_portal.recall_pdf, name="recall-pdf"),
]
