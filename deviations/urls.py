from django.urls import path

from . import views

app_name = "deviations"

urlpatterns = [
    path("deviations/", views.deviation_list, name="list"),
    path("deviations/new/", views.deviation_create, name="create"),
    path("deviations/<str:number>/", views.deviation_detail, name="detail"),
    path("deviations/<str:number>/investigate/", views.deviation_investigate, name="investigate"),
    path("deviations/<str:number>/severity/", views.deviation_severity, name="severity"),
    path("deviations/<str:number>/close/", views.deviation_close, name="close"),
    path("release/", views.release_queue, name="release-queue"),
    path("release/<str:number>/", views.release_batch, name="release-batch"),
]
