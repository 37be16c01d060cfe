"""Saving a collection's embedding configuration queues a debounced regression + integration run for it,
with its workload benchmark."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from pipeline.models import RESERVED_PREFIX, Collection
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
    # One debounced run in the test runner: the scenarios, then the collection's workload benchmark (a
    # slower configuration is flagged), never in a worker's slot (docs/benchmarks.md).
    transaction.on_commit(lambda: schedule_config_run([name], benchmark=True))
