"""Django backend for the embedded server: django-prometheus' PostgreSQL backend (queries and
errors counted per database) that starts or attaches to the server on its first connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as PrometheusDatabaseWrapper

from embedportal.embedded_db import connection_settings


class DatabaseWrapper(PrometheusDatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        if not self.settings_dict["HOST"]:
            # Written into the settings dict itself, so code that builds a URL from
            # connection.settings_dict (for a subprocess) gets the server's socket.
            self.settings_dict.update(connection_settings(Path(settings.DATA_DIR)))
        return super().get_connection_params()
