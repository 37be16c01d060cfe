"""The rules on a collection's names and settings, in words: the model's validators and clean(),
the admin's form and the API's serializer all apply these with the same messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.utils.deconstruct import deconstructible

from embedportal.config import SETTINGS
from embedportal.printable import unsafe_character
from embedportal.storable import unstorable

# The portal's own variables: a collection naming one as its provider key would have the key's value (the
# secret key, the database URL with its password...) sent to its api_base, which whoever adds a collection
# chooses. Its settings (embedportal.config), their prefixes, libpq's and the PostgreSQL image's; each with
# its NAME_FILE (read first).
PORTAL_VARIABLE_PREFIXES = ("DJANGO_", "EMBEDPORTAL_", "PG", "POSTGRES_")
PORTAL_VARIABLES = frozenset(SETTINGS)
# Read by the portal but no secret (a module's name): the operations tests' fault provider gets it as a key.
NOT_SECRET_VARIABLES = frozenset({"DJANGO_SETTINGS_MODULE"})


def portal_variable_problem(name: str) -> str | None:
    """Why `name` may not hold a provider key (None if it may)."""
    upper = name.upper()
    if upper in NOT_SECRET_VARIABLES:
        return None
    base = upper.removesuffix("_FILE")
    if {upper, base} & PORTAL_VARIABLES or base.startswith(PORTAL_VARIABLE_PREFIXES):
        return (
            f"{name} is a variable of the portal itself, never a provider key (its value would be sent to the "
            "API base); put the provider's key in a variable of its own, e.g. OPENAI_API_KEY (or OPENAI_API_KEY_FILE "
            "naming a mounted secret), and name that one"
        )
    return None


DEFAULT_PORTS = {"http": 80, "https": 443}


def key_host_problem(api_base: str, key_variable: str) -> str | None:
    """Why the key in `key_variable` may not be sent to `api_base` (None if it may). Whoever may change a
    collection chooses its api_base: a key goes there only if the operator bound that host to the variable
    (EMBEDPORTAL_PROVIDER_KEY_HOSTS). Without an api_base it goes to the provider's own endpoint; a variable
    holding no secret (NOT_SECRET_VARIABLES) goes anywhere."""
    if not (api_base and key_variable) or key_variable in NOT_SECRET_VARIABLES:
        return None
    host, port, shown = _host_port(api_base)
    if {(host, None), (host, port)} & settings.EMBEDPORTAL_PROVIDER_KEY_HOSTS.get(key_variable, set()):
        return None
    return (
        f"{key_variable} may not be sent to {shown}: the operator's EMBEDPORTAL_PROVIDER_KEY_HOSTS does not bind that "
        f"host to it. Use an API base it binds, no API base (the provider's own endpoint), or ask an operator to add "
        f"{key_variable}={shown} to EMBEDPORTAL_PROVIDER_KEY_HOSTS"
    )


def key_team_problem(key_variable: str, collection: Any) -> str | None:
    """Why `collection` may not name `key_variable` (None if it may): EMBEDPORTAL_PROVIDER_KEY_TEAMS binds a
    variable to teams, so another team cannot spend (or exhaust) a team's key at its bound host."""
    teams = settings.EMBEDPORTAL_PROVIDER_KEY_TEAMS.get(key_variable) if key_variable else None
    if teams is None or collection.team_id is None or collection.team.name in teams:
        return None
    return (
        f"{key_variable} is bound to other teams (EMBEDPORTAL_PROVIDER_KEY_TEAMS): name a key variable of "
        f"{collection.team.name}'s, or ask an operator to bind this one to it"
    )


def api_base_host_problem(api_base: str) -> str | None:
    """Why `api_base` may not be called (None if it may): EMBEDPORTAL_API_BASE_HOSTS, when set, lists the
    only hosts a collection may name."""
    allowed = settings.EMBEDPORTAL_API_BASE_HOSTS
    if not (api_base and allowed):
        return None
    host, port, shown = _host_port(api_base)
    if {(host, None), (host, port)} & allowed:
        return None
    return f"{shown} is not among the hosts the operator allows (EMBEDPORTAL_API_BASE_HOSTS); use one of them"


