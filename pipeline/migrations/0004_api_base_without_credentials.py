# Credentials in a collection's api_base (https://user:secret@host/, ?api_key=...) are refused from
# now on; those already stored are stripped, so none stays in the database (a dump, a replica). There
# is no secret store in the database to move them to: keys live in the environment variable named
# by api_key_env, and the migration prints the collections whose operator must set one. Provider
# circuits keyed by such a URL are deleted (the next failure recreates them without it).

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db import migrations, models

import pipeline.models.collection

# pipeline.models.collection.SECRET_PARAM_PARTS at this migration.
SECRET_PARTS = {"key", "secret", "token", "password", "credential", "credentials"}


def _secret(name):
    return bool(SECRET_PARTS & set(name.lower().split("_")))


def without_credentials(url):
    """The URL itself when it carries none (unparseable: empty), else without userinfo and secret parameters."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not (parts.username or parts.password or any(_secret(k) for k, _ in query)):
        return url
    host = f"[{host}]" if ":" in host else host
    kept = urlencode([(k, v) for k, v in query if not _secret(k)])
    return urlunsplit((parts.scheme, host + port, parts.path, kept, parts.fragment))


def strip_credentials(apps, schema_editor):
    Collection = apps.get_model("pipeline", "Collection")
    ProviderCircuit = apps.get_model("pipeline", "ProviderCircuit")
    for collection in Collection.objects.exclude(api_base=""):
        clean = without_credentials(collection.api_base)
        if clean != collection.api_base:
            Collection.objects.filter(pk=collection.pk).update(api_base=clean)
            print(
                f"\n  collection {collection.name}: credentials removed from api_base; "
                "put the key in the environment variable its api_key_env names"
            )
    for circuit in ProviderCircuit.objects.exclude(api_base=""):
        if without_credentials(circuit.api_base) != circuit.api_base:
            circuit.delete()


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0003_budgets_and_rate_limits")]

    operations = [
        migrations.AlterField(
            model_name="collection",
            name="api_base",
            field=models.URLField(
                blank=True,
                help_text="LiteLLM api_base, if any; never with credentials in it (name the key's variable below).",
                max_length=500,
                validators=[pipeline.models.collection.validate_api_base],
                verbose_name="API base",
            ),
        ),
        migrations.RunPython(strip_credentials, migrations.RunPython.noop),
    ]
