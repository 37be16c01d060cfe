"""Strict input for every API: a field or query parameter the endpoint does not know is a 400
naming it (with the likely intended name), never silently ignored, so `"strategy": "markdown"`
cannot quietly give the default strategy, nor `?status=bogus` an empty list."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import django_filters
from django.forms.utils import ErrorList
from rest_framework import serializers

# Names people use for a field elsewhere (the create_collection command's options, other tools).
ALIASES = {
    "strategy": "chunking_strategy",
    "unit": "chunk_unit",
    "params": "extra_params",
    "param": "extra_params",
    "sla": "freshness_sla",
    "external_id": "id",
}
# Query parameters every list endpoint takes besides its filters (pagination, DRF's format).
COMMON_QUERY_PARAMETERS = frozenset({"limit", "offset", "format"})


def unknown_names(given: Iterable[str], known: Iterable[str]) -> dict[str, str]:
    """{unknown name: what to do}, e.g. {"strategy": 'unknown field; did you mean "chunking_strategy"?'}."""
    known = sorted(known)
    problems = {}
    for name in sorted(set(given) - set(known)):
        guess = ALIASES.get(name) if ALIASES.get(name) in known else None
        guess = guess or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None)
        hint = f'did you mean "{guess}"?' if guess else f"known: {', '.join(known)}"
        problems[name] = f"unknown field; {hint}"
    return problems


class StrictFieldsMixin:
    """A serializer refusing fields it does not declare (read-only ones count as known)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            problems = unknown_names(data.keys(), self.fields.keys())  # type: ignore[attr-defined]
            if problems:
                raise serializers.ValidationError({name: [message] for name, message in problems.items()})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet whose unknown query parameters are errors, like its invalid values (django-filter
    reports those in `errors`; DjangoFilterBackend and our views turn errors into a 400)."""

    def is_valid(self) -> bool:
        return super().is_valid() and not self._unknown()

    @property
    def errors(self) -> Any:
        errors = super().errors
        for name, message in self._unknown().items():
            errors[name] = ErrorList([message.replace("unknown field", "unknown query parameter")])
        return errors

    def _unknown(self) -> dict[str, str]:
        return unknown_names(self.data.keys(), [*self.filters, *COMMON_QUERY_PARAMETERS])
