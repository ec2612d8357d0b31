from django.urls import path

from . import views

app_name = "changecontrol"

urlpatterns = [
    path("changes/", views.change_list, name="list"),
    path("changes/new/", views.change_create, name="create"),
    path("changes/lots-by-version/", views.lots_by_version, name="lots-by-version"),
    path("changes/lots-by-version/mbr/<int:pk>/", views.lots_by_mbr, name="lots-by-mbr"),
    path(
        "changes/lots-by-version/documents/<str:number>/v<int:version>/",
        views.lots_by_document_version,
        name="lots-by-document-version",
    ),
    path("changes/<str:number>/", views.change_detail, name="detail"),
    path("changes/<str:number>/edit/", views.change_edit, name="edit"),
    path("changes/<str:number>/assess/", views.change_assess, name="assess"),
    path("changes/<str:number>/submit/", views.change_submit, name="submit"),
    path("changes/<str:number>/tasks/", views.change_task_add, name="task-add"),
    path(
        "changes/<str:number>/tasks/<int:pk>/complete/",
        views.change_task_complete,
        name="task-complete",
    ),
    path("changes/<str:number>/rescope/", views.change_rescope, name="rescope"),
    path(
        "changes/<str:number>/make-effective/", views.change_make_effective, name="make-effective"
    ),
    path("changes/<str:number>/close/", views.change_close, name="close"),
    path("changes/<str:number>/reject/", views.change_reject, name="reject"),
    path("changes/<str:number>/cancel/", views.change_cancel, name="cancel"),
]
