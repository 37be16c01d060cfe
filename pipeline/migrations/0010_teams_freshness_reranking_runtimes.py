# Collections owned by teams (access by team), freshness judged against each collection's own
# SLA, per-minute search counts (the search latency SLO's window), optional reranking, retrieval
# evaluations before and after a change, and the local encoder's runtime on capacity figures and
# collections. One migration for what one release added.
#
# Freshness: rows recorded before count as fresh the documents in the buckets whose upper bound is
# within their collection's current SLA: exact for an SLA on a bucket bound (the default hour),
# never more than the truth otherwise.

import django.contrib.postgres.fields
import django.core.validators
import django.db.models.deletion
import pipeline.models.collection
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
        ('auth', '0012_alter_user_first_name_max_length'),
        ('pipeline', '0009_search_modes'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='collection',
            options={'ordering': ['name'], 'permissions': [('pause_collection', 'Can pause and resume collections'), ('reembed_collection', 'Can re-embed a collection'), ('access_all_collections', "Can see every team's collections (platform operator)")]},
        ),
        migrations.AddField(
            model_name='batchtiming',
            name='fresh',
            field=models.PositiveIntegerField(db_default=0, help_text="Stored documents whose lag was within the collection's freshness SLA."),
        ),
        migrations.AddField(
            model_name='capacitymeasurement',
            name='local_encoder',
            field=models.CharField(blank=True, help_text="The local model's runtime/precision during the measurement (pipeline.encoder), e.g. openvino/bf16; the plan and the optimizer use a local-model figure only while that runtime serves.", max_length=40, verbose_name='local model runtime'),
        ),
        migrations.AddField(
            model_name='collection',
            name='rerank_api_base',
            field=models.URLField(blank=True, help_text="The reranker's api_base, if any; never with credentials in it (name the key's variable below).", max_length=500, validators=[pipeline.models.collection.validate_api_base], verbose_name='rerank API base'),
        ),
        migrations.AddField(
            model_name='collection',
            name='rerank_api_key_env',
            field=models.CharField(blank=True, help_text="Name of the environment variable holding the reranker's API key (NAME_FILE read first).", max_length=100, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', 'Use the name of an environment variable, not a key.')], verbose_name='rerank API key variable'),
        ),
        migrations.AddField(
            model_name='collection',
            name='rerank_model',
            field=models.CharField(blank=True, help_text="A LiteLLM rerank model (e.g. cohere/rerank-english-v3.0) reordering search's best 50 candidates. Empty: no reranking.", max_length=200),
        ),
        migrations.AddField(
            model_name='collection',
            name='runtime_gate',
            field=models.JSONField(blank=True, editable=False, help_text="The last change of the local model's runtime: the collection's golden queries searched with the new runtime's query vectors and PyTorch's (recall@5, MRR@10), and whether it re-embedded.", null=True),
        ),
        migrations.AddField(
            model_name='collection',
            name='team',
            field=models.ForeignKey(blank=True, help_text="The team that owns it: only its members (and platform operators) see the collection and everything in it. Empty: the platform's own, seen by operators only.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='collections', to='auth.group'),
        ),
        migrations.AddField(
            model_name='collectionactivity',
            name='fresh',
            field=models.BigIntegerField(db_default=0, help_text="Documents embedded within their collection's freshness SLA."),
        ),
        migrations.AddField(
            model_name='collectionactivity',
            name='searches',
            field=django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), db_default=models.Value([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None)), help_text='Search seconds, bucket counts.', size=None),
        ),
        migrations.AddField(
            model_name='retrievalevaluation',
            name='before',
            field=models.ForeignKey(blank=True, help_text='An evaluation after a configuration change: the evaluation before it, to compare with.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='pipeline.retrievalevaluation'),
        ),
        migrations.AlterField(
            model_name='collection',
            name='local_encoder',
            field=models.CharField(blank=True, editable=False, help_text="The runtime/precision that wrote the local model's latest vectors (pipeline.encoder), e.g. openvino/int8. A runtime serves only after passing the faithfulness gate; a change of runtime re-embeds the collection only if the new one fails its golden queries (runtime_gate).", max_length=40, verbose_name='local model runtime'),
        ),
        migrations.AlterField(
            model_name='retrievalevaluation',
            name='trigger',
            field=models.CharField(default='command', help_text='command, api, schedule; or, around a configuration change, before change, settings change (search settings saved), optimizer (its ef_search change) or re-embed (its new generation switched to).', max_length=20),
        ),
        migrations.AddConstraint(
            model_name='collectionactivity',
            constraint=models.CheckConstraint(condition=models.Q(('searches__len', 16)), name='pipeline_collectionactivity_searches_size'),
        ),
        migrations.RunSQL(backfill("pipeline_batchtiming"), migrations.RunSQL.noop),
        migrations.RunSQL(backfill("pipeline_collectionactivity"), migrations.RunSQL.noop),
    ]
