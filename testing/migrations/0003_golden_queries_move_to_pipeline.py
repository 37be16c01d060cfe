# Golden queries belong to the pipeline app now (pipeline 0003 copies the rows first).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('testing', '0001_squashed_0002_benchmarkrun'),
        ('pipeline', '0003_retrieval_quality'),
    ]

    operations = [
        migrations.DeleteModel(
            name='GoldenQuery',
        ),
    ]
