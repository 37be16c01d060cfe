"""Pipeline migrations 0001-0012 in one: a database that applied them records this as applied, a fresh
one gets the same schema (pg_dump --schema-only identical to the old chain's).

Left out, as a fresh database does not need them: 0008's RunPython, which rebuilt each existing
collection's HNSW index as partial on (collection_id, generation) (a fresh database has no collection;
pipeline.storage builds each new collection's index that way), and 0002's CREATE INDEX CONCURRENTLY
(an empty table needs no concurrent build: the index is declared with the others below)."""

import django.contrib.postgres.fields
import django.core.validators
import django.db.models.deletion
import django.db.models.expressions
import django.utils.timezone
import pgvector.django.vector
import pipeline.models.collection
from django.core.management.base import CommandError
from django.db import migrations, models
from pgvector.django import VectorExtension


def require_pgvector(apps, schema_editor):
    # A clear error instead of "could not open extension control file" on servers without pgvector.
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        if cur.fetchone() is None:
            # CommandError: `migrate` prints the message alone, without a traceback.
            raise CommandError(
                "The PostgreSQL server at DATABASE_URL has no pgvector extension ('vector'). Install pgvector "
                "0.8 on that server (e.g. the pgvector/pgvector image or CloudNativePG's standard image), "
                "or unset DATABASE_URL to use the embedded PostgreSQL + pgvector."
            )


ID = ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"))


