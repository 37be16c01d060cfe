"""Outage drill: one collection's provider down, another healthy, one real `run_pipeline` worker.

    .venv/bin/python scripts/outage_drill.py [--mode 503|refused] [--outage-seconds 40]

Runs against a scratch embedded PostgreSQL in a temporary data directory (never your database),
with EMBEDPORTAL_CIRCUIT_OPEN_SECONDS=5 unless set. Prints JSON figures: how long the healthy
collection's documents took with the other provider down and without it, how many calls the
down provider received while down (per breaker interval), and how long the backlog took once
it came back. Wall-clock figures: a drill for the notes, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["503", "refused"], default="503")
    parser.add_argument("--outage-seconds", type=float, default=40.0)
    parser.add_argument("--documents", type=int, default=20)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="outage-drill-")
    os.environ.pop("DATABASE_URL", None)
    os.environ.update(EMBEDPORTAL_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="embedportal.settings")
    os.environ.setdefault("EMBEDPORTAL_CIRCUIT_OPEN_SECONDS", "5")
    os.environ.update(EMBEDPORTAL_CLAIM_BATCH="20", EMBEDPORTAL_IDLE_SLEEP="0.2")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from pipeline.collections import create_collection
    from pipeline.models import Document, ProviderCircuit
    from pipeline.queue import IncomingDocument, enqueue
    from testing.fakeprovider import FakeProvider

    call_command("migrate", verbosity=0)
    down, healthy = FakeProvider(dims=8).start(), FakeProvider(dims=8).start()
    down.mode = "503"
    fields = dict(
        model="openai/fake", dimensions=8, chunk_unit="characters", chunk_size=200, chunk_overlap=0, batch_size=4
    )
    down_base = down.api_base if args.mode == "503" else "http://127.0.0.1:9/v1"
    broken = create_collection(name="down", api_base=down_base, **fields)
    fine = create_collection(name="healthy", api_base=healthy.api_base, **fields)

    def embedded(collection, prefix: str = "") -> int:
        return Document.objects.filter(collection=collection, status="embedded", external_id__startswith=prefix).count()

    def wait(predicate, timeout: float = 120.0) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise SystemExit("drill timed out")
            time.sleep(0.05)
        return time.monotonic() - started

    def add(collection, prefix: str) -> None:
        enqueue(collection, [IncomingDocument(f"{prefix}{i}", f"{prefix} text {i}") for i in range(args.documents)])

    worker = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "run_pipeline"], cwd=ROOT, env=os.environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    figures: dict = {"mode": args.mode, "documents_per_collection": args.documents}
    try:
        # Warm the worker (LiteLLM import, first connection), then the baseline: the healthy collection alone.
        enqueue(fine, [IncomingDocument("warm", "warm up")])
        wait(lambda: embedded(fine, "warm") == 1)
        add(fine, "base-")
        figures["healthy_alone_seconds"] = round(wait(lambda: embedded(fine, "base-") == args.documents), 2)
        # The outage: both collections get work at once, the down one first.
        add(broken, "d-")
        add(fine, "h-")
        figures["healthy_during_outage_seconds"] = round(wait(lambda: embedded(fine, "h-") == args.documents), 2)
        started, calls_at_open = time.monotonic(), None
        wait(lambda: ProviderCircuit.objects.filter(state="open").exists())
        calls_at_open = len(down.requests)
        time.sleep(args.outage_seconds)
        # More healthy work while the circuit is open.
        add(fine, "late-")
        figures["healthy_while_circuit_open_seconds"] = round(
            wait(lambda: embedded(fine, "late-") == args.documents), 2
        )
        figures["down_provider_calls_until_open"] = calls_at_open
        figures["down_provider_calls_while_open"] = len(down.requests) - calls_at_open
        figures["outage_seconds_observed"] = round(time.monotonic() - started, 1)
        figures["breaker_interval_seconds"] = float(os.environ["EMBEDPORTAL_CIRCUIT_OPEN_SECONDS"])
        figures["failed_documents"] = Document.objects.filter(status="failed").count()
        figures["down_documents_pending"] = Document.objects.filter(collection=broken, status="pending").count()
        circuit = ProviderCircuit.objects.get()
        figures["failed_probes"] = circuit.reopenings
        # Every outage error counts here, probes included: the call count when nothing listens.
        figures["down_endpoint_failed_calls"] = circuit.consecutive_failures
        if args.mode == "503":
            down.mode = "ok"
            figures["recovery_seconds"] = round(wait(lambda: embedded(broken) == args.documents, timeout=700), 2)
            figures["down_provider_calls_total"] = len(down.requests)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        down.stop()
        healthy.stop()
        from django.db import connections

        connections.close_all()
        from embedportal.embedded_db import stop_server

        stop_server(Path(data_dir))
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
