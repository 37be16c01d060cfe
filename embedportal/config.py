"""The settings registry: every environment variable the app reads (the Django, API, pipeline and
failure settings here, the rest in embedportal.config_operations)."""

from __future__ import annotations

from collections import Counter

from embedportal.config_operations import OPERATIONS
from embedportal.setting import Setting

_ALL = (
    # --- Django and storage ------------------------------------------------------------------
    Setting(
        "DATABASE_URL",
        "secret",
        "",
        "PostgreSQL URL; the server needs the `vector` extension (pgvector 0.8). Unset: the embedded "
        "PostgreSQL 18 + pgvector under `EMBEDPORTAL_DATA_DIR/pg`, shared by every process.",
        default_text="embedded server",
    ),
    Setting("DB_CONN_MAX_AGE", "int", 60, "Seconds a database connection is kept (0: one per request).", zero_ok=True),
    Setting(
        "DB_CONNECT_TIMEOUT",
        "int",
        5,
        "Seconds a new database connection may take before it fails (a `connect_timeout` in DATABASE_URL wins).",
    ),
    Setting(
        "EMBEDPORTAL_DATA_DIR",
        "path",
        "",
        "Embedded database, secret key, admin password, corpus cache, built documentation site.",
        default_text="./var",
    ),
    Setting("DJANGO_SECRET_KEY", "secret", "", "Django secret key.", default_text="generated into the data dir"),
    Setting("DJANGO_DEBUG", "bool", False, "Django debug mode."),
    Setting(
        "DJANGO_ALLOWED_HOSTS",
        "list",
        "localhost,127.0.0.1,[::1],testserver",
        "Comma-separated host names the app answers to.",
    ),
    Setting("DJANGO_CSRF_TRUSTED_ORIGINS", "list", "", "Comma-separated origins, for the admin behind a proxy."),
    Setting(
        "DJANGO_SECURE_SSL_REDIRECT",
        "bool",
        False,
        "Redirect plain-http requests to https (the probes `/healthz`, `/readyz` and `/metrics` are exempt). "
        "Production: true; `make run` serves plain http on localhost.",
    ),
    Setting(
        "DJANGO_SECURE_HSTS_SECONDS",
        "int",
        0,
        "Strict-Transport-Security max-age (seconds), with includeSubDomains and preload; 0: no HSTS header.",
        zero_ok=True,
    ),
    Setting("DJANGO_SECURE_COOKIES", "bool", False, "Session and CSRF cookies are sent over https only."),
    Setting(
        "DJANGO_SECURE_PROXY_SSL_HEADER",
        "bool",
        False,
        "Trust the ingress' `X-Forwarded-Proto: https` as the request's scheme. Only behind a proxy that sets "
        "(and overwrites) that header.",
    ),
    Setting(
        "EMBEDPORTAL_LOGIN_FAILURES",
        "int",
        5,
        "Failed admin logins of one username that lock it out (django-axes); a success resets the count.",
    ),
    Setting(
        "EMBEDPORTAL_LOGIN_LOCKOUT_MINUTES",
        "int",
        15,
        "How long a locked-out username stays locked (minutes); `manage.py axes_reset_username NAME` ends it.",
    ),
    Setting(
        "DJANGO_STATIC_ROOT",
        "path",
        "",
        "Where `collectstatic` writes (whitenoise serves app static files without it).",
        default_text="<data dir>/static",
    ),
    Setting("EMBEDPORTAL_LOG_LEVEL", "str", "INFO", "Log level of the root logger."),
    # --- API limits ----------------------------------------------------------------------------
    Setting(
        "EMBEDPORTAL_MAX_DOCUMENT_CHARS",
        "int",
        1_000_000,
        "Largest accepted document text (characters); larger ones get HTTP 400. `enqueue` refuses unread a "
        "file over 4 bytes a character and a `.jsonl` line over 6 bytes a character + 1 MiB.",
    ),
    Setting("EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST", "int", 1000, "Most documents in one API request."),
    Setting(
        "EMBEDPORTAL_MAX_JSON_DEPTH",
        "int",
        32,
        "Deepest nesting of arrays and objects in an API request body; deeper is a 400, found before parsing.",
    ),
    Setting(
        "EMBEDPORTAL_MAX_JSON_VALUES",
        "int",
        1_000_000,
        "Most values (arrays, objects, their items and entries) in one JSON input: an API request body, a "
        "`.jsonl` line, an admin JSON field; more is a 400, found before parsing (parsed, each costs 50 to 100 "
        "bytes).",
    ),
    Setting(
        "EMBEDPORTAL_MAX_METADATA_BYTES",
        "int",
        65536,
        "Largest metadata of one document (bytes of its JSON), at every entry point (API, `enqueue`, admin).",
    ),
    Setting("EMBEDPORTAL_MAX_METADATA_KEYS", "int", 256, "Most keys in one document's metadata, nested ones included."),
    Setting(
        "EMBEDPORTAL_MAX_METADATA_DEPTH", "int", 8, "Deepest nesting of objects and arrays in one document's metadata."
    ),
    Setting(
        "EMBEDPORTAL_THROTTLE_READ",
        "str",
        "1200/min",
        "API reads (lists, retrievals, search) per user or token: `N/s`, `N/min`, `N/hour` or `N/day`. "
        "Over it: 429 with Retry-After.",
    ),
    Setting(
        "EMBEDPORTAL_THROTTLE_WRITE",
        "str",
        "600/min",
        "API writes (enqueue, create, change, delete) per user or token.",
    ),
    Setting(
        "EMBEDPORTAL_THROTTLE_OPERATE",
        "str",
        "60/min",
        "API operations (pause, resume, requeue, re-embed, apply optimizations, run tests) per user or token.",
    ),
    Setting(
        "EMBEDPORTAL_THROTTLE_BAD_TOKEN",
        "str",
        "20/min",
        "Failed token authentications per client address; past it every token from there gets 429 until it cools.",
    ),
    Setting(
        "EMBEDPORTAL_TOKEN_EXPIRY_DAYS",
        "int",
        90,
        "Days a new API token is valid when its creator names none (`create_api_token --expires-days`, the admin).",
    ),
    Setting(
        "EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS",
        "int",
        365,
        "Most days a new API token may be valid; a longer expiry is refused. Legacy tokens never expire: rotate them.",
    ),
    Setting(
        "EMBEDPORTAL_MAX_REQUEST_BYTES",
        "int",
        64 * 1024 * 1024,
        "Largest request body (bytes): larger ones get 413, chunked ones without a length 411, before they "
        "are read. Also the most text `enqueue` writes in one transaction.",
    ),
    # --- pipeline ------------------------------------------------------------------------------
    Setting("EMBEDPORTAL_DEFAULT_MODEL", "str", "local/all-MiniLM-L6-v2", "Model for collections created without one."),
    Setting("EMBEDPORTAL_CLAIM_BATCH", "int", 32, "Documents a worker claims at a time."),
    Setting(
        "EMBEDPORTAL_STORAGE_OVERLAP",
        "bool",
        True,
        "A draining worker stores each batch on a second thread while it embeds the next (one batch ahead).",
    ),
    Setting(
        "EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS",
        "int",
        100,
        "An enqueue call creating at least this many documents in a collection without chunks starts a "
        "backfill: written without the HNSW index, built once at the end (0: never; re-embeds always do).",
    ),
    Setting(
        "EMBEDPORTAL_INDEX_BUILD_MEMORY_MB",
        "int",
        1024,
        "Most maintenance_work_mem a backfill's HNSW build asks for (MB); it asks for the graph's estimated size.",
    ),
    Setting(
        "EMBEDPORTAL_INDEX_BUILD_WORKERS",
        "int",
        2,
        "max_parallel_maintenance_workers of a backfill's HNSW build (PostgreSQL's max_parallel_workers caps it).",
        zero_ok=True,
    ),
    Setting(
        "EMBEDPORTAL_LEASE_SECONDS",
        "int",
        30,
        "A claim's lease (seconds): a dead worker's documents return to the queue after it. A live worker "
        "renews its leases every third of it while a batch runs, so it can be short.",
    ),
    Setting("EMBEDPORTAL_EMBED_TIMEOUT", "float", 60.0, "Seconds before an embedding call times out."),
    Setting(
        "EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT",
        "float",
        10.0,
        "Seconds a search waits for a provider call (its query's embedding, its reranker) before it answers "
        "without it: a hybrid search from its keyword ranking, a reranked one in its search order; a vector "
        "search fails (502). A web worker is held for that long.",
    ),
    Setting(
        "EMBEDPORTAL_PROVIDER_KEY_HOSTS",
        "list",
        "",
        "The hosts each provider key variable may be sent to: `VARIABLE=host` (any port) or `VARIABLE=host:port`, "
        "comma-separated, a variable repeated for more hosts (`AZURE_OPENAI_KEY=myco.openai.azure.com,"
        "GATEWAY_KEY=llm-gw.internal:8443`). A collection or reranker naming a key variable and an `api_base` "
        "is refused, and its calls fail as `auth`, unless the api_base's host is bound to that variable; "
        "without an api_base the key goes to the provider's own endpoint. Empty: a key never goes to an api_base.",
    ),
    Setting(
        "EMBEDPORTAL_PROVIDER_KEY_TEAMS",
        "list",
        "",
        "The teams each provider key variable may be named by: `VARIABLE=team` (a group's name), comma-separated, "
        "a variable repeated for more teams (`ACME_OPENAI_KEY=acme`). A collection of another team naming it "
        "(api_key_env, rerank_api_key_env) is refused, and its calls fail as `auth`; the platform's collections "
        "(no team) may name any. A variable not listed: any team.",
    ),
    Setting(
        "EMBEDPORTAL_API_BASE_HOSTS",
        "list",
        "",
        "The only hosts a collection's `api_base` or `rerank_api_base` may name: `host` (any port) or `host:port`, "
        "comma-separated (`llm-gw.internal:8443,tei.internal`). Whoever may change a collection chooses its "
        "api_base, and the workers, the search and the health check call it: set this where team members must not "
        "point the portal at other hosts (an internal service, a metadata address). Another host is refused, and "
        "a row stored with one fails as `auth` uncalled. Empty: any host.",
    ),
    Setting(
        "EMBEDPORTAL_LOCAL_RUNTIME",
        "str",
        "auto",
        "Runtime of the local model: `auto` (OpenVINO if its export passes the faithfulness gate, else "
        "PyTorch), `openvino` (as auto, but an export that cannot be made is an error) or `torch`.",
    ),
    Setting(
        "EMBEDPORTAL_ENCODER_DIR",
        "path",
        "",
        "Where the local model's OpenVINO exports are kept (one folder per weights hash, OpenVINO version "
        "and precision); the image carries them in /opt/embedportal/encoders.",
        default_text="EMBEDPORTAL_DATA_DIR/encoders",
    ),
    Setting(
        "EMBEDPORTAL_LOCAL_PRECISION",
        "str",
        "auto",
        "Precision of the OpenVINO export: `auto` (bf16 then f32 where the CPU computes in bf16, else f32; "
        "the first that passes the faithfulness gate serves), `bf16`, `int8` or `f32`.",
    ),
    Setting("EMBEDPORTAL_IDLE_SLEEP", "float", 1.0, "Seconds an idle worker waits before looking at the queue again."),
    Setting("EMBEDPORTAL_FRESHNESS_SLA_SECONDS", "int", 3600, "Default freshness SLA of new collections (seconds)."),
    # --- failures and reprocessing -------------------------------------------------------------
    Setting(
        "EMBEDPORTAL_BATCH_TRIES", "int", 3, "Tries of a transient error within a batch before the document fails."
    ),
    Setting(
        "EMBEDPORTAL_RETRY_BASE_SECONDS",
        "float",
        1.0,
        "In-batch backoff base: waits base × 2^n seconds, or the provider's Retry-After.",
        zero_ok=True,
    ),
    Setting("EMBEDPORTAL_RETRY_MAX_WAIT", "float", 30.0, "Longest in-batch wait, Retry-After included (seconds)."),
    Setting(
        "EMBEDPORTAL_MAX_DEFERRALS",
        "int",
        3,
        "Times a document is deferred for a batch-wide provider error (5xx, connection, timeout) while its "
        "provider's circuit stays closed; past it, its batch is split to find a bad input, which then fails. "
        "A 429 (the account's quota, never an input) is deferred however often.",
        zero_ok=True,
    ),
    Setting(
        "EMBEDPORTAL_CIRCUIT_FAILURES",
        "int",
        5,
        "Consecutive transient failures of a provider endpoint (model + api_base), across all workers, that "
        "open its circuit breaker: its collections wait, pending, and workers serve the others.",
    ),
    Setting(
        "EMBEDPORTAL_CIRCUIT_OPEN_SECONDS",
        "float",
        30.0,
        "Seconds an open circuit waits before one worker sends a half-open probe; doubled after each failed probe.",
    ),
    Setting(
        "EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS",
        "float",
        600.0,
        "Longest wait between probes of an open circuit (seconds).",
    ),
    Setting("EMBEDPORTAL_REPROCESS_BATCH", "int", 1000, "Most failures one ReprocessingWorkflow pass retries."),
    *OPERATIONS,
)
SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _ALL}
assert len(SETTINGS) == len(_ALL), f"registered twice: {[n for n, c in Counter(s.name for s in _ALL).items() if c > 1]}"
