"""Every operation the OpenAPI schema lists answers what the schema declares: its status among the
declared responses, its body valid against that response's schema (clients are generated from it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Document, GoldenQuery
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.quality import evaluate
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument
from testing.models import TestRun
from tests.factories import benchmark_run, stage_results, stored_result
from tests.pipeline.test_optimizer import embedding_bound
from tests.tools import client_with, error_of

pytestmark = pytest.mark.django_db

OPS = "/api/v1/embedding-pipeline-operations"


def openapi() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(public=True)


def as_json_schema(node: Any, leave_out: str) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: `nullable` as a null alternative, the properties marked
    `leave_out` (readOnly in a request, writeOnly in a response) left out, and an object with declared
    properties closed, so a field the schema does not name is a mismatch too."""
    if isinstance(node, list):
        return [as_json_schema(n, leave_out) for n in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("properties"), dict):
        out = {name for name, field in node["properties"].items() if field.get(leave_out)}
        properties = {name: field for name, field in node["properties"].items() if name not in out}
        required = [name for name in node.get("required", []) if name not in out]
        node = {"additionalProperties": False, **node, "properties": properties, "required": required}
    node = {k: as_json_schema(v, leave_out) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


# jsonschema checks "uri" only with rfc3987 installed: an optional URL field's "" matched both of
# drf-spectacular's alternatives (a URI, or empty) without it.
FORMATS = FormatChecker()
FORMATS.checks("uri")(lambda value: not isinstance(value, str) or bool(urlsplit(value).scheme))


def free_form(schema: dict[str, Any]) -> bool:
    """A body declared as any object (`responses={200: dict}`): a client learns nothing of its fields."""
    return schema.get("type") == "object" and not {"properties", "$ref", "allOf", "oneOf"} & set(schema)


def problems(spec: dict[str, Any], method: str, path: str, response: Any) -> list[str]:
    """How the response differs from what the schema declares for the operation (none: it conforms)."""
    declared = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    status = status if status in declared else f"{status[0]}XX"  # a range: 4XX, 5XX
    if status not in declared:
        return [f"status {response.status_code} not declared ({sorted(declared)}): {response.content[:300]!r}"]
    content = declared[status].get("content")
    if not content:
        return [] if not response.content else [f"{status} declares no body but got {response.content[:200]!r}"]
    media = response["Content-Type"].split(";")[0]
    if media not in content:
        return [f"{status} answered {media}, declared {sorted(content)}"]
    body_schema = content[media].get("schema", {})
    if media != "application/json":
        return []
    if free_form(body_schema):
        return [f"{status} declares any object, not the body's fields"]
    return invalid(spec, body_schema, response.json())


def invalid(spec: dict[str, Any], schema: dict[str, Any], value: Any, leave_out: str = "writeOnly") -> list[str]:
    """Where `value` breaks `schema` (its $refs into the spec's components)."""
    root = as_json_schema({**schema, "components": spec["components"]}, leave_out)
    errors = Draft202012Validator(root, format_checker=FORMATS).iter_errors(value)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]


def request_problems(spec: dict[str, Any], method: str, path: str, body: Any) -> list[str]:
    """How a body the API takes differs from the request body the schema declares."""
    declared = spec["paths"][path][method].get("requestBody", {}).get("content", {}).get("application/json")
    if declared is None:
        return [] if body is None else ["a body, where the schema declares none"]
    return [f"request {problem}" for problem in invalid(spec, declared["schema"], body, "readOnly")]


class World:
    """What the requests act on: embedded, failed and queued documents, golden queries, an evaluation,
    test and benchmark runs, timings the optimizer recommends a change from."""

    def __init__(self, collection: Any, client: Any) -> None:
        self.client = client
        enqueue(collection, [IncomingDocument(f"e{i}", f"embedded text {i}") for i in range(4)])
        EmbeddingIngestionPipeline().drain()
        enqueue(collection, [IncomingDocument(f"f{i}", f"failed text {i}") for i in range(3)])
        failed = Document.objects.filter(external_id__startswith="f")
        failed.update(status=DocumentStatus.FAILED)
        for doc in failed.order_by("external_id"):
            record_failure(doc.pk, PipelineError(ErrorType.RATE_LIMIT, Stage.EMBEDDING, "429"), "429")
        self.failures = list(FailedDocument.objects.order_by("pk").values_list("pk", flat=True))
        self.golden, _ = (
            GoldenQuery.objects.create(collection=collection, query=f"embedded text {i}", expected_document_id=f"e{i}")
            for i in (1, 2)
        )
        evaluate(collection, trigger="api")
        self.test_run = stored_result("health_checks_pass", "passed").run
        self.benchmark = benchmark_run(self.test_run.started_at, "v1", stage_results([100.0], [0.2]), "m")
        embedding_bound(collection)

    def queued_run(self) -> int:
        """A run to cancel: queued by the API (one at a time)."""
        if run := TestRun.objects.filter(status="queued").first():
            return run.pk
        return self.client.post(f"{OPS}/test/", {"scenarios": ["health_checks_pass"], "wait": 0}, format="json").json()[
            "id"
        ]


