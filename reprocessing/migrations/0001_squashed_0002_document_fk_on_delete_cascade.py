import django.db.models.deletion
from django.db import migrations, models


def document_fk(**options):
    return models.ForeignKey(
        on_delete=django.db.models.deletion.CASCADE, related_name="failures", to="pipeline.document", **options
    )


class Migration(migrations.Migration):
    # The last release's 0001-0002 in one; a database that applied them records this as applied. 0003
    # came after that release and stays apart: a squash over both left its databases part-way through.
    replaces = [
        ("reprocessing", "0001_initial"),
        ("reprocessing", "0002_document_fk_on_delete_cascade"),
    ]

    initial = True

    dependencies = [("pipeline", "0001_squashed_0012_provider_circuit_probe_permission")]

    operations = [
        # The table as 0002 left it; the document key after it, below.
        migrations.CreateModel(
            "FailedDocument",
            [
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('error_type', models.CharField(choices=[('api_error', 'Provider API failure (5xx, connection)'), ('timeout', 'Provider timeout'), ('rate_limit', 'Provider rate limit (429)'), ('auth', 'Provider authentication'), ('bad_request', 'Bad request / context too long'), ('connection_lost', 'Database connection lost'), ('disk_full', 'Database disk full'), ('serialization', 'Serialization failure / deadlock'), ('dimension_mismatch', 'Vector dimension mismatch'), ('nan_values', 'NaN or infinite values'), ('zero_vector', 'Zero or empty vector'), ('wrong_count', 'Wrong number of vectors'), ('empty_document', 'Document has no text to embed'), ('unknown', 'Unclassified error')], max_length=24)),
                ('stage', models.CharField(choices=[('chunking', 'Chunking'), ('embedding', 'Embedding'), ('storage', 'Storage')], max_length=12)),
                ('message', models.TextField(blank=True, help_text='The last error, secrets scrubbed.')),
                ('attempts', models.PositiveIntegerField(default=1, help_text='Pipeline failures recorded while this row was open.')),
                ('first_failed_at', models.DateTimeField()),
                ('last_failed_at', models.DateTimeField()),
                ('next_retry_at', models.DateTimeField(blank=True, null=True)),
                ('retried_at', models.DateTimeField(blank=True, help_text='When it was last requeued.', null=True)),
                ('state', models.CharField(choices=[('waiting', 'Waiting for its next retry'), ('retrying', 'Requeued, being reprocessed'), ('dead_lettered', 'Dead-lettered for an operator'), ('resolved', 'Resolved')], default='waiting', max_length=16)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('resolution', models.CharField(blank=True, choices=[('reprocessed', 'Embedded by a later pipeline run'), ('operator', 'Closed by an operator')], max_length=16)),
            ],
            options={
                'db_table': 'failed_documents',
                'ordering': ['-last_failed_at', '-id'],
                'permissions': [('retry_faileddocument', 'Can retry failed documents'), ('resolve_faileddocument', 'Can resolve or dead-letter failed documents')],
                'indexes': [models.Index(condition=models.Q(('state', 'waiting')), fields=['next_retry_at'], name='reprocessing_failed_due'), models.Index(condition=models.Q(('state', 'resolved'), _negated=True), fields=['error_type', 'first_failed_at'], name='reprocessing_failed_open')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('resolved_at__isnull', False), ('state', 'resolved')), models.Q(models.Q(('state', 'resolved'), _negated=True), ('resolved_at__isnull', True)), _connector='OR'), name='reprocessing_faileddocument_resolved_at'), models.CheckConstraint(condition=models.Q(models.Q(('state', 'waiting'), _negated=True), ('next_retry_at__isnull', False), _connector='OR'), name='reprocessing_faileddocument_waiting_has_retry')],
            },
        ),
        # Collection.delete() removes documents with a raw DELETE (no Django cascade), so the database
        # itself cascades to failed_documents. Django 5.2 creates its foreign keys without ON DELETE,
        # and only at the end of a migration: the field is added without one and the key by hand.
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddField("faileddocument", "document", document_fk())],
            database_operations=[migrations.AddField("faileddocument", "document", document_fk(db_constraint=False))],
        ),
        migrations.RunSQL(
            sql="ALTER TABLE failed_documents ADD CONSTRAINT reprocessing_faileddocument_document_fk"
            " FOREIGN KEY (document_id) REFERENCES pipeline_document (id)"
            " ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
            reverse_sql="ALTER TABLE failed_documents DROP CONSTRAINT reprocessing_faileddocument_document_fk",
        ),
        migrations.AddConstraint(
            "faileddocument",
            models.UniqueConstraint(
                condition=models.Q(("state", "resolved"), _negated=True),
                fields=("document",),
                name="reprocessing_faileddocument_one_open",
            ),
        ),
    ]
