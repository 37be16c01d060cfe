from __future__ import annotations

from django.urls import re_path

from docs_site.views import site

urlpatterns = [re_path(r"^(?P<path>.*)$", site, name="docs-site")]