Request = Callable[[World], tuple[str, Any]]


def collection_body(w: World) -> dict[str, Any]:
    """The collection's settings as a PUT replaces them (what GET shows, less what only the server sets)."""
    current = w.client.get("/api/v1/collections/hashes/").json()
    for read_only in ("generation", "building_generation", "created_at", "updated_at", "held_back"):
        current.pop(read_only)
    return current


# The request each operation gets, by "METHOD path": its path filled in and a body (None: no body).
# A new operation fails the test until it is given one here.
REQUESTS: dict[str, Request] = {
    "get /api/v1/audit/": lambda w: ("/api/v1/audit/", None),
    "get /api/v1/collections/": lambda w: ("/api/v1/collections/", None),
    "post /api/v1/collections/": lambda w: (
        "/api/v1/collections/",
        {"name": "made", "model": "local/hash-32", "chunk_unit": "characters", "chunk_size": 100},
    ),
    "get /api/v1/collections/{name}/": lambda w: ("/api/v1/collections/hashes/", None),
    "put /api/v1/collections/{name}/": lambda w: ("/api/v1/collections/hashes/", collection_body(w)),
    "patch /api/v1/collections/{name}/": lambda w: ("/api/v1/collections/hashes/", {"batch_size": 8}),
    "delete /api/v1/collections/{name}/": lambda w: ("/api/v1/collections/made/", None),
    "get /api/v1/collections/{name}/documents/": lambda w: ("/api/v1/collections/hashes/documents/", None),
    "post /api/v1/collections/{name}/documents/": lambda w: (
        "/api/v1/collections/hashes/documents/",
        {"id": "new", "text": "a new document", "metadata": {"lang": "en"}},  # one, or a list of them
    ),
    "get /api/v1/collections/{name}/documents/{external_id}/": lambda w: (
        "/api/v1/collections/hashes/documents/e1/",
        None,
    ),
    "delete /api/v1/collections/{name}/documents/{external_id}/": lambda w: (
        "/api/v1/collections/hashes/documents/e3/",
        None,
    ),
    "post /api/v1/collections/{name}/documents/{external_id}/requeue/": lambda w: (
        "/api/v1/collections/hashes/documents/e0/requeue/",
        None,
    ),
    "get /api/v1/collections/{name}/evaluations/": lambda w: ("/api/v1/collections/hashes/evaluations/", None),
    "post /api/v1/collections/{name}/evaluations/": lambda w: ("/api/v1/collections/hashes/evaluations/", {}),
    "post /api/v1/collections/{name}/pause/": lambda w: ("/api/v1/collections/hashes/pause/", None),
    "post /api/v1/collections/{name}/resume/": lambda w: ("/api/v1/collections/hashes/resume/", None),
    "post /api/v1/collections/{name}/reembed/": lambda w: ("/api/v1/collections/made/reembed/", {}),
    "post /api/v1/collections/{name}/search/": lambda w: (
        "/api/v1/collections/hashes/search/",
        {"query": "embedded text 1", "k": 3},
    ),
    "get /api/v1/documents/": lambda w: ("/api/v1/documents/", None),
    f"get {OPS}/benchmarks/": lambda w: (f"{OPS}/benchmarks/", None),
    f"get {OPS}/benchmarks/{{id}}/": lambda w: (f"{OPS}/benchmarks/{w.benchmark.pk}/", None),
    f"get {OPS}/docs/": lambda w: (f"{OPS}/docs/", None),
    f"get {OPS}/golden-queries/": lambda w: (f"{OPS}/golden-queries/", None),
    f"post {OPS}/golden-queries/": lambda w: (
        f"{OPS}/golden-queries/",
        {"collection": "hashes", "query": "embedded text 3", "expected_document_id": "e3"},
    ),
    f"get {OPS}/golden-queries/{{id}}/": lambda w: (f"{OPS}/golden-queries/{w.golden.pk}/", None),
    f"put {OPS}/golden-queries/{{id}}/": lambda w: (
        f"{OPS}/golden-queries/{w.golden.pk}/",
        {"collection": "hashes", "query": "embedded text one", "expected_document_id": "e1"},
    ),
    f"patch {OPS}/golden-queries/{{id}}/": lambda w: (f"{OPS}/golden-queries/{w.golden.pk}/", {"query": "text 1"}),
    f"delete {OPS}/golden-queries/{{id}}/": lambda w: (f"{OPS}/golden-queries/{w.golden.pk}/", None),
    f"get {OPS}/performance/": lambda w: (f"{OPS}/performance/", None),
    f"post {OPS}/performance/apply/": lambda w: (
        f"{OPS}/performance/apply/",
        {"collection": "hashes", "recommendation": "batch-size-hashes"},
    ),
    f"get {OPS}/test/": lambda w: (f"{OPS}/test/", None),
    f"post {OPS}/test/": lambda w: (f"{OPS}/test/", {"scenarios": ["health_checks_pass"], "wait": 0}),
    f"get {OPS}/test/{{id}}/": lambda w: (f"{OPS}/test/{w.test_run.pk}/", None),
    f"post {OPS}/test/{{id}}/cancel/": lambda w: (f"{OPS}/test/{w.queued_run()}/cancel/", None),
    f"get {OPS}/test/{{id}}/junit/": lambda w: (f"{OPS}/test/{w.test_run.pk}/junit/", None),
    "get /api/v1/failures/": lambda w: ("/api/v1/failures/", None),
    "get /api/v1/failures/{id}/": lambda w: (f"/api/v1/failures/{w.failures[0]}/", None),
    "post /api/v1/failures/{id}/dead-letter/": lambda w: (f"/api/v1/failures/{w.failures[0]}/dead-letter/", None),
    "post /api/v1/failures/{id}/resolve/": lambda w: (f"/api/v1/failures/{w.failures[1]}/resolve/", None),
    "post /api/v1/failures/{id}/retry/": lambda w: (f"/api/v1/failures/{w.failures[2]}/retry/", None),
    "post /api/v1/failures/retry/": lambda w: ("/api/v1/failures/retry/", {"error_type": "rate_limit"}),
    "get /api/v1/health/": lambda w: ("/api/v1/health/", None),
    "get /api/v1/slos/": lambda w: ("/api/v1/slos/", None),
}


