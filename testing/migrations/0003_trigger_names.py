from django.conf import settings
from django.db import migrations, models


def name_the_scheduler(apps, schema_editor):
    """Runs recorded as "schedule" came from whichever scheduler this deployment used."""
    TestRun = apps.get_model("testing", "TestRun")
    scheduler = "schedule-argo" if settings.EMBEDPORTAL_SCHEDULER == "external" else "schedule-django-q"
    TestRun.objects.filter(trigger="schedule").update(trigger=scheduler)
    TestRun.objects.filter(trigger="config_change").update(trigger="config-change")


def back(apps, schema_editor):
    TestRun = apps.get_model("testing", "TestRun")
    TestRun.objects.filter(trigger__startswith="schedule-").update(trigger="schedule")
    TestRun.objects.filter(trigger="config-change").update(trigger="config_change")


class Migration(migrations.Migration):
    dependencies = [("testing", "0001_squashed_0002_benchmarkrun")]

    operations = [
        migrations.AlterField(
            model_name="testrun",
            name="trigger",
            field=models.CharField(
                choices=[
                    ("api", "API request"),
                    ("schedule-django-q", "django-q2 schedule"),
                    ("schedule-argo", "Argo CronWorkflow"),
                    ("config-change", "Configuration change"),
                    ("cli", "Command line"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(name_the_scheduler, back),
    ]
