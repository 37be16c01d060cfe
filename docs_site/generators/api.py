"""API reference: the drf-spectacular OpenAPI schema rendered to Markdown
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

from typing import Any

from docs_site.generators.base import GeneratedPage, table

PATH = "reference/api.md"
METHODS = ("get", "post", "put", "patch", "delete")


def schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) in path order: the endpoints the coverage counts."""
    return [
        (method.upper(), path, op)
        for path, item in sorted(spec.get("paths", {}).items())
        for method, op in item.items()
        if method in METHODS
    ]


def _ref_name(node: dict[str, Any] | None) -> str:
    if not node:
        return ""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if node.get("type") == "array":
        return f"array of {_ref_name(node.get('items'))}"
    return node.get("type", "object")


def _first_schema(content: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of the first media type (sorted), as the reference shows one."""
    return content[sorted(content)[0]].get("schema") if content else None


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    lines = [f"### `{method} {path}`", ""]
    text = "\n\n".join(t.strip() for t in (op.get("summary"), op.get("description")) if t and t.strip())
    lines += [text or "_No description._", ""]
    if params := op.get("parameters", []):
        rows = [
            [
                f"`{p['name']}`",
                p.get("in", ""),
                "yes" if p.get("required") else "",
                _ref_name(p.get("schema")),
                p.get("description", ""),
            ]
            for p in params
        ]
        lines += [table(["parameter", "in", "required", "type", "meaning"], rows), ""]
    if body := op.get("requestBody", {}).get("content", {}):
        lines += [f"Request body ({', '.join(sorted(body))}): {_ref_name(_first_schema(body))}", ""]
    rows = [
        [code, resp.get("description", ""), _ref_name(_first_schema(resp.get("content", {})))]
        for code, resp in sorted(op.get("responses", {}).items())
    ]
    lines += [table(["status", "meaning", "body"], rows), ""]
    security = [next(iter(s)) for s in op.get("security", []) if s]
    lines += [f"Authentication: {', '.join(security) if security else 'none'}.", ""]
    return "\n".join(lines)


def _component(name: str, node: dict[str, Any]) -> str:
    lines = [f"### {name}", ""]
    if node.get("description"):
        lines += [node["description"].strip(), ""]
    if "enum" in node:
        lines += ["One of: " + ", ".join(f"`{v}`" for v in node["enum"] if v not in (None, "")), ""]
        return "\n".join(lines)
    required = set(node.get("required", []))
    rows = [
        [
            f"`{prop}`",
            _ref_name(spec) if "$ref" in spec or "type" in spec else "",
            "yes" if prop in required else "",
            "yes" if spec.get("readOnly") else "",
            spec.get("description", ""),
        ]
        for prop, spec in node.get("properties", {}).items()
    ]
    if rows:
        lines += [table(["field", "type", "required", "read-only", "meaning"], rows), ""]
    return "\n".join(lines)


def generate(live: bool = False) -> GeneratedPage:
    missing: list[str] = []
    try:
        spec = schema()
    except Exception as exc:  # noqa: BLE001  (a broken view must not stop the other pages)
        spec, missing = {}, [f"OpenAPI schema (drf-spectacular): {exc.__class__.__name__}: {exc}"]
    info = spec.get("info", {})
    ops = operations(spec)
    parts = [
        f"{info.get('title', 'API')} {info.get('version', '')}: {info.get('description', '')}".strip(),
        "Every endpoint needs authentication (token: `Authorization: Token <secret>`, or a session) unless "
        "it says none; reads need the model's `view_*` permission, and a token's scope caps what it may do "
        "(the [endpoint x scope x grant table](access.md)). The live schema is at "
        "`/api/v1/schema/`, Swagger UI at `/api/v1/docs/`.",
        "## Endpoints",
        table(["method", "path", "operation"], [[m, f"`{p}`", op.get("operationId", "")] for m, p, op in ops]),
        *[_operation(m, p, op) for m, p, op in ops],
        "## Schemas",
        *[_component(name, node) for name, node in sorted(spec.get("components", {}).get("schemas", {}).items())],
    ]
    body = "\n\n".join(p.strip() for p in parts if p.strip())
    sources = ["*/api/*.py", "embedportal/urls.py", "*/models.py", "*/choices.py"]
    return GeneratedPage(PATH, "API reference", __name__, spec, body, sources, missing=missing)
