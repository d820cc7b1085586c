from django.urls import path

from apps.incidents import dashboard_views, views

app_name = "incidents"
urlpatterns = [
    path("", views.incident_list, name="list"),
    path("export.csv", views.incident_export, name="export"),
    path("new/", views.incident_new, name="new"),
    path("<int:pk>/", views.incident_detail, name="detail"),
    path("<int:pk>/edit/", views.incident_edit, name="edit"),
    path("<int:pk>/resolve/", views.incident_resolve, name="resolve"),
    path("<int:pk>/status/", views.incident_status, name="status"),
    path("dashboard/", dashboard_views.dashboard, name="dashboard"),
]
