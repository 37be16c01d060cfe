"""Per-collection access by team: a member of team A, holding every model permission, sees nothing of
team B's collection (404 on every API route under it, its rows left out of lists, 404 in the admin,
refused by the commands run --as-user); platform operators see both."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import EndpointEnumerator
from rest_framework.test import APIClient

from pipeline import health
from pipeline.access import TeamCollectionFilter
from pipeline.choices import CircuitState, DocumentStatus, ErrorType, Stage
from pipeline.collections import create_collection
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document, GoldenQuery, ModelCheck, OptimizationChange, ProviderCircuit
from pipeline.performance.optimizer import recommendations
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument
from testing.models import BenchmarkRun, TestResult, TestRun
from tests.pipeline.test_optimizer import embedding_bound

pytestmark = pytest.mark.django_db

DOC = "guide/1.md"
GOLDEN = "/api/v1/embedding-pipeline-operations/golden-queries/"
PERFORMANCE = "/api/v1/embedding-pipeline-operations/performance/"
# API routes that name no collection and hold no collection's rows: the platform's own.
PLATFORM_ROUTES = {
    ("GET", "/api/v1/docs/"),
    ("GET", "/api/v1/schema/"),
    ("GET", "/api/v1/health/"),
    ("GET", "/api/v1/embedding-pipeline-operations/docs/"),
    ("GET", "/api/v1/embedding-pipeline-operations/benchmarks/"),
    ("GET", "/api/v1/embedding-pipeline-operations/benchmarks/{pk}/"),
    ("GET", "/api/v1/embedding-pipeline-operations/test/"),
    ("GET", "/api/v1/embedding-pipeline-operations/test/{pk}/"),
    ("GET", "/api/v1/embedding-pipeline-operations/test/{pk}/junit/"),
    # A run naming another team's collection is a 404 to cancel (test_a_member_cancels_only_...).
    ("POST", "/api/v1/embedding-pipeline-operations/test/{pk}/cancel/"),
    # The audit export is the platform team's: audit.view_auditevent shows every team's events.
    ("GET", "/api/v1/audit/"),
}
# Lists: a member gets their teams' rows only (test_lists_hold_only_the_members_collections_and_rows).
LIST_ROUTES = {
    ("GET", "/api/v1/collections/"),
    ("GET", "/api/v1/documents/"),
    ("GET", "/api/v1/failures/"),
    ("GET", GOLDEN),
    ("GET", PERFORMANCE),
    ("GET", "/api/v1/slos/"),
}
# Routes naming a collection in their body or query (test_a_collection_named_in_a_body_or_query_...).
NAMING_ROUTES = {
    ("POST", "/api/v1/collections/"),
    ("POST", "/api/v1/failures/retry/"),
    ("POST", GOLDEN),
    ("POST", PERFORMANCE + "apply/"),
    ("POST", "/api/v1/embedding-pipeline-operations/test/"),
}
# A row of one collection, by its id: reached through the failure or golden query of the collection.
ROW_ROUTES = ("/api/v1/failures/{pk}/", GOLDEN + "{pk}/")


def api_routes() -> list[tuple[str, str]]:
    return sorted({(method, path) for path, _, method, _ in EndpointEnumerator().get_api_endpoints()})


def under_a_collection(method: str, path: str) -> bool:
    return "{name}" in path or path.startswith(ROW_ROUTES)


UNDER_ONE = [route for route in api_routes() if under_a_collection(*route)]


def test_every_api_route_is_tested_for_access():
    """A new route must be under a collection (then tested below for 404) or listed here as a list,
    a route naming a collection, or the platform's own."""
    unclassified = [
        route
        for route in api_routes()
        if not under_a_collection(*route) and route not in PLATFORM_ROUTES | LIST_ROUTES | NAMING_ROUTES
    ]
    assert unclassified == []
    assert len(UNDER_ONE) >= 20


