"""Rows several tests build the same way."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from pipeline.models import CapacityMeasurement


def capacity_measurement(model: str = "local/hash-16", **fields: Any) -> CapacityMeasurement:
    """A measure_capacity result of 2 workers at 8.5 docs/s (100 documents of 4,000 characters)."""
    return CapacityMeasurement.objects.create(
        **{
            "model": model,
            "measured_at": timezone.now(),
            "documents": 100,
            "chars_per_document": 4000,
            "points": [{"workers": 2, "docs_per_second": 8.5, "documents": 100, "chunks": 300, "seconds": 10}],
            **fields,
        }
    )
