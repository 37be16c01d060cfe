"""Provider circuit breakers (one ProviderCircuit row per endpoint): their gauge, health and overview views."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from embedportal.collectors import DatabaseCollector, fresh
from pipeline.choices import CircuitState
from pipeline.models import ProviderCircuit

CIRCUIT_STATE = "embedding_pipeline_provider_circuit_state"
STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.OPEN: 1, CircuitState.HALF_OPEN: 2}


def not_closed(user: Any = None) -> list[ProviderCircuit]:
    """Open and half-open circuits of endpoints in use (the heartbeat schedule closes the others), of
    those `user` may see (None: every one)."""
    circuits = ProviderCircuit.objects.in_use().visible_to(user).exclude(state=CircuitState.CLOSED)
    return list(circuits.order_by("endpoint"))


def describe(circuit: ProviderCircuit) -> dict[str, Any]:
    """What operators read of a circuit (no api_base: it may carry credentials)."""
    now = timezone.now()
    return {
        "endpoint": circuit.endpoint,
        "state": circuit.state,
        "consecutive_failures": circuit.consecutive_failures,
        "failed_probes": circuit.reopenings,
        "last_error_type": circuit.last_error_type,
        "opened_at": circuit.opened_at.isoformat() if circuit.opened_at else None,
        "next_probe_in_seconds": (
            round(max(0.0, (circuit.next_probe_at - now).total_seconds()), 1) if circuit.next_probe_at else None
        ),
    }


class CircuitCollector(DatabaseCollector):
    """embedding_pipeline_provider_circuit_state{endpoint}: 0 closed, 1 open, 2 half-open, read from
    the database at scrape time. Endpoints are model@host, one per endpoint collections name (tenants choose
    them: a model string refuses control characters, and the heartbeat deletes closed circuits none names)."""

    subject = "provider circuit"
    families = fresh(
        (
            CIRCUIT_STATE,
            "Circuit breaker of a provider endpoint (model@host): 0 closed, 1 open (its collections wait), "
            "2 half-open (one worker probing).",
            ["endpoint"],
        )
    )

    def fill(self, cur, family) -> None:
        states: dict[str, int] = {}
        for endpoint, state in ProviderCircuit.objects.values_list("endpoint", "state"):
            # Two api_bases on one host share a label: show the worst.
            states[endpoint] = max(states.get(endpoint, 0), STATE_VALUES[state])
        for endpoint, value in sorted(states.items()):
            family.add_metric([endpoint], value)