@pytest.fixture
def teams(db) -> tuple[Group, Group]:
    return Group.objects.create(name="team-a"), Group.objects.create(name="team-b")


@pytest.fixture
def collections(teams) -> dict[str, Collection]:
    """Collections a (team A) and b (team B), each with a failed document, its failure row, a golden
    query, batch timings and an applied optimizer change."""
    out = {}
    for name, team in zip("ab", teams, strict=True):
        collection = create_collection(
            name=name,
            team=team,
            model="local/hash-16",
            chunk_unit="characters",
            chunk_size=200,
            chunk_overlap=20,
            contextual_chunks=False,
        )
        enqueue(collection, [IncomingDocument(DOC, f"the text of {name}")])
        document = collection.documents.get()
        Document.objects.filter(pk=document.pk).update(status=DocumentStatus.FAILED)
        record_failure(document.pk, PipelineError(ErrorType.RATE_LIMIT, Stage.EMBEDDING, "429"), "429")
        GoldenQuery.objects.create(collection=collection, query=f"where is {name}", expected_document_id=DOC)
        embedding_bound(collection)
        OptimizationChange.objects.create(
            collection=collection,
            setting="batch_size",
            before=64,
            after=32,
            measurement_before={},
            applied_by="x",
            applied_at=timezone.now(),
        )
        out[name] = collection
    return out


def everything_but_access_all() -> list[Permission]:
    apps = ("pipeline", "reprocessing", "testing")
    return list(Permission.objects.filter(content_type__app_label__in=apps).exclude(codename="access_all_collections"))


@pytest.fixture
def member(teams) -> User:
    """Team A's member, with every model permission and admin access, but not an operator."""
    user = User.objects.create_user("alice", password="x", is_staff=True)
    user.user_permissions.set(everything_but_access_all())
    user.groups.add(teams[0])
    return user


@pytest.fixture
def operator(db) -> User:
    """Not a superuser: a member of the operators group that bootstrap creates."""
    user = User.objects.create_user("olga", password="x", is_staff=True)
    user.user_permissions.set(everything_but_access_all())
    group = Group.objects.create(name="operators")
    group.permissions.add(Permission.objects.get(codename="access_all_collections"))
    user.groups.add(group)
    return user


