"""Hypothesis over every JSON endpoint of the URLconf (a new endpoint is covered without a change
here): hostile bodies and query strings get a 4xx or a success, never a 500."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.models import Collection
from pipeline.queue import IncomingDocument, enqueue
from tests.pipeline.test_security import api_urls

pytestmark = pytest.mark.django_db

# Names the endpoints take (and near misses), so generated objects reach validation past the
# unknown-field check, besides arbitrary ones.
FIELDS = [
    *Collection.EDITABLE_FIELDS,
    *("id", "text", "metadata", "modified_at", "query", "k", "error_type", "collection", "recommendation"),
    *("categories", "scenarios", "quick", "wait", "status", "limit", "offset", "window", "range", "strategy"),
]
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)
deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)
bodies = (
    json_values.map(json.dumps)
    | st.lists(st.dictionaries(keys, json_values, max_size=5), min_size=1, max_size=3).map(json.dumps)
    | deep
    | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)
query = st.dictionaries(keys, st.text(max_size=12), max_size=3)
SEEN: Counter[str] = Counter()


def no_waiting(body: str) -> str:
    """A valid test-run request waits `wait` seconds (30 by default, up to 50) for a worker this
    test has not: an integer wait becomes 0; any other value is still sent as drawn."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # the deep bodies: json.loads recurses
        return body
    if isinstance(request, dict) and (type(request.get("wait")) is int or "wait" not in request):
        return json.dumps({**request, "wait": 0})
    return body


DOCS = "/api/v1/embedding-pipeline-operations/docs"


@pytest.fixture
def endpoints(api, hash_collection, monkeypatch) -> list[tuple[str, str]]:
    """(url, method) for every method each endpoint allows (its OPTIONS answer's Allow header).

    Two waits no example needs, taken out here: a test-run request without a body (nothing for
    no_waiting to set) waits the default `wait` for a worker this test has not (30 s, then 202, as at
    0 s); and the docs list re-runs its checks (Git, schema, generators; seconds) when none are
    stored, which every example's rollback undid. The checks run once here through the endpoint, kept
    for the examples, whose query strings the list reads no more of than before."""
    from testing.api.serializers import RunRequestSerializer

    # Fields are deep-copied from the arguments they were declared with.
    monkeypatch.setitem(RunRequestSerializer._declared_fields["wait"]._kwargs, "default", 0)
    assert RunRequestSerializer(data={}).fields["wait"].default == 0
    assert api.get(DOCS).status_code == 200
    enqueue(hash_collection, [IncomingDocument("d1", "a document to address")])
    pairs = []
    for url in api_urls():
        url = url.replace("/collections/1/", "/collections/hashes/").replace("/documents/1/", "/documents/d1/")
        allowed = {
            m.strip()
            for m in api.options(url, HTTP_ACCEPT="application/json").get("Allow", "GET, POST, PUT, PATCH").split(",")
        }
        pairs += [(url, method) for method in sorted(allowed & {"GET", "POST", "PUT", "PATCH"})]
    assert len(pairs) > 30
    return pairs


# No example database: nothing written into the checkout.
@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_json_endpoint_answers_500_whatever_it_is_sent(api, endpoints, data):
    url, method = data.draw(st.sampled_from(endpoints), label="endpoint")
    body = data.draw(bodies, label="body") if method != "GET" else ""
    params = data.draw(query, label="query")
    if url.startswith("/api/v1/embedding-pipeline-operations/test"):
        body = no_waiting(body)
    with transaction.atomic():  # every example starts from the same data (throttle counts included)
        if method == "GET":
            response = api.get(url, params)
        else:
            response = api.generic(method, url, body.encode("utf-8", "surrogatepass"), "application/json")
        transaction.set_rollback(True)
    SEEN[f"{method} {response.status_code}"] += 1
    SEEN["examples"] += 1
    assert response.status_code < 500, f"{method} {url} {body[:200]!r} -> {response.status_code}"
    if response["Content-Type"].startswith("application/json") and response.status_code >= 400:
        assert response.json()["error"]["status"] == response.status_code


def test_print_the_fuzz_counts():
    """Runs after the fuzz test (file order): the figures for the notes."""
    assert SEEN["examples"] >= 600, SEEN
    statuses = Counter(key.split()[1] for key in SEEN if key != "examples")
    print(f"\nfuzz: {SEEN['examples']} examples; by method and status: {dict(sorted(SEEN.items()))}")
    assert set(statuses) >= {"200", "400"}
