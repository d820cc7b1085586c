from django.urls import path

from apps.knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("", views.documents, name="documents"),
    path("<int:pk>/row/", views.document_row, name="row"),
    path("<int:pk>/reindex/", views.reindex, name="reindex"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/replace/", views.replace, name="replace"),
    path("<int:pk>/keep/", views.keep, name="keep"),
    path("<int:pk>/file/", views.document_file, name="file"),
]
