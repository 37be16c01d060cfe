# Hybrid fusion: new collections fuse by reciprocal rank (docs/search.md measures both on the
# development set); existing collections keep the fusion they have.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0010_teams_freshness_reranking_runtimes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='collection',
            name='fusion',
            field=models.CharField(choices=[('blend', 'Weighted blend of normalised scores'), ('rrf', 'Reciprocal-rank fusion')], default='rrf', max_length=10),
        ),
    ]
