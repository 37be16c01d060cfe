"""Scenarios by category; importing this package registers them all (testing.registry)."""

from testing.scenarios import edge, failure, integration, load, normal, regression  # noqa: F401
