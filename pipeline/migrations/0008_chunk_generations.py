"""Chunk generations (pipeline.backfill): a re-embed writes the next generation beside the one
searched. Each collection's HNSW index becomes partial on (collection, generation): rebuilt here
for existing collections, so rows of a generation being built never enter the searched index."""

from django.db import migrations, models


def index_sql(collection_id: int, dimensions: int, generation: int | None) -> str:
    where = f"collection_id = {collection_id}" + (f" AND generation = {generation}" if generation else "")
    return (
        f"CREATE INDEX pipeline_chunk_hnsw_{collection_id}_new ON pipeline_chunk "
        f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) WHERE {where}"
    )


def rebuild(apps, schema_editor, generation: int | None) -> None:
    Collection = apps.get_model("pipeline", "Collection")
    with schema_editor.connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for pk, dimensions in Collection.objects.values_list("pk", "dimensions"):
            cur.execute(index_sql(pk, dimensions, generation))
            cur.execute(f"DROP INDEX IF EXISTS pipeline_chunk_hnsw_{pk}")
            cur.execute(f"ALTER INDEX pipeline_chunk_hnsw_{pk}_new RENAME TO pipeline_chunk_hnsw_{pk}")
        cur.execute("SET CONSTRAINTS ALL DEFERRED")


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0007_provider_circuit_fair_claims"),
    ]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="generation",
            field=models.PositiveIntegerField(
                default=1, editable=False, help_text="The chunk generation search reads."
            ),
        ),
        migrations.AddField(
            model_name="collection",
            name="building_generation",
            field=models.PositiveIntegerField(
                blank=True,
                editable=False,
                help_text="A generation being written without its HNSW index (first load or re-embed), if any.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="collection",
            name="serving",
            field=models.JSONField(
                blank=True,
                editable=False,
                help_text="While a re-embed runs: the model configuration search embeds queries with (the old one).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="chunk",
            name="generation",
            field=models.PositiveIntegerField(db_default=1, default=1),
        ),
        migrations.RemoveConstraint(model_name="chunk", name="pipeline_chunk_unique_ordinal"),
        migrations.AddConstraint(
            model_name="chunk",
            constraint=models.UniqueConstraint(
                fields=("document", "generation", "ordinal"), name="pipeline_chunk_unique_generation_ordinal"
            ),
        ),
        migrations.RunPython(
            lambda apps, schema_editor: rebuild(apps, schema_editor, 1),
            lambda apps, schema_editor: rebuild(apps, schema_editor, None),
        ),
    ]
