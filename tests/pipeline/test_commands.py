from __future__ import annotations

import gc
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from pipeline import chunking, providers
from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import ROOT
from tests.tools import error_of, slow_first_register

pytestmark = pytest.mark.django_db

MTIME = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def run(*args: str, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def index_exists(name: str) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        return cur.fetchone() is not None


@pytest.fixture
def docs_collection() -> Collection:
    # Hash vectors match equal texts only: chunks are embedded alone so their exact text finds them.
    run(
        "create_collection",
        "docs",
        model="local/hash-16",
        unit="characters",
        chunk_size=200,
        chunk_overlap=20,
        no_contextual_chunks=True,
    )
    return Collection.objects.get(name="docs")


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write(root / "guide.txt", "How to operate the pipeline.")
    write(root / "runbooks" / "scaling.md", "# Scaling\n\nAdd worker pods when the queue grows.")
    write(root / "runbooks" / "rollback.md", "# Rollback\n\nRedeploy the previous image.")
    write(root / ".git" / "config", "[core]\n")
    return root


def enqueue_cmd(*paths: Path | str, base: Path, collection: str = "docs") -> tuple[str, str]:
    return run("enqueue", *map(str, paths), collection=collection, base=str(base), no_progress=True)


def test_create_collection_creates_it_with_the_models_dimensions_and_its_index():
    out, _ = run(
        "create_collection", "notes", model="local/hash-24", strategy="token_windows", chunk_size=64, chunk_overlap=8
    )
    collection = Collection.objects.get(name="notes")
    assert (collection.dimensions, collection.chunking_strategy, collection.chunk_size, collection.chunk_overlap) == (
        24,
        "token_windows",
        64,
        8,
    )
    assert f"Created collection notes (local/hash-24, 24 dimensions, index {collection.index_name})" in out
    assert index_exists(collection.index_name)


def test_create_collection_refuses_a_duplicate_name(docs_collection):
    with pytest.raises(CommandError, match="'docs' already exists"):
        run("create_collection", "docs", model="local/hash-32")
    assert Collection.objects.get(name="docs").model == "local/hash-16"


def test_create_collection_if_not_exists_leaves_the_existing_one_alone(docs_collection):
    out, _ = run("create_collection", "docs", model="local/hash-32", if_not_exists=True)
    assert "Collection docs exists." in out
    assert Collection.objects.get(name="docs").dimensions == 16


def test_create_collection_refuses_an_unknown_local_model():
    with pytest.raises(CommandError, match="unknown local model 'local/no-such-model'"):
        run("create_collection", "bad", model="local/no-such-model")
    assert not Collection.objects.filter(name="bad").exists()


def test_without_the_bundled_model_installed_it_is_refused_by_name_and_fails_documents_clearly(monkeypatch, settings):
    """An image built with LOCAL_MODEL=false: a clear error, never a worker retrying an ImportError."""
    bundle = "local/all-MiniLM-L6-v2 is not installed here (an image built with LOCAL_MODEL=false)"
    monkeypatch.setattr(chunking, "minilm_installed", lambda: False)
    with pytest.raises(CommandError, match=re.escape(bundle)):
        run("create_collection", "bad", model=providers.LOCAL_MODEL)
    assert not Collection.objects.filter(name="bad").exists()
    # Made while it was installed: its documents fail as a bad request, with the reason.
    collection = Collection.objects.create(name="old", model=providers.LOCAL_MODEL, dimensions=384)
    enqueue(collection, [IncomingDocument("a", "Some text to embed.")])
    settings.EMBEDPORTAL_LOCAL_RUNTIME = "openvino"  # an encoder never chosen: the check comes first
    EmbeddingIngestionPipeline().run_once()
    document = Document.objects.get(collection=collection)
    assert document.status == DocumentStatus.FAILED and bundle in document.last_error


def test_a_process_preloading_without_the_bundled_model_installed_starts_without_it(monkeypatch):
    """gunicorn's on_starting preloads the default model: in a LOCAL_MODEL=false image that must not
    stop web from starting."""
    from pipeline import encoder

    monkeypatch.setattr(chunking, "minilm_installed", lambda: False)
    monkeypatch.setattr(encoder, "_current", None)
    monkeypatch.setattr(providers, "preloaded_by", providers.preloaded_by)
    try:
        providers.preload(local_model=True)
    finally:
        gc.unfreeze()
    assert encoder._current is None


def test_create_collection_refuses_overlap_not_smaller_than_size():
    with pytest.raises(CommandError, match="overlap"):
        run("create_collection", "bad", model="local/hash-16", chunk_size=64, chunk_overlap=64)
    assert not Collection.objects.filter(name="bad").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["api_key=sk-live-123"], "api_key: never store credentials here"),
        (["aws_secret_access_key=abc", "input_type=query"], "aws_secret_access_key: never store credentials"),
        (["dimensions=0"], "dimensions must be an integer from 1 to 16000"),
        (["dimensions=many"], "dimensions must be an integer from 1 to 16000"),
        # Digits to str.isdigit() that int() refuses: each was a ValueError traceback.
        (["dimensions=²"], "dimensions must be an integer from 1 to 16000"),
        ([f"dimensions={'9' * 5000}"], "dimensions must be an integer from 1 to 16000"),
    ],
)
def test_create_collection_refuses_extra_params_that_would_leak_a_key_or_break_the_index(params, message):
    with pytest.raises(CommandError, match=message) as exc:
        run(
            "create_collection",
            "bad",
            model="openai/text-embedding-3-small",
            api_base="http://127.0.0.1:9",
            param=params,
        )
    assert "sk-live-123" not in str(exc.value), "the key itself must not be echoed"
    assert not Collection.objects.filter(name="bad").exists()


