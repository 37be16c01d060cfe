"""Squashed migrations: a database part-way through the migrations a squash replaces is told how to
get past it, instead of `migrate` stopping short silently (embedportal.apps.squashes_applied_whole)."""

from importlib import import_module

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db.migrations.recorder import MigrationRecorder

from embedportal.apps import squashes_applied_whole

pytestmark = pytest.mark.django_db


def test_a_fresh_database_passes_and_one_part_way_through_a_squash_is_stopped_with_the_way_out():
    assert squashes_applied_whole(databases=["default"]) == []
    # Applying a squash records it and every migration it replaces; keep the first two only, as a
    # database migrated up to pipeline 0003 before the squash has them.
    squash = import_module("pipeline.migrations.0002_squashed_0011_fusion_default_rrf").Migration
    recorded = MigrationRecorder.Migration.objects.filter(app="pipeline", name__in=[n for _, n in squash.replaces])
    assert recorded.count() == 10
    recorded.exclude(name__in=["0002_batch_outcomes", "0003_budgets_and_rate_limits"]).delete()
    (error,) = squashes_applied_whole(databases=["default"])
    assert error.id == "embedportal.E001"
    assert "pipeline 0002_squashed_0011_fusion_default_rrf replaces 10 migrations, of which only 2" in error.msg
    assert "last release that has them one by one" in error.hint
    with pytest.raises(SystemCheckError, match="embedportal.E001"):
        call_command("migrate", skip_checks=False, verbosity=0)  # as manage.py migrate runs it
