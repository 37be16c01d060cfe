# Search modes: existing collections keep vector search (as before); new ones default to hybrid.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0008_chunk_keyword_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='collection',
            name='fusion',
            field=models.CharField(choices=[('blend', 'Weighted blend of normalised scores'), ('rrf', 'Reciprocal-rank fusion')], default='blend', max_length=10),
        ),
        migrations.AddField(
            model_name='collection',
            name='keyword_weight',
            field=models.FloatField(default=0.5, help_text="Hybrid search: the keyword ranking's share (0 to 1); the vector ranking has the rest.", validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)]),
        ),
        migrations.AddField(
            model_name='collection',
            name='retrieval_target',
            field=models.FloatField(default=0.9, help_text='The retrieval quality SLO: recall@5 of the golden queries at or above this.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)], verbose_name='recall@5 target'),
        ),
        migrations.AddField(
            model_name='collection',
            name='search_mode',
            field=models.CharField(choices=[('vector', 'Vector (nearest embeddings)'), ('keyword', 'Keyword (BM25-style, in PostgreSQL)'), ('hybrid', 'Hybrid (vector and keyword fused)')], default='vector', help_text='How search ranks chunks when a request does not say (docs/search.md has the measurements).', max_length=10),
        ),
        migrations.AlterField(
            model_name='collection',
            name='search_mode',
            field=models.CharField(choices=[('vector', 'Vector (nearest embeddings)'), ('keyword', 'Keyword (BM25-style, in PostgreSQL)'), ('hybrid', 'Hybrid (vector and keyword fused)')], default='hybrid', help_text='How search ranks chunks when a request does not say (docs/search.md has the measurements).', max_length=10),
        ),
        migrations.AlterField(
            model_name='retrievalevaluation',
            name='mode',
            field=models.CharField(choices=[('vector', 'Vector (nearest embeddings)'), ('keyword', 'Keyword (BM25-style, in PostgreSQL)'), ('hybrid', 'Hybrid (vector and keyword fused)')], max_length=10),
        ),
    ]