def test_extra_params_dimensions_must_match_the_collections_in_the_admin_path_too():
    # The model's clean() is what the admin form and the command share (DRF has its own check).
    collection = Collection(name="mismatch", model="openai/text-embedding-3-small", dimensions=64)
    collection.extra_params = {"dimensions": 32}
    with pytest.raises(ValidationError, match="dimensions 32 differs from the collection's 64"):
        collection.full_clean()
    collection.extra_params = {"dimensions": 64, "user": "embedportal"}
    collection.full_clean()


def test_a_local_model_takes_no_extra_params(api):
    # LiteLLM refuses any parameter on the local provider: such a collection failed every document and
    # made the health check report the whole deployment unhealthy (found by a docs walkthrough).
    with pytest.raises(CommandError, match="local/hash-32 is a bundled local model and takes no extra_params"):
        run("create_collection", "local-params", model="local/hash-32", param=["dimensions=32"])
    assert not Collection.objects.filter(name="local-params").exists()
    body = {"name": "local-params", "model": "local/hash-32", "extra_params": {"user": "ingest"}}
    response = api.post("/api/v1/collections/", body, format="json")
    assert response.status_code == 400 and "takes no extra_params" in str(response.json()["error"]["details"])
    # Nor a key or an endpoint: a key variable named for one failed every document as auth and /health/ (the fuzzer's).
    for field, value in (("api_key_env", "MY_KEY"), ("api_base", "http://127.0.0.1:9/v1")):
        body = {"name": "local-key", "model": "local/hash-32", field: value}
        details = error_of(api.post("/api/v1/collections/", body, format="json"), 400)["details"]
        assert details[field] == [f"local/hash-32 is a bundled local model and takes no {field} (clear it)"]
    with pytest.raises(CommandError, match="api_key_env: local/hash-32 is a bundled local model and takes no"):
        run("create_collection", "local-key", model="local/hash-32", api_key_env="MY_KEY")
    assert not Collection.objects.filter(name__startswith="local-").exists()


def test_enqueue_folder_uses_paths_relative_to_base_as_ids_and_mtime_as_modified_time(docs_collection, corpus):
    out, _ = enqueue_cmd(corpus, base=corpus)
    assert "3 new, 0 changed, 0 unchanged" in out
    docs = {d.external_id: d for d in Document.objects.filter(collection=docs_collection)}
    assert set(docs) == {"guide.txt", "runbooks/scaling.md", "runbooks/rollback.md"}  # .git is skipped
    scaling = docs["runbooks/scaling.md"]
    assert scaling.text == "# Scaling\n\nAdd worker pods when the queue grows."
    assert scaling.source_modified_at == MTIME
    assert scaling.metadata == {"path": "runbooks/scaling.md"}
    assert {d.status for d in docs.values()} == {DocumentStatus.PENDING}


