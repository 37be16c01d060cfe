"""What the application itself reads, serves and exports, to check the manifests against."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

from docs_site.coverage import ENV_HELPERS
from tests.deploy.render import ROOT

SETTINGS = ROOT / "embedportal" / "settings.py"

# Variables the manifests may set although settings.py does not read them, and why.
NON_SETTINGS_ENV = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client's multiprocess mode (gunicorn and django-q2 workers)",
    "PYTHONUNBUFFERED": "log lines reach kubectl logs at once",
    "HF_HUB_OFFLINE": "the bundled model never reaches for the Hugging Face hub",
    "POD_IP": "only for $(POD_IP) expansion in DJANGO_ALLOWED_HOSTS",
}
# A collection names the variable holding its provider key (Collection.api_key_env) and the app
# reads NAME_FILE (pipeline.embedding uses settings.env_secret). Such variables are allowed when
# they point into the provider-keys Secret mount.
PROVIDER_KEY_FILE_ENV = re.compile(r"^[A-Z][A-Z0-9_]*_API_KEY_FILE$")

PROBE_PATHS = {"/healthz", "/readyz"}
# Metric names the app owns; names of other exporters (up, django_*, argo_*) are not ours to check.
APP_METRIC_PREFIXES = ("embedding_pipeline_", "pipeline_", "embedportal_")


def settings_env_names(path: Path = SETTINGS) -> set[str]:
    """Environment variables embedportal/settings.py reads, with NAME_FILE for every env_secret."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                continue
            if isinstance(func, ast.Name) and func.id in ENV_HELPERS:
                names.add(arg.value)
                if func.id == "env_secret":
                    names.add(f"{arg.value}_FILE")
            elif isinstance(func, ast.Attribute) and (
                (func.attr in {"get", "setdefault"} and ast.unparse(func.value) == "os.environ")
                or ast.unparse(func) == "os.getenv"
            ):
                names.add(arg.value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


# Sample-name suffixes prometheus_client exposes per metric type (text format 0.0.4).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


# The project's own apps (pyproject's setuptools include list); each may define a `metrics` module.
PROJECT_APPS = ("embedportal", "pipeline", "reprocessing", "testing", "docs_site", "tokens", "audit")


def metrics_modules() -> list[ModuleType]:
    """Each app's metric definitions (`<app>.metrics`), scrape-time collectors (`<app>.collectors`) and
    the modules of the collectors /metrics registers (EMBEDPORTAL_METRICS_COLLECTORS)."""
    from django.conf import settings

    names = [f"{app}.{name}" for app in PROJECT_APPS for name in ("metrics", "collectors")]
    names += [path.rpartition(".")[0] for path in settings.EMBEDPORTAL_METRICS_COLLECTORS]
    return [importlib.import_module(n) for n in dict.fromkeys(names) if importlib.util.find_spec(n) is not None]


def exported_metric_names() -> set[str]:
    """Series names of the metrics the project's `<app>.metrics` and `<app>.collectors` modules define.

    Metric objects (Counter, Histogram, ...) are read directly. Custom collectors defined there
    (for the values computed by SQL at scrape time) count when they can `describe()` themselves
    without a database: an instance at module level, or a class constructible without arguments.
    """
    from prometheus_client.metrics import MetricWrapperBase

    families = []
    for module in metrics_modules():
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                families.extend(obj.describe())
            elif isinstance(obj, type) and obj.__module__ == module.__name__ and hasattr(obj, "describe"):
                try:
                    families.extend(obj().describe())
                except TypeError:
                    continue
            elif type(obj).__module__ == module.__name__ and callable(getattr(obj, "describe", None)):
                families.extend(obj.describe())
    return {f.name + suffix for f in families for suffix in _SUFFIXES.get(f.type, ("",))}


_PROMQL_KEYWORDS = set(
    "by without on ignoring group_left group_right bool and or unless offset inf nan atan2 start end".split()
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers that are not functions, labels or keywords)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def app_metric_names_in(expr: str) -> set[str]:
    """The app's own metric names in an expression (recording-rule names contain ':' and are skipped)."""
    return {n for n in promql_metric_names(expr) if n.startswith(APP_METRIC_PREFIXES) and ":" not in n}
