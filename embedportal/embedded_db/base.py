"""Django backend for the embedded server: django-prometheus' PostgreSQL backend (queries and
errors counted per database) that starts or attaches to the server on its first connection, and
starts it again when it stopped under a running web or worker; `manage.py dbshell` opens the
bundled psql on it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql.client import DatabaseClient as PostgresDatabaseClient
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as PrometheusDatabaseWrapper

from embedportal.embedded_db import connection_settings, program

# The embedded server's socket directories this process connected to: only a connection to one of
# them is the embedded server's to restart (settings pointed elsewhere fail as they are).
SERVED: set[str] = set()


class DatabaseClient(PostgresDatabaseClient):
    def runshell(self, parameters: list[str]) -> None:
        # The settings name no HOST or PORT: connecting starts or attaches to the server and fills
        # them in, or psql went to its default socket (/var/run/postgresql), where nothing listens.
        self.connection.ensure_connection()
        # psql's session is the shell; this process's own would sit idle beside it for as long
        # (one more client in restore's "in use by").
        self.connection.close()
        super().runshell(parameters)

    @classmethod
    def settings_to_cmd_args_env(cls, settings_dict: dict[str, Any], parameters: list[str]) -> tuple[list[str], Any]:
        args, env = super().settings_to_cmd_args_env(settings_dict, parameters)
        # The server's own psql, as backup's pg_dump: a user's machine may have no PostgreSQL client.
        psql = program(cls.executable_name)
        if psql.exists():
            args[0] = str(psql)
        return args, env


class DatabaseWrapper(PrometheusDatabaseWrapper):
    client_class = DatabaseClient

    def get_connection_params(self) -> dict[str, Any]:
        if not self.settings_dict["HOST"]:
            self._attach()
        return super().get_connection_params()

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError:
            if self.settings_dict["HOST"] not in SERVED:
                raise
            # The server went away (`make stop`, a crash, a reboot) while this process runs: start
            # it again, as the first connection did (a running server is only attached to), and
            # connect once more; a server that cannot start raises here, as it would have at first.
            self._attach()
            return super().get_new_connection(self.get_connection_params())

    def _attach(self) -> None:
        try:
            found = connection_settings(Path(settings.DATA_DIR))
        except (AssertionError, subprocess.SubprocessError) as exc:
            # pgserver asserts that a server it finds is ready, and gives pg_ctl 10 s to start one: a
            # server still stopping or starting failed the request with a 500 (a soak restarting the
            # database under make run). It is unavailable for now, as a refused connection is: a 503
            # for the API, a wait for the workers.
            raise psycopg.OperationalError(
                f"the embedded database server is not ready (stopping or starting): {type(exc).__name__} {exc}"
            ) from exc
        # Written into the settings dict itself, so code that builds a URL from
        # connection.settings_dict (for a subprocess) gets the server's socket.
        self.settings_dict.update(found)
        SERVED.add(self.settings_dict["HOST"])
