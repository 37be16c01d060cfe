from __future__ import annotations

from django.db import models


# Members without a label take Django's: the name in title case ("Pending").
class DocumentStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    EMBEDDED = "embedded"
    FAILED = "failed"


class ChunkingStrategy(models.TextChoices):
    TOKEN_WINDOWS = "token_windows", "Token windows with overlap"
    RECURSIVE = "recursive", "Recursive text splitting"
    MARKDOWN = "markdown", "Markdown-aware splitting"


class ChunkUnit(models.TextChoices):
    TOKENS = "tokens", "Tokens of the collection's model"
    CHARACTERS = "characters"


class ErrorType(models.TextChoices):
    """Failure taxonomy. The same names label `embedding_pipeline_errors_total{error_type}`."""

    # model (embedding provider) errors
    API_ERROR = "api_error", "Provider API failure (5xx, connection)"
    TIMEOUT = "timeout", "Provider timeout"
    RATE_LIMIT = "rate_limit", "Provider rate limit (429)"
    AUTH = "auth", "Provider authentication"
    BAD_REQUEST = "bad_request", "Bad request / context too long"
    # storage errors
    CONNECTION_LOST = "connection_lost", "Database connection lost"
    DISK_FULL = "disk_full", "Database disk full"
    SERIALIZATION = "serialization", "Serialization failure / deadlock"
    # quality errors, checked on every batch before storage
    DIMENSION_MISMATCH = "dimension_mismatch", "Vector dimension mismatch"
    NAN_VALUES = "nan_values", "NaN or infinite values"
    ZERO_VECTOR = "zero_vector", "All-zero vector"
    WRONG_COUNT = "wrong_count", "Wrong number of vectors"
    # input
    EMPTY_DOCUMENT = "empty_document", "Document has no text to embed"
    UNKNOWN = "unknown", "Unclassified error"


class Stage(models.TextChoices):
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    STORAGE = "storage"


class WorkerRole(models.TextChoices):
    """Who wrote a WorkerHeartbeat."""

    WORKER = "worker", "run_pipeline worker"
    DRAIN_TASK = "drain_task", "django-q2 drain task"
    SCHEDULE = "schedule", "django-q2 heartbeat schedule"


class OptimizationStatus(models.TextChoices):
    """An OptimizationChange: applied (being measured), then kept or reverted by its evaluation."""

    APPLIED = "applied", "Applied, being measured"
    KEPT = "kept", "Kept (it helped)"
    REVERTED = "reverted", "Reverted (it did not help)"


class CircuitState(models.TextChoices):
    """A provider endpoint's circuit breaker (ProviderCircuit). The metric
    embedding_pipeline_provider_circuit_state exports it as 0, 1, 2 in this order."""

    CLOSED = "closed", "Closed (calls go through)"
    OPEN = "open", "Open (its collections wait for the probe)"
    HALF_OPEN = "half_open", "Half-open (one worker is probing)"


class SearchMode(models.TextChoices):
    """How search ranks a collection's chunks (pipeline.search)."""

    VECTOR = "vector", "Vector (nearest embeddings)"
    KEYWORD = "keyword", "Keyword (BM25-style, in PostgreSQL)"
    HYBRID = "hybrid", "Hybrid (vector and keyword fused)"


class Fusion(models.TextChoices):
    """How hybrid search merges its vector and keyword rankings (pipeline.search.fuse)."""

    BLEND = "blend", "Weighted blend of normalised scores"
    RRF = "rrf", "Reciprocal-rank fusion"
