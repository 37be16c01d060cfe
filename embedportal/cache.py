"""The database cache (CACHES["default"]), reconnecting after the database restarted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import DatabaseError, connections, router


def _reconnecting(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self: DatabaseCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except DatabaseError:
            connection = connections[router.db_for_write(self.cache_model_class)]
            if connection.connection is None:  # none was open: there is nothing to replace
                raise
            connection.close_if_unusable_or_obsolete()
            if connection.connection is not None:  # the connection is fine: the error is the query's
                raise
            return method(self, *args, **kwargs)  # once, on a new connection

    return call


class DatabaseCache(DjangoDatabaseCache):
    """Django's, but a call on a connection the database dropped (a restart, a failover) closes it and
    runs once more on a new one. Outside requests nothing else does: django-q2's cluster guard writes
    its status here every 0.5 s and logged "the connection is closed" for up to 30 s after each restart."""

    get_many = _reconnecting(DjangoDatabaseCache.get_many)
    _base_set = _reconnecting(DjangoDatabaseCache._base_set)
    _base_delete_many = _reconnecting(DjangoDatabaseCache._base_delete_many)
    has_key = _reconnecting(DjangoDatabaseCache.has_key)
