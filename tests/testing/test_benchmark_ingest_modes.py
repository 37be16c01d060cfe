"""`benchmark_ingest --mode steady,backfill --rerun --provider-latency`: both modes in one run,
each against its own floor, the re-run timing, and a remote-like provider over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError

from pipeline.models import Collection
from tests.testing.conftest import benchmark_ingest

pytestmark = pytest.mark.django_db(transaction=True)


def test_steady_and_backfill_runs_each_have_a_floor_and_the_rerun_requeues_nothing(folder: Path) -> None:
    result = benchmark_ingest(
        corpus=str(folder), model="local/hash-16", workers="1", mode="steady,backfill", rerun=True
    )

    assert [(r["mode"], r["workers"]) for r in result["runs"]] == [("steady", 1), ("backfill", 1)]
    steady, backfill = result["runs"]
    assert steady["documents"] == backfill["documents"] == 5 and steady["chunks"] == backfill["chunks"]
    assert steady["double_processed"] == backfill["double_processed"] == 0
    for run in result["runs"]:
        # Both are rounded (docs/s to 0.01, the ratio to 0.001).
        assert run["floor_docs_per_second"] > 0
        expected = run["docs_per_second"] / run["floor_docs_per_second"]
        assert run["ratio_to_floor"] == pytest.approx(expected, abs=2e-3)
    assert len(result["rerun_samples"]) == 5 and result["rerun_seconds"] > 0
    assert result["rerun_seconds"] == pytest.approx(sorted(result["rerun_samples"])[2], abs=1e-4)


def test_provider_latency_embeds_through_the_fake_remote_provider(folder: Path) -> None:
    result = benchmark_ingest(corpus=str(folder), workers="1", provider_latency=20.0, docs=3)

    assert result["model"] == "openai/fake-embedder" and result["provider_latency_ms"] == 20.0
    [run] = result["runs"]
    assert run["documents"] == 3 and run["stage_seconds"]["embedding"] >= 0.02
    assert result["provider_concurrency"] == 1


def test_provider_concurrency_is_the_benchmark_collections_setting(folder: Path) -> None:
    result = benchmark_ingest(
        corpus=str(folder), workers="1", provider_latency=20.0, provider_concurrency=3, docs=3, keep=True
    )

    assert result["provider_concurrency"] == 3
    assert Collection.objects.get(name="benchmark-steady-1w").provider_concurrency == 3
    assert result["runs"][0]["documents"] == 3


def test_unknown_mode_is_refused(folder: Path) -> None:
    with pytest.raises(CommandError, match="--mode takes steady or backfill"):
        benchmark_ingest(corpus=str(folder), model="local/hash-16", mode="fast")


def test_only_steady_runs_are_measured_against_the_ceiling_of_concurrent_copies(folder: Path) -> None:
    result = benchmark_ingest(corpus=str(folder), model="local/hash-16", workers="2", mode="steady,backfill")

    steady, backfill = result["runs"]
    assert steady["ceiling_docs_per_second"] > 0 and steady["ratio_to_ceiling"] > 0
    # A backfill writes without the index: N writers into an indexed table are no limit for it.
    assert backfill["ceiling_docs_per_second"] is None and backfill["ratio_to_ceiling"] is None
