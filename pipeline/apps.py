from __future__ import annotations

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Embedding pipeline"

    def ready(self) -> None:
        from pipeline import quality, signals  # noqa: F401  (collection index lifecycle, evaluations around changes)
