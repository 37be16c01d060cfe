# Golden queries move here from the testing app (retrieval quality is the product's now): its rows
# are copied, then testing 0003 drops its table. Evaluations are their scored history.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0005_collection_local_encoder'),
        ('testing', '0001_squashed_0002_benchmarkrun'),
    ]

    operations = [
        migrations.CreateModel(
            name='GoldenQuery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('query', models.CharField(max_length=2000)),
                ('expected_document_id', models.CharField(help_text='The external id of the document the query must find.', max_length=512)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='golden_queries', to='pipeline.collection')),
            ],
            options={
                'verbose_name_plural': 'golden queries',
                'ordering': ['collection', 'id'],
                'constraints': [models.UniqueConstraint(fields=('collection', 'query'), name='pipeline_goldenquery_unique_query')],
            },
        ),
        migrations.CreateModel(
            name='RetrievalEvaluation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('evaluated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('mode', models.CharField(choices=[('vector', 'Vector (nearest embeddings)')], max_length=10)),
                ('queries', models.PositiveIntegerField()),
                ('recall_at_1', models.FloatField()),
                ('recall_at_5', models.FloatField()),
                ('recall_at_10', models.FloatField()),
                ('mrr_at_10', models.FloatField(verbose_name='MRR@10')),
                ('ndcg_at_10', models.FloatField(verbose_name='nDCG@10')),
                ('configuration', models.JSONField(default=dict, help_text="The collection's retrieval settings at the time.")),
                ('trigger', models.CharField(default='command', help_text='command, api or schedule.', max_length=20)),
                ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='evaluations', to='pipeline.collection')),
            ],
            options={
                'ordering': ['-evaluated_at'],
                'indexes': [models.Index(fields=['collection', '-evaluated_at'], name='pipeline_evaluation_latest')],
            },
        ),
        migrations.RunSQL(
            "INSERT INTO pipeline_goldenquery (collection_id, query, expected_document_id, created_at) "
            "SELECT collection_id, query, expected_document_id, created_at FROM testing_goldenquery ORDER BY id",
            migrations.RunSQL.noop,
        ),
    ]
