from django.db import migrations


class Migration(migrations.Migration):
    # A migration of its own: Django adds 0001's foreign key at the end of that migration.

    dependencies = [
        ("reprocessing", "0001_initial"),
    ]

    operations = [
        # Collection.delete() removes documents with a raw DELETE (no Django cascade), so the
        # database itself must cascade to failed_documents; Django 5.2 creates the FK without.
        migrations.RunSQL(
            sql="""
                DO $$
                DECLARE fk text;
                BEGIN
                    SELECT conname INTO fk FROM pg_constraint
                     WHERE conrelid = 'failed_documents'::regclass AND contype = 'f';
                    EXECUTE format('ALTER TABLE failed_documents DROP CONSTRAINT %I', fk);
                END $$;
                ALTER TABLE failed_documents ADD CONSTRAINT reprocessing_faileddocument_document_fk
                    FOREIGN KEY (document_id) REFERENCES pipeline_document (id)
                    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
