from django.urls import path

from . import views

app_name = "documents"

VERSION = "documents/<str:number>/v<int:version>/"

urlpatterns = [
    path("documents/", views.document_list, name="list"),
    path("documents/new/", views.document_create, name="create"),
    path("documents/<str:number>/", views.document_detail, name="detail"),
    path("documents/<str:number>/versions/", views.version_create, name="new-version"),
    path("documents/<str:number>/requirements/", views.requirement_add, name="requirement-add"),
    path(
        "documents/<str:number>/requirements/<int:pk>/remove/",
        views.requirement_remove,
        name="requirement-remove",
    ),
    path(VERSION, views.version_detail, name="version"),
    path(f"{VERSION}file/", views.version_file, name="file"),
    path(f"{VERSION}attach/", views.version_attach, name="attach"),
    path(f"{VERSION}submit/", views.version_submit, name="submit"),
    path(f"{VERSION}return/", views.version_return, name="return"),
    path(f"{VERSION}review/", views.version_review, name="review"),
    path(f"{VERSION}approve/", views.version_approve, name="approve"),
    path(f"{VERSION}make-effective/", views.version_make_effective, name="make-effective"),
    path(f"{VERSION}obsolete/", views.version_obsolete, name="obsolete"),
    path(f"{VERSION}training/", views.version_train, name="train"),
    path("training/", views.training_matrix, name="training-matrix"),
]
