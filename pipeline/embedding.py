"""Embedding through LiteLLM (local models too), the batch quality checks and the failure taxonomy.
LiteLLM's and the OpenAI SDK's retries are off: the pipeline retries, counted and capped."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

from embedportal.env import env_secret
from embedportal.printable import printable
from embedportal.scrub import scrub
from pipeline import metrics, providers
from pipeline.choices import ErrorType, Stage
from pipeline.models.rules import (
    PUBLIC_ENDPOINT_PROVIDERS,
    api_base_host_problem,
    default_endpoint_problem,
    endpoint_param_problem,
    key_host_problem,
    key_team_problem,
    portal_variable_problem,
)
from pipeline.providers import provider_of

if TYPE_CHECKING:
    from pipeline.models import Collection

logger = logging.getLogger(__name__)

# The provider failing, not one input (5xx, connection, timeouts, 429): retried, then deferred whole;
# each counts toward the endpoint's circuit breaker.
OUTAGE = {ErrorType.API_ERROR, ErrorType.TIMEOUT, ErrorType.RATE_LIMIT}
TRANSIENT = {*OUTAGE, ErrorType.CONNECTION_LOST, ErrorType.SERIALIZATION, ErrorType.UNKNOWN}
PROBE_TEXT = "embedportal health probe"  # what the health check and a circuit's probe embed
# Errors about the whole call, never one input: splitting the batch would only repeat them.
BATCH_WIDE = {ErrorType.AUTH, *OUTAGE}


class PipelineError(Exception):
    """A classified failure: what went wrong, where, and whether retrying can help."""

    def __init__(self, error_type: str, stage: str, message: str, retry_after: float | None = None) -> None:
        # Much of it is a provider's text, which any api_base a tenant names may write: escaped once here
        # for every log line, terminal and file it reaches (a CR/LF forged log records, an ESC the terminal).
        message = printable(message)
        super().__init__(message)
        self.error_type, self.stage, self.message, self.retry_after = error_type, stage, message, retry_after
        # Set when the failure found the endpoint's circuit open (pipeline.models.ProviderCircuit).
        self.circuit_open = False
        # Tries made before giving up (the pipeline's in-batch retries).
        self.tries = 1

    @property
    def transient(self) -> bool:
        return self.error_type in TRANSIENT

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


def key_in(variable: str) -> str | None:
    """A key read at call time from `variable` (or its _FILE); None without one."""
    return (env_secret(variable) or None) if variable else None


def api_key(collection: Collection) -> str | None:
    return key_in(collection.api_key_env)


# What a collection with its own api_base and no key variable sends as the key.
KEYLESS = "EMPTY"


def endpoint_args(
    collection: Collection, model: str, api_base: str, key_variable: str, whose: str
) -> tuple[dict[str, str], str | None]:
    """A provider call's api_base and api_key arguments for `model` of `collection`, and the key (to scrub
    from its errors). Every rule on where a key may go is checked again at call time: a collection saved
    before a rule held, or before the operator changed the bindings, may break one. A key variable named but
    not set is a configuration to fix, not an outage to wait out."""
    provider, host_problem = provider_of(model), api_base_host_problem(api_base)
    if key_variable and portal_variable_problem(key_variable):
        problem = (
            f"{key_variable} is a variable of the portal itself, never sent as a provider key; "
            "name a variable of the provider key's own"
        )
    else:
        problem = (
            key_team_problem(key_variable, collection)
            or default_endpoint_problem(provider, api_base, key_variable)
            or (host_problem and f"api_base {host_problem}")
            or key_host_problem(api_base, key_variable)
        )
    if problem:
        raise PipelineError(ErrorType.AUTH, Stage.EMBEDDING, f"{whose}: {problem}")
    key = key_in(key_variable)
    if key_variable and key is None:
        problem = f"{key_variable} (or {key_variable}_FILE) is not set in this process"
        raise PipelineError(ErrorType.AUTH, Stage.EMBEDDING, f"{whose}: {problem}")
    if (api_base or provider not in PUBLIC_ENDPOINT_PROVIDERS) and not key_variable:
        # LiteLLM would fall back to the provider's variable in this process (OPENAI_API_KEY, ...) and
        # send the platform's key to a server the collection chose, or to a provider's local default. A
        # keyless server (vLLM, TEI, a local gateway) takes the conventional placeholder; one that wants a
        # key answers 401 (AUTH).
        return {**({"api_base": api_base} if api_base else {}), "api_key": KEYLESS}, None
    return {**({"api_base": api_base} if api_base else {}), **({"api_key": key} if key else {})}, key


def _retry_after(exc: Exception) -> float | None:
    """The provider's Retry-After seconds, if its response sent a number."""
    try:
        return float(exc.response.headers.get("retry-after"))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return None


