from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views
from .forms import LoginForm

handler400 = "qms.views.handler400"
handler403 = "qms.views.handler403"
handler404 = "qms.views.handler404"
handler500 = "qms.views.handler500"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_list, name="audit"),
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("portal/deviations/", include("deviations.portal_urls")),
    path("portal/documents/", include("documents.portal_urls")),
    path("portal/changes/", include("changecontrol.portal_urls")),
    path("portal/", include("sponsors.portal_urls")),
    path("", include("sponsors.urls")),
    path("", include("batches.urls")),
    path("", include("deviations.urls")),
    path("", include("documents.urls")),
    path("", include("changecontrol.urls")),
    path("api/v1/", include(("qms.api_urls", "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
