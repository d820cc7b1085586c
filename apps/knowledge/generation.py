"""The writers' generation counter of a search index, kept in the database (see IndexGeneration)."""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from apps.knowledge.models import IndexGeneration


class DatabaseGeneration:
    """``read()`` costs one indexed SELECT; ``bump()`` one UPDATE (an INSERT the first time)."""

    def __init__(self, key: str):
        self.key = key[:400]

    def read(self) -> int:
        value = IndexGeneration.objects.filter(key=self.key).values_list("value", flat=True).first()
        return value or 0

    def bump(self) -> int:
        if not IndexGeneration.objects.filter(key=self.key).update(value=F("value") + 1):
            try:
                with transaction.atomic():
                    IndexGeneration.objects.create(key=self.key, value=1)
            except IntegrityError:  # another writer created it first
                IndexGeneration.objects.filter(key=self.key).update(value=F("value") + 1)
        return self.read()
