from django.urls import path

from apps.chat import feedback_views, views

app_name = "chat"
urlpatterns = [
    path("", views.chat, name="chat"),
    path("<int:pk>/", views.chat, name="conversation"),
    path("messages/<int:pk>/feedback/", feedback_views.feedback, name="feedback"),
    path("review/", feedback_views.review, name="review"),
    path("review/<int:pk>/", feedback_views.review_item, name="review_item"),
]
