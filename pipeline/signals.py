"""Each collection owns a partial HNSW index over the shared chunk table."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from pipeline import storage
from pipeline.models import Collection


@receiver(post_save, sender=Collection)
def create_index(sender: type[Collection], instance: Collection, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw"):
        storage.create_collection_index(instance)


@receiver(post_delete, sender=Collection)
def drop_index(sender: type[Collection], instance: Collection, **kwargs: Any) -> None:
    storage.drop_collection_index(instance)
