# Freshness is judged against each collection's own freshness_sla (counted per batch from now on).
# Rows recorded before count as fresh the documents in the buckets whose upper bound is within
# their collection's current SLA: exact for an SLA on a bucket bound (the default hour), never
# more than the truth otherwise.

from django.db import migrations, models

# pipeline.metrics.FRESHNESS_BUCKETS when this migration was written.
BOUNDS = "ARRAY[1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400, 604800]::double precision[]"


def backfill(table: str) -> str:
    return f"""
    UPDATE {table} t SET fresh = (
        SELECT coalesce(sum(t.freshness[b.i]), 0) FROM unnest({BOUNDS}) WITH ORDINALITY AS b(bound, i)
         WHERE b.bound <= extract(epoch FROM c.freshness_sla))
      FROM pipeline_collection c WHERE c.id = t.collection_id
    """


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0009_search_modes'),
    ]

    operations = [
        migrations.AddField(
            model_name='batchtiming',
            name='fresh',
            field=models.PositiveIntegerField(db_default=0, help_text="Stored documents whose lag was within the collection's freshness SLA."),
        ),
        migrations.AddField(
            model_name='collectionactivity',
            name='fresh',
            field=models.BigIntegerField(db_default=0, help_text="Documents embedded within their collection's freshness SLA."),
        ),
        migrations.RunSQL(backfill("pipeline_batchtiming"), migrations.RunSQL.noop),
        migrations.RunSQL(backfill("pipeline_collectionactivity"), migrations.RunSQL.noop),
    ]
