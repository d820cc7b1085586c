from django.urls import path  # noqa: F401  (routes are added by the incident views)

app_name = "incidents"
urlpatterns = []
