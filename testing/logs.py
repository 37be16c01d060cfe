"""The operations tests' deliberate bad requests stay out of the log: each run asks the API for 4xx answers
on purpose (an unknown collection, a malformed body), and django.request logged every one at WARNING, as if
a client sent them. Only the tester's own requests in its own process are left out (a context variable, not
a header any client could send); a 5xx during a test is logged as always."""

from __future__ import annotations

import logging
from contextvars import ContextVar

OPS_TEST_REQUEST: ContextVar[bool] = ContextVar("ops_test_request", default=False)


class SkipOpsTestBadRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "django.request" and record.levelno == logging.WARNING and OPS_TEST_REQUEST.get())
