"""API access reference: the endpoint x scope x grant table (tokens.grants)
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

from docs_site.generators.base import GeneratedPage, table
from tokens.grants import ANYONE, SIGNED_IN, grants

PATH = "reference/access.md"


def generate(live: bool = False) -> GeneratedPage:
    rows = [
        [g.method, f"`{g.path}`", g.scope, f"`{g.permission}`", f"changes `{g.field}`" if g.field else ""]
        for g in grants()
    ]
    body = "\n\n".join(
        [
            "Who may call each API route: a token's **scope** caps what it may do (read < write < operate, "
            "each scope includes the ones before it) and the user's Django **permission** grants it; a request "
            "needs both. A request with a session (signed in to the admin) is not capped by scope. A token "
            "of a lower scope gets 403 naming the scope needed; a revoked or expired token gets 401. "
            f"`{SIGNED_IN}`: any signed-in user or token; `{ANYONE}`: no authentication. A row naming a "
            "field holds when the request changes that field: each action needs one permission, "
            "whatever the route ([api.md](../api.md#tokens)). Each row is a test case (tests/tokens/test_grants.py).",
            table(["method", "path", "scope", "permission", "when"], rows),
        ]
    )
    sources = ["*/api/*.py", "*/api.py", "embedportal/urls.py", "embedportal/api/permissions.py", "tokens/grants.py"]
    return GeneratedPage(PATH, "API access: endpoint x scope x grant", __name__, rows, body, sources)