def client(user: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def url_for(path: str, name: str) -> str:
    """The route's address for collection `name`'s own rows."""
    pk = ""
    if path.startswith(ROW_ROUTES[0]):
        pk = FailedDocument.objects.get(document__collection__name=name).pk
    elif path.startswith(ROW_ROUTES[1]):
        pk = GoldenQuery.objects.get(collection__name=name).pk
    return path.format(name=name, external_id=DOC, pk=pk)


def state_of(name: str) -> tuple:
    """What a request must not change in another team's collection."""
    c = Collection.objects.filter(name=name).values_list("paused", "generation", "building_generation").first()
    rows = (
        list(Document.objects.filter(collection__name=name).values_list("status", "updated_at")),
        list(FailedDocument.objects.filter(document__collection__name=name).values_list("state", "attempts")),
        list(GoldenQuery.objects.filter(collection__name=name).values_list("query", flat=True)),
    )
    return c, rows


@pytest.mark.parametrize(("method", "path"), UNDER_ONE, ids=[f"{m} {p}" for m, p in UNDER_ONE])
def test_every_route_under_another_teams_collection_answers_404(collections, member, method, path):
    api, before = client(member), state_of("b")
    response = api.generic(method, url_for(path, "b"))
    assert response.status_code == 404, response.content
    assert response.json()["error"]["status"] == 404
    assert state_of("b") == before, "nothing of team B's collection changed"
    assert api.generic(method, url_for(path, "a")).status_code != 404, "the member's own collection answers"


def test_the_404_for_another_teams_collection_is_the_unknown_collections(collections, member):
    api = client(member)
    hidden = api.get("/api/v1/collections/b/documents/").json()["error"]["message"]
    unknown = api.get("/api/v1/collections/zz/documents/").json()["error"]["message"]
    assert (hidden, unknown) == ("no collection named 'b'", "no collection named 'zz'")


def test_lists_hold_only_the_members_collections_and_rows(collections, member, operator):
    for user, names in ((member, ["a"]), (operator, ["a", "b"])):
        api = client(user)
        assert [c["name"] for c in api.get("/api/v1/collections/").json()["results"]] == names
        assert sorted(d["collection"] for d in api.get("/api/v1/documents/").json()["results"]) == names
        assert sorted(f["collection"] for f in api.get("/api/v1/failures/").json()["results"]) == names
        assert sorted(g["collection"] for g in api.get(GOLDEN).json()["results"]) == names
        performance = api.get(PERFORMANCE).json()
        assert sorted(performance["collections"]) == names
        assert sorted(c["collection"] for c in performance["changes"]) == names
        assert {r["collection"] for r in performance["recommendations"]} - {None} <= set(names)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/slos/", {"collection": "{}"}),
        ("GET", "/api/v1/documents/", {"collection": "{}"}),
        ("GET", "/api/v1/failures/", {"collection": "{}"}),
        ("GET", GOLDEN, {"collection": "{}"}),
        ("GET", PERFORMANCE, {"collection": "{}"}),
        ("POST", PERFORMANCE + "apply/", {"collection": "{}", "recommendation": "batch-size-{}"}),
        ("POST", "/api/v1/failures/retry/", {"error_type": "rate_limit", "collection": "{}"}),
        ("POST", GOLDEN, {"collection": "{}", "query": "q", "expected_document_id": DOC}),
        ("POST", "/api/v1/embedding-pipeline-operations/test/", {"collections": ["{}"], "wait": 0}),
    ],
)
def test_a_collection_named_in_a_body_or_query_reads_as_unknown(collections, member, method, path, body):
    """Another team's collection named in a query or body gets the unknown collection's answer."""

    def ask(name: str):
        filled = {k: [name] if v == ["{}"] else v.format(name) if isinstance(v, str) else v for k, v in body.items()}
        if method == "GET":
            return client(member).get(path, filled)
        return client(member).post(path, filled, format="json")

    before = state_of("b")
    hidden, unknown = ask("b"), ask("zz")
    assert hidden.status_code == unknown.status_code and hidden.status_code in (400, 404), hidden.content
    assert re.sub(r"\bb\b", "zz", hidden.content.decode()) == unknown.content.decode()
    assert state_of("b") == before


