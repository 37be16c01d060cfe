from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    # 0001_initial and 0002_benchmarkrun in one: a database that applied them records this as applied.
    replaces = [("testing", "0001_initial"), ("testing", "0002_benchmarkrun")]

    initial = True

    dependencies = [("pipeline", "0001_squashed_0012_provider_circuit_probe_permission")]

    operations = [
        migrations.CreateModel(
            name='ConfigSnapshot',
            fields=[
                ('key', models.CharField(max_length=32, primary_key=True, serialize=False)),
                ('fingerprint', models.CharField(max_length=64)),
                ('recorded_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='BenchmarkRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('suite', models.CharField(choices=[('quick', 'Quick (CI, configuration changes)'), ('full', 'Full (nightly, releases)')], max_length=8)),
                ('trigger', models.CharField(choices=[('cli', 'Command line'), ('config_change', 'Configuration change'), ('schedule', 'Nightly schedule'), ('release', 'Release'), ('ci', 'CI')], default='cli', max_length=16)),
                ('note', models.CharField(blank=True, help_text='What asked for it (e.g. the collection changed).', max_length=300)),
                ('started_at', models.DateTimeField()),
                ('duration_seconds', models.FloatField()),
                ('code_version', models.CharField(blank=True, max_length=64)),
                ('config_fingerprint', models.CharField(blank=True, max_length=64)),
                ('machine_fingerprint', models.CharField(help_text='Only runs on the same machine are compared.', max_length=64)),
                ('machine', models.JSONField(default=dict, help_text='CPU model, cores, memory, Python and PostgreSQL versions.')),
                ('results', models.JSONField(default=dict)),
                ('comparison', models.JSONField(default=dict)),
                ('regressions', models.PositiveIntegerField(default=0, help_text='Figures flagged as regressions.')),
            ],
            options={
                'ordering': ['-started_at'],
                'get_latest_by': 'started_at',
                'indexes': [models.Index(fields=['machine_fingerprint', 'suite', 'started_at'], name='testing_benchrun_history')],
            },
        ),
        migrations.CreateModel(
            name='TestRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('trigger', models.CharField(choices=[('api', 'API request'), ('schedule', 'Schedule'), ('config_change', 'Configuration change'), ('cli', 'Command line')], max_length=16)),
                ('selection', models.JSONField(blank=True, default=dict, help_text='Categories, scenarios and target collections asked for.')),
                ('requested_by', models.CharField(blank=True, max_length=150)),
                ('code_version', models.CharField(blank=True, max_length=64)),
                ('config_fingerprint', models.CharField(blank=True, max_length=64)),
                ('status', models.CharField(choices=[('running', 'Running'), ('passed', 'Passed'), ('failed', 'Failed'), ('error', 'Error (the run itself broke or was abandoned)')], default='running', max_length=10)),
                ('started_at', models.DateTimeField()),
                ('heartbeat_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('duration_seconds', models.FloatField(blank=True, null=True)),
                ('counts', models.JSONField(blank=True, default=dict, help_text='Results by outcome.')),
                ('message', models.TextField(blank=True)),
            ],
            options={
                'ordering': ['-started_at', '-id'],
                'permissions': [('run_testrun', 'Can run operations tests')],
                'indexes': [models.Index(fields=['trigger', '-started_at'], name='testing_testrun_trigger')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'running')), fields=('status',), name='testing_testrun_one_running')],
            },
        ),
        migrations.CreateModel(
            name='GoldenQuery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('query', models.CharField(max_length=2000)),
                ('expected_document_id', models.CharField(help_text='The external id of the document the query must find.', max_length=512)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('collection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='golden_queries', to='pipeline.collection')),
            ],
            options={
                'verbose_name_plural': 'golden queries',
                'ordering': ['collection', 'id'],
                'constraints': [models.UniqueConstraint(fields=('collection', 'query'), name='testing_goldenquery_unique_query')],
            },
        ),
        migrations.CreateModel(
            name='TestResult',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('scenario', models.CharField(max_length=100)),
                ('category', models.CharField(choices=[('normal', 'Normal'), ('edge', 'Edge cases'), ('failure', 'Failure conditions'), ('integration', 'Integration'), ('regression', 'Regression (retrieval quality)'), ('load', 'Load')], max_length=12)),
                ('component', models.CharField(choices=[('enqueue', 'Enqueue'), ('claim', 'Claim'), ('chunk', 'Chunk'), ('embed', 'Embed'), ('store', 'Store'), ('search', 'Search'), ('reprocess', 'Reprocess'), ('staleness', 'Staleness'), ('metrics', 'Metrics'), ('health', 'Health')], max_length=12)),
                ('target', models.CharField(blank=True, help_text='The collection a regression scenario measured, if any.', max_length=63)),
                ('outcome', models.CharField(choices=[('passed', 'Passed'), ('failed', 'Failed (the system did not behave)'), ('error', 'Error (the scenario itself broke)'), ('skipped', 'Skipped'), ('flaky', 'Flaky (passed only after a retry)')], max_length=8)),
                ('attempts', models.PositiveSmallIntegerField(default=1)),
                ('started_at', models.DateTimeField()),
                ('duration_seconds', models.FloatField()),
                ('message', models.TextField(blank=True, help_text='Why it failed, secrets scrubbed.')),
                ('details', models.JSONField(blank=True, default=dict, help_text="Measurements and every attempt's outcome.")),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='results', to='testing.testrun')),
            ],
            options={
                'ordering': ['run', 'id'],
                'indexes': [models.Index(fields=['scenario', '-started_at'], name='testing_testresult_history'), models.Index(fields=['started_at'], name='testing_testresult_started')],
            },
        ),
    ]
