"""Refuse a request body over the limit before anything reads it, and an address holding a NUL character
before anything looks it up (notes: docs/operations.md, "Module notes")."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from embedportal.api.errors import error_body


def _refuse(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(status, message), status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class RequestBodyLimitMiddleware(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        declared = request.META.get("CONTENT_LENGTH") or ""
        if not declared:
            if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
                return _refuse(request, 411, "send the body with a Content-Length header (chunked bodies are not read)")
            return None
        try:
            length = int(declared)
        except ValueError:
            return _refuse(request, 400, f"Content-Length {declared!r} is not a number of bytes")
        if length > (limit := settings.DATA_UPLOAD_MAX_MEMORY_SIZE):
            return _refuse(
                request,
                413,
                f"request body is {length} bytes, over the limit of {limit} (EMBEDPORTAL_MAX_REQUEST_BYTES); "
                "send fewer or smaller documents per request",
            )
        return None


class NulAddressMiddleware(MiddlewareMixin):
    """%00 in the path or the query string: no name, id or filter value holds a NUL (PostgreSQL cannot store
    one), and looking one up was a DataError, a 500 (a document's address, an admin list filter)."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        parts = [request.path, *request.GET.keys(), *(v for _, values in request.GET.lists() for v in values)]
        if any("\x00" in part for part in parts):
            return _refuse(
                request, 400, "the address holds a NUL character (%00), which no name, id or value has; remove it"
            )
        return None
