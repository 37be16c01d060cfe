"""manage.py benchmark_metrics at small scale: the figures it prints hang together, and it cleans up.

transaction=True: the command VACUUMs (not allowed in a transaction block) and the pipeline's
lease keeper renews leases from its own thread and connection.
"""

from __future__ import annotations

import inspect
import re
import statistics

import pytest
from django.core.management import CommandError
from prometheus_client import REGISTRY

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document
from pipeline.queue import IncomingDocument, enqueue
from testing.management.commands.benchmark_metrics import Command
from tests.testing.conftest import command_output
from tests.tools import hnsw_indexes

pytestmark = pytest.mark.django_db(transaction=True)

INSERTED = re.compile(r"^Inserted (\d+) pending documents in [\d.]+ s$")
SCRAPE = re.compile(
    r"^/metrics after (?P<label>ANALYZE|VACUUM): median (?P<median>[\d.]+) ms, p95 (?P<p95>[\d.]+) ms, "
    r"max (?P<max>[\d.]+) ms over (?P<requests>\d+) requests \((?P<bytes>\d+) bytes, "
    r"queue depth (?P<depth>\d+), multiprocess=(?:yes|no)\)$"
)
INGESTION = re.compile(
    r"^Ingestion of (?P<documents>\d+) documents, median of (?P<rounds>\d+) rounds: "
    r"metrics on (?P<on>\d+) ms, off (?P<off>\d+) ms, overhead (?P<overhead>[+-][\d.]+)% "
    r"\(on: (?P<on_rounds>[\d, ]+); off: (?P<off_rounds>[\d, ]+) ms\)$"
)
RECORDING = re.compile(
    r"^Recording the metrics of (?P<documents>\d+) documents directly: (?P<ms>[\d.]+) ms "
    r"\((?P<share>[\d.]+)% of the ingestion time without metrics\)$"
)


def run(*args: str) -> list[str]:
    return command_output("benchmark_metrics", *args).splitlines()


def embedded_counter() -> float:
    return sum(
        s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "embedding_pipeline_documents_processed_total" and s.labels.get("outcome") == "embedded"
    )


@pytest.fixture
def indexes_before() -> dict[str, str]:
    # Per-collection indexes of earlier tests outlive their flush (TRUNCATE fires no signal).
    return hnsw_indexes()


def assert_cleaned_up(indexes_before: set[str]) -> None:
    assert list(Collection.objects.values_list("name", flat=True)) == []
    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0
    assert hnsw_indexes() == indexes_before  # the benchmark collections' indexes were dropped too


def check_scrape(line: str, label: str, requests: int, documents: int) -> None:
    m = SCRAPE.match(line)
    assert m, line
    assert m["label"] == label
    assert int(m["requests"]) == requests
    # Nothing else is queued in the test database: the gauge sees exactly the backlog it inserted.
    assert int(m["depth"]) == documents
    assert int(m["bytes"]) > 0
    median, p95, worst = float(m["median"]), float(m["p95"]), float(m["max"])
    assert 0 < median <= p95 <= worst, line


def test_scrape_only_reports_both_scrape_series_over_the_backlog_it_inserted_and_deletes_it(indexes_before):
    before = embedded_counter()
    lines = run("--documents", "300", "--requests", "3", "--ingest-documents", "0")

    assert len(lines) == 3, lines  # --ingest-documents 0: no ingestion figures
    m = INSERTED.match(lines[0])
    assert m and int(m[1]) == 300, lines[0]
    check_scrape(lines[1], "ANALYZE", requests=3, documents=300)
    check_scrape(lines[2], "VACUUM", requests=3, documents=300)
    # The backlog sat in a paused collection: nothing was embedded.
    assert embedded_counter() == before
    assert_cleaned_up(indexes_before)