class Migration(migrations.Migration):
    replaces = [
        ("pipeline", name)
        for name in (
            "0001_initial",
            "0002_worker_heartbeat_embedded_at_index",
            "0003_collection_extra_params_validator",
            "0004_modelcheck",
            "0005_history_and_capacity",
            "0006_performance",
            "0007_provider_circuit_fair_claims",
            "0008_chunk_generations",
            "0009_chunk_document_index_covered",
            "0010_collection_hnsw_parameters_search_latency",
            "0011_collection_provider_concurrency",
            "0012_provider_circuit_probe_permission",
        )
    ]

    initial = True

    dependencies = []

    # Models in the order the old chain created them, fields in its column order (later AddFields last).
    operations = [
        migrations.RunPython(require_pgvector, migrations.RunPython.noop, elidable=False),
        VectorExtension(),
        migrations.CreateModel('Collection', [
            ID,
            ('name', models.SlugField(max_length=63, unique=True)),
            ('model', models.CharField(default='local/all-MiniLM-L6-v2', help_text='A LiteLLM model string, e.g. local/all-MiniLM-L6-v2 or openai/text-embedding-3-small.', max_length=200, verbose_name='embedding model')),
            ('api_base', models.URLField(blank=True, help_text='LiteLLM api_base, if any.', max_length=500, verbose_name='API base')),
            ('api_key_env', models.CharField(blank=True, help_text='Name of the environment variable holding the provider API key; NAME_FILE is read first (mounted secrets). The key itself is never stored.', max_length=100, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', 'Use the name of an environment variable, not a key.')], verbose_name='API key variable')),
            ('extra_params', models.JSONField(blank=True, default=dict, help_text='Extra LiteLLM embedding parameters, e.g. {"dimensions": 256}.', validators=[pipeline.models.collection.validate_extra_params], verbose_name='extra parameters')),
            ('dimensions', models.PositiveIntegerField(validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(16000)])),
            ('chunking_strategy', models.CharField(choices=[('token_windows', 'Token windows with overlap'), ('recursive', 'Recursive text splitting'), ('markdown', 'Markdown-aware splitting')], default='recursive', max_length=20)),
            ('chunk_unit', models.CharField(choices=[('tokens', "Tokens of the collection's model"), ('characters', 'Characters')], default='tokens', max_length=12)),
            ('chunk_size', models.PositiveIntegerField(default=256, validators=[django.core.validators.MinValueValidator(8)])),
            ('chunk_overlap', models.PositiveIntegerField(default=32)),
            ('batch_size', models.PositiveIntegerField(default=64, help_text='Most chunks sent in one embedding call.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(2048)], verbose_name='embedding batch size')),
            ('freshness_sla', models.DurationField(default=pipeline.models.collection.default_freshness_sla)),
            ('paused', models.BooleanField(default=False, help_text='Paused collections are not claimed by workers.')),
            ('created_at', models.DateTimeField(auto_now_add=True)),
            ('updated_at', models.DateTimeField(auto_now=True)),
            ('last_claimed_at', models.DateTimeField(blank=True, editable=False, help_text='Claims go round-robin, least recently claimed first.', null=True)),
            ('generation', models.PositiveIntegerField(default=1, editable=False, help_text='The chunk generation search reads.')),
            ('building_generation', models.PositiveIntegerField(blank=True, editable=False, help_text='A generation being written without its HNSW index (first load or re-embed), if any.', null=True)),
            ('serving', models.JSONField(blank=True, editable=False, help_text='While a re-embed runs: the model configuration search embeds queries with (the old one).', null=True)),
            ('ef_search', models.PositiveSmallIntegerField(blank=True, help_text='Candidates a search visits (pgvector: 1 to 1000); never fewer than k. Empty: max(40, 2k).', null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1000)], verbose_name='HNSW ef_search')),
            ('hnsw_ef_construction', models.PositiveSmallIntegerField(default=64, help_text='Candidates considered per insert (pgvector: 4 to 1000 and at least 2 * m, default 64). Fewer: faster inserts and builds, lower recall. A change rebuilds the index.', validators=[django.core.validators.MinValueValidator(4), django.core.validators.MaxValueValidator(1000)], verbose_name='HNSW ef_construction')),
            ('hnsw_m', models.PositiveSmallIntegerField(default=16, help_text='Neighbours per graph node (pgvector: 2 to 100, default 16). Fewer: faster inserts and builds, lower recall. A change rebuilds the index.', validators=[django.core.validators.MinValueValidator(2), django.core.validators.MaxValueValidator(100)], verbose_name='HNSW m')),
            ('provider_concurrency', models.PositiveSmallIntegerField(default=1, help_text="Embedding calls a worker makes at once for one batch (1 to 32) with a remote provider, whose time is mostly waiting; local models always make one. The provider's rate limit caps it: 429 answers mean lower it.", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(32)], verbose_name='provider concurrency')),
        ], options={
            'ordering': ['name'],
            'permissions': [('pause_collection', 'Can pause and resume collections'), ('reembed_collection', 'Can re-embed a collection')],
            'constraints': [models.CheckConstraint(condition=models.Q(('chunk_overlap__lt', models.F('chunk_size'))), name='pipeline_collection_overlap_lt_size'), models.CheckConstraint(condition=models.Q(('hnsw_ef_construction__gte', django.db.models.expressions.CombinedExpression(models.F('hnsw_m'), '*', models.Value(2)))), name='pipeline_collection_hnsw_ef_construction_ge_2m')],
        }),
        migrations.CreateModel('Document', [
            ID,
            ('external_id', models.CharField(max_length=512)),
            ('text', models.TextField()),
            ('content_hash', models.CharField(help_text='SHA-256 of the text.', max_length=64)),
            ('metadata', models.JSONField(blank=True, default=dict)),
            ('source_modified_at', models.DateTimeField(blank=True, null=True)),
            ('last_embedded_at', models.DateTimeField(blank=True, null=True)),
            ('status', models.CharField(choices=[('pending', 'Pending'), ('processing', 'Processing'), ('embedded', 'Embedded'), ('failed', 'Failed')], default='pending', max_length=12)),
            ('attempts', models.PositiveIntegerField(default=0)),
            ('last_error', models.TextField(blank=True)),
            ('lease_owner', models.CharField(blank=True, max_length=100)),
            ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
            ('enqueued_at', models.DateTimeField(default=django.utils.timezone.now, help_text='When this version entered the queue.')),
            ('available_at', models.DateTimeField(default=django.utils.timezone.now, help_text='Not claimed before this time (backoff).')),
            ('created_at', models.DateTimeField(auto_now_add=True)),
            ('updated_at', models.DateTimeField(auto_now=True)),
            ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='documents', to='pipeline.collection')),
        ], options={
            'permissions': [('requeue_document', 'Can requeue documents')],
            'indexes': [models.Index(condition=models.Q(('status', 'pending')), fields=['available_at', 'id'], name='pipeline_document_pending'), models.Index(condition=models.Q(('status', 'processing')), fields=['lease_expires_at'], name='pipeline_document_leased'), models.Index(fields=['collection', 'status'], name='pipeline_document_status'), models.Index(fields=['last_embedded_at'], name='pipeline_document_embedded_at'), models.Index(condition=models.Q(('status', 'pending')), fields=['collection', 'available_at', 'id'], name='pipeline_document_pending_coll')],
            'constraints': [models.UniqueConstraint(fields=('collection', 'external_id'), name='pipeline_document_unique_external_id')],
        }),
        migrations.CreateModel('Chunk', [
            ID,
            ('ordinal', models.PositiveIntegerField()),
            ('text', models.TextField()),
            ('token_count', models.PositiveIntegerField()),
            ('embedding', pgvector.django.vector.VectorField()),
            ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pipeline.collection')),
            ('document', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='pipeline.document')),
            ('generation', models.PositiveIntegerField(db_default=1, default=1)),
        ], options={
            'constraints': [models.UniqueConstraint(fields=('document', 'generation', 'ordinal'), name='pipeline_chunk_unique_generation_ordinal')],
        }),
        migrations.CreateModel('WorkerHeartbeat', [
            ID,
            ('worker', models.CharField(help_text='host:pid of the worker process.', max_length=200, unique=True)),
            ('role', models.CharField(choices=[('worker', 'run_pipeline worker'), ('drain_task', 'django-q2 drain task'), ('schedule', 'django-q2 heartbeat schedule')], max_length=20)),
            ('started_at', models.DateTimeField()),
            ('beat_at', models.DateTimeField(db_index=True)),
        ], options={
            'ordering': ['-beat_at'],
        }),
        migrations.CreateModel('ModelCheck', [
            ID,
            ('key', models.CharField(help_text='sha256 of the configuration.', max_length=64)),
            ('model', models.CharField(max_length=255)),
            ('collections', models.JSONField(default=list, help_text='Active collections that use this configuration.')),
            ('ok', models.BooleanField()),
            ('reason', models.TextField()),
            ('seconds', models.FloatField(help_text="The model's answer to the probe, load excluded.")),
            ('load_seconds', models.FloatField(help_text="Loading LiteLLM and a local model's weights first (0 once loaded).")),
            ('checked_at', models.DateTimeField()),
        ], options={
            'ordering': ['model', 'key'],
            'constraints': [models.UniqueConstraint(fields=('key',), name='pipeline_modelcheck_key_unique')],
        }),
        migrations.CreateModel('CapacityMeasurement', [
            ID,
            ('model', models.CharField(max_length=200)),
            ('measured_at', models.DateTimeField(db_index=True)),
            ('documents', models.PositiveIntegerField(help_text='Documents embedded per worker count.')),
            ('chars_per_document', models.PositiveIntegerField()),
            ('points', models.JSONField()),
            ('usl_lambda', models.FloatField(blank=True, help_text='USL: docs/s of one worker without contention.', null=True)),
            ('usl_sigma', models.FloatField(blank=True, help_text='USL: contention (serial fraction).', null=True)),
            ('usl_kappa', models.FloatField(blank=True, help_text='USL: coherence (crosstalk) cost.', null=True)),
            ('peak_workers', models.FloatField(blank=True, help_text='N* = sqrt((1 - sigma) / kappa).', null=True)),
            ('fit_note', models.TextField(blank=True, help_text='How far the points determine the fit.')),
        ], options={
            'ordering': ['-measured_at'],
            'get_latest_by': 'measured_at',
        }),
        migrations.CreateModel('CollectionActivity', [
            ID,
            ('start', models.DateTimeField()),
            ('seconds', models.PositiveIntegerField(help_text='60 (a minute) or 3600 (an hour, rolled up).')),
            ('arrived', models.BigIntegerField(default=0, help_text='Documents enqueued (new or changed content).')),
            ('embedded', models.BigIntegerField(default=0)),
            ('failed', models.BigIntegerField(default=0, help_text='Documents failed for good (in-batch retries exhausted).')),
            ('latency', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), help_text='Per-document total seconds, bucket counts.', size=None)),
            ('freshness', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), help_text='Embedded minus source modified time, bucket counts.', size=None)),
            ('queue_depth', models.IntegerField(blank=True, help_text='Pending documents (an hour: its highest sample).', null=True)),
            ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pipeline.collection')),
        ], options={
            'verbose_name_plural': 'collection activity',
            'indexes': [models.Index(fields=['start'], name='pipeline_activity_start')],
            'constraints': [models.UniqueConstraint(fields=('collection', 'seconds', 'start'), name='pipeline_collectionactivity_unique_start'), models.CheckConstraint(condition=models.Q(('seconds__in', [60, 3600])), name='pipeline_collectionactivity_seconds'), models.CheckConstraint(condition=models.Q(('latency__len', 16)), name='pipeline_collectionactivity_latency_size'), models.CheckConstraint(condition=models.Q(('freshness__len', 13)), name='pipeline_collectionactivity_freshness_size')],
        }),
        migrations.CreateModel('CollectionCost', [
            ('collection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='cost', serialize=False, to='pipeline.collection')),
            ('documents', models.BigIntegerField(default=0, help_text='Documents stored.')),
            ('tokens', models.BigIntegerField(default=0)),
            ('cost_usd', models.FloatField(default=0.0)),
            ('updated_at', models.DateTimeField()),
        ]),
        migrations.CreateModel('BatchTiming', [
            ID,
            ('worker', models.CharField(max_length=200)),
            ('finished_at', models.DateTimeField()),
            ('documents', models.PositiveIntegerField(help_text='Documents stored by this batch.')),
            ('chunks', models.PositiveIntegerField()),
            ('tokens', models.BigIntegerField(default=0, help_text='Tokens the provider billed (its usage figure).')),
            ('cost_usd', models.FloatField(default=0.0, help_text="LiteLLM's price of those tokens (0 for local models).")),
            ('claim_seconds', models.FloatField(help_text='The claim query of the batch (shared by its collections).')),
            ('chunking_seconds', models.FloatField()),
            ('embedding_seconds', models.FloatField()),
            ('storage_seconds', models.FloatField()),
            ('total_seconds', models.FloatField(help_text="Chunking + embedding + storage, as the latency histogram's total.")),
            ('queue_wait_seconds', models.FloatField(help_text="Mean of enqueued -> claimed over the batch's documents.")),
            ('batch_size', models.PositiveIntegerField(help_text="The collection's embedding batch size at the time.")),
            ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pipeline.collection')),
        ], options={
            'indexes': [models.Index(fields=['collection', 'finished_at'], name='pipeline_batchtiming_coll_at'), models.Index(fields=['finished_at'], name='pipeline_batchtiming_at')],
        }),
        migrations.CreateModel('OptimizationChange', [
            ID,
            ('setting', models.CharField(help_text='What changed: batch_size, ef_search, hnsw (m and ef_construction) or backfill.', max_length=50)),
            ('before', models.JSONField()),
            ('after', models.JSONField()),
            ('reason', models.TextField(help_text='The recommendation and its expected effect.')),
            ('measurement_before', models.JSONField(help_text='Before the change: worker seconds per document of the latest batches, or (ef_search) search p95.')),
            ('measurement_after', models.JSONField(blank=True, null=True)),
            ('status', models.CharField(choices=[('applied', 'Applied, being measured'), ('kept', 'Kept (it helped)'), ('reverted', 'Reverted (it did not help)')], default='applied', max_length=10)),
            ('note', models.TextField(blank=True, help_text='Why it was kept or reverted.')),
            ('applied_by', models.CharField(blank=True, max_length=150)),
            ('applied_at', models.DateTimeField(help_text='When it took effect (an index rebuild: when the new index served).')),
            ('evaluated_at', models.DateTimeField(blank=True, null=True)),
            ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='optimization_changes', to='pipeline.collection')),
        ], options={
            'ordering': ['-applied_at'],
            'permissions': [('apply_optimizationchange', 'Can apply optimizer recommendations')],
            'indexes': [models.Index(condition=models.Q(('status', 'applied')), fields=['applied_at'], name='pipeline_optchange_pending')],
            'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'applied')), fields=('collection',), name='pipeline_optimizationchange_one_pending')],
        }),
        migrations.CreateModel('ProviderCircuit', [
            ID,
            ('model', models.CharField(max_length=200)),
            ('api_base', models.CharField(blank=True, max_length=500)),
            ('endpoint', models.CharField(help_text='model@host: the metric label (no credentials).', max_length=300)),
            ('state', models.CharField(choices=[('closed', 'Closed (calls go through)'), ('open', 'Open (its collections wait for the probe)'), ('half_open', 'Half-open (one worker is probing)')], default='closed', max_length=12)),
            ('consecutive_failures', models.PositiveIntegerField(default=0)),
            ('reopenings', models.PositiveIntegerField(default=0, help_text='Failed probes since it opened (the backoff step).')),
            ('opened_at', models.DateTimeField(blank=True, null=True)),
            ('next_probe_at', models.DateTimeField(blank=True, help_text='Open: the next probe; half-open: its lease.', null=True)),
            ('probe_owner', models.CharField(blank=True, help_text='The worker probing (half-open).', max_length=100)),
            ('last_error_type', models.CharField(blank=True, choices=[('api_error', 'Provider API failure (5xx, connection)'), ('timeout', 'Provider timeout'), ('rate_limit', 'Provider rate limit (429)'), ('auth', 'Provider authentication'), ('bad_request', 'Bad request / context too long'), ('connection_lost', 'Database connection lost'), ('disk_full', 'Database disk full'), ('serialization', 'Serialization failure / deadlock'), ('dimension_mismatch', 'Vector dimension mismatch'), ('nan_values', 'NaN or infinite values'), ('zero_vector', 'Zero or empty vector'), ('wrong_count', 'Wrong number of vectors'), ('empty_document', 'Document has no text to embed'), ('unknown', 'Unclassified error')], max_length=20)),
            ('last_failure_at', models.DateTimeField(blank=True, null=True)),
            ('updated_at', models.DateTimeField()),
        ], options={
            'ordering': ['endpoint'],
            'constraints': [models.UniqueConstraint(fields=('model', 'api_base'), name='pipeline_providercircuit_unique_endpoint')],
            'permissions': [('probe_providercircuit', 'Can make an open provider circuit probe now')],
        }),
        migrations.CreateModel('SearchLatency', [
            ('collection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='search_latency', serialize=False, to='pipeline.collection')),
            ('searches', models.BigIntegerField(default=0, help_text='Searches since the row was created.')),
            ('recent', django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), default=list, help_text='Seconds of the latest searches, oldest first.', size=None)),
            ('last_at', models.DateTimeField()),
        ]),
    ]
