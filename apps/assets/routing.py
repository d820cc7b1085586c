from django.urls import path

from apps.assets.consumers import AlertsConsumer

websocket_urlpatterns = [path("ws/alerts/", AlertsConsumer.as_asgi())]