def test_full_run_times_every_round_with_metrics_on_and_off_and_the_figures_agree(indexes_before):
    documents, rounds = 200, 3
    before = embedded_counter()
    lines = run("--documents", "200", "--requests", "2", "--ingest-documents", str(documents), "--rounds", str(rounds))

    assert len(lines) == 5, lines
    inserted = INSERTED.match(lines[0])
    assert inserted and int(inserted[1]) == 200, lines[0]
    check_scrape(lines[1], "ANALYZE", requests=2, documents=200)
    check_scrape(lines[2], "VACUUM", requests=2, documents=200)

    ingestion = INGESTION.match(lines[3])
    assert ingestion, lines[3]
    assert (int(ingestion["documents"]), int(ingestion["rounds"])) == (documents, rounds)
    on_rounds = [int(t) for t in ingestion["on_rounds"].split(", ")]
    off_rounds = [int(t) for t in ingestion["off_rounds"].split(", ")]
    assert len(on_rounds) == len(off_rounds) == rounds
    on, off = int(ingestion["on"]), int(ingestion["off"])
    # An odd number of rounds: the median is one of the rounds, printed the same way.
    assert (on, off) == (statistics.median(on_rounds), statistics.median(off_rounds))
    assert on > 0 and off > 0
    # overhead = (on - off) / off from the unrounded times: within what rounding to whole ms allows.
    low = 100 * ((on - 0.5) / (off + 0.5) - 1) - 0.05
    high = 100 * ((on + 0.5) / (off - 0.5) - 1) + 0.05
    assert low <= float(ingestion["overhead"]) <= high, lines[3]

    recording = RECORDING.match(lines[4])
    assert recording, lines[4]
    assert int(recording["documents"]) == documents
    recorded_ms, share = float(recording["ms"]), float(recording["share"])
    assert recorded_ms > 0
    # share = recording time / ingestion time without metrics.
    low = 100 * (recorded_ms - 0.005) / (off + 0.5) - 0.005
    high = 100 * (recorded_ms + 0.005) / (off - 0.5) + 0.005
    assert low <= share <= high, lines[4]

    # Metrics really were on and off: the warm-up and the "on" rounds count their documents, the
    # "off" rounds count none, and the direct recording adds `repeat` times the documents.
    repeat = inspect.signature(Command._recording_seconds).parameters["repeat"].default
    assert embedded_counter() - before == documents * (1 + rounds + repeat)
    assert_cleaned_up(indexes_before)


def test_runs_on_the_scratch_database_while_production_has_queued_work_and_leaves_it_alone(hash_collection):
    enqueue(hash_collection, [IncomingDocument("mine", "someone else's document")])
    lines = run("--documents", "10", "--requests", "1", "--ingest-documents", "5", "--rounds", "1")
    # The gauge it timed counted its own backlog only: production's queued document is elsewhere.
    check_scrape(lines[1], "ANALYZE", 1, 10)
    assert list(Collection.objects.values_list("name", flat=True)) == ["hashes"]
    assert list(Document.objects.values_list("external_id", "status")) == [("mine", DocumentStatus.PENDING)]


def test_a_failing_scrape_is_an_error_and_the_benchmark_collection_is_still_deleted(settings, indexes_before):
    settings.EMBEDPORTAL_METRICS_BASIC_AUTH = "prometheus:secret"
    with pytest.raises(CommandError, match="/metrics answered 401"):
        run("--documents", "50", "--requests", "2", "--ingest-documents", "0")
    assert_cleaned_up(indexes_before)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--requests", "0"], "--requests must be at least 1 (got 0)"),
        (["--requests", "-2"], "--requests must be at least 1 (got -2)"),
        (["--documents", "-5"], "--documents must be at least 0 (got -5)"),
        (["--ingest-documents", "-1"], "--ingest-documents must be at least 0 (got -1)"),
        (["--rounds", "0"], "--rounds must be at least 1 (got 0)"),
    ],
)
def test_nonsense_figures_are_refused_before_anything_is_written(args, message, indexes_before):
    with pytest.raises(CommandError) as excinfo:
        run("--documents", "10", "--requests", "2", "--ingest-documents", "5", "--rounds", "1", *args)
    assert str(excinfo.value) == message
    assert_cleaned_up(indexes_before)
