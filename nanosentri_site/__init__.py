from nanosentri_site import offline

offline.apply()

from nanosentri_site.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
