"""The local model's runtimes (pipeline.encoder): the OpenVINO export serves without torch and agrees
with PyTorch; the faithfulness gate refuses an unfaithful variant, which then falls back to PyTorch
and says so; the runtime is recorded on the collection and shown in the admin and on /metrics.

PyTorch is never run in this process: a child forked after a torch encode hangs (OpenMP), and
later tests fork workers. Where the reference must run, a child process runs it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from pipeline import backfill, encoder, providers, quality
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search
from tests.conftest import database_url, manage
from tests.pipeline.test_quality import CORPUS, GOLDEN

TEXTS = ["How do I reset my password?", "Der Zug fährt um 14:32 ab.", "kubectl rollout restart deployment/x"]
EMBED = f"""
import json, sys, litellm
from pipeline import encoder, providers
providers.register()
answer = litellm.embedding(model="local/all-MiniLM-L6-v2", input={TEXTS!r})
print(json.dumps({{"torch": "torch" in sys.modules, "runtime": encoder.label(encoder.current()),
                  "vectors": [d["embedding"] for d in answer.data]}}))
"""


def embed_in_child(**env: str) -> dict:
    child = manage("shell", "-c", EMBED, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def fresh_encoder():
    """This process chooses its encoder again, and afterwards returns to the one it had."""
    kept = encoder._current
    encoder._current = None
    yield
    encoder._current = kept


def test_openvino_serves_without_torch_and_agrees_with_pytorch() -> None:
    served = embed_in_child()
    reference = embed_in_child(EMBEDPORTAL_LOCAL_RUNTIME="torch")

    assert served["runtime"].split("/") in [["openvino", p] for p in encoder.preferred_precisions(encoder.cpu_flags())]
    assert served["torch"] is False, "a process serving the OpenVINO export must not import torch"
    assert reference["runtime"] == "torch/f32" and reference["torch"] is True
    cosines = (np.array(served["vectors"]) * np.array(reference["vectors"])).sum(axis=1)
    assert cosines.min() >= encoder.MIN_COSINE


def export_in_child(precision: str, **env: str) -> dict:
    return finish_export(start_export(precision, **env))


def start_export(precision: str, **env: str) -> subprocess.Popen:
    return manage("export_encoder", "--precision", precision, "--json", env=env, stdout=subprocess.PIPE, text=True)


def finish_export(child: subprocess.Popen) -> dict:
    out, _ = child.communicate(timeout=900)
    assert child.returncode == 0
    return json.loads(out)


def test_the_export_is_made_once_and_records_its_gate() -> None:
    report = export_in_child("f32")
    path = Path(report["path"])

    assert path == encoder.export_dir("f32") and (path / "model.xml").exists()
    assert report["passed"] and report["mean_cosine"] >= 0.9999 and report["probes"] == len(encoder.probes())
    assert report["retrieval"]["hits"] >= report["reference_retrieval"]["hits"] > 0
    made = (path / "model.bin").stat().st_mtime_ns
    assert export_in_child("f32") == report and (path / "model.bin").stat().st_mtime_ns == made
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".export-")], "no temporary export left"


def test_concurrent_exports_make_one_export_and_leave_no_half_written_one(tmp_path: Path) -> None:
    children = [start_export("f32", EMBEDPORTAL_ENCODER_DIR=str(tmp_path)) for _ in range(2)]
    first, second = (finish_export(child) for child in children)

    # One made it; the other waited on the lock and read the finished export's gate.
    assert first == second and first["passed"]
    assert [p.name for p in tmp_path.iterdir() if p.name != ".export.lock"] == [Path(first["path"]).name]
    assert (Path(first["path"]) / "model.xml").exists() and (Path(first["path"]) / "gate.json").exists()


def test_the_gate_refuses_a_variant_that_cuts_long_inputs() -> None:
    faithful = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")
    cut = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")
    cut.tokenizer.enable_truncation(8)  # a real fault: long texts lose their ends

    report = encoder.gate(cut.encode, faithful.encode)

    assert not report["passed"]
    assert report["min_cosine"] < encoder.MIN_COSINE
    assert any(p.startswith("min cosine") for p in report["problems"])
    assert encoder.gate(faithful.encode, faithful.encode)["passed"]


def test_an_export_that_failed_the_gate_falls_back_to_pytorch_and_says_so(
    tmp_path: Path, fresh_encoder, caplog, admin_client, db
) -> None:
    real = encoder.ensure_export("f32")
    with override_settings(EMBEDPORTAL_ENCODER_DIR=tmp_path, EMBEDPORTAL_LOCAL_PRECISION="f32"):
        failed = encoder.export_dir("f32")
        shutil.copytree(real, failed)
        report = encoder.gate_report(real) | {"passed": False, "problems": ["min cosine 0.9012 < 0.98"]}
        (failed / "gate.json").write_text(json.dumps(report))
        with caplog.at_level(logging.WARNING, logger="pipeline.encoder"):
            chosen = encoder.current()  # loads PyTorch, runs nothing on it

        assert chosen.runtime == "torch"
        assert "OpenVINO f32 failed the faithfulness gate (min cosine 0.9012 < 0.98); using PyTorch" in caplog.text
        collection = create_collection(name="minilm", model="local/all-MiniLM-L6-v2")
        page = admin_client.get(f"/admin/pipeline/collection/{collection.pk}/change/").content.decode()
        assert "torch/f32 serves (OpenVINO f32 failed the faithfulness gate" in page


def test_the_worker_records_the_runtime_on_the_collection_and_metrics_show_it(db, client) -> None:
    collection = create_collection(name="minilm", model="local/all-MiniLM-L6-v2", chunk_size=64, chunk_overlap=8)
    enqueue(collection, [IncomingDocument("a", "Operators watch the queue depth and the freshness lag.")])

    EmbeddingIngestionPipeline().run_once()

    collection.refresh_from_db()
    served = encoder.current()
    assert served.runtime == "openvino"
    assert collection.local_encoder == encoder.label(served)
    labels = f'precision="{served.precision}",runtime="openvino"'
    assert f"embedding_pipeline_local_encoder_info{{{labels}}} 1.0" in client.get("/metrics").content.decode()


def test_batches_sorted_by_length_return_the_vectors_in_the_texts_order() -> None:
    served = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")
    # Long and short texts mixed, more than STREAMS batches: each batch pads to its own longest.
    texts = [f"{'word ' * (37 * i % 230)}text number {i}" for i in range(encoder.BATCH * encoder.STREAMS + 5)]

    together = served.encode(texts)

    assert together.shape == (len(texts), encoder.DIMS)
    assert np.allclose(together, np.stack([served.encode([text])[0] for text in texts]), atol=1e-5)
    assert served.encode([]).shape == (0, encoder.DIMS)


def _encode_in_child(served: encoder.OpenVinoEncoder, texts: list[str], results: multiprocessing.Queue) -> None:
    results.put(served.encode(texts))


def test_a_forked_child_compiles_its_own_inference_requests() -> None:
    served = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")
    before = served.encode(TEXTS)  # this process's requests exist: the child must not use them
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_encode_in_child, args=(served, TEXTS, results), daemon=True)
    child.start()

    in_child = results.get(timeout=120)
    child.join(timeout=60)

    assert child.exitcode == 0
    assert np.allclose(in_child, before, atol=1e-6)
    assert np.allclose(served.encode(TEXTS), before, atol=1e-6), "the parent's requests still serve it"


def test_auto_precision_tries_what_the_cpu_runs_fastest_first() -> None:
    assert encoder.preferred_precisions({"avx512f", "amx_bf16", "amx_tile", "amx_int8"}) == ["bf16", "f32"]
    assert encoder.preferred_precisions({"avx512f", "avx512_bf16", "avx512_vnni"}) == ["bf16", "f32"]
    assert encoder.preferred_precisions({"avx2", "avx_vnni"}) == ["f32"]


def test_an_unknown_runtime_or_precision_stops_the_process() -> None:
    for name in ("EMBEDPORTAL_LOCAL_RUNTIME", "EMBEDPORTAL_LOCAL_PRECISION"):
        child = manage("check", env={name: "fp4"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = child.communicate(timeout=120)
        assert child.returncode != 0
        assert f"{name} must be" in err and "'fp4'" in err


def test_the_provider_embeds_the_local_model_with_the_chosen_encoder() -> None:
    vectors = providers.local_vectors("local/all-MiniLM-L6-v2", TEXTS)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors, encoder.current().encode(TEXTS))


# --- a change of runtime, per collection --------------------------------------------------------


@pytest.fixture
def topics(db) -> Collection:
    """A local-model collection written by the serving runtime, with golden queries answered by it."""
    collection = create_collection(name="topics", model="local/all-MiniLM-L6-v2")
    enqueue(collection, [IncomingDocument(k, v) for k, v in CORPUS.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == len(CORPUS)
    quality.save_golden(collection, [(g["query"], g["expected"]) for g in GOLDEN[:3]])
    collection.refresh_from_db()
    return collection


def unfaithful() -> encoder.OpenVinoEncoder:
    cut = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")
    cut.tokenizer.enable_truncation(3)  # a real fault: a query keeps only its first word
    return cut


def test_the_collection_gate_refuses_a_runtime_whose_golden_retrieval_drops(topics) -> None:
    faithful = encoder.OpenVinoEncoder(encoder.ensure_export("f32"), "f32")

    report = quality.runtime_gate(topics, unfaithful(), faithful)

    assert not report["passed"] and report["queries"] == 3
    assert report["mrr_at_10"] < report["reference"]["mrr_at_10"] == 1.0
    assert any(p.startswith("mrr_at_10") and p.endswith("on PyTorch") for p in report["problems"])
    assert quality.runtime_gate(topics, faithful, faithful)["passed"]


def test_a_change_of_runtime_that_fails_the_collection_gate_reembeds_without_mixing(topics) -> None:
    served = encoder.current()
    # The vectors were written by the other OpenVINO precision (never PyTorch here: it must not run in
    # this process), and the new runtime fails the collection's gate.
    old = "openvino/f32" if served.precision == "bf16" else "openvino/bf16"
    Collection.objects.filter(pk=topics.pk).update(local_encoder=old)
    gate = quality.runtime_gate(topics, unfaithful(), encoder.for_label(old))

    assert backfill.runtime_changed(Collection.objects.get(pk=topics.pk), encoder.label(served), gate)

    during = Collection.objects.get(pk=topics.pk)
    assert during.building_generation == topics.generation + 1 and during.serving["local_encoder"] == old
    assert during.runtime_gate["reembedded"] and during.runtime_gate["from"] == old
    # Zero downtime: search reads the old generation, its queries embedded by the runtime that wrote it.
    assert search(during, GOLDEN[1]["query"], 1, by_document=True)[0].document_id == "cats"
    assert EmbeddingIngestionPipeline().drain().embedded == len(CORPUS)
    after = Collection.objects.get(pk=topics.pk)
    assert (after.generation, after.building_generation, after.serving) == (topics.generation + 1, None, None)
    assert after.local_encoder == encoder.label(served)
    assert set(Chunk.objects.filter(collection=after).values_list("generation", flat=True)) == {after.generation}


@pytest.mark.django_db(transaction=True)
def test_a_change_of_runtime_that_passes_the_collection_gate_keeps_the_vectors(
    topics, monkeypatch, admin_client
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url())  # the worker's gate runs in a child process
    Collection.objects.filter(pk=topics.pk).update(local_encoder="torch/f32")  # written while PyTorch served
    enqueue(topics, [IncomingDocument("tea", "Green tea is brewed from the leaves of Camellia sinensis.")])

    EmbeddingIngestionPipeline().run_once()

    after = Collection.objects.get(pk=topics.pk)
    served = encoder.label(encoder.current())
    assert after.local_encoder == served and after.runtime_gate["from"] == "torch/f32"
    assert after.runtime_gate["passed"] and not after.runtime_gate["reembedded"]
    assert after.runtime_gate["runtime"] == served and after.runtime_gate["queries"] == 3
    assert after.runtime_gate["recall_at_5"] >= after.runtime_gate["reference"]["recall_at_5"]
    assert (after.generation, after.building_generation) == (topics.generation, None), "no re-embed"
    assert Chunk.objects.filter(collection=after, document__external_id="tea").exists()
    page = admin_client.get(f"/admin/pipeline/collection/{after.pk}/change/").content.decode()
    assert f"last change torch/f32 -&gt; {served} (golden queries: recall@5 1.0 vs PyTorch 1.0" in page
    assert "vectors kept" in page


def test_the_collection_gate_needs_a_collection_with_golden_queries_and_a_precision(topics, hash_collection) -> None:
    for args in (
        ["--collection", "nope"],
        ["--collection", "topics"],
        ["--collection", "hashes", "--precision", "f32"],
    ):
        with pytest.raises(CommandError, match="needs a collection with golden queries"):
            call_command("export_encoder", *args)
