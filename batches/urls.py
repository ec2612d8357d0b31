from django.urls import path

from . import views

app_name = "batches"

urlpatterns = [
    path("lots/", views.lot_list, name="lots"),
    path("lots/<str:lot_number>/", views.lot_detail, name="lot"),
    path("lots/<str:lot_number>/recall/", views.recall, name="recall"),
    path("lots/<str:lot_number>/recall.csv", views.recall_csv, name="recall-csv"),
    path("lots/<str:lot_number>/recall.pdf", views.recall_pdf, name="recall-pdf"),
    path("batches/", views.batch_list, name="batches"),
    path("batches/<str:number>/", views.batch_detail, name="batch"),
    path("mbrs/<int:pk>/", views.mbr_detail, name="mbr"),
    path("equipment/", views.equipment_list, name="equipment-list"),
    path("equipment/<str:code>/", views.equipment_detail, name="equipment"),
]
