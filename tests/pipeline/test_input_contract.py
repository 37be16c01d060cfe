"""One bounded input contract at every entry point, and nothing disclosed on the way: JSON depth,
metadata bounds, stale versions, strict types, bodies where none is taken, one 404, credentials
in URLs, the readiness probe and what `enqueue` never reads."""

from __future__ import annotations

import html
import importlib
import io
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import OperationalError
from prometheus_client import REGISTRY

from embedportal.api import strict
from embedportal.storable import unstorable
from pipeline import health
from pipeline.models import Collection, Document, GoldenQuery, OptimizationChange, ProviderCircuit
from pipeline.models.operations import endpoint_label
from pipeline.queue import IncomingDocument, InvalidDocument, enqueue
from testing.models import TestRun
from tests.pipeline.test_security import api_urls
from tests.tools import error_of

pytestmark = pytest.mark.django_db

MARCH_1, MARCH_2 = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"


def enqueue_cli(*paths, **options) -> str:
    out = io.StringIO()
    call_command("enqueue", *map(str, paths), collection="hashes", no_progress=True, stdout=out, stderr=out, **options)
    return out.getvalue()


def post(api, path: str, body) -> object:
    return api.generic("POST", path, json.dumps(body) if not isinstance(body, str) else body, "application/json")


# -- JSON depth, before parsing ------------------------------------------------------------------


def test_json_nested_too_deep_is_a_400_saying_so_on_every_endpoint_that_takes_json(api, hash_collection):
    deep = "[" * 990 + "]" * 990
    for url, name in api_urls().items():
        url = url.replace("/collections/1/", "/collections/hashes/")
        for method in ("POST", "PUT", "PATCH"):
            response = api.generic(method, url, deep, "application/json")
            assert response.status_code in (400, 404, 405), f"{method} {url} ({name}) -> {response.status_code}"
            if response.status_code == 400:
                assert "EMBEDPORTAL_MAX_JSON_DEPTH" in response.json()["error"]["message"], (method, url)
    message = error_of(post(api, "/api/v1/collections/hashes/documents/", deep), 400)["message"]
    assert message == "JSON nested more than 32 levels deep (EMBEDPORTAL_MAX_JSON_DEPTH); send flatter objects"


def test_the_depth_check_counts_structure_not_brackets_inside_strings(settings):
    settings.EMBEDPORTAL_MAX_JSON_DEPTH = 2
    assert strict.loads(b'{"a": "[[[[[[[[{{{{", "b": ["\\"[[["]}') == {"a": "[[[[[[[[{{{{", "b": ['"[[[']}
    with pytest.raises(strict.JSONInputError, match="nested more than 2 levels"):
        strict.loads(b'{"a": [[1]]}')
    settings.EMBEDPORTAL_MAX_JSON_DEPTH = 3
    assert strict.loads(b'{"a": [[1]]}') == {"a": [[1]]}


def test_a_jsonl_line_nested_too_deep_is_rejected_with_its_line(hash_collection, tmp_path):
    lines = tmp_path / "docs.jsonl"
    lines.write_text(json.dumps({"id": "ok", "text": "fine"}) + "\n" + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(CommandError, match="1 document"):
        enqueue_cli(lines)
    assert Document.objects.get().external_id == "ok"


# -- metadata: one rule everywhere ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({f"k{i}": i for i in range(11)}, "metadata has more than 10 keys (EMBEDPORTAL_MAX_METADATA_KEYS)"),
        ({"a": {"b": {"c": {"d": 1}}}}, "metadata is nested more than 3 levels deep (EMBEDPORTAL_MAX_METADATA_DEPTH)"),
        ({"a": [[[1]]]}, "metadata is nested more than 3 levels deep"),
        ({"big": "x" * 300}, "metadata is 311 bytes of JSON, over the limit of 256 (EMBEDPORTAL_MAX_METADATA_BYTES)"),
    ],
)
def test_metadata_over_a_bound_is_refused_alike_by_the_api_the_command_and_the_admin(
    api, admin_client, hash_collection, tmp_path, settings, metadata, problem
):
    settings.EMBEDPORTAL_MAX_METADATA_KEYS = 10
    settings.EMBEDPORTAL_MAX_METADATA_DEPTH = 3
    settings.EMBEDPORTAL_MAX_METADATA_BYTES = 256
    doc = {"id": "m", "text": "text", "metadata": metadata}
    error = error_of(post(api, "/api/v1/collections/hashes/documents/", doc), 400)
    assert problem in json.dumps(error["details"])

    lines = tmp_path / "docs.jsonl"
    lines.write_text(json.dumps(doc) + "\n")
    with pytest.raises(CommandError, match="1 document"):
        enqueue_cli(lines)

    form = admin_client.post(
        "/admin/pipeline/document/add/",
        {"collection": hash_collection.pk, "external_id": "m", "text": "text", "metadata": json.dumps(metadata)},
    )
    assert problem in form.content.decode()
    assert not Document.objects.exists()


