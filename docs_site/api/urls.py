from __future__ import annotations

from django.urls import re_path

from docs_site.api.views import DocsView

urlpatterns = [
    # With and without the trailing slash: both are the documented address.
    re_path(r"^embedding-pipeline-operations/docs/?$", DocsView.as_view(), name="embedding-pipeline-operations-docs"),
]
