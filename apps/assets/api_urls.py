from django.urls import path

from apps.assets import api

app_name = "telemetry_api"
urlpatterns = [
    path("", api.telemetry_post, name="post"),
]
