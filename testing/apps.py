from __future__ import annotations

from django.apps import AppConfig


class TestingConfig(AppConfig):
    name = "testing"