def test_metadata_within_the_bounds_is_stored(api, hash_collection):
    doc = {"id": "m", "text": "text", "metadata": {"lang": "en", "tags": ["a", "b"], "owner": {"team": "x"}}}
    assert post(api, "/api/v1/collections/hashes/documents/", doc).status_code == 202
    assert Document.objects.get().metadata == doc["metadata"]


# JSON values PostgreSQL's jsonb refuses: each was a 500 (a DataError or UnicodeEncodeError at the INSERT) in
# the API and the admin, and `enqueue` stopped with a traceback mid-file.
UNSTORABLE_TEXT = ['{"user": "a\\u0000b"}', '{"\\u0000": 1}', '{"u": ["\\ud800"]}']
# Numbers Python reads (1e400 as inf, NaN) or refuses with advice for a programmer (5000 digits).
BAD_NUMBERS = {
    "1e400": "the number 1e400 is out of range (past ±1.8e308); send a finite number",
    "-1e400": "the number -1e400 is out of range",
    "1" + "0" * 5000: "an integer of 5001 digits is out of range; at most 4300 digits",
}


@pytest.mark.parametrize("extra_params", UNSTORABLE_TEXT)
def test_extra_params_postgresql_cannot_store_are_refused_by_the_api_and_the_admin(
    api, admin_client, hash_collection, extra_params
):
    problem = f"extra_params: extra_params {unstorable(json.loads(extra_params))}"
    body = f'{{"extra_params": {extra_params}}}'
    patched = api.generic("PATCH", "/api/v1/collections/hashes/", body, "application/json")
    assert error_of(patched, 400)["message"] == problem
    created = f'{{"name": "other", "model": "local/hash-16", "extra_params": {extra_params}}}'
    assert error_of(post(api, "/api/v1/collections/", created), 400)["message"] == problem
    # The form is shown again with the value as typed: a lone surrogate parsed from it could not be written.
    form = admin_client.post(
        f"/admin/pipeline/collection/{hash_collection.pk}/change/", {"name": "hashes", "extra_params": extra_params}
    )
    page = html.unescape(form.content.decode())
    assert form.status_code == 200 and problem.removeprefix("extra_params: ") in page and extra_params in page
    assert list(Collection.objects.values_list("name", "extra_params")) == [("hashes", {})]


@pytest.mark.parametrize(("number", "problem"), BAD_NUMBERS.items(), ids=["1e400", "-1e400", "5000 digits"])
def test_numbers_json_cannot_carry_are_refused_by_the_api_the_command_and_the_admin(
    api, admin_client, hash_collection, tmp_path, number, problem
):
    body = f'[{{"id": "ok", "text": "fine"}}, {{"id": "m", "text": "text", "metadata": {{"n": {number}}}}}]'
    assert problem in error_of(post(api, "/api/v1/collections/hashes/documents/", body), 400)["message"]
    patched = api.generic(
        "PATCH", "/api/v1/collections/hashes/", f'{{"extra_params": {{"n": {number}}}}}', "application/json"
    )
    assert problem in error_of(patched, 400)["message"]
    lines = tmp_path / "docs.jsonl"
    lines.write_text(body.removeprefix("[").removesuffix("]").replace("}, {", "}\n{") + "\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 document"):
        call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=out, stderr=out)
    assert f"docs.jsonl:2: {problem}" in out.getvalue()
    assert list(Document.objects.values_list("external_id", flat=True)) == ["ok"]
    form = admin_client.post(
        "/admin/pipeline/document/add/",
        {"collection": hash_collection.pk, "external_id": "m", "text": "text", "metadata": f'{{"n": {number}}}'},
    )
    assert form.status_code == 200 and problem in html.unescape(form.content.decode())
    assert list(Document.objects.values_list("external_id", flat=True)) == ["ok"]
    assert Collection.objects.get().extra_params == {}


