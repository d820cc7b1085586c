from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.core import views as core_views
from apps.monitoring import views as monitoring_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz/", core_views.healthz, name="healthz"),
    path("metrics", monitoring_views.metrics, name="metrics"),  # no slash: Prometheus' default path
    path("system/", include("apps.monitoring.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("documents/", include("apps.knowledge.urls")),
    path("chat/", include("apps.chat.urls")),
    path("assets/", include("apps.assets.urls")),
    path("incidents/", include("apps.incidents.urls")),
    path("api/telemetry/", include("apps.assets.api_urls")),
    path("api/v1/", include("apps.api.urls")),
    path("admin/", admin.site.urls),
]
