"""The audit trail: one AuditEvent per state-changing action through the API (audit.middleware), the admin
(audit.hooks.Audited) or a command; values pass through embedportal.scrub, secret-named keys are redacted.
Notes: docs/operations.md, "Audit trail"."""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections import Counter
from typing import Any

from django.core.exceptions import FieldError
from django.core.management.base import BaseCommand
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from audit.choices import Via
from audit.models import AuditEvent
from embedportal.scrub import scrub

# Keys whose values are credentials wherever they appear (extra_params, a provider's options).
SECRET_KEY = re.compile(r"(?i)(^|_)(api_?key|secret|password|token|authorization|credentials?)$")
# How a row leads to its collection's name, tried in turn (collections, documents, failures...).
COLLECTION_PATHS = ("collection__name", "document__collection__name")
# Rows that are documents: an action on them counts documents.
DOCUMENT_MODELS = {"pipeline.Document", "reprocessing.FailedDocument"}


def record(via: str, action: str, actor: str, address: str, **fields: Any) -> AuditEvent:
    """Write one event; `fields`: token, collection, target, documents, changes."""
    fields["changes"] = safe(fields.get("changes") or {})
    fields["target"] = scrub(str(fields.get("target", "")))[:255]
    return AuditEvent.objects.create(via=via, action=action[:100], actor=actor[:150], address=address[:255], **fields)


def safe(value: Any, key: str = "") -> Any:
    """`value` as JSON with its secrets replaced."""
    if SECRET_KEY.search(key) and value not in (None, ""):
        return "[redacted]"
    if isinstance(value, dict):
        return {str(k): safe(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe(v, key) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{name: [before, after]} of the values that differ."""
    return {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}


def note(request: Any, **fields: Any) -> None:
    """What a view knows of its action beyond the request (changes, a count, the collection), for the
    request's event (audit.middleware)."""
    request.audit = {**getattr(request, "audit", {}), **fields}


def who(request: HttpRequest) -> dict[str, str]:
    """The user, the API token's name and the client address as DRF's throttles compute it (NUM_PROXIES)."""
    user = getattr(request, "user", None)
    return {
        "actor": user.get_username() if user is not None and user.is_authenticated else "",
        "token": str(getattr(getattr(request, "auth", None), "name", "") or "")[:100],
        "address": BaseThrottle().get_ident(request) or "",
    }


def by_collection(queryset: QuerySet) -> Counter[str]:
    """How many of these rows belong to each collection ("" for rows of none)."""
    if queryset.model._meta.label == "pipeline.Collection":
        return Counter(queryset.values_list("name", flat=True))
    for path in COLLECTION_PATHS:
        try:
            return Counter(queryset.values_list(path, flat=True))
        except FieldError:
            continue
    return Counter({"": queryset.count()})


def admin(request: HttpRequest, action: str, queryset: QuerySet, **fields: Any) -> None:
    """An admin change to these rows: one event per collection they belong to."""
    documents = queryset.model._meta.label in DOCUMENT_MODELS
    for collection, count in by_collection(queryset).items():
        event = {"collection": collection or "", "documents": count if documents else None, **fields}
        record(Via.ADMIN, f"{queryset.model._meta.model_name}.{action}", **who(request), **event)


def command(cmd: BaseCommand, **fields: Any) -> AuditEvent:
    """A management command's change: the command's name, the OS user and cli@host."""
    try:
        user = getpass.getuser()
    except OSError:  # a container's uid without a passwd entry
        user = str(os.getuid())
    return record(Via.COMMAND, cmd.__module__.rpartition(".")[2], user, f"cli@{socket.gethostname()}", **fields)