def test_nan_and_infinity_are_refused_in_jsonl_lines_and_from_python_callers(hash_collection, tmp_path):
    lines = tmp_path / "docs.jsonl"
    lines.write_text('{"id": "a", "text": "t", "metadata": {"n": NaN}}\n{"id": "b", "text": "t", "x": -Infinity}\n')
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 document"):
        call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=out, stderr=out)
    assert "docs.jsonl:1: NaN is not JSON; send a finite number or null" in out.getvalue()
    assert "docs.jsonl:2: -Infinity is not JSON" in out.getvalue()
    with pytest.raises(InvalidDocument, match="metadata holds a number JSON cannot carry"):
        enqueue(hash_collection, [IncomingDocument("c", "t", metadata={"n": float("nan")})])
    assert not Document.objects.exists()


# Stored, they read back as years 0 and 10000, which Python cannot hold: every worker's claim and the
# collection's document list were a DataError ("timestamp too small (before year 1)") from then on.
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"]


def test_a_modified_at_a_worker_could_not_read_back_is_refused_by_the_api_the_command_and_callers(
    api, hash_collection, tmp_path
):
    lines = tmp_path / "docs.jsonl"
    times = [*OUT_OF_RANGE_TIMES, "2026-13-45T00:00:00Z"]  # the last: a date that does not exist (a traceback)
    lines.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": "t", "modified_at": t}) + "\n" for i, t in enumerate(times))
    )
    lines.write_text(lines.read_text() + json.dumps({"id": "ok", "text": "fine", "modified_at": MARCH_1}) + "\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="3 document"):
        call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=out, stderr=out)
    for line in (1, 2):
        assert f"docs.jsonl:{line}: modified_at is out of range in UTC (years 1 to 9999)" in out.getvalue()
    assert "docs.jsonl:3: modified_at '2026-13-45T00:00:00Z' is not a valid date-time (month must be in 1..12)" in (
        out.getvalue()
    )
    for moment in OUT_OF_RANGE_TIMES:
        with pytest.raises(InvalidDocument, match="modified_at is out of range in UTC"):
            enqueue(hash_collection, [IncomingDocument("x", "t", datetime.fromisoformat(moment))])
        body = {"id": "x", "text": "t", "modified_at": moment}
        message = error_of(post(api, "/api/v1/collections/hashes/documents/", body), 400)["message"]
        assert "out of range in UTC (years 1 to 9999)" in message
    assert list(Document.objects.values_list("external_id", flat=True)) == ["ok"]  # and it reads back


# -- stale versions --------------------------------------------------------------------------------


def stale_count(collection: str = "hashes") -> float:
    return REGISTRY.get_sample_value("embedding_pipeline_stale_versions_total", {"collection": collection}) or 0.0


def test_an_older_version_does_not_replace_a_newer_one_and_is_reported_stale_and_counted(api, hash_collection):
    url = "/api/v1/collections/hashes/documents/"
    assert post(api, url, {"id": "a", "text": "newer", "modified_at": MARCH_2}).json()["created"] == ["a"]
    before = stale_count()
    late = post(api, url, [{"id": "a", "text": "older", "modified_at": MARCH_1}, {"id": "b", "text": "new"}])
    assert late.status_code == 202
    assert late.json() == {"accepted": 1, "created": ["b"], "updated": [], "unchanged": [], "stale": ["a"]}
    stored = Document.objects.get(external_id="a")
    assert stored.text == "newer" and stored.source_modified_at.isoformat().startswith("2026-03-02")
    assert stale_count() == before + 1
    # Same content with older metadata is stale too: the metadata stays the newer one's.
    post(api, url, {"id": "a", "text": "newer", "modified_at": MARCH_1, "metadata": {"old": True}})
    assert Document.objects.get(external_id="a").metadata == {} and stale_count() == before + 2
    # A newer version, or one without a source time, replaces it as before.
    assert post(api, url, {"id": "a", "text": "newest", "modified_at": MARCH_2}).json()["updated"] == ["a"]
    assert post(api, url, {"id": "a", "text": "untimed"}).json()["updated"] == ["a"]


