"""LiteLLM's `local/` provider (a CustomLLM): `local/all-MiniLM-L6-v2` (384 dims, the default) and
`local/hash-<dims>`, deterministic NON-semantic pseudo-vectors for benchmarks and plumbing tests."""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import os
import re
import time
from typing import Any

import numpy as np

from pipeline import chunking, encoder
from pipeline.choices import ChunkUnit

LOCAL_MINILM = "all-MiniLM-L6-v2"
LOCAL_MODEL = f"local/{LOCAL_MINILM}"  # the bundled model (pipeline.encoder)
MINILM_DIMENSIONS = 384
HASH_MODEL = re.compile(r"^hash-(\d{1,5})$")


def provider_of(model: str) -> str:
    """The provider label of a LiteLLM model string: its prefix (a bare model name is OpenAI's)."""
    prefix, slash, _ = model.partition("/")
    return prefix if slash else "openai"


class UnknownLocalModel(ValueError):
    pass


def known_dimensions(model: str) -> int | None:
    """Dimensions of a local model string (None for other providers: ask the provider)."""
    provider, _, name = model.partition("/")
    if provider != "local":
        return None
    if name == LOCAL_MINILM:
        if not chunking.minilm_installed():  # an image built with LOCAL_MODEL=false has no package
            raise UnknownLocalModel(
                f"{LOCAL_MODEL} is not installed here (an image built with LOCAL_MODEL=false): "
                "use a provider model or local/hash-<dims>"
            )
        return MINILM_DIMENSIONS
    if match := HASH_MODEL.match(name):
        return int(match.group(1))
    raise UnknownLocalModel(f"unknown local model {model!r}: use local/{LOCAL_MINILM} or local/hash-<dims>")


def input_tokens(model: str) -> int | None:
    """How many tokens of one input `model` reads, where known: the bundled model's, else LiteLLM's
    model map (max_input_tokens); None otherwise (hash models read everything)."""
    if model == LOCAL_MODEL:
        return encoder.MAX_TOKENS
    if model.startswith("local/"):
        return None
    import litellm

    try:
        return litellm.get_model_info(model).get("max_input_tokens")
    except Exception:  # noqa: BLE001 - a model LiteLLM's map does not know: no limit to check
        return None


def size_problem(model: str, unit: str, size: int) -> str | None:
    """A chunk longer than the model reads is cut there (the rest never embedded, silently) or refused."""
    limit = input_tokens(model) if unit == ChunkUnit.TOKENS else None
    if limit and size > limit:
        return f"{model} reads at most {limit} tokens of an input: a {size}-token chunk would be cut or refused"
    return None


def hash_vectors(texts: list[str], dims: int) -> np.ndarray:
    out = np.empty((len(texts), dims), dtype=np.float32)
    for i, text in enumerate(texts):
        raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(dims * 2)
        v = np.frombuffer(raw, dtype=np.int16).astype(np.float32)
        out[i] = v / (np.linalg.norm(v) or 1.0)
    return out


def local_vectors(model: str, texts: list[str]) -> np.ndarray:
    model = f"local/{model.removeprefix('local/')}"  # LiteLLM passes the name without its provider
    dims = known_dimensions(model)
    return encoder.current().encode(texts) if model == LOCAL_MODEL else hash_vectors(texts, dims)


def _handler_class() -> type:
    from litellm import CustomLLM
    from litellm.types.utils import Usage

    class LocalEmbeddingProvider(CustomLLM):
        def embedding(self, model: str, input: list, model_response: Any, *args: Any, **kwargs: Any) -> Any:
            texts = [input] if isinstance(input, str) else list(input)
            vectors = local_vectors(model, texts)
            model_response.model = f"local/{model.removeprefix('local/')}"
            model_response.object = "list"
            model_response.data = [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors.tolist())
            ]
            tokens = sum(len(t) for t in texts) // 4
            model_response.usage = Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
            return model_response

        async def aembedding(self, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.embedding, *args, **kwargs)

    return LocalEmbeddingProvider


# The pid of the process that loaded LiteLLM for forked workers to share (see preload()).
preloaded_by: int | None = None


@functools.cache
def register() -> None:
    import litellm

    # No "Give Feedback / Get Help" banners on provider errors: ours are classified and scrubbed.
    litellm.suppress_debug_info = True
    handler = _handler_class()()
    litellm.custom_provider_map = [
        *[p for p in litellm.custom_provider_map if p.get("provider") != "local"],
        {"provider": "local", "custom_handler": handler},
    ]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


def load(model: str) -> float:
    """Load what a call to `model` needs (LiteLLM, a local model's weights); the seconds that took. Callers
    timing a model call this first, so a first call is not mistaken for a slow model."""
    started = time.perf_counter()
    register()
    if model == LOCAL_MODEL:
        encoder.current().warm()
    return time.perf_counter() - started


def preload(local_model: bool = False) -> None:
    """Load LiteLLM (and with `local_model` the local encoder) in a process about to fork workers, shared
    copy-on-write: docs/architecture.md, `pipeline/providers.py`."""
    global preloaded_by
    register()
    if local_model and chunking.minilm_installed():
        encoder.current()
    gc.collect()
    gc.freeze()
    preloaded_by = os.getpid()
