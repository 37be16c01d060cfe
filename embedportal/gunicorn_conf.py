"""gunicorn settings (`--config python:embedportal.gunicorn_conf`)."""

from __future__ import annotations

import logging
import os
from typing import Any

# The Django app, LiteLLM and the local model are loaded once in the master (on_starting) and
# shared copy-on-write by the workers it forks, instead of ~700 MB loaded by each worker on
# its first search or health probe (which then also timed the load as the model's answer).
preload_app = True
# gunicorn's control socket (`gunicorn ctl`) is not used, and its default path is per user, not per
# server: two stacks on one machine (PORT and EMBEDPORTAL_DATA_DIR apart) bound the same one.
control_socket_disable = True
# gunicorn's own records (the access log: any client's request line and headers) through the app's one-line
# formatter: a header's C1 control (\x85, \x9b) reached the log raw, forging a record or a terminal sequence.
# gunicorn merges this into its defaults; its loggers stay off the root logger, which the app's LOGGING owns.
FORMATTER = "embedportal.printable.PrintableFormatter"
logconfig_dict = {
    "formatters": {
        "generic": {
            "()": FORMATTER,
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
        "access": {"()": FORMATTER, "format": "%(message)s"},  # gunicorn's access lines as they were
    },
    "handlers": {
        name: {"class": "logging.StreamHandler", "formatter": formatter, "stream": f"ext://sys.{stream}"}
        for name, formatter, stream in (
            ("console", "generic", "stdout"),
            ("error_console", "generic", "stderr"),
            ("access_console", "access", "stdout"),
        )
    },
    "loggers": {
        name: {"level": "INFO", "handlers": [handler], "propagate": False, "qualname": name}
        for name, handler in (("gunicorn.error", "error_console"), ("gunicorn.access", "access_console"))
    },
}


def on_starting(server: Any) -> None:
    from django.conf import settings
    from django.db import DatabaseError, connections

    from pipeline import providers
    from pipeline.models import Collection

    local = providers.LOCAL_MODEL
    try:
        # The default model is what new collections will use; existing ones may use it too.
        local_model = settings.EMBEDPORTAL_DEFAULT_MODEL == local or Collection.objects.filter(model=local).exists()
    except DatabaseError as exc:
        # Workers then load the model on first use; the web still starts.
        logging.getLogger("gunicorn.error").warning("no preload of the local model: %s", exc)
        local_model = False
    finally:
        # A connection opened here must not be shared by the forked workers.
        connections.close_all()
    providers.preload(local_model=local_model)


def child_exit(server: Any, worker: Any) -> None:
    # Multiprocess metrics: a dead worker's live gauges must stop counting.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
