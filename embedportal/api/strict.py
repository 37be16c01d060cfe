"""Strict input for every API: an unknown field or query parameter is a 400 naming it (and the likely
intended name), never silently ignored; numbers, booleans and strings only as their JSON types."""

from __future__ import annotations

import codecs
import difflib
import itertools
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.forms.fields import InvalidJSONInput
from django.forms.utils import ErrorList
from django.utils.http import parse_header_parameters
from django_filters.fields import IsoDateTimeField
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer

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


def unknown_names(given: Iterable[str], known: Iterable[str], what: str = "field") -> dict[str, str]:
    """{unknown name: what to do}, e.g. {"strategy": 'unknown field; did you mean "chunking_strategy"?'}."""
    known = sorted(known)
    problems = {}
    for name in sorted(set(given) - set(known)):
        guess = ALIASES.get(name) if ALIASES.get(name) in known else None
        guess = guess or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None)
        hint = f'did you mean "{guess}"?' if guess else f"known: {', '.join(known)}"
        problems[name] = f"unknown {what}; {hint}"
    return problems


def unknown_parameters(given: Iterable[str], known: Iterable[str]) -> dict[str, str]:
    """unknown_names for query parameters: `limit`, `offset` and `format` are known to every view."""
    return unknown_names(given, [*known, *COMMON_QUERY_PARAMETERS], "query parameter")


def empty_parameters(query: Mapping[str, str], known: Iterable[str]) -> dict[str, str]:
    """{name: what to do} for each known query parameter given empty: `?status=` listed every status."""
    return {name: "empty; give a value or leave the parameter out" for name in known if query.get(name) == ""}


class StrictFieldsMixin:
    """A serializer refusing fields it does not declare (read-only ones count as known)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            problems = unknown_names(data.keys(), self.fields.keys())  # type: ignore[attr-defined]
            if problems:
                raise serializers.ValidationError({name: [message] for name, message in problems.items()})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet whose unknown query parameters, and filters given empty (django-filter's "no filter"),
    are errors (a 400), like its invalid values."""

    def is_valid(self) -> bool:
        return super().is_valid() and not self._refused()

    @property
    def errors(self) -> Any:
        errors = super().errors
        errors.update({name: ErrorList([message]) for name, message in self._refused().items()})
        return errors

    def _refused(self) -> dict[str, str]:
        return {**unknown_parameters(self.data.keys(), self.filters), **empty_parameters(self.data, self.filters)}


# PostgreSQL reads a UTC offset of less than 16 hours either way; Python reads up to 23:59.
MAX_UTC_OFFSET = timedelta(hours=16)


class PostgresDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment PostgreSQL can compare with: `-17:16` parsed, then failed the query (a 500)."""

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is not None and abs(moment.utcoffset() or timedelta()) >= MAX_UTC_OFFSET:
            raise forms.ValidationError("UTC offset out of range; give one from -15:59 to +15:59, or Z")
        return moment


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """The filter for a query parameter that is a moment (ISO 8601)."""

    field_class = PostgresDateTimeField


class StrictContentNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a 400 naming the formats, as an unknown filter value is: DRF answered 404
    "Not found.", as if the resource did not exist."""

    def filter_renderers(self, renderers: list[BaseRenderer], format: str) -> list[BaseRenderer]:
        if found := [renderer for renderer in renderers if renderer.format == format]:
            return found
        known = ", ".join(sorted({renderer.format for renderer in renderers}))
        raise serializers.ValidationError({"format": [f"unknown format {format!r}; known: {known}"]})


