"""A local OpenAI-compatible embedding server for driving LiteLLM over real HTTP.

`FakeProvider.mode` picks the answer for every request (`script`, for the next few):
"ok", "slow", "500", "429", "timeout", "401", "400", "wrong_dims", "nan", "too_few", "zero". Inputs containing a
marker `POISON:<mode>` get that mode's answer for the whole request they are in, which
lets a test plant one bad document in a batch.

Every request received is appended to `requests`: its inputs, Authorization header and
whole JSON body (what LiteLLM really sent, extra parameters included).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from reprocessing.chaos import LoopbackServer, vector_for


class FakeProvider(LoopbackServer):
    def __init__(self, dims: int = 8) -> None:
        self.dims = dims
        self.mode = "ok"
        self.delay = 0.0
        self.retry_after = "1"
        # Modes for the next requests, in order, before `mode` applies again (e.g. ["500", "ok"]).
        self.script: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                inputs = body.get("input") or []
                if isinstance(inputs, str):
                    inputs = [inputs]
                with provider.lock:
                    provider.requests.append(
                        {"inputs": inputs, "auth": self.headers.get("authorization"), "body": body}
                    )
                    mode = provider.script.pop(0) if provider.script else provider.mode
                for text in inputs:
                    if "POISON:" in str(text):
                        mode = str(text).split("POISON:", 1)[1].split()[0]
                        break
                provider.answer(self, mode, inputs)

        super().__init__(Handler)

    def answer(self, h: BaseHTTPRequestHandler, mode: str, inputs: list) -> None:
        if self.delay:
            time.sleep(self.delay)
        if mode == "slow":
            time.sleep(30)
        if mode == "timeout":
            time.sleep(120)
        errors = {
            "500": (500, "internal error"),
            "429": (429, "rate limited"),
            # Like real providers, echo (part of) the key: the pipeline must scrub it.
            "401": (401, f"Incorrect API key provided: {h.headers.get('authorization', '').removeprefix('Bearer ')}"),
            "400": (400, "maximum context length exceeded"),
        }
        if mode in errors:
            status, message = errors[mode]
            self._send(
                h,
                status,
                {"error": {"message": message, "type": "error", "code": status}},
                {"Retry-After": self.retry_after} if status == 429 else {},
            )
            return
        dims = self.dims + 1 if mode == "wrong_dims" else self.dims
        vectors = [vector_for(str(t), dims) for t in inputs]
        if mode == "nan":
            vectors = [[math.nan] * dims for _ in inputs]
        if mode == "zero":
            vectors = [[0.0] * dims for _ in inputs]
        if mode == "too_few":
            vectors = vectors[:-1]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        self._send(
            h,
            200,
            {
                "object": "list",
                "data": data,
                "model": "fake",
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            },
        )
