"""The settings registry's second half (embedportal.config assembles both): operability, the SLO
and capacity history, performance, django-q2, documentation and the operations tests."""

from __future__ import annotations

from embedportal.setting import Setting

OPERATIONS = (
    # --- operability ---------------------------------------------------------------------------
    Setting(
        "EMBEDPORTAL_METRICS_COLLECTORS",
        "list",
        "pipeline.collectors.DatabaseCollector,reprocessing.collectors.DatabaseCollector,docs_site.collectors.DatabaseCollector,"
        "testing.collectors.DatabaseCollector,pipeline.circuits.CircuitCollector,pipeline.costs.CostCollector,"
        "pipeline.performance.compliance.PerformanceSLOCollector,testing.benchmarks.collector.BenchmarkCollector,"
        "pipeline.quality.QualityCollector,embedportal.schedules.ScheduleCollector",
        "Scrape-time collectors added to `/metrics` (dotted paths to prometheus_client collectors).",
    ),
    Setting(
        "EMBEDPORTAL_METRICS_ALLOWED_IPS",
        "list",
        "",
        "CIDRs allowed to read `/metrics` (empty: loopback only, unless a credential below is set).",
    ),
    Setting("EMBEDPORTAL_METRICS_BASIC_AUTH", "secret", "", "`user:password` required for `/metrics` (empty: none)."),
    Setting("EMBEDPORTAL_METRICS_TOKEN", "secret", "", "Bearer token accepted for `/metrics` (empty: none)."),
    Setting("EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS", "int", 300, "Window of the throughput gauge (seconds)."),
    Setting(
        "EMBEDPORTAL_HEARTBEAT_MAX_AGE",
        "int",
        45,
        "A worker whose heartbeat is older than this (seconds) is dead: workers beat every 15 s, busy or idle "
        "(the every-minute django-q2 schedule's rows get 150 s). None alive fails the queue health check.",
    ),
    Setting(
        "EMBEDPORTAL_HEALTH_PROGRESS_WINDOW",
        "int",
        600,
        "Pending work this old (seconds) with nothing embedded meanwhile fails the queue health check.",
    ),
    Setting(
        "EMBEDPORTAL_HEALTH_MODEL_TIMEOUT",
        "float",
        10.0,
        "Seconds the model health probe may take to answer (loading LiteLLM or a local model is timed apart).",
    ),
    Setting(
        "EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS",
        "int",
        60,
        "`/api/v1/health/` and the overview reuse a model probe younger than this (stored in the database, "
        "shared by all processes): at most one provider call per model configuration per interval.",
    ),
    # --- SLO and capacity history (pipeline.history, pipeline.performance.capacity) ------------
    Setting(
        "EMBEDPORTAL_HISTORY_MINUTE_DAYS",
        "int",
        3,
        "The database history keeps per-minute rows this many days, then rolls them up into hours.",
    ),
    Setting(
        "EMBEDPORTAL_HISTORY_RETENTION_DAYS",
        "int",
        400,
        "History rows older than this many days are deleted (the 30-day SLOs and the capacity trend need far less).",
    ),
    Setting(
        "EMBEDPORTAL_TEST_RUN_RETENTION_DAYS",
        "int",
        90,
        "Operations test runs and their results older than this many days are deleted (at least 14: flaky "
        "detection reads two weeks); the test counters on /metrics keep counting them.",
    ),
    Setting(
        "EMBEDPORTAL_BENCHMARK_RETENTION_DAYS",
        "int",
        365,
        "Benchmark runs older than this many days are deleted (regression detection compares recent runs).",
    ),
    Setting(
        "EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS",
        "int",
        30,
        "django-q2's failed tasks older than this many days are deleted by a daily pass (django-q2 keeps "
        "them for good; the scheduled-task alert reads each schedule's last run, at most a day old).",
    ),
    Setting(
        "EMBEDPORTAL_AUDIT_RETENTION_DAYS",
        "int",
        400,
        "Audit trail events older than this many days are deleted by the daily pruning pass.",
    ),
    Setting(
        "EMBEDPORTAL_CAPACITY_WORKERS",
        "int",
        0,
        "Pipeline worker processes in one worker pod (a measurement's per-pod figure is the rate at this count). "
        "0: Q_WORKERS.",
        zero_ok=True,
    ),
    Setting(
        "EMBEDPORTAL_MAX_WORKER_REPLICAS",
        "int",
        1,
        "Worker pods the autoscaler may run at most (the KEDA ScaledObject's maxReplicaCount); the capacity "
        "gauge is the per-pod figure times this.",
    ),
    Setting(
        "EMBEDPORTAL_SCRATCH_DATABASE",
        "str",
        "",
        "The database on the same server that benchmarks and capacity measurements write into (created and "
        "migrated on first use if the role may; emptied after each run).",
        default_text="<database>_scratch",
    ),
    Setting(
        "EMBEDPORTAL_CORPUS_DIR",
        "path",
        "",
        "Where the benchmark corpus (the Django documentation) is cached; never downloaded at run time: "
        "`manage.py fetch_corpus` fills it (the image does at build).",
        default_text="EMBEDPORTAL_DATA_DIR/cache/corpus",
    ),
    # --- performance (the optimizer and the performance SLOs) ------------------------------------
    Setting(
        "EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS",
        "int",
        14,
        "Per-batch stage timings older than this many days are deleted (each collection's cost total is kept).",
    ),
    Setting(
        "EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS",
        "int",
        3600,
        "The window the optimizer and the performance SLO gauges read (seconds up to now).",
    ),
    Setting(
        "EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES",
        "int",
        20,
        "Batches after an applied change that are measured before it is kept or reverted.",
    ),
    Setting(
        "EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES",
        "int",
        200,
        "Searches of a collection measured before and after an applied ef_search change (and the least a "
        "collection needs for its own search p95); each collection keeps its latest this many search times.",
    ),
    Setting(
        "EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS",
        "str",
        "",
        "Performance SLO: 95% of documents are chunked, embedded and stored within this many seconds of their claim. "
        "Overrides the target in pipeline/performance/slos.yaml.",
        default_text="10 (slos.yaml)",
    ),
    Setting(
        "EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER",
        "str",
        "",
        "Performance SLO: documents per second one busy worker sustains, for models without a capacity "
        "measurement (a measured model's target is 0.8 x its measured one-worker rate). Empty: a model never "
        "measured is held to no target (EmbeddingPipelineCapacityNeverMeasured asks for its measurement).",
        default_text="empty: not held",
    ),
    Setting(
        "EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS",
        "int",
        30,
        "Days after which the capacity measurement is stale: exported as "
        "embedding_pipeline_capacity_max_age_seconds, which EmbeddingPipelineCapacityMeasurementStale reads.",
    ),
    # --- django-q2 -----------------------------------------------------------------------------
    Setting("Q_WORKERS", "int", 2, "django-q2 worker processes per cluster."),
    Setting("Q_TIMEOUT", "int", 600, "Seconds a django-q2 task may run."),
    Setting("Q_RETRY", "int", 660, "Seconds before an unacknowledged task is delivered again (must exceed Q_TIMEOUT)."),
    Setting(
        "EMBEDPORTAL_SCHEDULER",
        "str",
        "django-q2",
        "Who runs the recurring passes: `django-q2` (migrate registers every schedule) or `external` (Argo "
        "CronWorkflows run the reprocessing and ops-test passes, so migrate deletes those schedules; the "
        "pipeline's drain, heartbeat and the other schedules stay).",
    ),
    # --- documentation -------------------------------------------------------------------------
    Setting(
        "EMBEDPORTAL_DOCS_DIR",
        "path",
        "",
        "The Markdown sources of the documentation site (`docs/` of the repository).",
        default_text="<project>/docs",
    ),
    Setting(
        "EMBEDPORTAL_DOCS_SITE_DIR",
        "path",
        "",
        "Where `manage.py docs build` writes the site served under `/docs/`.",
        default_text="<data dir>/site",
    ),
    Setting(
        "EMBEDPORTAL_DOCS_REVIEW_DAYS", "int", 90, "Review interval of a hand-written page that declares none (days)."
    ),
    # --- operations tests (testing app) ---------------------------------------------------------
    Setting(
        "EMBEDPORTAL_OPS_TEST_WAIT_SECONDS",
        "float",
        60.0,
        "Seconds an operations test scenario waits for the running workers.",
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_ABANDON_SECONDS",
        "int",
        900,
        "A test run silent this long is marked abandoned and frees the one-run slot.",
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_REGRESSION_TOLERANCE",
        "float",
        0.05,
        "Largest drop of recall@k or MRR below the last passing run a regression scenario accepts.",
        zero_ok=True,
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_MAX_BACKLOG",
        "int",
        0,
        "Load scenarios refuse to start while more user documents than this are queued.",
        zero_ok=True,
    ),
    Setting("EMBEDPORTAL_OPS_TEST_LOAD_DOCUMENTS", "int", 300, "Documents the bounded load scenario ingests."),
    Setting(
        "EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS",
        "int",
        60,
        "Quiet time after a collection's configuration change before its regression run starts.",
        zero_ok=True,
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_FAULT_HOST",
        "str",
        "127.0.0.1",
        "Address the failure scenarios' fault-injecting provider listens on.",
    ),
    Setting(
        "EMBEDPORTAL_CODE_VERSION",
        "str",
        "",
        "Code version recorded with each test run (the image tag or digest); empty: git HEAD of a checkout.",
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST",
        "str",
        "",
        "Host the workers reach that provider at (e.g. the pod IP); empty: the listen address.",
    ),
    Setting(
        "EMBEDPORTAL_OPS_TEST_FAULT_PORT",
        "int",
        0,
        "Port that provider listens on (0: any free port). Fixed in Kubernetes, where a NetworkPolicy "
        "opens only this port of the runner pod to the workers.",
        zero_ok=True,
    ),
    # --- read outside settings.py --------------------------------------------------------------
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "path",
        "",
        "Shared metrics directory for gunicorn and django-q2 processes (read by prometheus_client; set by `make run`).",
    ),
)