def test_the_command_reports_stale_versions(hash_collection, tmp_path):
    first, late = tmp_path / "first.jsonl", tmp_path / "late.jsonl"
    first.write_text(json.dumps({"id": "a", "text": "newer", "modified_at": MARCH_2}) + "\n")
    late.write_text(json.dumps({"id": "a", "text": "older", "modified_at": MARCH_1}) + "\n")
    enqueue_cli(first)
    assert "1 stale (older than the stored version, not applied)" in enqueue_cli(late)
    assert Document.objects.get().text == "newer"


# -- strict types, bodies, one 404 ----------------------------------------------------------------


def test_numbers_and_booleans_sent_as_strings_are_refused(api, hash_collection):
    search = error_of(post(api, "/api/v1/collections/hashes/search/", {"query": "q", "k": "3"}), 400)
    assert search["message"] == "k: A valid integer is required."
    assert error_of(post(api, "/api/v1/collections/hashes/search/", {"query": "q", "k": True}), 400)
    assert error_of(post(api, "/api/v1/collections/hashes/search/", {"query": 42}), 400)["message"].startswith("query")
    assert error_of(api.patch("/api/v1/collections/hashes/", {"chunk_size": "300"}, format="json"), 400)
    assert error_of(api.patch("/api/v1/collections/hashes/", {"paused": "true"}, format="json"), 400)
    assert error_of(api.patch("/api/v1/collections/hashes/", {"name": 7}, format="json"), 400)
    assert post(api, "/api/v1/collections/hashes/search/", {"query": "q", "k": 3}).status_code == 200
    assert not Collection.objects.get().paused


OPS = "/api/v1/embedding-pipeline-operations"


def test_a_key_twice_in_one_object_is_refused_not_read_as_its_last_value(api, admin_client, hash_collection, tmp_path):
    """{"id": "a", "id": "b"} enqueued "b" alone, and {"k": 3, "k": 100} searched for 100: the last won, silently."""
    problem = "key 'id' appears twice in one object; send it once"
    body = '[{"id": "a", "text": "fine"}, {"id": "b", "id": "c", "text": "t"}]'
    assert error_of(post(api, "/api/v1/collections/hashes/documents/", body), 400)["message"] == problem
    search = '{"query": "q", "k": 3, "metadata": 1, "k": 100}'
    assert "'k' appears twice" in error_of(post(api, "/api/v1/collections/hashes/search/", search), 400)["message"]
    lines = tmp_path / "docs.jsonl"
    lines.write_text(body.strip("[]").replace("}, {", "}\n{") + "\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 document"):
        call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=out, stderr=out)
    assert f"docs.jsonl:2: {problem}" in out.getvalue()
    form = admin_client.post(
        "/admin/pipeline/document/add/",
        {"collection": hash_collection.pk, "external_id": "m", "text": "t", "metadata": '{"a": 1, "a": 2}'},
    )
    assert "key &#x27;a&#x27; appears twice in one object" in form.content.decode()
    assert list(Document.objects.values_list("external_id", flat=True)) == ["a"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{OPS}/test/", {"quick": True, "scenario": ["x"]}, "scenario"),  # unknown (scenarios)
        (f"{OPS}/test/", {"scenarios": [7]}, "scenarios"),
        (f"{OPS}/performance/apply/", {"collection": "hashes", "recommendation": 7}, "recommendation"),
        (f"{OPS}/performance/apply/", {"collection": "hashes", "recommendation": "x", "force": True}, "force"),
        ("/api/v1/failures/retry/", {"error_type": "rate_limit", "collection": 7}, "collection"),
        ("/api/v1/failures/retry/", {"error_type": "rate_limit", "colection": "hashes"}, "colection"),
        (
            f"{OPS}/golden-queries/",
            {"collection": "hashes", "query": "q", "expected_document_id": "a", "why": 1},
            "why",
        ),
        ("/api/v1/collections/hashes/reembed/", [], None),
        ("/api/v1/collections/hashes/evaluations/", [], None),
    ],
)
def test_every_operation_refuses_unknown_fields_wrong_types_and_non_objects(api, hash_collection, path, body, field):
    error = error_of(post(api, path, body), 400)
    assert field is None or error["message"].startswith(field), error
    assert not TestRun.objects.exists() and not OptimizationChange.objects.exists()
    assert Collection.objects.get().generation == 1 and not GoldenQuery.objects.exists()