def test_enqueue_glob_takes_only_matching_files(docs_collection, corpus, tmp_path):
    out, _ = enqueue_cmd(corpus / "**" / "*.md", base=tmp_path)
    assert "2 new" in out
    assert set(Document.objects.values_list("external_id", flat=True)) == {
        "corpus/runbooks/scaling.md",
        "corpus/runbooks/rollback.md",
    }


def test_enqueue_jsonl_takes_id_text_modified_at_and_metadata_from_each_line(docs_collection, tmp_path):
    lines = [
        {"id": "faq-1", "text": "What is a lease?", "modified_at": "2026-01-31T12:00:00Z", "metadata": {"lang": "en"}},
        {"id": 2, "text": "Qu'est-ce qu'un bail ?", "metadata": {"lang": "fr"}},
    ]
    path = write(tmp_path / "faq.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    out, _ = enqueue_cmd(path, base=tmp_path)
    assert "2 new" in out
    first = Document.objects.get(external_id="faq-1")
    assert (first.text, first.metadata) == ("What is a lease?", {"lang": "en"})
    assert first.source_modified_at == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    second = Document.objects.get(external_id="2")
    assert (second.text, second.metadata, second.source_modified_at) == ("Qu'est-ce qu'un bail ?", {"lang": "fr"}, None)


def test_a_jsonl_time_or_metadata_falsy_but_not_null_is_refused_as_the_api_refuses_it(docs_collection, tmp_path):
    lines = [
        {"id": "zero", "text": "t", "modified_at": 0},
        {"id": "blank", "text": "t", "modified_at": ""},
        {"id": "list", "text": "t", "metadata": []},
        {"id": "nulls", "text": "t", "modified_at": None, "metadata": None},
    ]
    path = write(tmp_path / "falsy.jsonl", "\n".join(json.dumps(line) for line in lines))
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"3 document\(s\) rejected"):
        call_command("enqueue", str(path), collection="docs", base=str(tmp_path), no_progress=True, stderr=err)
    assert re.search(r"falsy\.jsonl:1: modified_at 0 is not an ISO 8601 date-time", err.getvalue())
    assert re.search(r"falsy\.jsonl:2: modified_at '' is not an ISO 8601 date-time", err.getvalue())
    assert re.search(r"falsy\.jsonl:3: text must be a string and metadata an object", err.getvalue())
    assert Document.objects.get().external_id == "nulls"


def test_reenqueue_of_unchanged_files_reports_them_unchanged(docs_collection, corpus):
    enqueue_cmd(corpus, base=corpus)
    before = dict(Document.objects.values_list("external_id", "enqueued_at"))
    write(corpus / "guide.txt", "How to operate the pipeline, revised.")
    out, _ = enqueue_cmd(corpus, base=corpus)
    assert "0 new, 1 changed, 2 unchanged (not re-embedded)" in out
    after = dict(Document.objects.values_list("external_id", "enqueued_at"))
    assert after["runbooks/scaling.md"] == before["runbooks/scaling.md"]
    assert after["guide.txt"] > before["guide.txt"]


