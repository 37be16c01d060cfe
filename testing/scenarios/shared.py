"""Steps several scenario modules share."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families

from pipeline.choices import DocumentStatus, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.failures import record_failure
from testing.context import Context


def scrape(ctx: Context) -> dict[str, Any]:
    """GET /metrics as Prometheus would; fails when it does not parse."""
    response = ctx.client().get("/metrics")
    ctx.check(response.status_code == 200, f"/metrics answered {response.status_code}")
    try:
        return {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    except ValueError as exc:
        ctx.fail(f"/metrics does not parse as the Prometheus text format: {exc}")


def sample(families: dict[str, Any], family: str, suffix: str = "", **labels: str) -> float:
    """The sum of a scraped family's samples named `family + suffix` that carry `labels`."""
    found = families.get(family)
    return sum(
        s.value
        for s in (found.samples if found else [])
        if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    )


def enqueue_jsonl(collection: Collection, documents: list[Any]) -> str:
    """What `manage.py enqueue` printed for a JSONL file of these documents (a string is a line as is)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_text("".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in documents))
        out = StringIO()
        call_command("enqueue", str(path), collection=collection.name, no_progress=True, stdout=out, stderr=StringIO())
    return out.getvalue()


def stale_document(ctx: Context, suffix: str, external_id: str, text: str, changed: datetime) -> Collection:
    """A paused collection with a 60 s freshness SLA holding one document changed at the source at `changed`,
    the collection made an hour before (older content's SLA clock starts at the collection's creation)."""
    collection = ctx.collection(suffix, freshness_sla=timedelta(seconds=60), paused=True)
    Collection.objects.filter(pk=collection.pk).update(created_at=changed - timedelta(hours=1))
    enqueue(collection, [IncomingDocument(external_id, text, changed)])
    return collection


def requeue_candidates(collection: Collection, now: datetime) -> list[str]:
    """What detect_stale() would requeue at `now`, scoped to this collection (it runs over all of them)."""
    from reprocessing import staleness  # looked up at each call: tests/testing breaks it to see scenarios fail

    return list(staleness.requeue_candidates(now).filter(collection=collection).values_list("external_id", flat=True))


def fail_document(document: Document, error_type: str, message: str, now: datetime) -> None:
    """Fail the document as a worker does at `now`: marked failed and its failure recorded, together."""
    with transaction.atomic():
        Document.objects.filter(pk=document.pk).update(status=DocumentStatus.FAILED)
        record_failure(document.pk, PipelineError(error_type, Stage.EMBEDDING, message), message, now=now)