def test_a_collection_named_by_a_number_is_refused_even_when_a_collection_has_that_name(api, hash_collection):
    # DRF looked the number 7 up as the name "7" (the fuzzer's): a string sent as a number is a 400.
    Collection.objects.create(name="7", model="local/hash-16", dimensions=16)
    body = {"collection": 7, "query": "q", "expected_document_id": "a"}
    error = error_of(post(api, f"{OPS}/golden-queries/", body), 400)
    assert error["details"] == {"collection": ["must be a name, a JSON string (not int)"]}
    assert not GoldenQuery.objects.exists()


@pytest.mark.parametrize("body", ['"garbage"', "[1, 2]", '{"paused": false}', "42"])
def test_operations_that_take_no_body_refuse_one(api, hash_collection, body):
    for action in ("pause", "resume"):
        error = error_of(api.generic("POST", f"/api/v1/collections/hashes/{action}/", body, "application/json"), 400)
        assert error["message"] == "this operation takes no body; send none (or {})"
    assert not Collection.objects.get().paused
    assert api.post("/api/v1/collections/hashes/pause/").status_code == 200
    assert post(api, "/api/v1/collections/hashes/resume/", {}).status_code == 200


NUL_ADDRESS = "the address holds a NUL character (%00), which no name, id or value has; remove it"


def test_a_nul_in_the_address_is_a_400_saying_so_on_the_api_and_the_admin(api, admin_client, hash_collection):
    """Each was a 500: the lookup sent the NUL to PostgreSQL, which refuses one (DataError)."""
    enqueue(hash_collection, [IncomingDocument("a", "a document")])
    document = "/api/v1/collections/hashes/documents/a%00b/"
    for method, url in (("GET", document), ("DELETE", document), ("POST", f"{document}requeue/")):
        assert error_of(api.generic(method, url), 400)["message"] == NUL_ADDRESS, (method, url)
    assert error_of(api.get("/api/v1/documents/", {"status": "\x00"}), 400)["message"] == NUL_ADDRESS
    for url in ("/admin/pipeline/document/?status__exact=%00", "/admin/pipeline/document/?q=a%00"):
        response = admin_client.get(url)
        assert response.status_code == 400 and response.content.decode() == NUL_ADDRESS, url
    assert Document.objects.get().external_id == "a"


def test_an_unknown_collection_gets_one_404_message_whatever_the_route(api, hash_collection):
    expected = "no collection named 'nope'"
    base = "/api/v1/collections/nope"
    answers = [
        api.get(f"{base}/"),
        api.patch(f"{base}/", {"paused": True}, format="json"),
        api.delete(f"{base}/"),
        api.post(f"{base}/pause/"),
        api.post(f"{base}/reembed/", {}, format="json"),
        api.get(f"{base}/documents/"),
        post(api, f"{base}/search/", {"query": "q"}),
        api.get(f"{base}/documents/a/"),
    ]
    assert {error_of(a, 404)["message"] for a in answers} == {expected}


def test_list_filters_refuse_unknown_parameters_collections_and_values(api, hash_collection):
    """A typo in a filter answered an empty list, or every row: now a 400 naming what to fix."""
    golden, benchmarks = (
        "/api/v1/embedding-pipeline-operations/golden-queries/",
        "/api/v1/embedding-pipeline-operations/benchmarks/",
    )
    for path in ("/api/v1/documents/", "/api/v1/failures/", golden, benchmarks):
        assert "unknown query parameter" in error_of(api.get(path, {"colection": "hashes"}), 400)["message"], path
    for path in ("/api/v1/documents/", "/api/v1/failures/", golden):
        assert (
            error_of(api.get(path, {"collection": "nope"}), 400)["message"] == "collection: no collection named 'nope'"
        )
        assert api.get(path, {"collection": "hashes"}).status_code == 200
    assert error_of(api.get(benchmarks, {"regressed": "maybe"}), 400)["details"].keys() == {"regressed"}
    assert error_of(api.get(benchmarks, {"suite": "huge"}), 400)["details"].keys() == {"suite"}
    assert api.get(benchmarks, {"regressed": "true", "suite": "quick", "machine": "m"}).json()["count"] == 0


