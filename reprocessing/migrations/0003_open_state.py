from django.db import migrations, models


class Migration(migrations.Migration):
    # waiting and retrying become one state, open: a requeued row is open without next_retry_at.

    dependencies = [("reprocessing", "0001_squashed_0002_document_fk_on_delete_cascade")]

    operations = [
        migrations.RemoveConstraint(model_name="faileddocument", name="reprocessing_faileddocument_waiting_has_retry"),
        migrations.RemoveIndex(model_name="faileddocument", name="reprocessing_failed_due"),
        migrations.RunSQL(
            sql="UPDATE failed_documents SET state = 'open' WHERE state IN ('waiting', 'retrying')",
            reverse_sql="UPDATE failed_documents SET state = CASE WHEN next_retry_at IS NULL THEN 'retrying'"
            " ELSE 'waiting' END WHERE state = 'open'",
        ),
        migrations.AlterField(
            model_name="faileddocument",
            name="state",
            field=models.CharField(choices=[("open", "Open: scheduled for a retry, or requeued"), ("dead_lettered", "Dead-lettered for an operator"), ("resolved", "Resolved")], default="open", max_length=16),
        ),
        migrations.AddIndex(
            model_name="faileddocument",
            index=models.Index(condition=models.Q(("state", "open")), fields=["next_retry_at"], name="reprocessing_failed_due"),
        ),
        migrations.AddConstraint(
            model_name="faileddocument",
            constraint=models.CheckConstraint(
                condition=models.Q(("state", "open"), ("next_retry_at__isnull", True), _connector="OR"),
                name="reprocessing_faileddocument_retry_only_open",
            ),
        ),
    ]
