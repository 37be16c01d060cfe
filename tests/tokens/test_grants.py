"""The endpoint x scope x grant table (tokens.grants, docs/reference/access.md), one case per row:
a token of the next-lower scope is refused (403, naming the scope needed) though its user holds the
permission; a token of the needed scope is refused without the permission and passes with it (no
401 or 403: a 400 for the deliberately invalid body, a 404 for an unknown id, or success)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from embedportal.api.permissions import KINDS
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import api_token, user_with
from tokens.grants import ANYONE, SIGNED_IN, Grant, grants

ROWS = grants()
# The body of a row that holds for a change of one field: that change.
CHANGES = {"paused": True}
# Path parameters: the fixture's collection and document; ids of rows that do not exist (404 passes).
PARAMETERS = {"{name}": "hashes", "{external_id}": "d1", "{pk}": "1"}


def test_the_table_covers_the_api_with_every_scope_and_a_grant_per_row():
    paths = {g.path for g in ROWS}
    assert {"/api/v1/collections/{name}/pause/", "/api/v1/collections/{name}/documents/", "/api/v1/failures/"} <= paths
    assert {g.scope for g in ROWS} == set(KINDS)
    assert all(g.permission for g in ROWS) and {g.field for g in ROWS} <= {"", *CHANGES}
    pause = [g for g in ROWS if g.permission == "pipeline.pause_collection"]
    assert {(g.method, g.path, g.field) for g in pause} == {
        ("POST", "/api/v1/collections/{name}/pause/", ""),
        ("POST", "/api/v1/collections/{name}/resume/", ""),
        ("PATCH", "/api/v1/collections/{name}/", "paused"),
        ("PUT", "/api/v1/collections/{name}/", "paused"),
    }
    assert {g.scope for g in pause} == {"operate"}


def holder(grant: Grant, with_permission: bool = True):
    """A user with the row's permission (or not) and, for a field row, the route's own permission."""
    base = [g.permission for g in ROWS if (g.method, g.path, g.field) == (grant.method, grant.path, "")]
    perms = [*(base if grant.field else []), *([grant.permission] if with_permission else [])]
    perms = [p for p in perms if p not in (SIGNED_IN, ANYONE)]
    apps = {p.partition(".")[0] for p in perms}
    assert len(apps) <= 1, perms
    return user_with(*(p.partition(".")[2] for p in perms), app=apps.pop() if apps else "pipeline")


def call(grant: Grant, user, scope: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user, scope)}")
    path = grant.path
    for name, value in PARAMETERS.items():
        path = path.replace(name, value)
    if grant.method == "GET":
        return client.get(path)
    # Refused by the routes' input contracts, so the call changes nothing (re-embed takes it for no
    # body: it re-embeds the test's collection).
    body: object = []
    if grant.field:
        # A PUT sends every field: the object as it reads, with the one change.
        current = APIClient()
        current.force_authenticate(User.objects.create_superuser(f"reader-{User.objects.count()}"))
        body = {**(current.get(path).json() if grant.method == "PUT" else {}), grant.field: CHANGES[grant.field]}
    return getattr(client, grant.method.lower())(path, body, format="json")


@pytest.mark.parametrize("grant", ROWS, ids=[f"{g.method} {g.path}{' ' + g.field if g.field else ''}" for g in ROWS])
def test_a_row_needs_its_scope_and_its_permission(hash_collection, grant):
    enqueue(hash_collection, [IncomingDocument("d1", "some text")])
    answers = []
    needed = KINDS.index(grant.scope)
    if needed > 0:
        lower = KINDS[needed - 1]
        response = call(grant, holder(grant), lower)
        answers.append(f"{lower} token {response.status_code}")
        assert response.status_code == 403, response.content
        message = response.json()["error"]["message"]
        assert message == f"a token of scope {grant.scope} is needed; this token's scope is {lower}"
    if grant.permission not in (SIGNED_IN, ANYONE):
        response = call(grant, holder(grant, with_permission=False), grant.scope)
        answers.append(f"{grant.scope} token without the permission {response.status_code}")
        assert response.status_code == 403, response.content
    response = call(grant, holder(grant), grant.scope)
    answers.append(f"{grant.scope} token with it {response.status_code}")
    print(f"\n{grant.method} {grant.path} {grant.field}: {', '.join(answers)}")
    assert response.status_code not in (401, 403), response.content
    if grant.field:
        assert response.status_code == 200, response.content  # the change made
