# The batch row is the one record of a batch's outcome: failures and freshness join it, and the
# minute history rolls it up. Existing rows are already counted in the history: rolled up.

import django.contrib.postgres.fields
from django.db import migrations, models

# One count per bucket of pipeline.metrics.FRESHNESS_BUCKETS (12 bounds) plus +Inf, as at this migration.
ZEROS = [0] * 13


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0001_squashed_0012_provider_circuit_probe_permission")]

    operations = [
        migrations.AddField(
            model_name="batchtiming",
            name="failed",
            field=models.PositiveIntegerField(default=0, help_text="Documents failed for good by this batch."),
        ),
        migrations.AddField(
            model_name="batchtiming",
            name="freshness",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(),
                default=ZEROS,
                help_text="Stored documents' embedded minus source modified time, bucket counts.",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="batchtiming",
            name="rolled_up",
            field=models.BooleanField(default=True, help_text="Added to the minute history (CollectionActivity)."),
        ),
        migrations.AlterField(
            model_name="batchtiming",
            name="rolled_up",
            field=models.BooleanField(default=False, help_text="Added to the minute history (CollectionActivity)."),
        ),
        migrations.AddIndex(
            model_name="batchtiming",
            index=models.Index(
                condition=models.Q(rolled_up=False), fields=["finished_at"], name="pipeline_batchtiming_unrolled"
            ),
        ),
    ]
