"""The failure scenarios' fault provider listens where the deployment says: a fixed port in
Kubernetes (opened to the workers by a NetworkPolicy), any free loopback port by default."""

from __future__ import annotations

from types import SimpleNamespace

import httpx

from testing.context import Context
from tests.tools import free_port


def context() -> Context:
    return Context(SimpleNamespace(pk=1), SimpleNamespace(timeout=10))


def embed(url: str) -> int:
    response = httpx.post(f"{url}/embeddings", json={"model": "m", "input": ["x"]}, timeout=5)
    return response.status_code


def test_providers_of_successive_scenarios_listen_on_the_configured_port(db, settings):
    port = free_port()
    settings.EMBEDPORTAL_OPS_TEST_FAULT_PORT = port
    settings.EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST = "localhost"
    for _ in range(2):  # the next scenario's provider binds the same port again
        ctx = context()
        provider = ctx.fault_provider()
        assert provider.url == f"http://localhost:{port}/v1"
        assert embed(provider.url) == 200
        ctx.cleanup()


def test_by_default_the_provider_takes_a_free_loopback_port(db, settings):
    settings.EMBEDPORTAL_OPS_TEST_FAULT_PORT = 0
    ctx = context()
    provider = ctx.fault_provider()
    host, port = provider.server.server_address[:2]
    assert host == "127.0.0.1" and port and provider.url == f"http://127.0.0.1:{port}/v1"
    assert embed(provider.url) == 200
    ctx.cleanup()


def test_failure_scenarios_in_a_row_on_one_fixed_port_each_find_the_endpoint_closed(live_worker, settings):
    from pipeline.models import ProviderCircuit
    from testing.choices import Outcome
    from testing.context import FAULT_MODEL
    from testing.tester import EmbeddingPipelineOperationsTester

    settings.EMBEDPORTAL_OPS_TEST_FAULT_PORT = free_port()
    names = [
        "provider_5xx_retried_then_deferred",
        "provider_timeout_retried_then_deferred",
        "provider_401_not_retried",
    ]
    run = EmbeddingPipelineOperationsTester(scenarios=names).run()
    outcomes = {r.scenario: (r.outcome, r.message) for r in run.results.all()}
    assert outcomes == {name: (Outcome.PASSED, "") for name in names}
    # No circuit row of the fault endpoint is left: the circuit gauge and the model health check
    # would list one per run (a new pod IP or port each time) forever.
    assert not ProviderCircuit.objects.filter(model=FAULT_MODEL).exists()
