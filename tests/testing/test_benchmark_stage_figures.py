"""The ingest benchmarks keep each stage's per-document p50/p95/p99 with the run: read from the
batch timings of each repetition's collection before it is dropped, informational (the gate skips
them), charted per stage on the Trends page, and only their p95 exported on /metrics."""

from __future__ import annotations

import pytest
from django.utils import timezone

from pipeline.collections import create_collection
from pipeline.models import BatchTiming
from testing.benchmarks import regression, stages, suite
from testing.benchmarks.trends import trends
from testing.models import BenchmarkRun
from tests.factories import benchmark_run, stage_history, stage_results
from tests.pipeline.test_optimizer import batch
from tests.testing.conftest import benchmark_suite

STAGE_FIGURES = {stages.name(s, q) for s in stages.STAGES for q in stages.QUANTILES}


@pytest.mark.django_db(transaction=True)
def test_ingest_benchmarks_store_each_repetitions_stage_percentiles(folder, tiny):
    result = benchmark_suite("--only", "ingest_steady,ingest_minilm", corpus=str(folder))

    run = BenchmarkRun.objects.get(pk=result["id"])
    for benchmark in ("ingest_steady", "ingest_minilm"):
        figures = run.results[benchmark]
        assert STAGE_FIGURES <= set(figures)
        for name in STAGE_FIGURES:
            data = figures[name]
            assert data["informational"] and data["better"] == "lower" and data["unit"] == "s"
            assert len(data["samples"]) == suite.SIZES["quick"].repeats and all(s >= 0 for s in data["samples"])
            assert run.comparison[benchmark][name] == {"verdict": "informational"}
        for stage in stages.STAGES:
            p50, p95, p99 = (figures[stages.name(stage, q)]["samples"] for q in stages.QUANTILES)
            assert all(a <= b <= c for a, b, c in zip(p50, p95, p99, strict=True))
        # Every batch's total is its chunking + embedding + storage: each quantile of the total is at
        # least the storage's (read from the right columns, per document).
        for q in stages.QUANTILES:
            total, storage = (figures[stages.name(s, q)]["samples"] for s in ("total", "storage"))
            assert all(t >= s for t, s in zip(total, storage, strict=True))
    # Read before the benchmark's collections were dropped: their batch timings went with them.
    assert not BatchTiming.objects.filter(collection__name__startswith="benchmark-suite").exists()


@pytest.mark.django_db
def test_stage_percentiles_are_per_document_over_the_collections_own_batches(hash_collection):
    other = create_collection(name="others", model="local/hash-16", chunk_unit="characters", chunk_size=200)
    batch(hash_collection, 30, documents=2, storage=1.0)
    batch(hash_collection, 20, documents=1, storage=3.0)
    batch(hash_collection, 10, documents=1, storage=5.0)
    batch(other, 10, documents=50, storage=99.0)

    found = stages.percentiles(hash_collection)

    assert set(found) == set(stages.STAGES)  # no queue_wait: in a benchmark it is the drain's length
    assert found["storage"] == pytest.approx({"p50": 2.0, "p95": 4.7, "p99": 4.94})
    with pytest.raises(RuntimeError, match="no batch timings for fresh"):
        stages.percentiles(create_collection(name="fresh", model="local/hash-16"))


@pytest.mark.django_db
def test_the_gate_skips_informational_figures_that_it_would_flag():
    history = stage_history(runs=6)  # storage p95 0.2 .. 0.7 s
    candidate = BenchmarkRun(
        suite="quick",
        started_at=timezone.now(),
        code_version="now",
        machine_fingerprint="m",
        results=stage_results([50.0, 51.0], [9.0, 9.1]),
    )

    comparison = regression.compare(candidate, history)

    assert comparison["ingest_steady"]["storage_p95_s"] == {"verdict": "informational"}
    assert comparison["ingest_steady"]["docs_per_second"]["verdict"] == "regression"
    assert regression.regressions(comparison) == [("ingest_steady", "docs_per_second")]
    # The same samples as an ordinary figure would be flagged: the skip is what keeps them out.
    plain = {k: v for k, v in candidate.results["ingest_steady"]["storage_p95_s"].items() if k != "informational"}
    baseline = [s for r in history for s in r.results["ingest_steady"]["storage_p95_s"]["samples"]]
    assert regression.gate(plain["samples"], baseline, "lower")["verdict"] == "regression"


@pytest.mark.django_db
def test_trends_chart_each_stage_with_its_three_percentiles_apart_from_the_gated_figures():
    runs = stage_history()
    benchmark_run(timezone.now(), "no-stages", {"search": {"p95_ms": suite.figure([5.0, 5.1], "lower", "ms")}}, "m")

    found = trends("m", "quick")

    assert [(c["benchmark"], c["figure"]) for c in found["charts"]] == [
        ("ingest_steady", "docs_per_second"),
        ("search", "p95_ms"),
    ]
    assert [(c["benchmark"], c["stage"]) for c in found["stage_charts"]] == [
        ("ingest_steady", s) for s in stages.STAGES
    ]
    [storage] = [c for c in found["stage_charts"] if c["stage"] == "storage"]
    assert storage["p95"] == pytest.approx([0.2 + i / 10 for i in range(len(runs))] + [None])
    assert storage["p50"][:-1] == [0.1] * len(runs) and storage["p50"][-1] is None


@pytest.mark.django_db
def test_metrics_export_the_stage_p95_only_and_never_flag_it(client):
    stage_history(runs=6)
    benchmark_run(timezone.now(), "now", stage_results([100.0, 101.0], [9.0, 9.1]), "m")

    body = client.get("/metrics").content.decode()

    line = (
        'performance_benchmark_{}_embedding_pipeline_operations{{benchmark="ingest_steady",figure="{}",suite="quick"}}'
    )
    assert f"{line.format('result', 'storage_p95_s')} 9.05" in body
    assert f"{line.format('regression', 'storage_p95_s')} 0.0" in body
    assert f"{line.format('result', 'total_p95_s')} 0.2" in body
    assert line.format("result", "docs_per_second") in body
    for figure in STAGE_FIGURES - {stages.name(s, "p95") for s in stages.STAGES}:
        assert f'figure="{figure}"' not in body


def test_the_printed_report_puts_each_benchmarks_stage_figures_on_one_line(db):
    from testing.management.commands.benchmark import report

    run = stage_history(runs=1)[0]
    run.comparison = regression.compare(run, [])

    lines = report(run).splitlines()

    assert not any(stages.name("storage", "p95") in line for line in lines)
    [line] = [line for line in lines if "per-stage p95 (s)" in line]
    assert line.startswith("ingest_steady") and "storage 0.2," in line and "total 0.2 " in line
    assert any(line.split()[:2] == ["ingest_steady", "docs_per_second"] for line in lines)