def _host_port(api_base: str) -> tuple[str, int | None, str]:
    """The URL's host, its port (the scheme's default when it names none) and the host as shown."""
    try:
        parts = urlsplit(api_base)
        host, port, default = parts.hostname or "", parts.port, DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range (URLField lets 99999 through): no setting names it
        host, port, default = "", None, None
    return host, port or default, (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")


# Deconstructed as the RegexValidator the migrations recorded: what it adds checks input, not the schema.
@deconstructible(path="django.core.validators.RegexValidator")
class KeyVariableName(RegexValidator):
    """The name of an environment variable holding a provider key: never one of the portal's own."""

    def __call__(self, value: str) -> None:
        super().__call__(value)
        if problem := portal_variable_problem(value):
            raise ValidationError(problem, code="portal_variable")


ENV_NAME = KeyVariableName(r"^[A-Za-z_][A-Za-z0-9_]*$", "Use the name of an environment variable, not a key.")


# LiteLLM parameters that carry credentials (api_key, aws_secret_access_key, vertex_credentials,
# azure_ad_token, ...): keys belong in the environment, named by api_key_env, never in the database.
SECRET_PARAM_PARTS = {"key", "secret", "token", "password", "credential", "credentials"}


def _secret_name(name: Any) -> bool:
    return bool(SECRET_PARAM_PARTS & set(str(name).lower().split("_")))


# Parameters naming an endpoint, by the parts of their names (api_base, base_url, azure_endpoint, Bedrock's
# aws_bedrock_runtime_endpoint...) or by a URL as their value: the key would go there with no host binding
# checked (a write token sent the platform's key to a host of its choosing through Bedrock's).
ENDPOINT_NAME_PARTS = frozenset({"base", "url", "uri", "endpoint", "host", "hostname", "domain", "server", "proxy"})


def _endpoints(value: Any, name: str = "") -> list[str]:
    if isinstance(value, dict):
        return [found for key, inner in value.items() for found in _endpoints(inner, str(key))]
    if isinstance(value, list):
        return [found for inner in value for found in _endpoints(inner, name)]
    named = ENDPOINT_NAME_PARTS & set(name.lower().split("_"))
    return [name] if named or (isinstance(value, str) and "//" in value) else []


def endpoint_param_problem(value: Any) -> str | None:
    if isinstance(value, dict) and (named := sorted(set(_endpoints(value)))):
        return f"{', '.join(named)}: never in extra_params; set the endpoint in api_base, where the key rules hold"
    if isinstance(value, dict) and "custom_llm_provider" in value:
        # It routes the call to another provider than the model's, and so to that provider's default endpoint.
        return "custom_llm_provider: never in extra_params; name the provider as the model's prefix (xinference/...)"
    return None


# Providers whose LiteLLM default endpoint is their vendor's public API (or, for azure, databricks and
# watsonx, one the operator sets in the environment). Any other provider's default is a server of the
# portal's own network (xinference's 127.0.0.1:9997, ollama's localhost:11434...): a key named without an
# api_base went there with no host binding checked, and the calls went past EMBEDPORTAL_API_BASE_HOSTS.
PUBLIC_ENDPOINT_PROVIDERS = frozenset(
    {
        *("openai", "azure", "azure_ai", "cohere", "voyage", "mistral", "jina_ai", "bedrock", "sagemaker"),
        *("vertex_ai", "gemini", "together_ai", "fireworks_ai", "nvidia_nim", "huggingface", "deepinfra"),
        *("databricks", "watsonx", "nebius", "local"),
    }
)


def default_endpoint_problem(provider: str, api_base: str, key_variable: str) -> str | None:
    """Why a call to `provider` needs an api_base (None if it does not): its default endpoint is no public
    API, and a key would go there unbound, or the operator allows only the hosts EMBEDPORTAL_API_BASE_HOSTS
    lists."""
    if api_base or provider in PUBLIC_ENDPOINT_PROVIDERS:
        return None
    if key_variable:
        why = f"{key_variable} would go there with no host binding checked"
    elif settings.EMBEDPORTAL_API_BASE_HOSTS:
        why = "the operator allows only the hosts EMBEDPORTAL_API_BASE_HOSTS lists"
    else:
        return None
    return f"{provider} has no public default endpoint (LiteLLM's is a local server) and {why}: set api_base"


def validate_extra_params(value: Any) -> None:
    """LiteLLM parameters: an object PostgreSQL can store, `dimensions` a size pgvector can index, never a
    credential nor an endpoint."""
    if not isinstance(value, dict):
        raise ValidationError('must be a JSON object, e.g. {"dimensions": 256}')
    if problem := endpoint_param_problem(value):
        raise ValidationError(problem)
    if problem := unstorable(value):
        raise ValidationError(f"extra_params {problem}")
    wanted = value.get("dimensions")
    low, high = DIMENSIONS_RANGE
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or not low <= wanted <= high):
        raise ValidationError(f"dimensions must be an integer from {low} to {high}")
    if secret := sorted(k for k in value if _secret_name(k)):
        raise ValidationError(
            f"{', '.join(secret)}: never store credentials here; name the environment variable in api_key_env"
        )


