"""A provider key goes only to the hosts the operator bound to its variable (EMBEDPORTAL_PROVIDER_KEY_HOSTS):
whoever may change a collection chooses its api_base, and a platform key named as its key variable was sent
there. Refused on save by the API, the admin and create_collection; a row saved before (or a binding removed
since) fails as auth before any request leaves the process."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from pipeline.choices import DocumentStatus, ErrorType
from pipeline.embedding import endpoint_args
from pipeline.models import Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from tests.factories import admin_collection_form
from tests.tools import error_of

pytestmark = pytest.mark.django_db

SETTING = "EMBEDPORTAL_PROVIDER_KEY_HOSTS"
VARIABLE, KEY = "PLATFORM_OPENAI_KEY", "sk-platform-key-123456"


@pytest.fixture(autouse=True)
def _platform_key(monkeypatch) -> None:
    """The platform's key, in the environment of every worker and no binding's (tests/conftest.py)."""
    monkeypatch.setenv(VARIABLE, KEY)


def refused(problem: str, host: str = "127.0.0.1") -> bool:
    """The message names the variable, the host and the setting, never the key."""
    return VARIABLE in problem and f"may not be sent to {host}" in problem and SETTING in problem and KEY not in problem


def test_the_api_refuses_a_key_to_an_unbound_host_naming_the_field(api, fake_provider, fake_collection):
    body = {"name": "exfil", "model": "openai/x", "api_base": fake_provider.api_base, "api_key_env": VARIABLE}
    created = error_of(api.post("/api/v1/collections/", body, format="json"), 400)
    assert refused(created["details"]["api_key_env"][0]), created
    reembed = api.post("/api/v1/collections/fake/reembed/", {"api_key_env": VARIABLE}, format="json")
    assert refused(error_of(reembed, 400)["details"]["api_key_env"][0])
    moved = api.post("/api/v1/collections/fake/reembed/", {"api_base": "https://evil.example/v1"}, format="json")
    assert "FAKE_PROVIDER_KEY may not be sent to evil.example" in error_of(moved, 400)["details"]["api_key_env"][0]
    reranker = {"rerank_model": "cohere/rerank-v3.5", "rerank_api_base": "https://rr.example/v1"}
    patched = api.patch("/api/v1/collections/fake/", {**reranker, "rerank_api_key_env": VARIABLE}, format="json")
    assert refused(error_of(patched, 400)["details"]["rerank_api_key_env"][0], "rr.example")
    assert fake_provider.requests == [], "no dimension probe, no call"
    assert list(Collection.objects.values_list("name", "api_key_env", "rerank_api_key_env")) == [
        ("fake", "FAKE_PROVIDER_KEY", "")
    ]


def test_the_admin_form_and_create_collection_refuse_it(admin_client, fake_provider):
    form = admin_collection_form(Group.objects.create(name="team-m").pk, fake_provider.api_base, VARIABLE, dimensions=8)
    response = admin_client.post("/admin/pipeline/collection/add/", form)
    assert response.status_code == 200, "the form was accepted"
    assert refused(response.context["adminform"].form.errors["api_key_env"][0])
    with pytest.raises(CommandError) as raised:
        call_command("create_collection", "exfil", "--model", "openai/x", "--api-base", fake_provider.api_base,
                     "--api-key-env", VARIABLE)  # fmt: skip
    assert str(raised.value).startswith("api_key_env: ") and refused(str(raised.value))
    assert fake_provider.requests == [] and not Collection.objects.exists()


def drain(collection: Collection, *ids: str) -> dict:
    enqueue(collection, [IncomingDocument(i, f"text of {i}") for i in ids])
    return EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(sleep=lambda _: None)).run_once().errors


def test_a_stored_key_to_an_unbound_host_fails_as_auth_before_any_request(fake_collection, fake_provider, settings):
    Collection.objects.update(api_key_env=VARIABLE)  # saved before the rule held
    assert drain(fake_collection, "a", "b") == {ErrorType.AUTH: 1}
    assert fake_provider.requests == [], "the provider was never asked"
    failed = Document.objects.get(external_id="a")
    assert failed.status == DocumentStatus.FAILED and refused(failed.last_error)

    port = int(fake_provider.api_base.split(":")[2].split("/")[0])
    settings.EMBEDPORTAL_PROVIDER_KEY_HOSTS = {VARIABLE: frozenset({("127.0.0.1", port)})}  # the operator binds it
    assert drain(fake_collection, "c") == {}
    assert Document.objects.get(external_id="c").status == DocumentStatus.EMBEDDED
    assert fake_provider.last_key == KEY
    settings.EMBEDPORTAL_PROVIDER_KEY_HOSTS = {VARIABLE: frozenset({("127.0.0.1", port + 1)})}  # another port
    assert drain(fake_collection, "d") == {ErrorType.AUTH: 1}


def test_an_endpoint_in_extra_params_is_refused_and_a_stored_one_never_called(api, fake_provider, fake_collection):
    # LiteLLM takes api_base among the extra parameters: with a key variable and no api_base of its own a
    # collection sent the platform's key there, with no host binding checked.
    body = {"name": "exfil", "model": "openai/x", "api_key_env": VARIABLE, "dimensions": 8}
    # Bedrock's own endpoint parameter carried a write token's choice of host past the rule (the red team's).
    named = ("api_base", "base_url", "aws_bedrock_runtime_endpoint", "azure_endpoint", "proxy_url")
    for endpoint, value in [*((n, fake_provider.api_base) for n in named), ("cfg", {"x": ["//127.0.0.1:9"]})]:
        extra = {"extra_params": {"dimensions": 8, endpoint: value}}
        error = error_of(api.post("/api/v1/collections/", {**body, **extra}, format="json"), 400)
        shown = "x" if endpoint == "cfg" else endpoint
        assert f"{shown}: never in extra_params; set the endpoint in api_base" in error["details"]["extra_params"][0]
    kept = {"dimensions": 8, "input_type": "search_document", "aws_region_name": "us-east-1"}
    created = api.post("/api/v1/collections/", {**body, "name": "kept", "extra_params": kept}, format="json")
    assert created.status_code == 201, "no endpoint among them (the key goes to the provider's own)"
    Collection.objects.filter(name="kept").delete()
    stored = {"aws_bedrock_runtime_endpoint": fake_provider.api_base}
    Collection.objects.update(
        api_base="", api_key_env=VARIABLE, model="bedrock/cohere.embed-english-v3", extra_params=stored
    )
    assert drain(fake_collection, "a") == {ErrorType.AUTH: 1}
    assert fake_provider.requests == [] and "never in extra_params" in Document.objects.get().last_error


def test_an_operator_may_allow_only_some_api_base_hosts(api, fake_provider, fake_collection, settings):
    # Any member could point the portal's calls at any host (an internal service, a metadata address) and read
    # its answer back in errors (the red team's): EMBEDPORTAL_API_BASE_HOSTS, when set, is the only hosts.
    port = int(fake_provider.api_base.split(":")[2].split("/")[0])
    settings.EMBEDPORTAL_API_BASE_HOSTS = frozenset({("127.0.0.1", port)})
    inside = {"name": "inside", "model": "openai/x", "api_base": fake_provider.api_base, "dimensions": 8}
    assert api.post("/api/v1/collections/", inside, format="json").status_code == 201
    outside = {**inside, "name": "outside", "api_base": "http://169.254.169.254/latest"}
    details = error_of(api.post("/api/v1/collections/", outside, format="json"), 400)["details"]
    assert details == {
        "api_base": [
            "169.254.169.254 is not among the hosts the operator allows (EMBEDPORTAL_API_BASE_HOSTS); use one of them"
        ]
    }
    reranker = {"rerank_model": "cohere/rerank-v3.5", "rerank_api_base": f"http://127.0.0.1:{port + 1}/v1"}
    details = error_of(api.patch("/api/v1/collections/inside/", reranker, format="json"), 400)["details"]
    assert (
        list(details) == ["rerank_api_base"] and f"127.0.0.1:{port + 1} is not among" in details["rerank_api_base"][0]
    )
    settings.EMBEDPORTAL_API_BASE_HOSTS = frozenset({("gw.internal", None)})  # the operator narrowed it since
    requests = len(fake_provider.requests)
    assert drain(fake_collection, "a") == {ErrorType.AUTH: 1}
    assert len(fake_provider.requests) == requests, "not called"
    assert "api_base 127.0.0.1:" in Document.objects.get(external_id="a").last_error


def test_an_operator_may_bind_a_key_variable_to_teams(api, fake_provider, fake_collection, settings):
    # Any team could name another team's key variable (at its bound host) and spend its quota (the red team's).
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    settings.EMBEDPORTAL_PROVIDER_KEY_TEAMS = {
        VARIABLE: frozenset({"team-a"}),
        "FAKE_PROVIDER_KEY": frozenset({"team-a"}),
    }
    body = {"model": "openai/x", "api_key_env": VARIABLE, "dimensions": 8}
    refused = error_of(
        api.post("/api/v1/collections/", {**body, "name": "b-steals", "team": "team-b"}, format="json"), 400
    )
    assert refused["details"] == {
        "api_key_env": [
            f"{VARIABLE} is bound to other teams (EMBEDPORTAL_PROVIDER_KEY_TEAMS): name a key variable of team-b's, "
            "or ask an operator to bind this one to it"
        ]
    }
    for name, team in (("a-owns", "team-a"), ("platform", None)):
        assert api.post("/api/v1/collections/", {**body, "name": name, "team": team}, format="json").status_code == 201
    Collection.objects.filter(pk=fake_collection.pk).update(team=team_b)  # stored before the binding
    fake_collection.refresh_from_db()
    assert drain(fake_collection, "a") == {ErrorType.AUTH: 1}
    assert fake_provider.requests == [] and "bound to other teams" in Document.objects.get(external_id="a").last_error
    Collection.objects.filter(pk=fake_collection.pk).update(team=team_a)
    fake_collection.refresh_from_db()
    assert drain(fake_collection, "b") == {}


def test_a_provider_whose_default_endpoint_is_a_local_server_needs_an_api_base(
    api, fake_provider, fake_collection, settings, monkeypatch
):
    # xinference's default is 127.0.0.1:9997 and ollama's localhost:11434: a key named without an api_base went
    # there unbound, past EMBEDPORTAL_API_BASE_HOSTS too, and custom_llm_provider routed an openai/ model there
    # (the red team's second round).
    body = {"dimensions": 8, "api_key_env": VARIABLE}
    for model in ("xinference/bge-small", "ollama/nomic-embed-text", "hosted_vllm/e5"):
        details = error_of(api.post("/api/v1/collections/", {**body, "name": "x", "model": model}, format="json"), 400)[
            "details"
        ]
        provider = model.split("/")[0]
        assert details == {
            "api_base": [
                f"{provider} has no public default endpoint (LiteLLM's is a local server) and {VARIABLE} would go "
                "there with no host binding checked: set api_base"
            ]
        }
    routed = {
        **body,
        "name": "x",
        "model": "openai/text-embedding-3-small",
        "extra_params": {"custom_llm_provider": "xinference"},
    }
    assert (
        "custom_llm_provider: never in extra_params"
        in error_of(api.post("/api/v1/collections/", routed, format="json"), 400)["details"]["extra_params"][0]
    )
    # Without a key it may call its local default (one machine, an ollama beside it) unless the operator lists hosts.
    keyless = {"dimensions": 8, "name": "ollama-here", "model": "ollama/nomic-embed-text"}
    assert api.post("/api/v1/collections/", keyless, format="json").status_code == 201
    settings.EMBEDPORTAL_API_BASE_HOSTS = frozenset({("127.0.0.1", None)})
    details = error_of(api.post("/api/v1/collections/", {**keyless, "name": "y"}, format="json"), 400)["details"]
    assert "only the hosts EMBEDPORTAL_API_BASE_HOSTS lists: set api_base" in details["api_base"][0]
    settings.EMBEDPORTAL_API_BASE_HOSTS = frozenset()
    # Keyless, it gets the placeholder key, never a provider variable of the process LiteLLM would fall back to.
    here = Collection.objects.get(name="ollama-here")
    assert endpoint_args(here, here.model, "", "", "the key variable") == ({"api_key": "EMPTY"}, None)
    # A row stored before the rule fails as auth, and LiteLLM is never called.
    monkeypatch.setattr("litellm.embedding", lambda **kwargs: pytest.fail(f"called with {kwargs}"))
    Collection.objects.filter(pk=fake_collection.pk).update(
        model="xinference/bge-small", api_base="", api_key_env=VARIABLE
    )
    fake_collection.refresh_from_db()
    assert drain(fake_collection, "a") == {ErrorType.AUTH: 1}
    assert "xinference has no public default endpoint" in Document.objects.get(external_id="a").last_error
