from django.urls import path

from apps.chat import views

app_name = "chat"
urlpatterns = [
    path("", views.chat, name="chat"),
    path("<int:pk>/", views.chat, name="conversation"),
]