EMPTY_FILTERS = [
    ("/api/v1/documents/", ("collection", "status")),
    ("/api/v1/collections/hashes/documents/", ("status",)),
    ("/api/v1/failures/", ("error_type", "state", "stage", "collection", "min_age", "max_age")),
    ("/api/v1/embedding-pipeline-operations/golden-queries/", ("collection",)),
    ("/api/v1/embedding-pipeline-operations/benchmarks/", ("regressed", "suite", "machine")),
    ("/api/v1/audit/", ("collection", "actor", "token", "action", "via", "since", "until")),
    ("/api/v1/embedding-pipeline-operations/performance/", ("collection", "window")),
    ("/api/v1/slos/", ("range", "collection", "headroom")),
    ("/api/v1/embedding-pipeline-operations/docs/", ("page",)),
]


@pytest.mark.parametrize(("path", "parameter"), [(path, name) for path, names in EMPTY_FILTERS for name in names])
def test_a_filter_given_empty_is_a_400_naming_it_not_the_unfiltered_list(api, hash_collection, path, parameter):
    # A schemathesis run: ?status= (and every other filter given empty) listed every row, as if not given.
    error = error_of(api.get(path, {parameter: ""}), 400)
    assert error["details"] == {parameter: ["empty; give a value or leave the parameter out"]}
    assert error["message"] == f"{parameter}: empty; give a value or leave the parameter out"


PERFORMANCE, SLOS = "/api/v1/embedding-pipeline-operations/performance/", "/api/v1/slos/"


@pytest.mark.parametrize(
    ("path", "query", "problem"),
    [
        (PERFORMANCE, {"window": "0"}, "a whole number of seconds from 1 to 31622400 (366 days)"),
        (PERFORMANCE, {"collection": "nope"}, "no collection named 'nope'"),
        (SLOS, {"headroom": "2"}, "a share of capacity from 0 to below 1, e.g. 0.3"),
        (SLOS, {"headroom": "lots"}, "a share of capacity from 0 to below 1, e.g. 0.3"),
        (SLOS, {"range": "1y"}, "unknown range '1y'; use one of 1h, 6h, 24h, 7d, 30d"),
        (SLOS, {"collection": "nope"}, "no collection named 'nope'"),
        ("/api/v1/embedding-pipeline-operations/docs/", {"page": "../README.md"}, None),
    ],
)
def test_a_views_own_parameter_is_refused_under_its_name_with_a_list(api, hash_collection, path, query, problem):
    # A schemathesis run: details held a bare string ({"window": "..."}), and GET slos put its problems under
    # non_field_errors with a message that did not name the parameter.
    (name,) = query
    error = error_of(api.get(path, query, HTTP_ACCEPT="application/json"), 400)
    assert list(error["details"]) == [name] and isinstance(error["details"][name], list), error
    assert error["message"] == f"{name}: {error['details'][name][0]}"
    assert problem is None or error["details"][name] == [problem]


# -- files -----------------------------------------------------------------------------------------


def test_a_symlink_loop_is_reported_as_one(hash_collection, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    with pytest.raises(CommandError, match="a symlink loop"):
        enqueue_cli(loop)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(CommandError, match="a broken symlink"):
        enqueue_cli(dangling)


def test_an_invalid_control_character_is_reported_without_at_at(api, hash_collection, tmp_path):
    lines = tmp_path / "docs.jsonl"
    lines.write_bytes(b'{"id": "a", "text": "tab\there"}\n')
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=io.StringIO(), stderr=err)
    assert "invalid JSON (Invalid control character at column 25)" in err.getvalue()
    api_error = error_of(post(api, "/api/v1/collections/hashes/documents/", '{"id": "a", "text": "a\tb"}'), 400)
    assert api_error["message"] == "JSON parse error: Invalid control character at column 23"
    assert "at at" not in err.getvalue() + api_error["message"]