def url_credentials(url: str) -> list[str]:
    """What in a URL is a credential: its userinfo (user:secret@) and query parameters named like one
    (?api_key=...). The migration that stripped stored ones (pipeline 0002_squashed_0011) keeps its own copy."""
    try:
        parts = urlsplit(url)
        found = ["user:password@"] if parts.username or parts.password else []
    except ValueError:
        return []
    return found + sorted(name for name, _ in parse_qsl(parts.query) if _secret_name(name))


def validate_api_base(value: str) -> None:
    if found := url_credentials(value):
        raise ValidationError(
            f"api_base carries credentials ({', '.join(found)}); remove them and keep the key in the secret "
            "store: the environment variable named in api_key_env (or its NAME_FILE)"
        )


def params_problem(model: str, local: bool, extra_params: Any, dimensions: int | None) -> str | None:
    """extra_params.dimensions is what the provider is asked for; another size than the
    collection's would fail every batch at the quality gate. The bundled (`local`) models take none:
    LiteLLM refuses any parameter on their provider, so every batch and the health check failed."""
    if extra_params and local:
        return f"{model} is a bundled local model and takes no extra_params (clear them)"
    wanted = extra_params.get("dimensions") if isinstance(extra_params, dict) else None
    if wanted is not None and dimensions and wanted != dimensions:
        return f"dimensions {wanted} differs from the collection's {dimensions}"
    return None


# Model strings reach metric labels, alert texts read by whoever is on call, logs and terminals as they
# are: a provider's model names (openai/text-embedding-3-small, ollama/nomic-embed-text:latest,
# huggingface/BAAI/bge-small-en, bedrock/cohere.embed-english-v3) use these characters only, and a
# sentence ("openai/URGENT: rotate your key at ...") in EmbeddingPipelineCircuitOpenTooLong is none.
NOT_IN_MODEL_NAME = re.compile(r"[^A-Za-z0-9._:/@+=-]")


def model_name_problem(model: str) -> str | None:
    if problem := unsafe_character(model):
        return problem
    if bad := NOT_IN_MODEL_NAME.search(model):
        return f"holds {bad.group()!r}: a model name has letters, digits and . _ : / @ + = - only"
    return None


def local_endpoint_problem(model: str, local: bool, field: str, value: str) -> str | None:
    """A bundled model runs in the worker: a key variable named for it failed every document as auth
    ("not set") and the health check for the whole portal."""
    if local and value:
        return f"{model} is a bundled local model and takes no {field} (clear it)"
    return None


