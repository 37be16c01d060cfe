"""A chaos embedding provider: an OpenAI-compatible /v1/embeddings server that fails a share
of calls with mixed faults, for exercising failure handling end to end (benchmark_failures,
game days against a staging deployment).

Faults: 500, 429 (Retry-After), timeout (answers after `slow_seconds`), NaN vectors, and
one vector too few. Inputs containing `POISON` always get a 400, so a document carrying it
can never be embedded. Vectors are deterministic per text.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FAULTS = ("500", "429", "timeout", "nan", "too_few")


def vector_for(text: str, dims: int) -> list[float]:
    raw = hashlib.shake_256(text.encode()).digest(dims * 2)
    v = np.frombuffer(raw, dtype=np.int16).astype(np.float64)
    return (v / np.linalg.norm(v)).tolist()


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, serving `handler` until stopped."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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


class ChaosProvider(LoopbackServer):
    """Fails `failure_rate` of calls with a fault drawn uniformly from FAULTS (seeded)."""

    def __init__(self, dims: int = 16, failure_rate: float = 0.2, seed: int = 0, slow_seconds: float = 1.0) -> None:
        self.dims = dims
        self.failure_rate = failure_rate
        self.slow_seconds = slow_seconds
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                inputs = body.get("input") or []
                inputs = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
                provider.answer(self, provider.pick(inputs), inputs)

        super().__init__(Handler)

    def pick(self, inputs: list[str]) -> str:
        with self.lock:
            if any("POISON" in t for t in inputs):
                mode = "poison"
            elif self.random.random() < self.failure_rate:
                mode = self.random.choice(FAULTS)
            else:
                mode = "ok"
            self.calls[mode] += 1
        return mode

    def answer(self, h: BaseHTTPRequestHandler, mode: str, inputs: list[str]) -> None:
        if mode == "timeout":
            time.sleep(self.slow_seconds)
        errors = {"500": (500, "internal error"), "429": (429, "rate limited"), "poison": (400, "invalid input")}
        if mode in errors:
            status, message = errors[mode]
            headers = {"Retry-After": "0"} if status == 429 else {}
            self._send(h, status, {"error": {"message": message, "type": "error", "code": status}}, headers)
            return
        vectors = [vector_for(t, self.dims) for t in inputs]
        if mode == "nan":
            vectors[0] = [float("nan")] * self.dims
        if mode == "too_few":
            vectors = vectors[:-1]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        self._send(h, 200, {"object": "list", "data": data, "model": "chaos", "usage": usage})
