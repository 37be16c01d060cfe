# The local model's runtime on capacity measurements (the plan and optimizer use only the serving runtime's),
# and each collection's golden-query gate of a runtime change (issue 23).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipeline', '0014_evaluation_before_change'),
    ]

    operations = [
        migrations.AddField(
            model_name='capacitymeasurement',
            name='local_encoder',
            field=models.CharField(blank=True, help_text="The local model's runtime/precision during the measurement (pipeline.encoder), e.g. openvino/bf16; the plan and the optimizer use a local-model figure only while that runtime serves.", max_length=40, verbose_name='local model runtime'),
        ),
        migrations.AddField(
            model_name='collection',
            name='runtime_gate',
            field=models.JSONField(blank=True, editable=False, help_text="The last change of the local model's runtime: the collection's golden queries searched with the new runtime's query vectors and PyTorch's (recall@5, MRR@10), and whether it re-embedded.", null=True),
        ),
        migrations.AlterField(
            model_name='collection',
            name='local_encoder',
            field=models.CharField(blank=True, editable=False, help_text="The runtime/precision that wrote the local model's latest vectors (pipeline.encoder), e.g. openvino/int8. A runtime serves only after passing the faithfulness gate; a change of runtime re-embeds the collection only if the new one fails its golden queries (runtime_gate).", max_length=40, verbose_name='local model runtime'),
        ),
    ]
