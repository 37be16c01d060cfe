from __future__ import annotations

from django.apps import AppConfig


class ReprocessingConfig(AppConfig):
    name = "reprocessing"
