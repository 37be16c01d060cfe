from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from embedportal.shutdown import stop_on_signals
from pipeline import signals
from pipeline.pipeline import EmbeddingIngestionPipeline


class Command(BaseCommand):
    help = "Run an embedding worker: claim, chunk, embed and store documents from the queue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Drain what is queued now, then exit")
        parser.add_argument("--batch", type=int, help="Documents claimed at a time")
        parser.add_argument("--lease-seconds", type=int, help="Lease length; an expired lease is re-claimable")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args: Any, **o: Any) -> None:
        signals.worker_starting.send(sender=self.__class__)
        pipeline = EmbeddingIngestionPipeline(claim_batch=o["batch"], lease_seconds=o["lease_seconds"])
        if o["once"]:
            report = pipeline.drain()
        else:
            # SIGTERM/SIGINT: finish the batch in hand, give back leases, exit.
            stop = stop_on_signals()
            self.stdout.write(f"Worker {pipeline.worker_id} started; Ctrl-C to stop.")
            report = pipeline.run_forever(stop)
        if o["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(
                f"Embedded {report.embedded} document(s) into {report.chunks} chunk(s); failed {report.failed}."
            )