# Collection names under these prefixes are scratch collections, by what they are reserved for:
# the operations tester's (the testing app) and measure_capacity's (pipeline.performance.capacity).
# Their owners set `reserved_names_allowed` around their own calls; nobody else can create them.
RESERVED_PREFIX = "__ops_test_"
CAPACITY_PREFIX = "__capacity_"
RESERVED_FOR = {RESERVED_PREFIX: "the operations tests", CAPACITY_PREFIX: "capacity measurements"}
RESERVED_PREFIXES = tuple(RESERVED_FOR)
# The benchmarks' collections are recorded, all under one metric label (pipeline.recording.metric_label):
# a tenant's collection named so had its figures and alerts merged into the benchmarks'.
BENCHMARK_PREFIX = "benchmark-"
OWNED_BY = {**RESERVED_FOR, BENCHMARK_PREFIX: "the benchmarks"}
reserved_names_allowed: ContextVar[bool] = ContextVar("reserved_names_allowed", default=False)
NAME_CASE = "another collection has this name in other letter case; names are unique whatever their case"


@contextmanager
def reserved_names() -> Iterator[None]:
    """Around an owner's own creation of its collections (the operations tests, capacity, benchmarks)."""
    token = reserved_names_allowed.set(True)
    try:
        yield
    finally:
        reserved_names_allowed.reset(token)


def is_reserved_name(name: str) -> bool:
    """A scratch collection's name (Collection.is_reserved): kept out of every metric and SLO figure."""
    return name.lower().startswith(RESERVED_PREFIXES)


def reserved_name_problem(name: str | None) -> str | None:
    if name and not reserved_names_allowed.get():
        for prefix, purpose in OWNED_BY.items():
            if name.lower().startswith(prefix):
                return f"names starting with {prefix} are reserved for {purpose}"
    return None


# A year: the staleness queries add the SLA to source times, and PostgreSQL's timestamps end in year
# 294276: "999999999 00:00:00" was stored, then every collection's stale detection and reprocessing
# metrics failed with "timestamp out of range".
FRESHNESS_SLA_MAX = timedelta(days=366)


def freshness_sla_problem(value: timedelta | None) -> str | None:
    """A freshness SLA is a positive duration: how long after a source change its embedding may lag."""
    if value is not None and value <= timedelta(0):
        return "must be a positive duration, e.g. 01:00:00 for one hour"
    if value is not None and value > FRESHNESS_SLA_MAX:
        return f"must be at most {FRESHNESS_SLA_MAX.days} days (a longer lag is no freshness target)"
    return None


# Vector sizes pgvector can index, and the most chunks one embedding call may carry.
DIMENSIONS_RANGE = (1, 16000)
BATCH_SIZE_RANGE = (1, 2048)
CHUNK_SIZE_MIN = 8
# pgvector's HNSW build parameters: its defaults, and the ranges its CREATE INDEX accepts.
HNSW_M_DEFAULT, HNSW_M_RANGE = 16, (2, 100)
HNSW_EF_CONSTRUCTION_DEFAULT, HNSW_EF_CONSTRUCTION_RANGE = 64, (4, 1000)
EF_SEARCH_RANGE = (1, 1000)
# Hybrid search's keyword share and the retrieval SLO's recall@5, unless a collection says otherwise.
KEYWORD_WEIGHT_DEFAULT = 0.5
RETRIEVAL_TARGET_DEFAULT = 0.9


def between(low: float, high: float) -> list:
    """A model field's bounds, which the API's serializers and the admin's forms read from it."""
    return [MinValueValidator(low), MaxValueValidator(high)]


def hnsw_build_problem(m: int | None, ef_construction: int | None) -> str | None:
    """pgvector refuses an ef_construction below twice m (the candidate list must hold the neighbours)."""
    if m is not None and ef_construction is not None and ef_construction < 2 * m:
        return f"must be at least 2 * hnsw_m ({2 * m}): pgvector's rule"
    return None