@pytest.fixture
def project(tmp_path, settings, monkeypatch) -> Path:
    """A project root as `make run` leaves it: its data directory, a mounted secret, dotfiles, docs."""
    root = tmp_path / "project"
    settings.DATA_DIR = root / "var"
    for name, text in {
        "var/secret_key": "django-secret",
        "var/admin-password": "hunter2",
        "var/pg/PG_VERSION": "18",
        "secrets/provider-key": "sk-mounted",
        ".env": "TOKEN=abc",
        ".git/config": "[core]",
        "docs/.draft.md": "a hidden draft",
        "docs/guide.md": "The guide.",
        "notes.txt": "Notes.",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setenv("PROVIDER_API_KEY_FILE", str(root / "secrets/provider-key"))
    return root


def test_no_glob_or_walk_reads_the_data_directory_secret_files_or_dotfiles(hash_collection, project):
    out = enqueue_cli(f"{project}/**/*", base=project)
    assert set(Document.objects.values_list("external_id", flat=True)) == {"docs/guide.md", "notes.txt"}
    assert "the portal's data directory or secret files (never read)" in out and "hidden" in out

    Document.objects.all().delete()
    out = enqueue_cli(project, base=project)
    assert set(Document.objects.values_list("external_id", flat=True)) == {"docs/guide.md", "notes.txt"}
    texts = " ".join(Document.objects.values_list("text", flat=True))
    assert not {"django-secret", "hunter2", "sk-mounted", "TOKEN=abc", "hidden draft"} & set(texts.split())


def test_a_dotfile_named_one_by_one_is_read_but_the_data_directory_never(hash_collection, project):
    enqueue_cli(project / ".env", base=project)
    assert Document.objects.get().external_id == ".env"
    out = enqueue_cli(project / "var" / "secret_key", project / "secrets" / "provider-key", base=project)
    assert "0 new" in out and "2 the portal's data directory or secret files (never read)" in out
    assert Document.objects.count() == 1


# -- disclosure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "api_base", ["https://user:secret@provider.example/v1", "https://provider.example/v1?api_key=sk-123"]
)
def test_credentials_in_api_base_are_refused_by_the_api_and_the_admin(api, admin_client, hash_collection, api_base):
    error = error_of(api.patch("/api/v1/collections/hashes/", {"api_base": api_base}, format="json"), 400)
    assert "secret store" in error["message"] and "api_key_env" in error["message"]
    assert "user:secret" not in json.dumps(error) and "sk-123" not in json.dumps(error)  # never echoed
    created = post(api, "/api/v1/collections/", {"name": "other", "model": "local/hash-16", "api_base": api_base})
    assert "secret store" in error_of(created, 400)["message"]
    form = admin_client.post("/admin/pipeline/collection/add/", {"name": "third", "api_base": api_base})
    assert "secret store" in form.content.decode()
    assert list(Collection.objects.values_list("name", "api_base")) == [("hashes", "")]


def test_the_migration_strips_credentials_already_stored_and_their_circuits(hash_collection, capsys):
    strip = importlib.import_module("pipeline.migrations.0002_squashed_0011_fusion_default_rrf").strip_credentials
    Collection.objects.filter(pk=hash_collection.pk).update(
        api_base="https://user:s3cret@provider.example:8443/v1?api_key=k&x=1"
    )
    clean = Collection.objects.create(
        name="clean", model="local/hash-16", dimensions=16, api_base="http://h/v1?q=a%20b"
    )
    collection = Collection.objects.get(pk=hash_collection.pk)
    ProviderCircuit.objects.create(
        model=collection.model,
        api_base=collection.api_base,
        endpoint=endpoint_label(collection),
        updated_at=collection.updated_at,
    )
    strip(apps, None)
    assert Collection.objects.get(pk=hash_collection.pk).api_base == "https://provider.example:8443/v1?x=1"
    assert Collection.objects.get(pk=clean.pk).api_base == "http://h/v1?q=a%20b"  # untouched
    assert not ProviderCircuit.objects.exists()
    assert "collection hashes: credentials removed" in capsys.readouterr().out


def test_readyz_tells_anonymous_callers_nothing_about_an_outage(client, monkeypatch):
    socket = "/work/var/pg/.s.PGSQL.5432"

    class Down:
        def cursor(self):
            raise OperationalError(f'connection to server on socket "{socket}" failed: No such file or directory')

    monkeypatch.setattr(health, "connection", Down())
    monkeypatch.setattr(health, "_migrated", False)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"name": "ready", "ok": False}
    assert socket not in response.content.decode() and "/work" not in response.content.decode()
    assert os.sep + "pg" not in response.content.decode()


