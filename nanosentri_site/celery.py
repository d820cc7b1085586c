import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanosentri_site.settings")

app = Celery("nanosentri")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
