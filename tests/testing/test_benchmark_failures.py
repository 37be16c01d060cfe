"""manage.py benchmark_failures at small scale: every document ends embedded or dead-lettered,
the printed figures add up, and the collection is deleted unless --keep.

transaction=True: the pipeline's lease keeper renews leases from its own thread and connection.
"""

from __future__ import annotations

import ast
import re

import pytest
from django.core.management import CommandError
from django.db.models import Count

from pipeline.choices import DocumentStatus
from pipeline.chunking import chunker_for
from pipeline.models import Chunk, Collection, Document
from reprocessing.choices import FailureState
from reprocessing.models import FailedDocument
from testing.fakeprovider import CHAOS_FAULTS
from tests.testing.conftest import command_output
from tests.tools import hnsw_indexes

# own_worker: the session's shared worker (tests/testing/conftest.py) is stopped, none runs beside them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("own_worker")]

HEADER = re.compile(
    r"^(?P<documents>\d+) documents \((?P<poison>\d+) poison\), (?P<calls>\d+) provider calls, "
    r"faults injected: (?P<faults>\{.*\})$"
)
FIRST = re.compile(r"^First pass: (?P<embedded>\d+) embedded, (?P<failed>\d+) failed in [\d.]+ s ")
REPROCESSING = re.compile(
    r"^Reprocessing: (?P<rounds>\d+) workflow rounds, (?P<requeued>\d+) documents requeued, "
    r"(?P<embedded>\d+) embedded, in [\d.]+ s "
)
FINAL = re.compile(r"^Final: (?P<final>\{.*\})$")
PASSED = "Checks passed: every document embedded or dead-lettered"


def run(*args: str) -> dict:
    lines = command_output("benchmark_failures", *args).splitlines()
    summary = {}
    for name, pattern in (("header", HEADER), ("first", FIRST), ("reprocessing", REPROCESSING), ("final", FINAL)):
        matches = [m for line in lines if (m := pattern.match(line))]
        assert len(matches) == 1, (name, lines)
        summary[name] = matches[0]
    assert lines[-1].startswith(PASSED), lines
    return {
        "documents": int(summary["header"]["documents"]),
        "poison": int(summary["header"]["poison"]),
        "calls": int(summary["header"]["calls"]),
        "faults": ast.literal_eval(summary["header"]["faults"]),
        "first_embedded": int(summary["first"]["embedded"]),
        "first_failed": int(summary["first"]["failed"]),
        "rounds": int(summary["reprocessing"]["rounds"]),
        "requeued": int(summary["reprocessing"]["requeued"]),
        "reprocess_embedded": int(summary["reprocessing"]["embedded"]),
        "final": ast.literal_eval(summary["final"]["final"]),
    }


def assert_figures_add_up(r: dict, documents: int, poison: int) -> None:
    assert (r["documents"], r["poison"]) == (documents, poison)
    final = r["final"]
    assert set(final) <= {DocumentStatus.EMBEDDED, DocumentStatus.FAILED, "dead_lettered"}, final
    # Nothing lost or doubled: every document ends embedded or failed, and every failed one is dead-lettered.
    assert final.get(DocumentStatus.EMBEDDED, 0) + final.get(DocumentStatus.FAILED, 0) == documents
    assert final["dead_lettered"] == final.get(DocumentStatus.FAILED, 0) >= poison
    # Each document went through the first pass once; the rest were embedded by reprocessing.
    assert r["first_embedded"] + r["first_failed"] == documents
    assert r["first_embedded"] + r["reprocess_embedded"] == final.get(DocumentStatus.EMBEDDED, 0)
    assert set(r["faults"]) <= {*CHAOS_FAULTS, "poison"}, r["faults"]
    assert sum(r["faults"].values()) <= r["calls"]
    # Every poison document reached the provider at least once and was rejected.
    assert r["faults"].get("poison", 0) >= poison


