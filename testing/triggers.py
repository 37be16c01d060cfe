"""Saving a collection's embedding configuration queues a debounced regression + integration run for it."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from pipeline.models import RESERVED_PREFIX, Collection
from testing.benchmarks.tasks import schedule_benchmark
from testing.fingerprints import collection_config
from testing.tasks import schedule_config_run


def remember_config(sender: type[Collection], instance: Collection, raw: bool = False, **kwargs: Any) -> None:
    """pre_save: the stored configuration, to tell a configuration change from a rename or a pause."""
    if raw or instance.pk is None or instance.name.startswith(RESERVED_PREFIX):
        return
    stored = Collection.objects.filter(pk=instance.pk).first()
    instance._ops_test_config_before = collection_config(stored) if stored else None


def config_saved(
    sender: type[Collection], instance: Collection, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if raw or instance.name.startswith(RESERVED_PREFIX):
        return
    before = getattr(instance, "_ops_test_config_before", None)
    if not created and before == collection_config(instance):
        return
    name = instance.name
    transaction.on_commit(lambda: schedule_config_run([name]))
    # The same change queues the collection's benchmark (debounced): a slower configuration is flagged.
    transaction.on_commit(lambda: schedule_benchmark(name))
