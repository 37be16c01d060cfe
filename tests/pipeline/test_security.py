"""Who may see what: anonymous clients, tokens without permission, and provider secrets."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import api_token

pytestmark = pytest.mark.django_db

SECRET = "sk-test-secret-123456"  # what the fake_collection fixture puts in FAKE_PROVIDER_KEY
# Probes carry no credentials by design.
PUBLIC_API = {"health"}
PUBLIC_ADMIN = {"login", "logout"}
# Values tried for each URL parameter until one reverses ("1" is a valid id or name; admin app labels
# are an enumerated regex); a format suffix is always json.
CANDIDATES = ("1", "pipeline")


def url_patterns(patterns=None, namespace: str | None = None) -> Iterator[tuple[str, URLPattern]]:
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            yield from url_patterns(p.url_patterns, p.namespace or namespace)
        else:
            yield namespace, p


def concrete_urls(namespace_wanted: str | None, prefix: str, skip: set[str]) -> dict[str, str]:
    urls: dict[str, str] = {}
    for namespace, p in url_patterns():
        if namespace != namespace_wanted or not p.name or p.name in skip:
            continue
        full_name = f"{namespace}:{p.name}" if namespace else p.name
        groups = list(p.pattern.regex.groupindex)
        choices = [("json",) if group == "format" else CANDIDATES for group in groups]
        for values in itertools.product(*choices):
            try:
                url = reverse(full_name, kwargs=dict(zip(groups, values, strict=True)))
            except NoReverseMatch:
                continue
            if url.startswith(prefix):
                urls[url] = full_name
            break
    return urls


def api_urls() -> dict[str, str]:
    return concrete_urls(None, "/api/v1/", PUBLIC_API)


def test_the_url_walk_covers_every_api_endpoint_and_the_admin():
    names = set(api_urls().values())
    assert {
        "collection-list",
        "collection-pause",
        "collection-reembed",
        "collection-document-requeue",
        "failure-list",
    } <= names
    assert {"schema", "swagger-ui", "api-root"} <= names
    assert len(concrete_urls("admin", "/admin/", PUBLIC_ADMIN)) > 20


def test_anonymous_client_is_refused_by_every_api_endpoint_but_health(client):
    for url, name in api_urls().items():
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (401, 403), f"{method.upper()} {url} ({name}) -> {response.status_code}"
            if response["Content-Type"].startswith("application/json"):
                assert response.json()["error"]["status"] == response.status_code
    assert client.get("/api/v1/health/").status_code in (200, 503)


def test_anonymous_client_is_sent_to_login_by_every_admin_page(client):
    for url, name in concrete_urls("admin", "/admin/", PUBLIC_ADMIN).items():
        response = client.get(url)
        assert response.status_code == 302, f"{url} ({name}) -> {response.status_code}"
        assert response["Location"].startswith("/admin/login/"), url


def test_token_without_permissions_gets_403_from_every_api_endpoint(hash_collection):
    user = User.objects.create_user("nobody", password="x")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    doc_id = enqueue(hash_collection, [IncomingDocument("d1", "text")]) and Document.objects.get().pk
    # Only the API root, the schema and its UI are open to any authenticated user: they describe, hold no data.
    open_to_authenticated = {"api-root", "schema", "swagger-ui"}
    for url, name in api_urls().items():
        url = url.replace("/collections/1/", f"/collections/{hash_collection.name}/")
        url = url.replace("/documents/1/", f"/documents/{doc_id}/")
        if name in open_to_authenticated:
            assert api.get(url).status_code == 200, url
            continue
        for method in ("get", "post"):
            response = getattr(api, method)(url, format="json")
            assert response.status_code in (403, 405), f"{method.upper()} {url} ({name}) -> {response.status_code}"
            if response.status_code == 403:
                assert response.json()["error"]["status"] == 403
    assert Document.objects.get().status == DocumentStatus.PENDING
    assert not hash_collection.__class__.objects.get().paused


def test_view_permission_reads_but_cannot_trigger_operations(hash_collection):
    user = User.objects.create_user("viewer", password="x")
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_collection", "view_document"], content_type__app_label="pipeline"
        )
    )
    api = APIClient()
    api.force_authenticate(user)
    assert api.get("/api/v1/collections/").status_code == 200
    assert api.get("/api/v1/documents/").status_code == 200
    denied = api.post(f"/api/v1/collections/{hash_collection.name}/pause/")
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == "permission pipeline.pause_collection required"


def test_swagger_ui_needs_login_and_loads_nothing_from_another_host(admin_client, client):
    assert client.get("/api/v1/docs/").status_code in (401, 403)
    assert client.get("/api/v1/schema/").status_code in (401, 403)
    page = admin_client.get("/api/v1/docs/").content.decode()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page) + re.findall(
        r"url:\s*['\"]([^'\"]+)", page
    )
    assert references, "the page should load its assets"
    assert [r for r in references if re.match(r"^(https?:)?//", r)] == []
    assert any("drf_spectacular_sidecar/swagger-ui-dist" in r for r in references)
    assert admin_client.get("/api/v1/schema/").status_code == 200


def test_provider_key_never_reaches_api_admin_logs_or_health_output(
    fake_collection, fake_provider, admin_client, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    fake_provider.mode = "401"  # the provider echoes the key it was sent, as real ones do
    enqueue(fake_collection, [IncomingDocument("d1", "some text")])
    EmbeddingIngestionPipeline().drain()
    doc = Document.objects.get()
    assert doc.status == DocumentStatus.FAILED and "[redacted]" in doc.last_error
    assert fake_provider.requests[0]["auth"] == f"Bearer {SECRET}"  # it really was sent

    pages = [
        "/api/v1/collections/",
        f"/api/v1/collections/{fake_collection.name}/",
        f"/api/v1/collections/{fake_collection.name}/documents/",
        "/api/v1/documents/",
        f"/api/v1/collections/{fake_collection.name}/documents/{doc.external_id}/",
        "/api/v1/failures/",
        "/api/v1/health/",
        "/admin/pipeline/collection/",
        f"/admin/pipeline/collection/{fake_collection.pk}/change/",
        "/admin/pipeline/document/",
        f"/admin/pipeline/document/{doc.pk}/change/",
        "/admin/pipeline/collection/overview/",
        "/admin/reprocessing/faileddocument/",
    ]
    seen = []
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code in (200, 503), url
        seen.append(response.content.decode())
    # A vector search fails (502); a hybrid one is served from keywords, logging why.
    for mode, code in (("vector", 502), ("hybrid", 200)):
        search = admin_client.post(
            f"/api/v1/collections/{fake_collection.name}/search/",
            {"query": "q", "mode": mode},
            content_type="application/json",
        )
        assert search.status_code == code
        seen.append(search.content.decode())
    assert search.json()["fallback"] == "auth"
    with pytest.raises(CommandError):
        call_command("check_health", "--json")
    seen.append(capsys.readouterr().out)

    health = [s for s in seen if '"checks"' in s]
    assert health and all("Incorrect API key provided: [redacted]" in s for s in health)
    for text in [*seen, caplog.text]:
        assert SECRET not in text
        assert SECRET[:12] not in text


# What a signed-in staff user with no permission may open: the admin's own frame, nothing with data.
STAFF_FRAME = {"admin:index", "admin:password_change", "admin:password_change_done", "admin:jsi18n"}


def test_staff_without_permissions_get_403_from_every_admin_page_with_data(client, hash_collection):
    staff = User.objects.create_user("bare-staff", password="x", is_staff=True)
    client.force_login(staff)
    opened = {}
    for url, name in concrete_urls("admin", "/admin/", PUBLIC_ADMIN | {"logout"}).items():
        if name in STAFF_FRAME:
            continue
        status = client.get(url).status_code
        if status not in (302, 403, 404):  # 302: an unknown object sends back to the index
            opened[url] = (name, status)
    assert opened == {}
