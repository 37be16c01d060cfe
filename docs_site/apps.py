from __future__ import annotations

from django.apps import AppConfig


class DocsSiteConfig(AppConfig):
    name = "docs_site"
    verbose_name = "Documentation"
