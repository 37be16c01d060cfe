# Keyword search: each chunk's title and heading path, and a weighted tsvector PostgreSQL computes
# from them and the text (adding it rewrites pipeline_chunk once; rows written before have no title).

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0007_contextual_chunks'),
    ]

    operations = [
        migrations.AddField(
            model_name='chunk',
            name='headings',
            field=models.TextField(db_default='', default=''),
        ),
        migrations.AddField(
            model_name='chunk',
            name='title',
            field=models.TextField(db_default='', default=''),
        ),
        migrations.AddField(
            model_name='chunk',
            name='search_vector',
            field=models.GeneratedField(db_persist=True, expression=django.contrib.postgres.search.CombinedSearchVector(django.contrib.postgres.search.CombinedSearchVector(django.contrib.postgres.search.SearchVector('title', config='english', weight='A'), '||', django.contrib.postgres.search.SearchVector('headings', config='english', weight='B'), django.contrib.postgres.search.SearchConfig('english')), '||', django.contrib.postgres.search.SearchVector('text', config='english', weight='C'), django.contrib.postgres.search.SearchConfig('english')), output_field=django.contrib.postgres.search.SearchVectorField()),
        ),
        migrations.AddIndex(
            model_name='chunk',
            index=django.contrib.postgres.indexes.GinIndex(fields=['search_vector'], name='pipeline_chunk_search_gin'),
        ),
    ]