def test_bad_files_are_reported_and_fail_the_command_while_good_files_are_enqueued(docs_collection, corpus):
    write(corpus / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(corpus / "latin1.txt", "café crème".encode("latin-1"))
    write(corpus / "empty.txt", b"")
    good = json.dumps({"id": "line-ok", "text": "A good line."})
    bad_lines = [
        '{"id": "broken", "text": ',
        json.dumps({"id": "no-text"}),
        json.dumps({"id": None, "text": "An id that is not a string."}),
        json.dumps({"id": "naive", "text": "Fine text.", "modified_at": "2026-01-31T12:00:00"}),
    ]
    write(corpus / "lines.jsonl", "\n".join([good, *bad_lines]))
    with pytest.raises(CommandError, match=r"7 document\(s\) rejected .* the 4 others were enqueued"):
        out, err = io.StringIO(), io.StringIO()
        call_command(
            "enqueue", str(corpus), collection="docs", base=str(corpus), no_progress=True, stdout=out, stderr=err
        )
    reported = err.getvalue()
    assert re.search(r"image\.png: binary file", reported)
    assert re.search(r"latin1\.txt: not UTF-8 text", reported)
    assert re.search(r"empty\.txt: text is empty", reported)
    assert re.search(r"lines\.jsonl:2: invalid JSON", reported)
    assert re.search(r"lines\.jsonl:3: missing field\(s\): text", reported)
    assert re.search(r"lines\.jsonl:4: .*id", reported)
    assert re.search(r"lines\.jsonl:5: modified_at needs a timezone", reported)
    assert set(Document.objects.values_list("external_id", flat=True)) == {
        "guide.txt",
        "runbooks/scaling.md",
        "runbooks/rollback.md",
        "line-ok",
    }


def test_enqueue_of_a_missing_path_is_a_command_error(docs_collection, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        enqueue_cmd(tmp_path / "nowhere", base=tmp_path)
    with pytest.raises(CommandError, match="no such file"):
        enqueue_cmd(tmp_path / "nowhere" / "*.md", base=tmp_path)
    assert not Document.objects.exists()


def test_enqueue_into_an_unknown_collection_is_a_command_error(corpus):
    with pytest.raises(CommandError, match="no collection named 'ghost'"):
        enqueue_cmd(corpus, base=corpus, collection="ghost")
    assert not Document.objects.exists()


def test_run_pipeline_once_drains_the_queue(docs_collection, corpus):
    enqueue_cmd(corpus, base=corpus)
    out, _ = run("run_pipeline", once=True)
    assert "Embedded 3 document(s)" in out
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.EMBEDDED}
    assert Chunk.objects.filter(collection=docs_collection).count() >= 3
    out, _ = run("run_pipeline", once=True, json=True)
    assert json.loads(out)["embedded"] == 0


def test_search_json_returns_ranked_hits(docs_collection, corpus):
    enqueue_cmd(corpus, base=corpus)
    run("run_pipeline", once=True)
    # local/hash-16 vectors match only equal texts: the exact text must rank first.
    out, _ = run("search", "Redeploy the previous image.", collection="docs", k=3, json=True)
    hits = json.loads(out)
    assert len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    out, _ = run("search", "# Rollback\n\nRedeploy the previous image.", collection="docs", k=2, json=True)
    best = json.loads(out)[0]
    assert best["document_id"] == "runbooks/rollback.md"
    assert best["score"] == pytest.approx(1.0, abs=1e-5)
    assert best["text"] == "# Rollback\n\nRedeploy the previous image."


def test_a_command_search_records_the_search_without_loading_the_model(docs_collection, monkeypatch):
    # A one-off `manage.py search` recorded LiteLLM's import and the model's load (6 s) as its latency:
    # the optimizer then advised lowering ef_search for a search p95 of 5 s (docs walkthrough).
    from pipeline import recording

    slow_first_register(monkeypatch)
    recorded = []
    monkeypatch.setattr(recording, "record_search", lambda c, seconds, source: recorded.append((seconds, source)))
    run("search", "anything", collection="docs")
    assert len(recorded) == 1 and recorded[0][1] == "cli" and recorded[0][0] < 0.5


def test_search_of_an_unknown_collection_is_a_command_error():
    with pytest.raises(CommandError, match="no collection named 'ghost'"):
        run("search", "anything", collection="ghost")


@pytest.mark.parametrize("k", [0, 101])
def test_search_with_k_out_of_range_is_a_command_error(docs_collection, k):
    with pytest.raises(CommandError, match="--k"):
        run("search", "anything", collection="docs", k=k)


def test_demo_embeds_the_sample_corpus_with_the_local_model_and_searches_it():
    out, _ = run("demo", copies=1)
    # The model's load is timed on its own, before the drain's clock starts.
    assert re.search(r"^Model load: \d+\.\d\d s", out, re.M), out
    documents = int(re.search(r"^Documents: (\d+)$", out, re.M).group(1))
    chunks = int(re.search(r"^Chunks: (\d+)$", out, re.M).group(1))
    assert re.search(r"^Seconds: \d+\.\d\d$", out, re.M)
    assert re.search(r"^Docs/s: \d+\.\d\d$", out, re.M)
    assert re.search(r"^Failed: 0$", out, re.M)
    demo = Collection.objects.get(name="demo")
    assert demo.dimensions == 384
    assert documents == Document.objects.filter(collection=demo).count() > 1
    assert chunks == Chunk.objects.filter(collection=demo).count() > documents
    # Hybrid search (the default) fuses scores into 0..1: the best of both rankings scores 1.000.
    match = re.search(r'^Search "How do I run the tests\?": (\S+) \(score ([01]\.\d+)\): \S', out, re.M)
    assert match, out
    assert Document.objects.filter(collection=demo, external_id=match.group(1)).exists()


def test_demo_waits_for_the_documents_another_worker_claimed(monkeypatch):
    """With `make run` up, its workers take part of the demo's queue: the figures wait for them, and a
    claim whose worker dies is drained when its lease expires."""
    from pipeline.management.commands import demo

    drains = []

    class ClaimedElsewhere(EmbeddingIngestionPipeline):
        def drain(self, *args, **kwargs):
            drains.append(1)
            leased = Document.objects.filter(lease_owner="elsewhere:1:worker")
            if len(drains) == 1:  # another worker got there first
                first = list(Document.objects.order_by("id")[:2].values_list("id", flat=True))
                Document.objects.filter(id__in=first).update(
                    status=DocumentStatus.PROCESSING,
                    lease_owner="elsewhere:1:worker",
                    lease_expires_at=timezone.now() + timedelta(hours=1),
                )
            elif len(drains) == 3:  # ... and died: its lease runs out
                leased.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
            return super().drain(*args, **kwargs)

    monkeypatch.setattr(demo, "EmbeddingIngestionPipeline", ClaimedElsewhere)
    out, _ = run("demo", copies=1, model="local/hash-384")
    files = int(re.search(r"^Enqueued: \d+ documents \(1 x (\d+) files\)", out, re.M).group(1))
    assert "Waiting for 2 document(s) other workers claimed" in out, out
    assert re.search(rf"^Documents: {files}$", out, re.M), out
    assert re.search(r"^Failed: 0$", out, re.M), out
    assert len(drains) == 3


def test_demo_ingests_the_sample_corpus_once_per_copy():
    out, _ = run("demo", copies=2, model="local/hash-384")
    files = int(re.search(r"^Enqueued: \d+ documents \(2 x (\d+) files\)", out, re.M).group(1))
    assert files > 1
    embedded = Document.objects.filter(collection__name="demo", status="embedded")
    ids = list(embedded.values_list("external_id", flat=True))
    assert len(ids) == 2 * files
    assert {i.split("/", 1)[0] for i in ids} == {"copy-1", "copy-2"}
    assert sum(i.endswith("/README.md") for i in ids) == 2
    assert re.search(rf"^Documents: {2 * files}$", out, re.M)


def test_search_refuses_a_query_longer_than_the_api_takes(docs_collection):
    # The command took any length (67 KB of base64 searched); the API refuses over 10,000 characters.
    with pytest.raises(CommandError, match="the query has 10001 characters; at most 10000"):
        run("search", "a" * 10_001, collection="docs")


@pytest.mark.parametrize(
    "argv",
    [
        [b"search", b"--collection", b"sam\xffple", b"a query"],
        [b"search", b"--collection", b"sample", b"caf\xe9"],
        [b"create_collection", b"caf\xe9"],
        [b"create_api_token", b"ad\xffmin", b"--name", b"x"],
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_naming_it_before_any_query(argv):
    """Typed in a Latin-1 terminal: each was a UnicodeEncodeError traceback from the database driver (search's
    query a misleading "embedding the query failed")."""
    bad = next(i for i, a in enumerate(argv, 1) if b"\xff" in a or b"\xe9" in a)
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *argv], capture_output=True, env={**os.environ}, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.decode("utf-8", "replace").strip() == (
        f"embedportal: argument {bad} ({argv[bad - 1]!r}) is not UTF-8 text; names, ids and queries are UTF-8 "
        "(a terminal in another encoding? set a UTF-8 locale and type it again)"
    )