class StrictPagination(LimitOffsetPagination):
    """`limit` and `offset` that are not whole numbers in range are a 400, not the default page; and a
    page is at most `max_limit` rows, so one request cannot read a whole table into memory."""

    max_limit = 1000

    def get_limit(self, request: Any) -> int | None:
        self._check(request, self.limit_query_param, f"a whole number from 1 to {self.max_limit}", self.max_limit)
        return super().get_limit(request)

    def get_offset(self, request: Any) -> int:
        self._check(request, self.offset_query_param, "a whole number, 0 or more", 2**63 - 1, low=0)
        return super().get_offset(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """The bounds in the schema too: clients generated from it sent limits the server refuses."""
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, 2**63 - 1)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters

    @staticmethod
    def _check(request: Any, name: str, wanted: str, high: int, low: int = 1) -> None:
        value = request.query_params.get(name)
        if value is not None and not (value.isascii() and value.isdigit() and low <= int(value) <= high):
            raise serializers.ValidationError({name: [f"must be {wanted}"]})


# A JSON string (escapes included): its brackets are text, not structure.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


def no_body(request: Any) -> None:
    """An operation that takes no input refuses one, rather than ignore what the caller meant."""
    if request.data not in ({}, None):
        raise serializers.ValidationError("this operation takes no body; send none (or {})")


class JSONInputError(ValueError):
    """JSON refused for what it holds rather than its syntax; the message says what to fix."""


def _finite(text: str) -> float:
    # Python reads 1e400 as inf, which PostgreSQL's jsonb (and every JSON client) refuses.
    if not math.isfinite(number := float(text)):
        raise JSONInputError(f"the number {text} is out of range (past ±1.8e308); send a finite number")
    return number


def _whole(text: str) -> int:
    # int() refuses this many digits with advice for a programmer (sys.set_int_max_str_digits).
    if len(digits := text.lstrip("-")) > (limit := sys.get_int_max_str_digits()):
        raise JSONInputError(f"an integer of {len(digits)} digits is out of range; at most {limit} digits")
    return int(text)


def _constant(name: str) -> None:
    raise JSONInputError(f"{name} is not JSON; send a finite number or null")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of a repeated key: {"id": "a", "id": "b"} enqueued "b" alone, nothing said.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise JSONInputError(f"key {key!r} appears twice in one object; send it once")
        found[key] = value
    return found


def loads(data: str | bytes) -> Any:
    """JSON as every entry point reads it (API bodies, `.jsonl` lines, the admin's JSON fields): nested at
    most EMBEDPORTAL_MAX_JSON_DEPTH levels and EMBEDPORTAL_MAX_JSON_VALUES values, both found before parsing (the
    parser recurses once a level, and a value parsed is tens of times its bytes), and no
    number PostgreSQL cannot store (NaN, Infinity, 1e400) or Python cannot read, nor a key twice in one
    object (Python would keep the last silently). Bytes are UTF-8 (a BOM skipped), never another encoding
    json.loads would guess. A ValueError says what is wrong: a JSONInputError for what the JSON holds, a
    JSONDecodeError where it is not JSON, a UnicodeDecodeError where it is not UTF-8."""
    # Strings dropped: their brackets and commas are text, not structure.
    structure = _JSON_STRING.sub(b"", data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    # About how many values: its arrays and objects, and each item or entry past a container's first. Parsed,
    # a value costs 50 to 100 bytes however few it is written in: 60 MB of {},{},... took 5 GB.
    values = structure.count(b"[") + structure.count(b"{") + structure.count(b",")
    if values > (most := settings.EMBEDPORTAL_MAX_JSON_VALUES):
        raise JSONInputError(
            f"JSON holds about {values} values, over the limit of {most} (EMBEDPORTAL_MAX_JSON_VALUES); "
            "send fewer documents or smaller metadata at once"
        )
    # The deepest level: the highest running sum of the brackets, +1 opening, -1 closing.
    depth = max(
        itertools.accumulate(1 if byte in b"[{" else -1 for byte in _NOT_BRACKET.sub(b"", structure)), default=0
    )
    if depth > (limit := settings.EMBEDPORTAL_MAX_JSON_DEPTH):
        raise JSONInputError(
            f"JSON nested more than {limit} levels deep (EMBEDPORTAL_MAX_JSON_DEPTH); send flatter objects"
        )
    text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_float=_finite, parse_int=_whole, parse_constant=_constant, object_pairs_hook=_object)


