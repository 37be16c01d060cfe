"""The database cache outlives a database restart: django-q2's cluster guard writes its status there
every 0.5 s, outside any request, and nothing else would replace the dropped connection."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import DatabaseError, connection, connections

from embedportal.cache import DatabaseCache, _reconnecting


@pytest.mark.django_db(transaction=True)
def test_the_cache_reconnects_after_the_database_dropped_its_connection():
    cache.set("status", "before")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    cache.set("status", "after")  # on the dropped connection: closed, then once more on a new one
    assert cache.get("status") == "after"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


@pytest.mark.django_db(transaction=True)
def test_an_error_of_the_query_itself_is_raised_not_retried(monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise DatabaseError("a query error, the connection fine")

    cache.get("status")  # a connection is open, and usable
    monkeypatch.setattr(DatabaseCache, "_base_set", _reconnecting(failing))
    with pytest.raises(DatabaseError, match="a query error"):
        cache.set("status", "x")
    assert calls == [1]
