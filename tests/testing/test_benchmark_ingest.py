"""`manage.py benchmark_ingest` on a small folder corpus: the figures it prints must add up.

The benchmark forks worker processes, so these tests commit (transaction=True) for the
workers to see the queue.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from django.core.management import CommandError

from pipeline.chunking import Chunker
from pipeline.models import Chunk, Collection, Document
from pipeline.queue import IncomingDocument, enqueue
from testing import corpus as corpora
from tests.testing.conftest import benchmark_ingest, command_output

pytestmark = pytest.mark.django_db(transaction=True)

PARAGRAPH = (
    "Operators watch the queue depth and the freshness lag. When a provider slows down, "
    "workers retry with backoff and the lease keeps other workers away from the batch. "
)


def texts() -> dict[str, str]:
    # Sizes from one short line to several 1000-character chunks, so chunk counts differ.
    return {f"part-{i:02d}.txt": PARAGRAPH * (1 + 4 * i) for i in range(8)} | {"notes/short.md": "# Short\n\nOne line."}


@pytest.fixture
def nested_corpus(tmp_path: Path) -> Path:
    """The texts above as files, one in a sub-folder."""
    root = tmp_path / "corpus"
    for name, text in texts().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def expected_chunks(model: str) -> int:
    # The benchmark's settings: recursive splitting, 1000 characters, 100 overlap.
    chunker = Chunker("recursive", "characters", 1000, 100, model)
    return sum(len(chunker.chunk(t)) for t in texts().values())


def test_every_worker_count_embeds_the_whole_corpus_once_and_the_figures_add_up(nested_corpus: Path) -> None:
    result = benchmark_ingest(corpus=str(nested_corpus), model="local/hash-16", workers="1,2")

    assert [r["workers"] for r in result["runs"]] == [1, 2]
    chunks = expected_chunks("local/hash-16")
    assert chunks > len(texts()), "the corpus should have documents of several chunks"
    for run in result["runs"]:
        assert run["enqueued"] == run["documents"] == len(texts())
        assert run["chunks"] == chunks
        assert run["double_processed"] == 0 and run["superseded"] == 0
        assert run["claims"] == len(texts())
        assert set(run["stage_seconds"]) >= {"chunking", "embedding", "storage"}
        assert all(v > 0 for v in run["stage_seconds"].values())
        assert run["docs_per_second"] == pytest.approx(run["documents"] / run["drain_seconds"], rel=0.02)
        assert 0 < run["worker_uss_mb"] <= run["worker_peak_rss_mb"]
        assert 0 < run["cpu_seconds"]  # forked workers' CPU too: they are reaped before it is read
    # The ceiling (N concurrent COPYs) is measured for N > 1 workers only, and the ratio adds up.
    single, forked = result["runs"]
    assert single["ceiling_docs_per_second"] is None and single["ratio_to_ceiling"] is None
    assert forked["ceiling_docs_per_second"] > 0
    ratio = forked["docs_per_second"] / forked["ceiling_docs_per_second"]
    assert forked["ratio_to_ceiling"] == pytest.approx(ratio, rel=0.02)
    assert all(r["cpu_busy"] is None or 0 <= r["cpu_busy"] <= 1 for r in result["runs"])
    # Forked workers share the imported code with the parent: their unique memory is small.
    assert forked["worker_uss_mb"] < forked["worker_peak_rss_mb"] / 2

    assert result["floor_seconds"] > 0
    best = max(result["runs"], key=lambda r: r["docs_per_second"])
    assert result["floor_docs_per_second"] == pytest.approx(best["documents"] / result["floor_seconds"], rel=0.02)
    ratio = best["docs_per_second"] / result["floor_docs_per_second"]
    assert result["ratio_to_floor"] == pytest.approx(ratio, rel=0.02)
    assert result["bare_encode_docs_per_second"] is None  # only measured for the real model
    assert result["local_runtime"] is None and result["ratio_to_bare_encode_cpu"] is None
    assert 0 < result["baseline_rss_mb"] <= result["peak_rss_mb"]
    # Without --keep, nothing is left behind: no collection, no document, no chunk, no floor table.
    assert not Collection.objects.filter(name__startswith="benchmark-").exists()
    assert not Document.objects.exists() and not Chunk.objects.exists()


def test_keep_leaves_the_collections_with_what_was_measured(nested_corpus: Path) -> None:
    result = benchmark_ingest(corpus=str(nested_corpus), model="local/hash-16", workers="2", docs=3, keep=True)

    collection = Collection.objects.get(name="benchmark-steady-2w")
    run = result["runs"][0]
    assert run["enqueued"] == 3 == Document.objects.filter(collection=collection, status="embedded").count()
    assert Chunk.objects.filter(collection=collection).count() == run["chunks"]


def test_it_refuses_to_run_while_other_documents_are_queued(nested_corpus: Path, hash_collection) -> None:
    enqueue(hash_collection, [IncomingDocument("theirs", "a document someone else is waiting for")])

    with pytest.raises(CommandError, match="other documents are waiting in the queue"):
        benchmark_ingest(corpus=str(nested_corpus), model="local/hash-16", workers="1")

    assert Document.objects.get(external_id="theirs").status == "pending"
    assert not Collection.objects.filter(name__startswith="benchmark-").exists()


def test_a_jsonl_corpus_counts_documents_not_files(tmp_path: Path) -> None:
    root = tmp_path / "jsonl"
    root.mkdir()
    lines = [json.dumps({"id": f"doc-{i}", "text": PARAGRAPH * (i + 1)}) for i in range(5)]
    (root / "batch.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    run = benchmark_ingest(corpus=str(root), model="local/hash-16", workers="1")["runs"][0]

    assert run["enqueued"] == run["documents"] == 5
    assert run["double_processed"] == 0


@pytest.mark.parametrize(
    ("bad_file", "content", "message"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00", "binary file"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("empty.txt", b"", "empty"),
    ],
)
def test_a_corpus_file_enqueue_would_reject_stops_the_benchmark_before_it_starts(
    nested_corpus: Path, bad_file: str, content: bytes, message: str
) -> None:
    (nested_corpus / bad_file).write_bytes(content)

    with pytest.raises(CommandError, match=message) as exc:
        benchmark_ingest(corpus=str(nested_corpus), model="local/hash-16", workers="1")

    assert bad_file in str(exc.value)
    assert not Collection.objects.exists() and not Document.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": "two"}, "--workers takes a number or a comma list"),
        ({"workers": "0"}, "--workers must be between 1 and 32"),
        ({"docs": 0}, "--docs must be at least 1"),
        ({"model": "local/nope"}, "local/nope"),
        ({"provider_concurrency": 2}, "--provider-concurrency needs --provider-latency"),
        ({"provider_concurrency": 0, "provider_latency": 10.0}, "--provider-concurrency must be between 1 and 32"),
    ],
)
def test_bad_options_are_refused_with_what_to_fix(nested_corpus: Path, options: dict, message: str) -> None:
    options = {"corpus": str(nested_corpus), "model": "local/hash-16", "workers": "1"} | options
    with pytest.raises(CommandError, match=message):
        benchmark_ingest(**options)
    assert not Collection.objects.exists()


def test_an_unknown_or_empty_corpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="unknown corpus"):
        benchmark_ingest(corpus=str(tmp_path / "missing"), model="local/hash-16")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="has no files"):
        benchmark_ingest(corpus=str(tmp_path / "empty"), model="local/hash-16")


def test_the_django_docs_corpus_is_taken_from_the_cached_source_distribution(tmp_path: Path, settings) -> None:
    # A stand-in sdist in the cache: fetch() must not download, and must extract only docs/*.txt.
    prefix = f"django-{corpora.DJANGO_VERSION}"
    src = tmp_path / "src"
    for name, text in {
        f"{prefix}/docs/index.txt": "Django documentation",
        f"{prefix}/docs/topics/db/models.txt": "Models",
        f"{prefix}/docs/conf.py": "project = 'Django'",
        f"{prefix}/django/__init__.py": "VERSION = (5, 2)",
    }.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    cache = tmp_path / "cache"
    cache.mkdir()
    settings.EMBEDPORTAL_CORPUS_DIR = cache
    with pytest.raises(corpora.CorpusMissing, match="fetch_corpus"):
        corpora.django_docs()  # never downloads
    with tarfile.open(cache / f"django-{corpora.DJANGO_VERSION}.tar.gz", "w:gz") as tar:
        tar.add(src / prefix, arcname=prefix)

    assert command_output("fetch_corpus") == f"2 files of the django-docs corpus in {cache}\n"
    paths = corpora.django_docs()

    root = cache / f"django-{corpora.DJANGO_VERSION}-docs"
    assert [p.relative_to(root).as_posix() for p in paths] == ["index.txt", "topics/db/models.txt"]
    assert (root / ".complete").exists()
    (cache / f"django-{corpora.DJANGO_VERSION}.tar.gz").unlink()
    assert corpora.django_docs() == paths, "a complete cache is reused without the archive"


def test_the_ceilings_writers_split_the_rows_by_document_and_together_write_every_row(nested_corpus: Path) -> None:
    from django.db import connection

    from testing.benchmarks import ingest

    benchmark_ingest(corpus=str(nested_corpus), model="local/hash-16", workers="1", keep=True)
    collection = Collection.objects.get(name="benchmark-steady-1w")
    parts = ingest._export_rows(collection, 3)
    seen: list[set[int]] = []
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE part (document_id bigint, ordinal int, text text, token_count int, embedding vector(16))"
        )
        for buf in parts:
            cur.execute("TRUNCATE part")
            with cur.cursor.copy("COPY part FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.write(buf.read())
            cur.execute("SELECT DISTINCT document_id FROM part")
            seen.append({row[0] for row in cur.fetchall()})
            cur.execute("SELECT count(*) FROM part")
            buf.close()
    assert all(seen), "each writer gets a share of the documents"
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == len(texts())
    assert ingest.copy_floor(collection, writers=3) > 0
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [ingest.FLOOR_TABLE])
        assert cur.fetchone()[0] is None, "the floor table is dropped afterwards"


def test_the_bare_encode_is_given_the_texts_the_model_embedded(hash_collection) -> None:
    """The reference encode compares runtimes: it must embed what the pipeline embedded (the title and
    headings line of contextual chunks included), not the shorter stored text."""
    from pipeline.chunking import chunker_for
    from pipeline.pipeline import EmbeddingIngestionPipeline
    from testing.benchmarks.ingest import embedded_texts

    Collection.objects.filter(pk=hash_collection.pk).update(contextual_chunks=True)
    hash_collection.refresh_from_db()
    text = "---\ntitle: The guide\n---\n# Install\n\nSome words to install it.\n\n## Upgrade\n\nMore words on upgrades."
    enqueue(hash_collection, [IncomingDocument("guide.md", text)])
    EmbeddingIngestionPipeline().drain()

    expected = [c.embedded for c in chunker_for(hash_collection).chunk_many([text], ["guide.md"])[0]]
    assert embedded_texts(hash_collection) == expected
    assert all(t.startswith("The guide > Install") for t in expected)
    assert set(Chunk.objects.values_list("text", flat=True)).isdisjoint(expected)


def test_a_measured_drain_starts_with_the_local_encoder_compiled(monkeypatch) -> None:
    """OpenVINO compiles its inference requests in each process on its first call: a one-off start-up
    cost the measured drain (and the bare encode, warmed up too) leaves out."""
    import os

    from pipeline import encoder, loadharness

    monkeypatch.setattr(loadharness, "_local_model", True)
    loadharness._ready()
    served = encoder.current()
    assert served.runtime == "openvino", served.reason
    assert os.getpid() in served._requests
