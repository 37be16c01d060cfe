from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0004_api_base_without_credentials")]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="local_encoder",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The runtime/precision that wrote the local model's latest vectors (pipeline.encoder), "
                "e.g. openvino/int8. A runtime serves only after passing the faithfulness gate, so its vectors and "
                "PyTorch's are interchangeable: a change of runtime needs no re-embed.",
                max_length=40,
                verbose_name="local model runtime",
            ),
        ),
    ]