def test_a_member_creates_collections_for_their_own_team_only(teams, member):
    api = client(member)
    body = {"name": "mine", "model": "local/hash-16", "chunk_unit": "characters", "chunk_size": 200}
    created = api.post("/api/v1/collections/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["team"] == "team-a"
    assert Collection.objects.get(name="mine").team == teams[0]
    refused = api.post("/api/v1/collections/", {**body, "name": "theirs", "team": "team-b"}, format="json")
    assert refused.status_code == 400 and "team" in refused.json()["error"]["details"]
    unowned = api.patch("/api/v1/collections/mine/", {"team": None}, format="json")
    assert unowned.status_code == 400
    assert "only platform operators" in str(unowned.json()["error"]["details"]["team"])
    moved = api.patch("/api/v1/collections/mine/", {"team": "team-b"}, format="json")
    assert moved.status_code == 400
    assert Collection.objects.get(name="mine").team == teams[0]


def test_a_member_of_several_teams_names_one(teams, member):
    member.groups.add(teams[1])
    body = {"name": "mine", "model": "local/hash-16", "chunk_unit": "characters", "chunk_size": 200}
    response = client(member).post("/api/v1/collections/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["team"] == ["name one of your teams (the collection's owner)"]
    assert client(member).post("/api/v1/collections/", {**body, "team": "team-b"}, format="json").status_code == 201


def test_an_operator_sees_and_acts_on_every_collection(collections, operator):
    api = client(operator)
    assert api.get("/api/v1/collections/b/documents/").status_code == 200
    assert api.post("/api/v1/collections/b/pause/").json()["changed"] is True
    platform = api.post("/api/v1/collections/", {"name": "shared", "model": "local/hash-16"}, format="json")
    assert platform.status_code == 201 and platform.json()["team"] is None


# The admin


def admin_client(client, user: User):
    client.force_login(user)
    return client


def test_admin_lists_and_change_pages_hold_only_the_members_rows(client, collections, member, teams):
    admin = admin_client(client, member)
    second = create_collection(name="a2", team=teams[0], model="local/hash-16", chunk_unit="characters")
    enqueue(second, [IncomingDocument(DOC, "more")])
    GoldenQuery.objects.create(collection=second, query="q", expected_document_id=DOC)
    changelist = admin.get("/admin/pipeline/collection/").content.decode()
    assert "/admin/pipeline/collection/{}/change/".format(collections["a"].pk) in changelist
    assert "/admin/pipeline/collection/{}/change/".format(collections["b"].pk) not in changelist
    assert "team-a" in changelist and "team-b" not in changelist, "the team column and filter"
    b_rows = {
        "pipeline/collection": collections["b"].pk,
        "pipeline/document": collections["b"].documents.get().pk,
        "reprocessing/faileddocument": FailedDocument.objects.get(document__collection__name="b").pk,
        "pipeline/goldenquery": GoldenQuery.objects.get(collection__name="b").pk,
        "pipeline/optimizationchange": OptimizationChange.objects.get(collection__name="b").pk,
    }
    for model, pk in b_rows.items():
        assert admin.get(f"/admin/{model}/{pk}/change/").status_code == 404, model
        assert admin.get(f"/admin/{model}/{pk}/history/").status_code == 404, model
        assert f"/{pk}/change/" not in admin.get(f"/admin/{model}/").content.decode(), model
    a_document = collections["a"].documents.get().pk
    assert admin.get(f"/admin/pipeline/document/{a_document}/change/").status_code == 200
    for model in ("pipeline/document", "reprocessing/faileddocument", "pipeline/goldenquery"):
        filters = admin.get(f"/admin/{model}/").context["cl"].filter_specs
        offered = [f.lookup_choices for f in filters if isinstance(f, TeamCollectionFilter)]
        assert offered == [[(collections["a"].pk, "a"), (second.pk, "a2")]], model


def test_admin_actions_and_forms_cannot_reach_another_teams_collection(client, collections, member):
    admin = admin_client(client, member)
    pks = [collections["a"].pk, collections["b"].pk]
    admin.post("/admin/pipeline/collection/", {"action": "pause_collections", "_selected_action": pks})
    assert list(Collection.objects.order_by("name").values_list("paused", flat=True)) == [True, False]
    form = admin.get("/admin/pipeline/collection/add/").content.decode()
    assert "team-a" in form and "team-b" not in form
    adding = admin.get("/admin/pipeline/document/add/").content.decode()
    assert f'value="{collections["a"].pk}"' in adding and f'value="{collections["b"].pk}"' not in adding


def test_admin_pages_show_only_the_members_collections(client, collections, member, admin_user):
    admin = admin_client(client, member)
    for page in ("/admin/pipeline/collection/overview/", "/admin/pipeline/optimizationchange/performance/"):
        html = admin.get(page).content.decode()
        assert "collection=b" not in html and ">b<" not in html, page
        assert "collection=a" in html or ">a<" in html, page
    refused = admin.get("/admin/pipeline/collection/slos/", {"collection": "b"})
    assert refused.context["figures"]["collection"] is None, "the page falls back to every collection it may show"
    assert [str(m) for m in refused.context["messages"]] == ["collection: no collection named 'b'"]
    assert list(refused.context["collections"]) == ["a"]
    refused = admin.get("/admin/pipeline/optimizationchange/performance/", {"collection": "b"})
    assert refused.context["collection"] is None
    assert [str(m) for m in refused.context["messages"]] == ["no collection named 'b'"], "as the SLO page says"
    client.force_login(admin_user)
    assert ">b<" in client.get("/admin/pipeline/collection/overview/").content.decode()


def test_admin_team_member_must_pick_one_of_their_teams(client, teams, member):
    admin = admin_client(client, member)
    form = {"name": "mine", "model": "local/hash-16", "chunk_unit": "characters", "chunk_size": 200}
    form.update(chunk_overlap=20, chunking_strategy="recursive", batch_size=64, freshness_sla="01:00:00")
    form.update(extra_params="{}")
    errors = lambda response: response.context["adminform"].form.errors  # noqa: E731
    assert errors(admin.post("/admin/pipeline/collection/add/", form)) == {"team": ["This field is required."]}
    other = errors(admin.post("/admin/pipeline/collection/add/", {**form, "team": teams[1].pk}))
    assert list(other) == ["team"], "another team is not a choice"
    added = admin.post("/admin/pipeline/collection/add/", {**form, "team": teams[0].pk})
    assert added.status_code == 302, added.context["adminform"].form.errors
    assert Collection.objects.get(name="mine").team == teams[0]


# The commands


@pytest.mark.parametrize(
    ("command", "args", "named"),
    [
        ("search", ["a query"], "b"),
        ("evaluate_retrieval", [], "b"),
        ("optimize", [], "b"),
        ("enqueue", ["/nonexistent-path"], "b"),
        ("import_golden_queries", ["/nonexistent-file"], "b"),
        ("run_ops_tests", ["--scenario", "nonexistent"], ["a", "b"]),
    ],
)
def test_commands_run_as_a_user_refuse_another_teams_collection(collections, member, command, args, named):
    before = state_of("b")
    with pytest.raises(CommandError, match="^no collection named 'b'"):
        call_command(command, *args, collection=named, as_user="alice")
    assert state_of("b") == before


def test_commands_as_a_user_act_on_their_teams_and_without_it_on_every_collection(collections, member, capsys):
    call_command("search", "the text of a", collection="a", as_user="alice")
    call_command("search", "the text of b", collection="b")
    with pytest.raises(CommandError, match="no active user named 'nobody'"):
        call_command("search", "q", collection="a", as_user="nobody")
    with pytest.raises(CommandError, match="--as-user needs --collection"):
        call_command("optimize", as_user="alice")


def test_create_collection_names_its_team(teams):
    call_command("create_collection", "owned", model="local/hash-16", team="team-b")
    assert Collection.objects.get(name="owned").team == teams[1]
    with pytest.raises(CommandError, match="no team \\(group\\) named 'nope'"):
        call_command("create_collection", "other", model="local/hash-16", team="nope")


def test_bootstrap_creates_the_operators_group_that_sees_every_collection(collections, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("bootstrap")
    user = User.objects.create_user("oscar")
    user.groups.add(Group.objects.get(name="operators"))
    assert list(Collection.objects.visible_to(User.objects.get(pk=user.pk)).values_list("name", flat=True)) == [
        "a",
        "b",
    ]


def test_admin_operations_test_results_of_another_teams_collection_are_left_out(client, collections, member):
    now = timezone.now()
    run = TestRun.objects.create(trigger="cli", status="passed", started_at=now, heartbeat_at=now)
    shown = {}
    for target in ("a", "b", ""):
        result = TestResult.objects.create(
            run=run, scenario=f"regression_{target or 'none'}", category="regression", component="search",
            target=target, outcome="passed", started_at=now, duration_seconds=1.0,
        )  # fmt: skip
        shown[target] = result.pk
    admin = admin_client(client, member)
    listed = admin.get("/admin/testing/testresult/").content.decode()
    assert "regression_a" in listed and "regression_none" in listed and "regression_b" not in listed
    assert admin.get(f"/admin/testing/testresult/{shown['b']}/change/").status_code == 404
    assert admin.get(f"/admin/testing/testresult/{shown['a']}/change/").status_code == 200
    inline = admin.get(f"/admin/testing/testrun/{run.pk}/change/").content.decode()
    assert "regression_a" in inline and "regression_b" not in inline


def test_the_health_report_names_collections_to_operators_only(collections, member, operator):
    # Its reasons and model configurations name every team's collections: a member got them all.
    summary = client(member).get("/api/v1/health/").json()
    assert set(summary) == {"healthy", "checks"} and all(set(c) == {"name", "ok"} for c in summary["checks"])
    full = client(operator).get("/api/v1/health/").json()
    model = next(c for c in full["checks"] if c["name"] == "model")
    named = {name for config in model["details"]["configurations"] for name in config["collections"]}
    assert set(collections) <= named
    # The admin's overview page the same way.
    page = admin_client(Client(), member).get("/admin/pipeline/collection/overview/")
    assert {c.reason for c in page.context["checks"]} == {health.OPERATORS_ONLY}
    page = admin_client(Client(), operator).get("/admin/pipeline/collection/overview/")
    assert health.OPERATORS_ONLY not in {c.reason for c in page.context["checks"]}


def test_provider_circuits_and_model_checks_of_another_teams_endpoints_are_left_out(collections, member, operator):
    # They name another team's model and host, and carry its errors (a check's reason names its collections).
    Collection.objects.filter(name="b").update(model="openai/team-b-model", api_base="http://b-gateway.internal/v1")
    now = timezone.now()
    for model, api_base, endpoint in (
        ("local/hash-16", "", "local/hash-16"),
        ("openai/team-b-model", "http://b-gateway.internal/v1", "openai/team-b-model@b-gateway.internal"),
    ):
        ProviderCircuit.objects.create(
            model=model,
            api_base=api_base,
            endpoint=endpoint,
            state=CircuitState.OPEN,
            opened_at=now,
            next_probe_at=now,
            updated_at=now,
        )
    for name, model in (("a", "local/hash-16"), ("b", "openai/team-b-model")):
        ModelCheck.objects.create(
            key=name * 64, model=model, collections=[name], ok=False, reason=f"{name}: refused", seconds=0,
            load_seconds=0, checked_at=now,
        )  # fmt: skip
    member_admin, operator_admin = admin_client(Client(), member), admin_client(Client(), operator)
    for page in (
        "/admin/pipeline/providercircuit/",
        "/admin/pipeline/modelcheck/",
        "/admin/pipeline/collection/overview/",
    ):
        seen = member_admin.get(page).content.decode()
        assert "local/hash-16" in seen and "team-b-model" not in seen, page
        assert "team-b-model" in operator_admin.get(page).content.decode(), page
    b_circuit = ProviderCircuit.objects.get(model="openai/team-b-model")
    assert member_admin.get(f"/admin/pipeline/providercircuit/{b_circuit.pk}/change/").status_code in (302, 404)
    # A configuration both teams use: its row listed team b's collection to a member of a, and its reason
    # named it (an admin crawl); a member gets pass/fail and timings, as from /api/v1/health/.
    shared = ModelCheck.objects.create(
        key="s" * 64, model="local/hash-16", collections=["a", "b-secret"], ok=False,
        reason="local/hash-16 (collection b-secret) failed", seconds=0, load_seconds=0, checked_at=now,
    )  # fmt: skip
    for page in ("/admin/pipeline/modelcheck/", f"/admin/pipeline/modelcheck/{shared.pk}/change/"):
        seen = member_admin.get(page)
        assert seen.status_code == 200 and "b-secret" not in seen.content.decode(), page
        assert "b-secret" in operator_admin.get(page).content.decode(), page
    assert "b-secret" not in member_admin.get("/admin/pipeline/modelcheck/?q=secret").content.decode()


def test_throughput_targets_name_the_members_models_only(collections, member, operator, monkeypatch):
    # One target per model in use: another team's model name was listed to every member.
    Collection.objects.filter(name="b").update(model="openai/team-b-model")
    # A platform recommendation every team sees (429s, which carry no collection) named it too.
    monkeypatch.setattr(recommendations, "_rate_limited", lambda: 7)
    embedding_bound(Collection.objects.get(name="b"))
    for user, models in ((member, ["local/hash-16"]), (operator, ["local/hash-16", "openai/team-b-model"])):
        for route in ("/api/v1/slos/", PERFORMANCE):
            assert [t["model"] for t in client(user).get(route).json()["throughput_targets"]] == models, route
    admin = admin_client(Client(), member)
    for page in ("/admin/pipeline/collection/slos/", "/admin/pipeline/optimizationchange/performance/"):
        assert "team-b-model" not in admin.get(page).content.decode(), page
    performance_page = admin.get("/admin/pipeline/optimizationchange/performance/").content.decode()
    assert "providers answered 429 (openai)" in performance_page


def test_operations_test_runs_leave_out_another_teams_collection_in_the_api_and_the_admin(
    collections, member, operator
):
    now = timezone.now()
    selection = {"quick": True, "scenarios": [], "categories": [], "collections": ["a", "b"]}
    run = TestRun.objects.create(trigger="cli", status="passed", started_at=now, heartbeat_at=now, selection=selection)
    for target in ("a", "b", ""):
        TestResult.objects.create(
            run=run, scenario="model_upstream_answers", category="integration", component="embed", target=target,
            outcome="passed", started_at=now, duration_seconds=1.0,
        )  # fmt: skip
    runs = "/api/v1/embedding-pipeline-operations/test/"
    for user, names in ((member, ["a"]), (operator, ["a", "b"])):
        api = client(user)
        assert api.get(runs).json()["results"][0]["selection"]["collections"] == names
        detail = api.get(f"{runs}{run.pk}/").json()
        assert detail["selection"]["collections"] == names
        assert sorted(r["target"] for r in detail["results"]) == ["", *names]
        junit = api.get(f"{runs}{run.pk}/junit/").content.decode()
        assert "model_upstream_answers[a]" in junit and ("model_upstream_answers[b]" in junit) == (user == operator)
    page = admin_client(Client(), member).get(f"/admin/testing/testrun/{run.pk}/change/").content.decode()
    assert "[&quot;a&quot;]" in page and "&quot;b&quot;" not in page


def test_a_member_cancels_only_runs_of_their_teams_collections(collections, member, operator):
    # A team member holding testing.run_testrun cancelled another team's run, and the answer named its collections.
    now = timezone.now()
    runs = "/api/v1/embedding-pipeline-operations/test/"
    theirs = TestRun.objects.create(
        trigger="api", status="queued", started_at=now, heartbeat_at=now, selection={"collections": ["a", "b"]}
    )
    api = client(member)
    refused = api.post(f"{runs}{theirs.pk}/cancel/")
    assert refused.status_code == 404, refused.content
    assert refused.json()["error"]["message"] == f"no test run with id {theirs.pk}"  # as an unknown id's
    assert TestRun.objects.get(pk=theirs.pk).status == "queued"
    assert api.get(f"{runs}{theirs.pk}/").json()["selection"]["collections"] == ["a"]  # still read, without b
    page = admin_client(Client(), member).post(
        "/admin/testing/testrun/", {"action": "cancel_runs", "_selected_action": [theirs.pk]}, follow=True
    )
    assert "Cancelled 0 run(s); 0 had already finished; 1 name another team&#x27;s collection" in page.content.decode()
    assert TestRun.objects.get(pk=theirs.pk).status == "queued"
    cancelled = client(operator).post(f"{runs}{theirs.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["selection"]["collections"] == ["a", "b"]

    own = TestRun.objects.create(
        trigger="api", status="queued", started_at=now, heartbeat_at=now, selection={"collections": ["a"]}
    )
    cancelled = api.post(f"{runs}{own.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["selection"]["collections"] == ["a"]
    assert cancelled.json()["status"] == "error"


def _run_with_one_result(at, outcome: str, message: str = "") -> TestRun:
    """A finished run of collection `b` with one result about it, recorded `at`."""
    run = TestRun.objects.create(
        trigger="cli", status=outcome, started_at=at, heartbeat_at=at, finished_at=at, selection={"collections": ["b"]}
    )
    TestResult.objects.create(
        run=run, scenario="model_upstream_answers", category="integration", component="embed", target="b",
        outcome=outcome, started_at=at, duration_seconds=1.0, message=message,
    )  # fmt: skip
    return run


def test_a_reused_collection_name_shows_none_of_the_deleted_collections_test_history(
    collections, member, operator, teams
):
    # Results name their collection by name: team B's deleted `b`'s were shown as those of team A's new `b`.
    old = _run_with_one_result(timezone.now() - timedelta(minutes=5), "failed", message="team B's provider said 401")
    collections["b"].delete()
    create_collection(name="b", team=teams[0], model="local/hash-16", chunk_unit="characters")
    new = _run_with_one_result(timezone.now(), "passed")
    runs = "/api/v1/embedding-pipeline-operations/test/"
    api = client(member)
    detail = api.get(f"{runs}{old.pk}/").json()
    assert detail["results"] == [] and detail["selection"]["collections"] == []
    assert "401" not in api.get(f"{runs}{old.pk}/junit/").content.decode()
    assert [r["target"] for r in api.get(f"{runs}{new.pk}/").json()["results"]] == ["b"]
    assert api.get(f"{runs}{new.pk}/").json()["selection"]["collections"] == ["b"]
    assert [r["message"] for r in client(operator).get(f"{runs}{old.pk}/").json()["results"]] == [
        "team B's provider said 401"
    ]
    page = admin_client(Client(), member).get(f"/admin/testing/testrun/{old.pk}/change/").content.decode()
    assert "401" not in page


def test_workload_benchmark_runs_which_hold_several_teams_collections_are_the_operators(collections, member, operator):
    # A workload run's figures are per collection (benchmark collection:<name>), every changed one's at once.
    now = timezone.now()
    figure = {"docs_per_second": {"samples": [5.0], "median": 5.0, "better": "higher", "unit": "docs/s"}}
    for suite, results in (
        ("quick", {"search": figure}),
        ("workload", {"collection:a": figure, "collection:b": figure}),
    ):
        BenchmarkRun.objects.create(
            suite=suite, note=f"{suite} run", started_at=now, duration_seconds=1.0, machine_fingerprint="m",
            results=results,
        )  # fmt: skip
    runs = "/api/v1/embedding-pipeline-operations/benchmarks/"
    assert [r["suite"] for r in client(member).get(runs).json()["results"]] == ["quick"]
    assert sorted(r["suite"] for r in client(operator).get(runs).json()["results"]) == ["quick", "workload"]
    admin = admin_client(Client(), member)
    assert (
        "collection:b" not in admin.get("/admin/testing/benchmarkrun/trends/?machine=m&suite=workload").content.decode()
    )
    listed = admin.get("/admin/testing/benchmarkrun/").content.decode()
    assert 'class="field-suite">Quick' in listed and 'class="field-suite">A collection' not in listed
    trends = admin_client(Client(), operator).get("/admin/testing/benchmarkrun/trends/?machine=m&suite=workload")
    assert "collection:b" in trends.content.decode()
