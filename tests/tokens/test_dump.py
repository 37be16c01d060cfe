"""A database dump holds no working token: pg_dump (the bundled one `manage.py backup` runs) of
the test database, grepped for the secrets of tokens made by the command, the admin and the legacy
migration. The dump does hold the tokens' rows (their clear prefixes): the grep reads the right data."""

from __future__ import annotations

import re
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from embedportal.management.commands.backup import run_pg_tool
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump reads committed rows from its own connection


def works(secret: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client.get("/api/v1/schema/").status_code == 200


def test_a_database_dump_holds_no_working_token_secret(capsys, client):
    robot = User.objects.create_superuser("robot", password="x")
    call_command("create_api_token", "robot", "--name", "cli", "--scope", "operate")
    by_command = capsys.readouterr().out.strip()
    client.force_login(robot)
    page = client.post(
        "/admin/tokens/apitoken/add/", {"user": robot.pk, "name": "admin", "scope": "read", "days": "5"}, follow=True
    ).content.decode()
    by_admin = re.search(r"shown only now: (ep_[0-9a-f]{64})", page).group(1)
    legacy = "5e884898da28047151d0e56f8dc6292773603d0d"
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz, user_id int)")
        cur.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [legacy, robot.pk])
    with connection.schema_editor() as editor:
        import_module("tokens.migrations.0002_hash_legacy_tokens").hash_legacy_tokens(django_apps, editor)
    secrets = [by_command, by_admin, legacy]
    assert all(works(s) for s in secrets)

    dump = run_pg_tool("pg_dump", "--format=plain", "--data-only")
    assert dump.returncode == 0, dump.stderr
    found = [s for s in secrets if s in dump.stdout or s[15:] in dump.stdout]
    prefixes = [t.token_key for t in ApiToken.objects.all()]
    print(
        f"\npg_dump of {connection.settings_dict['NAME']} ({len(dump.stdout) / 1024:.0f} KiB): "
        f"{len(found)} of {len(secrets)} working token secrets found; {len(prefixes)} token prefixes found"
    )
    assert found == []
    assert len(prefixes) == 3 and all(p in dump.stdout for p in prefixes)
