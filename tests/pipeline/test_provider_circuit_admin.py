"""The provider circuits in the admin: read-only, never the api_base (it may carry credentials),
and one operator lever behind its own permission: probe an open circuit now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline.choices import CircuitState
from pipeline.models import ProviderCircuit
from tests.tools import run_action, staff

pytestmark = pytest.mark.django_db

CIRCUITS = "/admin/pipeline/providercircuit/"
SECRET = "s3cr3t-in-the-url"


def circuit(endpoint: str, state: str, probe_in: timedelta | None) -> ProviderCircuit:
    now = timezone.now()
    return ProviderCircuit.objects.create(
        model="openai/text-embedding-3-small",
        api_base=f"https://user:{SECRET}@{endpoint}/v1?key={SECRET}",
        endpoint=f"openai/text-embedding-3-small@{endpoint}",
        state=state,
        consecutive_failures=5 if state != CircuitState.CLOSED else 0,
        opened_at=now if state != CircuitState.CLOSED else None,
        next_probe_at=now + probe_in if probe_in else None,
        updated_at=now,
    )


def test_circuits_are_listed_with_their_endpoint_never_their_api_base(client):
    shut = circuit("down.example", CircuitState.OPEN, timedelta(minutes=10))
    client.force_login(staff("view_providercircuit"))

    listing = client.get(CIRCUITS).content.decode()
    detail = client.get(f"{CIRCUITS}{shut.pk}/change/").content.decode()

    assert "openai/text-embedding-3-small@down.example" in listing and "open" in listing
    assert SECRET not in listing and SECRET not in detail
    assert "probe_now" not in listing  # the action needs its own permission


def test_probe_now_makes_open_circuits_due_and_a_worker_takes_the_probe(client):
    shut = circuit("down.example", CircuitState.OPEN, timedelta(minutes=10))
    fine = circuit("up.example", CircuitState.CLOSED, None)
    probing = circuit("probing.example", CircuitState.HALF_OPEN, timedelta(seconds=30))
    assert ProviderCircuit.objects.take_probe("w1", timedelta(seconds=30)) is None  # nothing due yet
    client.force_login(staff("view_providercircuit", "probe_providercircuit"))

    [message] = run_action(client, CIRCUITS, "probe_now", [shut.pk, fine.pk, probing.pk])

    assert message.startswith("1 open circuit(s) are due") and "2 were not open" in message
    shut.refresh_from_db()
    assert shut.state == CircuitState.OPEN and shut.next_probe_at <= timezone.now()
    assert ProviderCircuit.objects.get(pk=fine.pk).next_probe_at is None
    taken = ProviderCircuit.objects.take_probe("w1", timedelta(seconds=30))
    assert taken is not None and taken.pk == shut.pk and taken.state == CircuitState.HALF_OPEN


def test_probe_now_without_its_permission_changes_nothing(client):
    shut = circuit("down.example", CircuitState.OPEN, timedelta(minutes=10))
    before = shut.next_probe_at
    client.force_login(staff("view_providercircuit"))

    run_action(client, CIRCUITS, "probe_now", [shut.pk])

    shut.refresh_from_db()
    assert shut.next_probe_at == before
