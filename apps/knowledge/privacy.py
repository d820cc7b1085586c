"""Privacy levels of documents and assets: which evidence may leave this device.

The levels and the routing rules are in ``models/llm/routing.py`` (plain functions); this is
their Django side: the model field's choices and its default (``NANOSENTRI_DEFAULT_PRIVACY``).
"""
from django.conf import settings

from models.llm.routing import PRIVACY_CHOICES, PRIVACY_LEVELS, privacy_rank

__all__ = ["PRIVACY_CHOICES", "PRIVACY_LEVELS", "privacy_default", "privacy_rank"]


def privacy_default() -> str:
    return settings.NANOSENTRI_DEFAULT_PRIVACY
