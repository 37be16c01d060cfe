"""DRF authtoken's keys, stored in plaintext, become hashed tokens named "legacy" (scope operate,
no expiry: they could do everything their user may, until rotated); the plaintext table goes."""

from django.db import migrations
from knox.crypto import hash_token
from knox.settings import CONSTANTS

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("tokens", "ApiToken")
    with connection.cursor() as cur:
        cur.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")
        for key, user_id, created in cur.fetchall():
            token = ApiToken.objects.create(
                digest=hash_token(key),
                token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=user_id,
                name="legacy",
                scope="operate",
            )
            ApiToken.objects.filter(pk=token.pk).update(created=created)  # auto_now_add set it to now
        cur.execute(f"DROP TABLE {LEGACY_TABLE}")
        # rest_framework.authtoken is no longer installed: its migrations' records go with its table.
        cur.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("tokens", "0001_api_tokens")]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
