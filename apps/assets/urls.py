from django.urls import path

from apps.assets import views

app_name = "assets"
urlpatterns = [
    path("", views.asset_list, name="list"),
    path("<str:asset_id>/", views.asset_detail, name="detail"),
    path("<str:asset_id>/live.json", views.asset_live, name="live"),
]
