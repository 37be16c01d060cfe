"""One error body for every API failure: {"error": {"status", "message", "details"}} (notes: docs/operations.md,
"Module notes")."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware import common
from django.urls import is_valid_path
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from psycopg.errors import DeadlockDetected, SerializationFailure, UniqueViolation
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from embedportal.api.strict import empty_parameters, unknown_parameters

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "the database is unavailable; try again shortly"
CONTENTION = "a concurrent request changed the same rows at the same moment; try again"
# Seconds a client should wait before retrying a 503 (a restart or failover takes about this long).
RETRY_AFTER = {"Retry-After": "5"}


class Conflict(APIException):
    """409: the object is not in a state that allows the request (the message says which)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "the resource is not in a state that allows this"
    default_code = "conflict"


def error_body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"status": status, "message": message, "details": {} if details is None else details}}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message", "details"],
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status again."},
                "message": {"type": "string", "description": "What went wrong, the first problem named."},
                "details": {"type": "object", "description": "Every problem by field or parameter."},
            },
        }
    },
}


def declare_errors(result: dict[str, Any], **context: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation answers its errors (any 4xx or 5xx it does not
    describe otherwise) in error_body's shape, which the schema names Error."""
    result["components"]["schemas"]["Error"] = ERROR_SCHEMA
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operation in (op for methods in result["paths"].values() for op in methods.values()):
        responses = operation["responses"]
        responses.setdefault("4XX", {"description": "The request cannot be served as it is; the message says why."})
        responses.setdefault("5XX", {"description": "The server, the database or a provider failed."})
        for code, response in responses.items():
            if code[0] in "45":
                response.setdefault("content", content)
    return result


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            # DRF's own "detail" is a bare string; a query parameter or field named "detail" holds a list.
            bare = key == "non_field_errors" or (key == "detail" and not isinstance(value, list))
            return inner if bare else f"{key}: {inner}"
        return "invalid request"
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "invalid request"
    return str(detail)


def _contention(exc: BaseException | None) -> bool:
    """PostgreSQL gave up one of two transactions that got in each other's way: the database is fine."""
    return isinstance(getattr(exc, "__cause__", None), (DeadlockDetected, SerializationFailure))


def _database_down(exc: BaseException | None) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError)) and not _contention(exc)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if _database_down(exc):
        logger.warning("API request failed, database unavailable: %s", str(exc).strip().splitlines()[:1])
        return Response(error_body(503, DATABASE_UNAVAILABLE), status=503, headers=RETRY_AFTER)
    if _contention(exc):
        logger.warning("API request gave way to a concurrent one: %s", str(exc).strip().splitlines()[:1])
        return Response(error_body(409, CONTENTION), status=409)
    if isinstance(exc, IntegrityError) and isinstance(exc.__cause__, UniqueViolation):
        # Another request wrote the same unique value after this one's validation looked (a race the
        # validators cannot close): a conflict to look at again, not a server error.
        detail = exc.__cause__.diag.message_detail or "it exists now"
        message = f"another request created the same meanwhile: {detail}"
        return Response(error_body(409, message), status=409)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    # ValidationError("...") outside a serializer holds a bare list: details is an object on every error; and
    # ValidationError({"window": "..."}) a bare string, which is a list of one as a serializer's are.
    details = {"non_field_errors": response.data} if isinstance(response.data, list) else response.data
    details = {key: [value] if isinstance(value, str) and key != "detail" else value for key, value in details.items()}
    view = context.get("view")
    if isinstance(exc, Http404) and "pk" in getattr(view, "kwargs", {}) and hasattr(view, "get_queryset"):
        # Django's "No FailedDocument matches the given query." names a class, not what was asked for.
        details = {"detail": f"no {view.get_queryset().model._meta.verbose_name} with id {view.kwargs['pk']}"}
    response.data = error_body(response.status_code, _first_message(details), details)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: called while the exception is being handled (sys.exc_info() holds it)."""
    if not request.path.startswith("/api/"):
        return defaults.server_error(request)
    if _database_down(sys.exc_info()[1]):
        return JsonResponse(error_body(503, DATABASE_UNAVAILABLE), status=503, headers=RETRY_AFTER)
    return JsonResponse(error_body(500, "internal server error; the server log has the details"), status=500)


# Clients resolve "." and ".." segments before sending (RFC 3986), and Django has decoded a sent "%2E%2E": an
# address that repeats the path (a document's url, a redirect, a hint) encodes them again, or "a/%2E%2E/b" leads
# to document "b". Django decodes, never resolves: encoded, they reach the route they were sent to.
DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


def dot_segments_encoded(path: str) -> str:
    return "/".join(DOT_SEGMENTS.get(segment, segment) for segment in path.split("/"))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an address under /api/ that no route matches (a typo, an id of the wrong form)."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    path = dot_segments_encoded(request.path)
    slash = f" (did you mean {path + '/'!r}?)" if is_valid_path(f"{request.path_info}/") else ""
    message = f"no API route {path!r}{slash}; the routes are in /api/v1/schema/ (Swagger UI: /api/v1/docs/)"
    return JsonResponse(error_body(404, message), status=404)


class CommonMiddleware(common.CommonMiddleware):
    """Django's, but an API request other than a read is not redirected to its address with a slash: the
    client repeats a 301 as a GET without the body (`POST .../pause` answered 405 "GET not allowed"); and
    the redirect keeps "." and ".." segments encoded (`documents/%2E` was sent to the list, `documents/./`)."""

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        writes = request.path.startswith("/api/") and request.method not in ("GET", "HEAD")
        return not writes and super().should_redirect_with_slash(request)

    def get_full_path_with_slash(self, request: HttpRequest) -> str:
        path, query, string = super().get_full_path_with_slash(request).partition("?")
        return dot_segments_encoded(path) + query + string


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django refuses before any view (a disallowed Host header, a bad cookie)."""
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    return JsonResponse(error_body(400, "bad request; the server log says why"), status=400)


class StrictQueryMiddleware(MiddlewareMixin):
    """The query parameters of an API view: each given once (every one takes one value), and, for a view
    without a StrictFilterSet (which checks its own), beyond `limit`, `offset` and `format` only those its
    `query_parameters` names for the action (a viewset's) or the method (an APIView's), none given empty;
    any other is a 400 naming it, as a filter's is."""

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        cls = getattr(view, "cls", None)
        if not request.GET or cls is None:
            return None
        # Django reads the last of a repeated parameter: ?status=pending&status=failed listed the failed alone.
        repeated = {
            name: [f"given {len(values)} times; give it once (every parameter takes one value)"]
            for name, values in request.GET.lists()
            if len(values) > 1
        }
        if repeated:
            return JsonResponse(error_body(400, _first_message(repeated), repeated), status=400)
        # A StrictFilterSet checks its own; drf-spectacular's schema and UI take their own (lang, version).
        if cls.__module__.startswith("drf_spectacular.") or getattr(cls, "filterset_class", None):
            return None
        method = request.method.lower() if request.method else ""
        handler = getattr(view, "actions", {}).get(method, method)
        known = getattr(cls, "query_parameters", {}).get(handler, ())
        problems = {**unknown_parameters(request.GET.keys(), known), **empty_parameters(request.GET, known)}
        details = {parameter: [problem] for parameter, problem in problems.items()}
        return JsonResponse(error_body(400, _first_message(details), details), status=400) if details else None
