from __future__ import annotations

from django.urls import path, register_converter
from django.urls.converters import PathConverter
from rest_framework.routers import DefaultRouter

from pipeline.api.views import CollectionViewSet, DocumentRequeueView, DocumentView, DocumentViewSet, HealthView
from pipeline.performance import api as performance

# No format-suffix routes (collections.json ...): `?format=` does the same, and suffix kwargs
# reach @action methods that do not take them (a 500); reprocessing's SimpleRouter has none either.


class DocumentIdConverter(PathConverter):
    """`path`, line breaks too: ids stored before they were refused (a line break in one broke the lists)."""

    regex = "(?s:.+)"


register_converter(DocumentIdConverter, "docid")

router = DefaultRouter()
router.include_format_suffixes = False
router.register("collections", CollectionViewSet)
router.register("documents", DocumentViewSet)

urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    *performance.urlpatterns,
    # A document by collection and its own id; `path` lets the id hold slashes (docs/guide.md).
    # The requeue route comes first: a GET of an id ending in /requeue is not supported.
    path(
        "collections/<slug:name>/documents/<docid:external_id>/requeue/",
        DocumentRequeueView.as_view(),
        name="collection-document-requeue",
    ),
    path("collections/<slug:name>/documents/<docid:external_id>/", DocumentView.as_view(), name="collection-document"),
    *router.urls,
]