# Other forms some operations answer, by "METHOD path": (address, Accept header).
MORE_FORMS = {
    f"get {OPS}/docs/": [
        (f"{OPS}/docs/?page=api.md", "text/markdown"),
        (f"{OPS}/docs/?page=api.md", "text/html"),
        (f"{OPS}/docs/?page=api.md", "application/json"),
    ],
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation, deletions last (what they delete, other requests use)."""
    found = [(m, p) for p, methods in spec["paths"].items() for m in methods if m != "parameters"]
    return sorted(found, key=lambda op: op[0] == "delete")


def test_every_operation_answers_what_its_schema_declares(hash_collection, api):
    spec = openapi()
    world = World(hash_collection, api)
    missing = [f"{m} {p}" for m, p in operations(spec) if f"{m} {p}" not in REQUESTS]
    assert not missing, f"give these operations a request in REQUESTS: {missing}"
    found = {}
    for method, path in operations(spec):
        url, body = REQUESTS[f"{method} {path}"](world)
        response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
        assert response.status_code < 400, (method, url, response.content[:500])
        if mismatch := request_problems(spec, method, path, body) + problems(spec, method, path, response):
            found[f"{method.upper()} {path}"] = mismatch
    for operation, forms in MORE_FORMS.items():
        method, path = operation.split(" ")
        for url, accept in forms:
            response = getattr(api, method)(url, HTTP_ACCEPT=accept)
            assert response.status_code < 400, (method, url, response.content[:500])
            if mismatch := problems(spec, method, path, response):
                found[f"{method.upper()} {url} ({accept})"] = mismatch
    assert not found, "\n".join(f"{op}: {m}" for op, m in found.items())


def test_errors_answer_the_one_error_shape_the_schema_declares(hash_collection, api):
    """docs/api.md: every error is {"error": {"status", "message", "details"}}; the schema says so (its
    Error, for every 4xx and 5xx an operation does not describe otherwise)."""
    from rest_framework.test import APIClient

    spec = openapi()
    enqueue(hash_collection, [IncomingDocument("pending", "not embedded yet")])
    refusals = [
        (api, "get", "/api/v1/collections/{name}/", "/api/v1/collections/nosuch/", None, 404),
        (api, "post", "/api/v1/collections/{name}/search/", "/api/v1/collections/hashes/search/", {"query": 7}, 400),
        (
            api,
            "post",
            "/api/v1/collections/{name}/documents/{external_id}/requeue/",
            "/api/v1/collections/hashes/documents/pending/requeue/",
            None,
            409,
        ),
        (api, "post", "/api/v1/failures/{id}/retry/", "/api/v1/failures/999/retry/", None, 404),
        (api, "post", f"{OPS}/test/", f"{OPS}/test/", {"wait": "soon"}, 400),
        (client_with(), "get", "/api/v1/documents/", "/api/v1/documents/", None, 403),
        (APIClient(), "get", "/api/v1/failures/", "/api/v1/failures/", None, 401),
    ]
    for client, method, path, url, body, status in refusals:
        response = getattr(client, method)(url, body, format="json")
        error_of(response, status)
        assert not problems(spec, method, path, response), (method, url, problems(spec, method, path, response))
