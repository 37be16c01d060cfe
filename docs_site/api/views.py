"""GET /api/v1/embedding-pipeline-operations/docs: the documentation and its freshness
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import markdown
from django.db.models import Min
from django.utils import timezone
from django.utils.html import escape
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from docs_site import pages
from docs_site.api.serializers import DocsPageSerializer, DocsSerializer
from docs_site.generators import MODULES
from docs_site.models import DocCoverage, DocPage
from docs_site.tasks import record_checks
from embedportal.api.permissions import ModelPermissions

# The list re-runs the checks (Git, schema, generators) when the stored results are older.
RECHECK_AFTER = timedelta(minutes=5)


class MarkdownRenderer(BaseRenderer):
    """A page is text already (an error is JSON: DocsView.finalize_response)."""

    media_type = "text/markdown"
    format = "md"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data.encode()


class PageHTMLRenderer(BaseRenderer):
    """A page, or its error, for a browser."""

    media_type = "text/html"
    format = "html"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, str):
            return data.encode()
        message = data.get("error", {}).get("message", "") if isinstance(data, dict) else str(data)
        return f"<!doctype html><title>Error</title><p>{escape(message or str(data))}</p>".encode()


def to_html(title: str, text: str) -> str:
    body = markdown.markdown(
        pages.split_front_matter(text)[1], extensions=["tables", "fenced_code", "toc", "admonition", "attr_list"]
    )
    head = f'<head><meta charset="utf-8"><title>{escape(title)}</title></head>'
    return f'<!doctype html>\n<html lang="en">{head}\n<body>\n{body}\n</body></html>\n'


class DocsView(APIView):
    query_parameters = {"get": ("page",)}
    queryset = DocPage.objects.all()  # ModelPermissions: reading needs docs_site.view_docpage
    permission_classes = [ModelPermissions]
    renderer_classes = [MarkdownRenderer, PageHTMLRenderer, JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        if "page" not in request.query_params:
            # The list is JSON whatever is accepted; a ?format= naming another was answered JSON all the same.
            if (wanted := request.query_params.get("format", "json")) != "json" and not force:
                raise ValidationError({"format": [f"unknown format {wanted!r} for the list; known: json"]})
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # An error is JSON, as every error of the API, but for a browser's page (HTML): as Markdown it was
        # JSON text sent as text/markdown.
        renderer = getattr(request, "accepted_renderer", None)
        if getattr(response, "exception", False) and not isinstance(renderer, PageHTMLRenderer):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        summary="The documentation, its freshness and coverage; or one page",
        description=(
            "Without `page`: every page (title, kind, status fresh/stale/review_due with its reason, last "
            "update, lag) and the coverage per inventory. With `page`: that page's Markdown, or HTML with "
            "`Accept: text/html`."
        ),
        parameters=[
            OpenApiParameter(
                "page", OpenApiTypes.STR, description="A page path relative to the docs folder, e.g. runbooks/tasks.md"
            )
        ],
        responses={
            (200, "application/json"): PolymorphicProxySerializer(
                "DocsOrPage", [DocsSerializer, DocsPageSerializer], resource_type_field_name=None
            ),
            (200, "text/markdown"): OpenApiTypes.STR,
            (200, "text/html"): OpenApiTypes.STR,
            400: OpenApiResponse(description="The page path leaves the docs folder."),
            404: OpenApiResponse(description="No such page."),
        },
    )
    def get(self, request: Request) -> Response:
        if (path := request.query_params.get("page")) is not None:
            return self._page(request, path)
        oldest = DocPage.objects.aggregate(oldest=Min("checked_at"))["oldest"]
        if oldest is None or timezone.now() - oldest > RECHECK_AFTER or not DocCoverage.objects.exists():
            record_checks()
        rows = list(DocPage.objects.all())
        checked_at = min((p.checked_at for p in rows), default=None)
        data = {"site_url": "/docs/", "checked_at": checked_at, "coverage": DocCoverage.objects.all(), "pages": rows}
        return Response(DocsSerializer(data).data)

    def _page(self, request: Request, path: str) -> Response:
        try:
            page = pages.get(path)
        except pages.UnsafePath as exc:
            raise ValidationError({"page": str(exc)})
        except pages.PageNotFound as exc:
            raise NotFound(str(exc))
        text = MODULES[page.path].generate(live=True).render(live=True) if page.path in MODULES else page.text
        if isinstance(request.accepted_renderer, PageHTMLRenderer):
            return Response(to_html(page.title, text))
        if isinstance(request.accepted_renderer, JSONRenderer):
            return Response({"path": page.path, "title": page.title, "kind": page.kind, "markdown": text})
        return Response(text)
