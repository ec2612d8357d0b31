from django.urls import path

from . import portal

app_name = "portal_documents"

urlpatterns = [
    path("", portal.document_list, name="list"),
    path("training/", portal.training_roster, name="training"),
    path("<str:number>/", portal.document_detail, name="detail"),
    path("<str:number>/v<int:version>/file/", portal.version_file, name="file"),
]
