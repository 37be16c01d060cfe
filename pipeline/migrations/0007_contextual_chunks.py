# Contextual chunks: the title and heading path embedded before each chunk (pipeline.structure).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0006_retrieval_quality'),
    ]

    # Existing collections keep embedding chunk text alone (False); new ones default to contextual.
    operations = [
        migrations.AddField(
            model_name="collection",
            name="contextual_chunks",
            field=models.BooleanField(default=False),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='collection',
            name='contextual_chunks',
            field=models.BooleanField(default=True, help_text="Embed each chunk after its document's title and heading path (the stored text is unchanged) and leave YAML front matter out of chunks. Changed only by a re-embed."),
        ),
    ]
