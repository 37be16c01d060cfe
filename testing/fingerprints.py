"""Fingerprints of the configuration a run ran against (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings

from pipeline.models import RESERVED_PREFIX, Collection

SECRET_PARTS = ("AUTH", "KEY", "SECRET", "PASSWORD", "TOKEN", "DATABASE_URL")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def settings_fingerprint() -> str:
    """The pipeline's settings (EMBEDPORTAL_*, secrets and the ops tests' own left out)."""
    values = {
        name: getattr(settings, name)
        for name in dir(settings)
        if name.startswith("EMBEDPORTAL_")
        and not name.startswith("EMBEDPORTAL_OPS_TEST_")
        and name not in ("EMBEDPORTAL_CODE_VERSION",)
        and not any(part in name for part in SECRET_PARTS)
    }
    return _digest(values)


def collection_config(collection: Collection) -> dict[str, Any]:
    """What the collection's embeddings depend on: a change to any is a configuration change."""
    return {name: getattr(collection, name) for name in Collection.REEMBED_FIELDS}


def config_fingerprint() -> str:
    """Settings plus every user collection's embedding configuration."""
    collections = {c.name: collection_config(c) for c in Collection.objects.exclude(name__startswith=RESERVED_PREFIX)}
    return _digest({"settings": settings_fingerprint(), "collections": collections})
