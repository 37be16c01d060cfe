"""The scratch database: benchmarks and capacity measurements write there, one at a time, and never
into production."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from embedportal import scratch
from pipeline.models import Collection

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_block_writes_into_the_scratch_database_which_is_emptied_after_it(hash_collection):
    production = connection.settings_dict["NAME"]
    with scratch.scratch_database() as name:
        assert name == f"{production}_scratch"
        with connection.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == name
        assert not Collection.objects.exists()  # production's collection is not there
        Collection.objects.create(name="scratch-only", model="local/hash-16", dimensions=16)
    assert list(Collection.objects.values_list("name", flat=True)) == ["hashes"]
    with scratch.scratch_database():
        assert not Collection.objects.exists(), "the scratch database is emptied between runs"


def test_one_user_at_a_time():
    # Another benchmark or measurement (a process of its own) holds the lock on production.
    connection.ensure_connection()
    other = type(connections["default"])(dict(connections["default"].settings_dict), "other")
    with other.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", [scratch.LOCK])
    try:
        with pytest.raises(scratch.ScratchUnavailable, match="another benchmark or capacity measurement"):
            with scratch.scratch_database():
                pass
    finally:
        other.close()
    with scratch.scratch_database() as name:  # free again
        assert name.endswith("_scratch")


def test_the_production_database_is_never_taken_for_the_scratch_one(settings):
    settings.EMBEDPORTAL_SCRATCH_DATABASE = connection.settings_dict["NAME"]
    with pytest.raises(scratch.ScratchUnavailable, match="names the production database"):
        with scratch.scratch_database():
            pass


def test_it_refuses_inside_a_production_transaction():
    with transaction.atomic(), pytest.raises(RuntimeError, match="inside a transaction"):
        with scratch.scratch_database():
            pass
