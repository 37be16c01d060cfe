"""The API's audit step: every successful request that is not a read records one event."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework.permissions import SAFE_METHODS

from audit import trail
from audit.choices import Via
from embedportal.api.permissions import request_kind

logger = logging.getLogger(__name__)

# A viewset's generic actions, named as the admin names them (a POST to documents enqueues).
ACTIONS = {"create": "add", "update": "change", "partial_update": "change", "destroy": "delete", "documents": "enqueue"}
# Counts of documents a response may carry (enqueue, re-embed, retry).
COUNTS = ("accepted", "requeued", "retried")


class AuditMiddleware(MiddlewareMixin):
    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # DRF's finalize_response leaves the view and its request on the response.
        context = getattr(response, "renderer_context", None)
        if context and request.method not in SAFE_METHODS and 200 <= response.status_code < 300:
            try:
                record(context["request"], context["view"], getattr(response, "data", None))
            except Exception:  # the action is done: a lost record is logged, never turned into a 500
                logger.exception("could not record the audit event of %s %s", request.method, request.path)
        return response


def record(request: Any, view: Any, data: Any) -> None:
    if request_kind(request, view) == "read":
        return
    data = data if isinstance(data, dict) else {}
    action = getattr(view, "action", None)
    if action:
        action = f"{view.basename}.{ACTIONS.get(action, action)}"
    else:  # a view's route names its action (a POST to .../requeue/), a DELETE as a viewset's is named
        action = request.resolver_match.url_name + (".delete" if request.method == "DELETE" else "")
    kwargs = view.kwargs
    body = request.data if isinstance(request.data, dict) else {}
    collection = kwargs.get("name") or data.get("collection") or body.get("collection")
    count = next((data[k] for k in COUNTS if isinstance(data.get(k), int)), None)
    # A viewset's row: the one the route names, or the one it created (a test run, a golden query).
    pk = kwargs.get("pk") or data.get("id")
    fields = {
        "collection": collection if isinstance(collection, str) else "",
        "documents": 1 if "external_id" in kwargs else count,
        "target": kwargs.get("external_id") or (f"{view.basename} {pk}" if pk and hasattr(view, "basename") else ""),
        **getattr(request, "audit", {}),
    }
    trail.record(Via.API, action, **trail.who(request), **fields)