def test_no_anonymous_answer_names_a_path_a_collection_or_a_model(client, hash_collection, settings):
    client.defaults["REMOTE_ADDR"] = "203.0.113.9"  # from elsewhere: /metrics answers loopback by design
    secrets_of_the_deployment = {str(settings.BASE_DIR), str(settings.DATA_DIR), hash_collection.name, "hash-16"}
    urls = [*api_urls(), "/api/v1/health/", "/healthz", "/readyz", "/metrics", "/admin/login/", "/docs/", "/nope"]
    for url in urls:
        for method in ("get", "post"):
            body = getattr(client, method)(url.replace("/collections/1/", "/collections/hashes/")).content.decode()
            leaked = {s for s in secrets_of_the_deployment if s in body}
            assert not leaked, f"{method.upper()} {url} shows {leaked}"


def test_the_admin_forms_refuse_json_nested_too_deep_with_their_error(admin_client, hash_collection):
    deep = "[" * 5000 + "]" * 5000
    enqueue_form = admin_client.post(
        "/admin/pipeline/document/add/",
        {"collection": hash_collection.pk, "external_id": "m", "text": "text", "metadata": deep},
    )
    assert enqueue_form.status_code == 200 and not Document.objects.exists()
    assert "JSON nested more than 32 levels deep" in enqueue_form.content.decode()
    change_form = admin_client.post(
        f"/admin/pipeline/collection/{hash_collection.pk}/change/", {"name": "hashes", "extra_params": deep}
    )
    assert change_form.status_code == 200 and "JSON nested more than 32 levels deep" in change_form.content.decode()
    assert Collection.objects.get().extra_params == {}


def test_a_compressed_or_non_utf8_body_and_a_bom_say_what_to_send(api, hash_collection, tmp_path):
    # An adversarial-input soak: gzip got "'utf-8' codec can't decode byte 0x8b", a Latin-1 body a bare
    # decode error, and a .jsonl file a Windows editor saved had its first line refused for its BOM.
    import gzip

    url = "/api/v1/collections/hashes/documents/"
    body = json.dumps([{"id": "café", "text": "crème brûlée"}], ensure_ascii=False)
    zipped = api.generic("POST", url, gzip.compress(body.encode()), "application/json", HTTP_CONTENT_ENCODING="gzip")
    assert error_of(zipped, 415)["message"] == "Content-Encoding gzip is not supported: send the body plain"
    latin = api.generic("POST", url, body.encode("latin-1"), "application/json")
    assert error_of(latin, 400)["message"].startswith("the body is not UTF-8 (invalid continuation byte at byte 12)")
    assert not Document.objects.exists()
    lines = tmp_path / "docs.jsonl"
    lines.write_bytes(b"\xef\xbb\xbf" + body[1:-1].encode() + b"\n")
    call_command("enqueue", str(lines), collection="hashes", no_progress=True, stdout=io.StringIO())
    assert list(Document.objects.values_list("external_id", "text")) == [("café", "crème brûlée")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32-be", "utf-32"])
def test_a_utf16_or_utf32_body_is_a_400_saying_to_send_utf8(api, hash_collection, encoding):
    # A schemathesis run: json.loads guesses UTF-16 and UTF-32 from bytes, so such a body was enqueued (202).
    body = json.dumps({"id": "u", "text": "x"}).encode(encoding)
    response = api.generic("POST", "/api/v1/collections/hashes/documents/", body, "application/json")
    message = error_of(response, 400)["message"]
    assert message.startswith("the body is not UTF-8 (") and message.endswith("); send JSON as UTF-8"), message
    assert not Document.objects.exists()


def test_a_charset_other_than_utf8_is_a_415_naming_it_and_utf8_with_or_without_a_bom_is_read(api, hash_collection):
    # The charset was ignored and the body read as UTF-8 whatever it said.
    url = "/api/v1/collections/hashes/documents/"
    body = json.dumps({"id": "u", "text": "x"})
    for charset in ("latin-1", "bogus", "utf-16"):
        response = api.generic("POST", url, body, f"application/json; charset={charset}")
        assert error_of(response, 415)["message"] == f"charset {charset} is not supported: send JSON as UTF-8"
    assert not Document.objects.exists()
    for content_type in ("application/json; charset=UTF-8", 'application/json; charset="utf-8"', "application/json"):
        assert api.generic("POST", url, body, content_type).status_code == 202, content_type
    assert api.generic("POST", url, b"\xef\xbb\xbf" + body.encode(), "application/json").status_code == 202
