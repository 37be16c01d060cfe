"""Named, hashed, expiring, scoped API tokens: the command, authentication (401 for revoked and
expired ones), the scope cap (403 naming the scope needed; sessions uncapped), the last use,
legacy DRF keys hashed by the migration, and the admin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from knox.crypto import hash_token
from rest_framework.test import APIClient

from pipeline.models import Collection
from tests.conftest import ROOT
from tests.tools import api_token, error_of, run_action, user_with
from tokens.models import ApiToken

COLLECTIONS = "/api/v1/collections/"


def create(*args: str, capsys) -> tuple[str, str]:
    """`create_api_token ARGS`: (stdout, stderr)."""
    call_command("create_api_token", *args)
    captured = capsys.readouterr()
    return captured.out.strip(), captured.err


def create_in_admin(client, **fields: object) -> str:
    """Add a token in the admin as `client`'s user (`fields`: user, name, scope, days); the secret it shows."""
    page = client.post("/admin/tokens/apitoken/add/", {**fields, "_save": "Save"}, follow=True).content.decode()
    return re.search(r"shown only now: (ep_[0-9a-f]{64})", page).group(1)


def client_of(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def test_the_command_prints_the_secret_once_and_the_database_keeps_its_digest(hash_collection, capsys):
    user = user_with("view_collection")
    secret, said = create(user.username, "--name", "ci", "--scope", "read", "--expires-days", "7", capsys=capsys)
    assert re.fullmatch(r"ep_[0-9a-f]{64}", secret)
    token = ApiToken.objects.get()
    assert (token.name, token.scope, token.user, token.legacy) == ("ci", "read", user, False)
    assert token.token_key == secret[:15] and token.token_key in said and secret not in said
    assert secret[15:] not in token.digest and token.digest != secret
    assert timedelta(days=7) - timedelta(minutes=1) < token.expiry - timezone.now() <= timedelta(days=7)
    response = client_of(secret).get(COLLECTIONS)
    assert [c["name"] for c in response.json()["results"]] == ["hashes"]
    assert response.wsgi_request.auth == token and response.wsgi_request.auth.name == "ci"

    # The default expiry comes from the settings; a name in use is refused.
    other, _ = create(user.username, "--name", "other", capsys=capsys)
    days = (ApiToken.objects.get(name="other").expiry - timezone.now()).days
    assert days == 89 and other != secret  # EMBEDPORTAL_TOKEN_EXPIRY_DAYS 90, less the seconds gone
    with pytest.raises(CommandError, match="has a token named 'ci'; --rotate replaces it"):
        create(user.username, "--name", "ci", capsys=capsys)


def test_rotate_revokes_the_tokens_of_that_name_and_the_legacy_one_which_then_get_401(hash_collection, capsys):
    user = user_with("view_collection")
    legacy = "0123456789abcdef0123456789abcdef01234567"  # a DRF authtoken key, as tokens 0002 hashes it
    ApiToken.objects.create(user=user, name="legacy", scope="operate", digest=hash_token(legacy), token_key=legacy[:15])
    old, _ = create(user.username, "--name", "ci", capsys=capsys)
    kept, _ = create(user.username, "--name", "nightly", capsys=capsys)
    new, said = create(user.username, "--name", "ci", "--rotate", capsys=capsys)
    assert "revoked 2 token(s)" in said
    for secret in (old, legacy):
        assert error_of(client_of(secret).get(COLLECTIONS), 401)["message"] == "token revoked"
    for secret in (new, kept):
        assert client_of(secret).get(COLLECTIONS).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost"], "no user 'ghost'"),
        (["{user}", "--expires-days", "0"], "--expires-days 0: between 1 and 365"),
        (["{user}", "--expires-days", "366"], "--expires-days 366: between 1 and 365"),
        (["{user}", "--name", " "], "--name: 1 to 100 characters"),
        (["{user}", "--scope", "admin"], "invalid choice: 'admin'"),
    ],
)
def test_the_command_refuses_bad_input(db, args, message):
    user = user_with()
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("create_api_token", *[a.format(user=user.username) for a in args])
    assert not ApiToken.objects.exists()


def test_an_expired_token_gets_401_and_an_unknown_one_too(hash_collection):
    user = user_with("view_collection")
    secret = api_token(user)
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    assert error_of(client_of(secret).get(COLLECTIONS), 401)["message"] == "token expired"
    assert error_of(client_of("ep_" + "0" * 64).get(COLLECTIONS), 401)["message"] == "invalid token"
    assert error_of(client_of(secret[:-1] + "x").get(COLLECTIONS), 401)["message"] == "invalid token"


