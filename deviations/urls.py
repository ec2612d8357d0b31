from django.urls import path

from . import capa_views, views

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
    path("capas/", capa_views.capa_list, name="capa-list"),
    path("capas/new/", capa_views.capa_create, name="capa-create"),
    path("capas/<str:number>/", capa_views.capa_detail, name="capa-detail"),
    path("capas/<str:number>/edit/", capa_views.capa_edit, name="capa-edit"),
    path("capas/<str:number>/actions/", capa_views.capa_action_add, name="capa-action-add"),
    path(
        "capas/<str:number>/actions/<int:sequence>/edit/",
        capa_views.capa_action_edit,
        name="capa-action-edit",
    ),
    path(
        "capas/<str:number>/actions/<int:sequence>/complete/",
        capa_views.capa_action_complete,
        name="capa-action-complete",
    ),
    path(
        "capas/<str:number>/effectiveness-check/",
        capa_views.capa_effectiveness_start,
        name="capa-effectiveness-start",
    ),
    path(
        "capas/<str:number>/effectiveness/",
        capa_views.capa_effectiveness,
        name="capa-effectiveness",
    ),
    path("capas/<str:number>/close/", capa_views.capa_close, name="capa-close"),
]
