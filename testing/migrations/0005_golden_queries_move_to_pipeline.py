# Golden queries belong to the pipeline app now (pipeline 0003 copies the rows first).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('testing', '0004_result_summaries'),
        ('pipeline', '0006_retrieval_quality'),
    ]

    operations = [
        migrations.DeleteModel(
            name='GoldenQuery',
        ),
    ]