def test_chaos_run_ends_with_every_document_embedded_or_dead_lettered_and_keep_keeps_it():
    documents, poison = 40, 3
    r = run("--documents", str(documents), "--poison", str(poison), "--failure-rate", "0.3", "--seed", "11", "--keep")
    assert_figures_add_up(r, documents, poison)
    # Faults other than poison were injected, and reprocessing had work to do.
    assert set(r["faults"]) - {"poison"}, r["faults"]
    assert r["rounds"] >= 1 and r["requeued"] >= poison

    # --keep: the collection is there, and the database agrees with what was printed.
    (collection,) = Collection.objects.filter(name__startswith="bench-failures-")
    docs = list(Document.objects.filter(collection=collection).annotate(n=Count("chunks")))
    assert sorted(d.external_id for d in docs) == [f"d{i:05d}" for i in range(documents)]
    dead = set(
        FailedDocument.objects.filter(document__collection=collection, state=FailureState.DEAD_LETTERED).values_list(
            "document__external_id", flat=True
        )
    )
    embedded = {d.external_id for d in docs if d.status == DocumentStatus.EMBEDDED}
    failed = {d.external_id for d in docs if d.status == DocumentStatus.FAILED}
    assert embedded | failed == {d.external_id for d in docs}
    assert failed == dead
    assert (len(embedded), len(dead)) == (r["final"][DocumentStatus.EMBEDDED], r["final"]["dead_lettered"])
    poisoned = {d.external_id for d in docs if "POISON" in d.text}
    assert len(poisoned) == poison
    assert poisoned <= dead
    # Embedded documents hold exactly their chunks, ordinals 0..n-1; dead-lettered ones hold none.
    chunker = chunker_for(collection)
    ordinals: dict[int, list[int]] = {}
    for doc_id, ordinal in Chunk.objects.filter(collection=collection).values_list("document_id", "ordinal"):
        ordinals.setdefault(doc_id, []).append(ordinal)
    for doc in docs:
        if doc.external_id in embedded:
            expected = len(chunker.chunk_many([doc.text])[0])
            assert sorted(ordinals.get(doc.pk, [])) == list(range(expected)), doc.external_id
        else:
            assert doc.pk not in ordinals, doc.external_id


def test_without_faults_only_the_poison_documents_fail_and_the_collection_is_deleted():
    documents, poison = 25, 2
    indexes_before = hnsw_indexes()
    r = run("--documents", str(documents), "--poison", str(poison), "--failure-rate", "0", "--seed", "3")
    assert_figures_add_up(r, documents, poison)
    assert set(r["faults"]) == {"poison"}
    assert (r["first_embedded"], r["first_failed"]) == (documents - poison, poison)
    assert r["final"] == {
        DocumentStatus.EMBEDDED: documents - poison,
        DocumentStatus.FAILED: poison,
        "dead_lettered": poison,
    }
    # No --keep: nothing of the benchmark is left behind.
    assert Collection.objects.count() == 0
    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0
    assert FailedDocument.objects.count() == 0
    assert hnsw_indexes() == indexes_before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--documents", "0"], "--documents must be at least 1 (got 0)"),
        (["--documents", "-3", "--poison", "0"], "--documents must be at least 1 (got -3)"),
        (["--poison", "-1"], "--poison must be between 0 and --documents 20 (got -1)"),
        (["--poison", "21"], "--poison must be between 0 and --documents 20 (got 21)"),
        (["--failure-rate", "1"], "--failure-rate must be in [0, 1) (got 1.0)"),
        (["--failure-rate", "1.5"], "--failure-rate must be in [0, 1) (got 1.5)"),
        (["--failure-rate", "-0.1"], "--failure-rate must be in [0, 1) (got -0.1)"),
        (["--failure-rate", "nan"], "--failure-rate must be in [0, 1) (got nan)"),
    ],
)
def test_nonsense_figures_are_refused_before_anything_is_written(args, message):
    with pytest.raises(CommandError) as excinfo:
        run("--documents", "20", "--poison", "2", *args)
    assert str(excinfo.value) == message
    assert Collection.objects.count() == 0


def test_the_benchmark_refuses_to_run_beside_pipeline_workers(live_worker):
    # With `make run`'s workers up, they claimed part of the benchmark's documents with their own retry
    # waits and circuit: its checks failed one run in two ("ended processing" or "ended pending").
    with pytest.raises(CommandError) as excinfo:
        run("--documents", "20", "--poison", "2")
    assert str(excinfo.value).startswith(f"pipeline workers are running on this database ({live_worker.name})")
    assert "DATABASE_URL at a scratch database" in str(excinfo.value)
    assert Collection.objects.count() == 0
