"""Serve /metrics for processes without a web server (the django-q2 worker pod's sidecar): the counters and
histograms in PROMETHEUS_MULTIPROC_DIR plus the database collectors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from prometheus_client import make_wsgi_app

from embedportal import metrics
from embedportal.shutdown import stop_on_signals


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape every 15 s is noise


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=9100, help="Port to listen on (0: any free port)")
        parser.add_argument("--addr", default="0.0.0.0", help="Address to bind")

    def handle(self, *args: Any, **o: Any) -> None:
        if metrics.multiprocess_dir() is None:
            self.stderr.write(
                "PROMETHEUS_MULTIPROC_DIR is not set: only this process's own metrics would be served, "
                "not the workers'. Set it to the directory the workers share."
            )
        server = make_server(o["addr"], o["port"], self._app, handler_class=_QuietHandler)
        stop = stop_on_signals()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.stdout.write(f"Serving metrics on http://{o['addr']}:{server.server_port}/metrics")
        self.stdout.flush()
        stop.wait()
        server.shutdown()

    @staticmethod
    def _app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        # Like a Django request: drop a connection that broke or aged out, so a database
        # restart costs one failed scrape, not every scrape after it.
        close_old_connections()
        try:
            return make_wsgi_app(metrics.scrape_registry())(environ, start_response)
        finally:
            close_old_connections()
