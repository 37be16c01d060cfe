from __future__ import annotations

from django.apps import AppConfig


class ReprocessingConfig(AppConfig):
    name = "reprocessing"

    def ready(self) -> None:
        from reprocessing import receivers  # noqa: F401  (records failures in the pipeline's transactions)