class BoundedJSONFormField(forms.JSONField):
    """The admin's JSON fields read as the API reads JSON (`loads`): a deep value was a 500, and so was an
    integer of 5000 digits."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value not in self.empty_values:
            try:
                loads(value)
            except JSONInputError as exc:
                raise forms.ValidationError(str(exc)) from None
            except ValueError:
                pass  # not JSON: Django's own message
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        """Shown again as typed: parsing it would recurse, and a lone surrogate read from an escape could not
        be written into the page (a 500 on the redisplay)."""
        return InvalidJSONInput(data) if isinstance(data, str) else super().bound_data(data, initial)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser reading through `loads`; a parse error names where it is, once."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        request = (parser_context or {}).get("request")
        coding = request.META.get("HTTP_CONTENT_ENCODING", "").strip() if request is not None else ""
        if coding and coding.lower() != "identity":  # read as text, a gzip body was a "can't decode byte 0x8b"
            raise UnsupportedMediaType(media_type, f"Content-Encoding {coding} is not supported: send the body plain")
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        if charset is not None and charset.lower() not in ("utf-8", "utf8"):  # it was ignored, the body read as UTF-8
            raise UnsupportedMediaType(media_type, f"charset {charset} is not supported: send JSON as UTF-8")
        body = stream.read()
        # JSON in UTF-8 holds no NUL byte (a NUL in a string is \u0000); UTF-16 and UTF-32 hold one per ASCII
        # character, which json.loads read as UTF-16 or UTF-32, though the API reads UTF-8 only.
        if (nul := body.find(b"\x00")) >= 0:
            raise ParseError(f"the body is not UTF-8 (a NUL byte at byte {nul}: UTF-16 or UTF-32?); send JSON as UTF-8")
        try:
            return loads(body)
        except JSONInputError as exc:
            raise ParseError(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not UTF-8 ({exc.reason} at byte {exc.start}); send JSON as UTF-8") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error: {json_error(exc)}") from None


def json_error(exc: ValueError) -> str:
    """ "Invalid control character at column 9" (the decoder's message ends in "at"), the line when several."""
    if not isinstance(exc, json.JSONDecodeError):
        return str(exc)
    line = f"line {exc.lineno} " if exc.lineno > 1 else ""
    return f"{exc.msg.removesuffix(' at')} at {line}column {exc.colno}"


class JSONTypeOnly:
    """Only values of the field's JSON type: DRF's IntegerField would take "3", 3.0 or true, its BooleanField
    "yes", "on" or 1, its CharField (and SlugField, URLField...) the number 42 as "42"."""

    json_type: type = str

    def to_internal_value(self, data: Any) -> Any:
        # A bool is an int to Python, not to JSON.
        if not isinstance(data, self.json_type) or (isinstance(data, bool) and self.json_type is not bool):
            self.fail("invalid", input=data)  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


# The JSON type each DRF field takes, its subclasses too (SlugField, URLField...).
JSON_TYPES = {serializers.CharField: str, serializers.IntegerField: int, serializers.BooleanField: bool}


def _strict(field: type[serializers.Field]) -> type[serializers.Field]:
    for base, json_type in JSON_TYPES.items():
        if issubclass(field, base):
            return type(f"Strict{field.__name__}", (JSONTypeOnly, field), {"json_type": json_type})
    return field


StrictCharField = _strict(serializers.CharField)
StrictIntegerField = _strict(serializers.IntegerField)
StrictBooleanField = _strict(serializers.BooleanField)


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A model serializer refusing unknown fields and numbers or booleans sent as strings."""

    serializer_field_mapping = {
        model_field: _strict(field)
        for model_field, field in serializers.ModelSerializer.serializer_field_mapping.items()
    }