def test_a_bearer_token_is_taken_as_a_token_and_a_bad_header_is_named(hash_collection):
    """`Authorization: Bearer` is what most HTTP clients and /metrics send: knox alone ignored it."""
    secret = api_token(user_with("view_collection"))
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert bearer.get(COLLECTIONS).status_code == 200
    bearer.credentials(HTTP_AUTHORIZATION="bearer ep_" + "0" * 64)
    assert error_of(bearer.get(COLLECTIONS), 401)["message"] == "invalid token"
    bearer.credentials(HTTP_AUTHORIZATION="Bearer")
    assert "Authorization: Token <token>" in error_of(bearer.get(COLLECTIONS), 401)["message"]


def test_the_scope_caps_the_users_permissions_and_names_the_scope_needed(hash_collection):
    user = user_with("view_collection", "add_document", "pause_collection")
    document = [{"id": "d1", "text": "some text"}]
    read, write, operate = (client_of(api_token(user, scope)) for scope in ("read", "write", "operate"))
    assert read.get(COLLECTIONS).status_code == 200
    error = error_of(read.post(f"{COLLECTIONS}hashes/documents/", document), 403)
    assert error["message"] == "a token of scope write is needed; this token's scope is read"
    assert write.post(f"{COLLECTIONS}hashes/documents/", document).status_code == 202
    error = error_of(write.post(f"{COLLECTIONS}hashes/pause/"), 403)
    assert error["message"] == "a token of scope operate is needed; this token's scope is write"
    assert operate.post(f"{COLLECTIONS}hashes/pause/").json()["changed"] is True
    # The scope never adds a permission the user lacks.
    error = error_of(operate.post(f"{COLLECTIONS}hashes/reembed/"), 403)
    assert error["message"] == "permission pipeline.reembed_collection required"


def test_a_session_is_not_capped_by_scope(hash_collection):
    session = APIClient()
    session.force_login(user_with("pause_collection"))
    assert session.post(f"{COLLECTIONS}hashes/pause/").status_code == 200


def test_patching_paused_needs_the_pause_permission_and_scope_like_the_pause_action(hash_collection):
    changer = user_with("change_collection")
    assert (
        error_of(client_of(api_token(changer)).patch(f"{COLLECTIONS}hashes/", {"paused": True}), 403)["message"]
        == "permission pipeline.pause_collection required"
    )
    both = user_with("change_collection", "pause_collection")
    error = error_of(client_of(api_token(both, "write")).patch(f"{COLLECTIONS}hashes/", {"paused": True}), 403)
    assert error["message"] == "a token of scope operate is needed; this token's scope is write"
    assert not Collection.objects.get().paused
    # Other fields (and `paused` unchanged) need only the change permission and scope.
    response = client_of(api_token(changer, "write")).patch(f"{COLLECTIONS}hashes/", {"paused": False, "ef_search": 50})
    assert response.status_code == 200, response.content
    assert client_of(api_token(both)).patch(f"{COLLECTIONS}hashes/", {"paused": True}).status_code == 200
    assert Collection.objects.get().paused


def test_the_last_use_is_written_at_most_once_a_minute(hash_collection):
    secret = api_token(user_with("view_collection"))
    assert ApiToken.objects.get().last_used is None
    client = client_of(secret)
    client.get(COLLECTIONS)
    first = ApiToken.objects.get().last_used
    assert first is not None
    client.get(COLLECTIONS)
    assert ApiToken.objects.get().last_used == first
    ApiToken.objects.update(last_used=first - timedelta(minutes=1))
    client.get(COLLECTIONS)
    assert ApiToken.objects.get().last_used > first


