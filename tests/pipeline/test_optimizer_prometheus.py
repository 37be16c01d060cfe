"""The optimizer reads a real Prometheus when EMBEDPORTAL_PROMETHEUS_URL is set: the last hour of
our histograms and busy-seconds counter, backfilled into its TSDB with promtool."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.metrics import CALL_BUCKETS, LATENCY_BUCKETS, WAIT_BUCKETS
from pipeline.performance.optimizer import OptimizerError, analyse
from tests.conftest import wait_for
from tests.tools import free_port, prometheus, promtool, reachable, stop

STEP = 15  # seconds between samples
# Per step: 10 documents whose embedding took 0.25-0.5 s and storage 0.05-0.1 s; busy seconds
# per second: storage 1.5, embedding 0.5 (of 2 workers alive).
DOCS_PER_STEP = 10


def histogram(name: str, bounds: tuple, labels: str, bucket_le: float, per_step: int, steps: range, now: int) -> list:
    lines = []
    for i in steps:
        t = now - (len(steps) - i) * STEP
        n = i * per_step
        for le in (*bounds, "+Inf"):
            count = n if le == "+Inf" or float(le) >= bucket_le else 0
            bound = le if le == "+Inf" else float(le)
            lines.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{bound}"}} {count} {t}')
        lines.append(f"{name}_count{{{labels}}} {n} {t}")
        lines.append(f"{name}_sum{{{labels}}} {n * bucket_le} {t}")
    return lines


def openmetrics(now: int) -> str:
    steps = range(1, 200)  # ~50 minutes
    lines = ["# TYPE embedding_pipeline_latency_seconds histogram"]
    for stage, le in (("chunking", 0.01), ("embedding", 0.5), ("storage", 0.1), ("total", 1)):
        lines += histogram(
            "embedding_pipeline_latency_seconds", LATENCY_BUCKETS, f'stage="{stage}"', le, DOCS_PER_STEP, steps, now
        )
    lines.append("# TYPE embedding_pipeline_claim_seconds histogram")
    lines += histogram("embedding_pipeline_claim_seconds", CALL_BUCKETS, "", 0.005, 1, steps, now)
    lines.append("# TYPE embedding_pipeline_queue_wait_seconds histogram")
    lines += histogram("embedding_pipeline_queue_wait_seconds", WAIT_BUCKETS, "", 60, DOCS_PER_STEP, steps, now)
    lines.append("# TYPE embedding_pipeline_stage_busy_seconds counter")
    for stage, per_second in (("claim", 0.01), ("chunking", 0.02), ("embedding", 0.5), ("storage", 1.5)):
        for i in steps:
            t = now - (len(steps) - i) * STEP
            lines.append(f'embedding_pipeline_stage_busy_seconds_total{{stage="{stage}"}} {i * STEP * per_second} {t}')
    lines.append("# TYPE embedding_pipeline_workers_alive gauge")
    lines += [f"embedding_pipeline_workers_alive 2 {now - (len(steps) - i) * STEP}" for i in steps]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture
def backfilled_prometheus(tmp_path: Path) -> Iterator[str]:
    source = tmp_path / "metrics.om"
    source.write_text(openmetrics(int(time.time())))
    tsdb = tmp_path / "tsdb"
    created = subprocess.run(
        [promtool(), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}}))
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: reachable(url + "/-/ready"), timeout=30)
        yield url
    finally:
        stop(process)


@pytest.mark.django_db
def test_percentiles_and_utilisation_come_from_prometheus_when_configured(backfilled_prometheus, settings):
    settings.EMBEDPORTAL_PROMETHEUS_URL = backfilled_prometheus

    a = analyse(window=1800)

    assert a.source == "prometheus"
    # histogram_quantile interpolates inside the (0.25, 0.5] bucket every embedding fell in.
    assert a.stages["embedding"].p50 == pytest.approx(0.375)
    assert a.stages["embedding"].p95 == pytest.approx(0.4875)
    assert a.stages["embedding"].p99 == pytest.approx(0.4975)
    assert a.stages["storage"].p50 == pytest.approx(0.075)
    assert a.stages["queue_wait"].p50 == pytest.approx(37.5)
    assert a.stages["total"].count == pytest.approx(1800 / STEP * DOCS_PER_STEP, rel=0.05)
    assert a.workers == 2
    assert a.utilisation["storage"] == pytest.approx(0.75, rel=0.01)
    assert a.utilisation["embedding"] == pytest.approx(0.25, rel=0.01)
    # Embedding has the largest share of the per-document p95; workers are busy ~100% and documents
    # wait (37.5 s p50) far longer than they are processed: the fleet is the bottleneck.
    assert a.bottleneck["stage"] == "workers"
    assert "embedding is" in a.bottleneck["reason"]


@pytest.mark.django_db
def test_an_unreachable_prometheus_is_an_error_that_names_it(settings):
    settings.EMBEDPORTAL_PROMETHEUS_URL = "http://127.0.0.1:9"
    with pytest.raises(OptimizerError, match="did not answer"):
        analyse()
