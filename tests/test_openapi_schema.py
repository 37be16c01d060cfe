from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/collections/{name}/documents/", "/api/v1/collections/{name}/search/", "/api/v1/failures/"):
        assert path in text


def get_operations() -> list[tuple[str, list[str]]]:
    """(path with its placeholders filled, the query parameters the schema declares) of every GET."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(public=True)
    fill = {"{name}": "nosuch", "{id}": "999", "{external_id}": "a", "{pk}": "999"}
    operations = []
    for path, methods in schema["paths"].items():
        if "get" in methods:
            for placeholder, value in fill.items():
                path = path.replace(placeholder, value)
            declared = [p["name"] for p in methods["get"].get("parameters", []) if p["in"] == "query"]
            operations.append((path, declared))
    return operations


def test_every_get_refuses_a_query_parameter_its_schema_does_not_declare_and_takes_those_it_does(api):
    """`?colection=` or `?windw=` answered as if absent on half the API: now a 400 everywhere, and
    the schema is the list of what each operation takes."""
    operations = get_operations()
    assert len(operations) >= 20
    for path, declared in operations:
        # "detail" too: DRF's own error key, which the message must not mistake for the parameter's.
        for unknown in ("zzz_unknown", "detail"):
            refused = api.get(path, {unknown: "1"})
            assert refused.status_code == 400, (path, refused.content)
            message = refused.json()["error"]["message"]
            assert message.startswith(f"{unknown}: "), (path, message)
            assert refused.json()["error"]["details"][unknown] == [message.removeprefix(f"{unknown}: ")], path
            assert "unknown query parameter" in message, path
        for name in declared:
            answer = api.get(path, {name: "1"})
            assert answer.status_code != 400 or "unknown query parameter" not in answer.content.decode(), (path, name)
    # The schema itself and its UI take drf-spectacular's parameters.
    assert api.get("/api/v1/schema/", {"lang": "en", "format": "json"}).status_code == 200


def test_every_lists_limit_and_offset_carry_the_bounds_the_server_enforces():
    # Clients generated from the schema sent limits the server refuses (the fuzzer: ~600 schema-valid 400s).
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(public=True)
    paged = [
        {p["name"]: p["schema"] for p in methods["get"]["parameters"] if p["name"] in ("limit", "offset")}
        for methods in schema["paths"].values()
        if "get" in methods and any(p["name"] == "limit" for p in methods["get"].get("parameters", []))
    ]
    assert len(paged) > 5
    for parameters in paged:
        assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
        assert parameters["offset"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