def test_the_migration_hashes_legacy_drf_keys_which_keep_working_and_drops_their_table(hash_collection):
    user = user_with("view_collection")
    key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz, user_id int)")
        cur.execute("INSERT INTO authtoken_token VALUES (%s, now() - interval '1 year', %s)", [key, user.pk])
    migration = import_module("tokens.migrations.0002_hash_legacy_tokens")
    with connection.schema_editor() as editor:
        migration.hash_legacy_tokens(django_apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get()
    assert (token.name, token.scope, token.expiry, token.legacy) == ("legacy", "operate", None, True)
    assert token.token_key == key[:15] and key not in token.digest
    assert timezone.now() - token.created > timedelta(days=364)
    response = client_of(key).get(COLLECTIONS)
    assert response.status_code == 200 and response.wsgi_request.auth.name == "legacy"


def test_the_admin_lists_prefixes_creates_with_the_secret_shown_once_and_revokes(admin_client):
    robot = User.objects.create_user("robot")
    secret = create_in_admin(admin_client, user=robot.pk, name="deploy", scope="write", days=30)
    token = ApiToken.objects.get()
    assert (token.name, token.scope, token.token_key, token.user) == ("deploy", "write", secret[:15], robot)
    assert secret[15:] not in token.digest
    assert (token.expiry - timezone.now()).days == 29
    assert client_of(secret).get(COLLECTIONS).wsgi_request.auth == token

    listing = admin_client.get("/admin/tokens/apitoken/").content.decode()
    assert token.token_key in listing and "deploy" in listing and secret not in listing
    assert (
        token.digest not in listing
        and secret not in admin_client.get(f"/admin/tokens/apitoken/{token.pk}/change/").content.decode()
    )

    # A name in use and an expiry over the maximum are refused with the reason.
    again = admin_client.post(
        "/admin/tokens/apitoken/add/", {"user": robot.pk, "name": "deploy", "scope": "read", "days": "400"}
    ).content.decode()
    assert "unrevoked token of that name" in again and "at most 365 days" in again
    assert ApiToken.objects.count() == 1

    assert run_action(admin_client, "/admin/tokens/apitoken/", "revoke", [token.pk]) == ["1 token(s) revoked."]
    assert ApiToken.objects.get().revoked_at is not None
    assert client_of(secret).get(COLLECTIONS).status_code == 401


def test_a_staff_user_creates_a_token_for_themselves_only_which_their_permissions_cap(
    client, admin_user, hash_collection
):
    clerk = user_with("add_apitoken", "view_apitoken", app="tokens", is_staff=True)
    assert client.login(username=clerk.username, password="x")

    # The superuser named in a forged field is ignored: the token is the clerk's, scope or not.
    secret = create_in_admin(client, user=admin_user.pk, name="mine", scope="operate", days=5)
    assert ApiToken.objects.get().user == clerk
    token = client_of(secret)
    assert token.get("/api/v1/audit/").status_code == 403
    assert token.post(f"{COLLECTIONS}hashes/pause/").status_code == 403
    assert not Collection.objects.get().paused
    assert 'name="user"' not in client.get("/admin/tokens/apitoken/add/").content.decode()


def test_a_staff_user_lists_and_revokes_their_own_tokens_only(client, admin_user):
    clerk = user_with("change_apitoken", "view_apitoken", app="tokens", is_staff=True)
    theirs = ApiToken(user=admin_user, name="deploy", scope="operate")
    theirs.set_secret(5)
    theirs.save()
    mine = ApiToken(user=clerk, name="mine", scope="read")
    mine.set_secret(5)
    mine.save()
    assert client.login(username=clerk.username, password="x")

    listing = client.get("/admin/tokens/apitoken/").content.decode()
    assert mine.token_key in listing and theirs.token_key not in listing
    assert client.get(f"/admin/tokens/apitoken/{theirs.pk}/change/").status_code == 302  # "does not exist"
    run_action(client, "/admin/tokens/apitoken/", "revoke", [theirs.pk])
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    assert run_action(client, "/admin/tokens/apitoken/", "revoke", [mine.pk]) == ["1 token(s) revoked."]
    assert ApiToken.objects.get(pk=mine.pk).revoked_at is not None


def test_a_staff_users_token_page_names_them_without_a_link_to_the_user_admin_they_may_not_open(client, db):
    clerk = user_with("view_apitoken", app="tokens", is_staff=True)
    mine = ApiToken(user=clerk, name="mine", scope="read")
    mine.set_secret(5)
    mine.save()
    assert client.login(username=clerk.username, password="x")

    page = client.get(f"/admin/tokens/apitoken/{mine.pk}/change/").content.decode()
    assert clerk.username in page and f"/admin/auth/user/{clerk.pk}/change/" not in page
    assert client.get(f"/admin/auth/user/{clerk.pk}/change/").status_code == 403


def test_a_superuser_creates_tokens_for_active_users_only(admin_client):
    gone = User.objects.create_user("gone", is_active=False)
    page = admin_client.post(
        "/admin/tokens/apitoken/add/", {"user": gone.pk, "name": "ci", "scope": "read", "days": "5"}
    ).content.decode()
    assert "this user is inactive; a token would be refused" in page and not ApiToken.objects.exists()


def test_the_admin_marks_legacy_tokens(admin_client):
    robot = User.objects.create_user("robot")
    key = "0123456789abcdef0123456789abcdef01234567"
    ApiToken.objects.create(user=robot, name="legacy", scope="operate", digest=hash_token(key), token_key=key[:15])
    listing = admin_client.get("/admin/tokens/apitoken/").content.decode()
    assert 'class="field-is_legacy"><img src="/static/admin/img/icon-yes.svg" alt="True"' in listing
    assert key not in listing


def test_a_default_expiry_over_the_maximum_stops_the_app_at_start():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "embedportal.settings",
        "EMBEDPORTAL_TOKEN_EXPIRY_DAYS": "400",
        "EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS": "365",
    }
    child = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert child.returncode != 0
    assert "EMBEDPORTAL_TOKEN_EXPIRY_DAYS: from 1 to EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS" in child.stderr
