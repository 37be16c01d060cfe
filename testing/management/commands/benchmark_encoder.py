"""The local model's runtimes side by side: chunks/s (and per CPU-second) encoding chunks of 1000
characters of the repository's docs in batches of 32 (OpenVINO infers them 8 at a time on two streams, as in
the pipeline), cosine to PyTorch (mean / min), peak RSS.
Each runtime runs in its own child process (PyTorch's OpenMP pool never shares a process, and
each RSS is its own); OpenVINO precisions run from their exports (made if missing)."""

from __future__ import annotations

import functools
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline import encoder

VARIANTS = ("torch/f32", *(f"openvino/{p}" for p in encoder.PRECISIONS))


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunks", type=int, default=600)
        parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
        parser.add_argument("--child", metavar="VARIANT", help="Measure one variant in this process (each child does)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["chunks"] < 32:
            raise CommandError("--chunks must be at least 32")
        if o["child"]:
            self.stdout.write(json.dumps(measure(o["child"], o["chunks"])))
            return
        variants = [v.strip() for v in o["variants"].split(",")]
        if unknown := set(variants) - set(VARIANTS):
            raise CommandError(f"unknown variants {sorted(unknown)}: use {', '.join(VARIANTS)}")
        # The reference first: its vectors are what the others are compared with.
        results = [self.child("torch/f32", o["chunks"])]
        results += [self.child(v, o["chunks"]) for v in variants if v != "torch/f32"]
        reference = np.array(results[0].pop("vectors"))
        for result in results[1:]:
            cosines = (np.array(result.pop("vectors")) * reference).sum(axis=1)
            result.update(cosine_mean=round(float(cosines.mean()), 5), cosine_min=round(float(cosines.min()), 5))
        for result in results:
            result["x_torch"] = round(result["chunks_per_second"] / results[0]["chunks_per_second"], 2)
            # On a machine shared with other jobs the wall clock follows their load; CPU time does not.
            result["x_torch_cpu"] = round(result["chunks_per_cpu_second"] / results[0]["chunks_per_cpu_second"], 2)
        results = [r for r in results if r["variant"] in variants]
        if o["json"]:
            self.stdout.write(json.dumps(results, indent=2))
            return
        self.stdout.write(f"{o['chunks']} chunks of 1000 characters, batches of 32")
        for r in results:
            self.stdout.write(
                f"{r['variant']:<14} {r['chunks_per_second']:6.1f} chunks/s ({r['x_torch']:.2f}x torch), "
                f"{r['chunks_per_cpu_second']:6.1f} per CPU-second ({r['x_torch_cpu']:.2f}x), cosine to torch mean "
                f"{r.get('cosine_mean', 1):.5f} min {r.get('cosine_min', 1):.5f}, peak RSS {r['peak_rss_mb']:.0f} MB"
            )

    def child(self, variant: str, count: int) -> dict[str, Any]:
        command = [sys.executable, "-m", "django", "benchmark_encoder", "--child", variant, "--chunks", str(count)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=settings.BASE_DIR)
        if done.returncode:
            raise CommandError(f"{variant}: {done.stderr.strip()[-1000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def measure(variant: str, count: int) -> dict[str, Any]:
    runtime, precision = variant.split("/")
    if runtime == "torch":
        encode = functools.partial(encoder.reference().model.encode, batch_size=32, normalize_embeddings=True)
    else:
        encode = encoder.OpenVinoEncoder(encoder.ensure_export(precision), precision).encode
    texts = [text for _, text in encoder.corpus_chunks(["README.md", "docs/**/*.md"]) if len(text) == 1000]
    texts = (texts * (count // len(texts) + 1))[:count]
    encode(texts[:32])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    vectors = encode(texts)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "variant": variant,
        "chunks_per_second": round(count / wall, 1),
        "chunks_per_cpu_second": round(count / cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "vectors": np.asarray(vectors).round(6).tolist(),
    }