# LiteLLM's exception classes by the error type they mean, the first match deciding.
LITELLM_ERRORS = (
    (ErrorType.RATE_LIMIT, ("RateLimitError",)),
    (ErrorType.TIMEOUT, ("Timeout",)),
    (ErrorType.AUTH, ("AuthenticationError", "PermissionDeniedError")),
    (
        ErrorType.BAD_REQUEST,
        ("ContextWindowExceededError", "BadRequestError", "UnprocessableEntityError", "NotFoundError"),
    ),
    (ErrorType.API_ERROR, ("APIConnectionError", "InternalServerError", "ServiceUnavailableError", "APIError")),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from (LiteLLM wraps its providers' errors twice)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is not None:
            yield seen
            seen = seen.__cause__ or seen.__context__


def classify(exc: Exception, key: str | None = None) -> PipelineError:
    import litellm
    import openai

    if isinstance(exc, PipelineError):
        return exc
    chain, hint = list(_chain(exc)), ""
    if any(isinstance(e, providers.UnknownLocalModel) for e in chain):
        kind = ErrorType.BAD_REQUEST  # the local provider's refusal, which LiteLLM wraps as a connection error
    elif any(type(e) is openai.OpenAIError and "api_key" in str(e) for e in chain):
        # The OpenAI client refused before asking anyone; LiteLLM reports it as a 500, but it is
        # a configuration to fix, not an outage to wait out (as a key variable named but unset).
        kind, hint = ErrorType.AUTH, " (name the variable holding the key in the collection's api_key_env)"
    else:
        kinds = (kind for kind, names in LITELLM_ERRORS if isinstance(exc, tuple(getattr(litellm, n) for n in names)))
        kind = next(kinds, ErrorType.UNKNOWN)
    # Some of LiteLLM's texts end in the Python traceback of its provider code: server paths, no cause.
    text = str(exc).split("Traceback (most recent call last)", 1)[0].rstrip()
    message = scrub(f"{type(exc).__name__}: {text}{hint}", key)[:2000]
    return PipelineError(kind, Stage.EMBEDDING, message, _retry_after(exc))


def classify_storage_error(exc: Exception) -> PipelineError:
    """Map a database error raised while storing onto the failure taxonomy (by SQLSTATE first)."""
    import psycopg
    from django.db import InterfaceError, OperationalError

    # Django wraps psycopg's exception; the original, with its SQLSTATE, is the cause.
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    if isinstance(cause, psycopg.errors.DiskFull):  # 53100
        kind = ErrorType.DISK_FULL
    elif isinstance(cause, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)):  # 40001, 40P01
        kind = ErrorType.SERIALIZATION
    elif isinstance(cause, (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)):  # 22xxx, 54xxx
        # A row PostgreSQL cannot hold (a tsvector over 1 MB): the input's fault, as a provider's 400 is.
        # An OperationalError too, it was retried as a lost connection, failing its whole batch each time.
        kind = ErrorType.BAD_REQUEST
    elif isinstance(cause, (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)):
        # Server shut down or restarted (57P01), socket closed, cannot connect: the connection is gone.
        kind = ErrorType.CONNECTION_LOST
    else:
        kind = ErrorType.UNKNOWN
    return PipelineError(kind, Stage.STORAGE, f"{type(cause).__name__}: {cause}".strip()[:2000])


_USAGE_LOCK = threading.Lock()


@dataclass
class Usage:
    """What the provider calls made inside `metered()` billed: their usage tokens and LiteLLM's
    price of them (`response_cost`; None for local models and models LiteLLM has no price for: 0)."""

    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        with _USAGE_LOCK:  # concurrent calls of one batch (batches._run_calls) add from their threads
            self.tokens += int(getattr(usage, "prompt_tokens", 0) or getattr(usage, "total_tokens", 0) or 0)
            self.cost_usd += float((getattr(response, "_hidden_params", None) or {}).get("response_cost") or 0.0)


# The meter of the stage running in this context: every call path under it counts (another thread
# must run in a copy of the context, contextvars.copy_context).
_meter: ContextVar[Usage | None] = ContextVar("embedding_usage", default=None)


@contextmanager
def metered() -> Iterator[Usage]:
    """Count the usage and cost of every successful provider call made inside the block."""
    usage = Usage()
    token = _meter.set(usage)
    try:
        yield usage
    finally:
        _meter.reset(token)


@functools.cache
def _provider_labels() -> frozenset[str]:
    """The provider prefixes LiteLLM knows, and local: a metric's `provider` values."""
    import litellm

    return frozenset({"local", *(getattr(p, "value", p) for p in litellm.provider_list)})


def embed_texts(collection: Collection, texts: list[str], timeout: float | None = None) -> np.ndarray:
    """Embed `texts` in one provider call and check the result; raises PipelineError."""
    return check_quality(embed_raw(collection, texts, timeout), len(texts), collection.dimensions)


def embed_raw(collection: Collection, texts: list[str], timeout: float | None = None) -> list:
    """One LiteLLM embedding call (`timeout`: seconds, default EMBEDPORTAL_EMBED_TIMEOUT); the vectors as
    the provider returned them, unchecked."""
    import litellm

    providers.register()
    # LiteLLM's OpenAI path reads `max_retries or DEFAULT_MAX_RETRIES`: 0 would become 2 hidden SDK retries.
    litellm.DEFAULT_MAX_RETRIES = 0
    if problem := endpoint_param_problem(collection.extra_params):  # stored before the rule
        raise PipelineError(ErrorType.AUTH, Stage.EMBEDDING, f"collection {collection.name!r}: {problem}")
    endpoint, key = endpoint_args(
        collection, collection.model, collection.api_base, collection.api_key_env, f"collection {collection.name!r}"
    )
    kwargs: dict = {
        "model": collection.model,
        "input": texts,
        "timeout": timeout or settings.EMBEDPORTAL_EMBED_TIMEOUT,
        "num_retries": 0,
        "max_retries": 0,
        **(collection.extra_params or {}),
        **endpoint,
    }
    # A prefix LiteLLM does not know is "other": a tenant's made-up prefixes would each be a series.
    provider = provider_of(collection.model)
    call_seconds = metrics.PROVIDER_CALL.labels(provider=provider if provider in _provider_labels() else "other")
    started = time.perf_counter()
    try:
        response = litellm.embedding(**kwargs)
    except Exception as exc:  # noqa: BLE001 -- every provider error is classified, none escapes raw
        raise classify(exc, key) from None
    finally:
        call_seconds.observe(time.perf_counter() - started)
    if (usage := _meter.get()) is not None:
        usage.add(response)
    try:
        data = sorted(response.data, key=lambda item: item["index"] if isinstance(item, dict) else item.index)
        return [item["embedding"] if isinstance(item, dict) else item.embedding for item in data]
    except (AttributeError, KeyError, TypeError) as exc:  # a 200 of another shape: a wrong api_base, a proxy
        message = f"provider answered without a list of vectors ({type(exc).__name__}: {exc})"
        raise PipelineError(ErrorType.WRONG_COUNT, Stage.EMBEDDING, scrub(message, key)[:500]) from None


def check_quality(vectors: list, expected: int, dimensions: int) -> np.ndarray:
    """Quality gate run on every batch before storage."""
    if len(vectors) != expected:
        raise PipelineError(
            ErrorType.WRONG_COUNT, Stage.EMBEDDING, f"provider returned {len(vectors)} vectors for {expected} inputs"
        )
    if expected == 0:
        return np.empty((0, dimensions), dtype=np.float32)
    lengths = {len(v) for v in vectors}
    if lengths != {dimensions}:
        raise PipelineError(
            ErrorType.DIMENSION_MISMATCH,
            Stage.EMBEDDING,
            f"provider returned vectors of {sorted(lengths)} dimensions, collection expects {dimensions}",
        )
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PipelineError(ErrorType.NAN_VALUES, Stage.EMBEDDING, f"non-numeric vector values: {exc}") from None
    if not np.isfinite(array).all():
        raise PipelineError(ErrorType.NAN_VALUES, Stage.EMBEDDING, "provider returned NaN or infinite values")
    if (np.abs(array).max(axis=1) == 0).any():
        raise PipelineError(ErrorType.ZERO_VECTOR, Stage.EMBEDDING, "provider returned an all-zero vector")
    return array
