"""Requests through the whole Django stack in this process, as a signed-in operator.

The operations tests drive the real URL routing, middleware (CSRF included), DRF and the admin
without a listening socket: a deployment's web pods may be unreachable from where the tester
runs. This is a small WSGI client of our own because production code must not import
`django.test` (see tests/test_architecture.py).
"""

from __future__ import annotations

import io
import json
import secrets
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any
from urllib.parse import urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core.handlers.wsgi import WSGIHandler

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], content: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}
        self.cookies = [value for name, value in headers if name.lower() == "set-cookie"]
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class InProcessClient:
    """A session of `user`, created the way `django.contrib.auth.login` stores one."""

    def __init__(self, host: str, user: Any) -> None:
        self.host = host
        self.handler = WSGIHandler()
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        store[SESSION_KEY] = user._meta.pk.value_to_string(user)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
        self._session = store
        # Double-submit CSRF: the cookie and the header carry the same secret, as a browser's form does.
        self.cookies = {settings.SESSION_COOKIE_NAME: store.session_key, settings.CSRF_COOKIE_NAME: _csrf_secret()}

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, data: Any = None, content_type: str | None = None) -> Response:
        return self.request("POST", path, data, content_type)

    def request(self, method: str, path: str, data: Any = None, content_type: str | None = None) -> Response:
        url = urlsplit(path)
        if data is None:
            body, content_type = b"", content_type or ""
        elif content_type == "application/json":
            body = json.dumps(data).encode()
        else:
            body, content_type = urlencode(data, doseq=True).encode(), "application/x-www-form-urlencoded"
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "HTTP_HOST": self.host,
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }
        if method in UNSAFE:
            environ["HTTP_X_CSRFTOKEN"] = self.cookies[settings.CSRF_COOKIE_NAME]
        setup_testing_defaults(environ)
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer.update(status=status, headers=headers)

        chunks = self.handler(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        response = Response(answer["status"], answer["headers"], content)
        for header in response.cookies:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response

    def logout(self) -> None:
        self._session.delete()


def _csrf_secret() -> str:
    # CSRF_SECRET_LENGTH characters from CSRF_ALLOWED_CHARS (letters and digits), as Django makes them.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))
