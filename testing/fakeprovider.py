"""Local OpenAI-compatible /v1/embeddings (and Cohere /v1/rerank) servers injecting faults, driving LiteLLM over
real HTTP for the tests, benchmarks and game days (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.providers import hash_vectors

CHAOS_FAULTS = ("500", "429", "timeout", "nan", "too_few")
Address = tuple[str, int]
LOOPBACK: Address = ("127.0.0.1", 0)  # a free port


class FakeProvider:
    """A threaded HTTP server (by default on a free loopback port) answering as `mode` says until stopped."""

    def __init__(
        self, dims: int = 8, timeout_seconds: float = 120.0, record: bool = True, address: Address = LOOPBACK
    ) -> None:
        self.dims = dims
        self.mode = "ok"
        self.delay = 0.0
        self.retry_after = "1"
        # A per-minute token quota (about four characters a token): a larger request is answered 429, always.
        self.tokens_per_minute: int | None = None
        # How long a "timeout" answer takes: longer than the client's timeout.
        self.timeout_seconds = timeout_seconds
        self.record = record
        # Modes for the next requests, in order, before `mode` applies again (e.g. ["500", "ok"]).
        self.script: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()  # answers given, by mode
        # Requests being answered now, and the most at once so far (a client's concurrency).
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                inputs = body.get("input") or body.get("documents") or []
                inputs = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
                # One lock for recording the request and picking its answer: concurrent
                # requests see `script` consumed in the order they are recorded.
                with provider.lock:
                    if provider.record:
                        auth = self.headers.get("authorization")
                        provider.requests.append({"inputs": inputs, "auth": auth, "body": body, "at": time.monotonic()})
                    mode = provider.pick(inputs)
                    provider.calls[mode] += 1
                    provider.in_flight += 1
                    provider.max_in_flight = max(provider.max_in_flight, provider.in_flight)
                try:
                    provider.answer(self, mode, inputs, body)
                finally:
                    with provider.lock:
                        provider.in_flight -= 1

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        # stop() waits for serve_forever's loop to see the request, up to one poll interval: the
        # default 0.5 s was paid at every stop (each test, scenario and benchmark run's provider).
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> Any:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): nothing to answer

    @property
    def last_key(self) -> str:
        """The API key the last recorded request carried (a "401" answer echoes it)."""
        return (self.requests[-1]["auth"] or "").removeprefix("Bearer ") if self.requests else ""

    def pick(self, inputs: list[str]) -> str:
        """The answer for a request (called under `lock`): an input's "POISON:<mode>", else the script's or `mode`."""
        mode = self.script.pop(0) if self.script else self.mode
        if self.tokens_per_minute and sum(len(text) // 4 + 1 for text in inputs) > self.tokens_per_minute:
            mode = "429"
        return next((text.split("POISON:", 1)[1].split()[0] for text in inputs if "POISON:" in text), mode)

    def answer(self, h: BaseHTTPRequestHandler, mode: str, inputs: list[str], body: dict) -> None:
        time.sleep(self.delay + {"slow": 30, "timeout": self.timeout_seconds}.get(mode, 0))
        errors = {
            "500": (500, "internal error"),
            "503": (503, "service unavailable"),
            "429": (429, "rate limited"),
            # Like real providers, echo (part of) the key: the pipeline must scrub it.
            "401": (401, f"Incorrect API key provided: {h.headers.get('authorization', '').removeprefix('Bearer ')}"),
            "400": (400, "maximum context length exceeded"),
            "poison": (400, "invalid input"),
        }
        if mode in errors:
            status, message = errors[mode]
            retry_after = {"Retry-After": self.retry_after} if status == 429 else {}
            return self._send(h, status, {"error": {"message": message, "type": "error", "code": status}}, retry_after)
        if h.path.rstrip("/").endswith("/rerank"):
            return self._send(h, 200, rerank_answer(str(body.get("query", "")), inputs, body.get("top_n")))
        dims = self.dims + 1 if mode == "wrong_dims" else self.dims
        fill = {"nan": math.nan, "zero": 0.0}.get(mode)
        # local/hash-N's vectors for the same texts.
        vectors = hash_vectors(inputs, dims).tolist() if fill is None else [[fill] * dims for _ in inputs]
        if mode == "too_few":
            vectors = vectors[:-1]
        if mode == "no_data":  # a 200 of another shape (a wrong api_base answering its own JSON)
            return self._send(h, 200, {"object": "list", "model": "fake", "internal_config": {"x": 1}})
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        self._send(h, 200, {"object": "list", "data": data, "model": "fake", "usage": usage})


def rerank_answer(query: str, documents: list[str], top_n: int | None = None) -> dict:
    """A Cohere /v1/rerank answer ranking `documents` by the share of the query's words each holds."""
    words = set(re.findall(r"\w+", query.lower()))
    scores = [len(words & set(re.findall(r"\w+", d.lower()))) / (len(words) or 1) for d in documents]
    order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[: top_n or len(documents)]
    results = [{"index": i, "relevance_score": scores[i]} for i in order]
    return {"id": "fake-rerank", "results": results, "meta": {"billed_units": {"search_units": 1}}}


class ChaosProvider(FakeProvider):
    """Fails `failure_rate` of calls with a seeded fault from CHAOS_FAULTS; counts requests, records none."""

    def __init__(self, dims: int = 16, failure_rate: float = 0.2, seed: int = 0, slow_seconds: float = 1.0) -> None:
        super().__init__(dims=dims, timeout_seconds=slow_seconds, record=False)
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.retry_after = "0"

    def pick(self, inputs: list[str]) -> str:
        if any("POISON" in t for t in inputs):
            return "poison"
        return self.random.choice(CHAOS_FAULTS) if self.random.random() < self.failure_rate else "ok"
