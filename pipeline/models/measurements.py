"""What the pipeline measured: per-minute activity, capacity, batch timings, costs, optimizations."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

from pipeline.choices import OptimizationStatus
from pipeline.metrics import CALL_BUCKETS, FRESHNESS_BUCKETS, LATENCY_BUCKETS
from pipeline.models.collection import Collection


class CollectionActivity(models.Model):
    """One collection's pipeline activity in one minute (or, once rolled up, one hour): the durable
    history behind the admin's SLO and capacity figures: arrivals and queue depth written, batch
    outcomes rolled up from BatchTiming (pipeline.history)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    seconds = models.PositiveIntegerField(help_text="60 (a minute) or 3600 (an hour, rolled up).")
    arrived = models.BigIntegerField(default=0, help_text="Documents enqueued (new or changed content).")
    embedded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0, help_text="Documents failed for good (in-batch retries exhausted).")
    # Plain counts per bucket of the Prometheus histograms' bounds (pipeline.metrics), +Inf last.
    latency = ArrayField(
        models.BigIntegerField(), help_text="Per-document total seconds, bucket counts (bulk loads aside)."
    )
    freshness = ArrayField(models.BigIntegerField(), help_text="Embedded minus source modified time, bucket counts.")
    fresh = models.BigIntegerField(
        db_default=0, help_text="Documents embedded within their collection's freshness SLA."
    )
    queue_depth = models.IntegerField(
        null=True, blank=True, help_text="Pending documents (an hour: its highest sample)."
    )
    # The search SLO's window (pipeline.recording.record_search): the search histogram's bounds.
    searches = ArrayField(
        models.BigIntegerField(),
        db_default=models.Value([0] * (len(CALL_BUCKETS) + 1), ArrayField(models.BigIntegerField())),
        help_text="Search seconds, bucket counts.",
    )

    class Meta:
        verbose_name_plural = "collection activity"
        constraints = [
            # The upsert's conflict target; also serves per-collection reads.
            models.UniqueConstraint(
                fields=["collection", "seconds", "start"], name="pipeline_collectionactivity_unique_start"
            ),
            models.CheckConstraint(condition=Q(seconds__in=[60, 3600]), name="pipeline_collectionactivity_seconds"),
            # Changing a histogram's bounds changes these sizes: the history must then be migrated.
            models.CheckConstraint(
                condition=Q(latency__len=len(LATENCY_BUCKETS) + 1), name="pipeline_collectionactivity_latency_size"
            ),
            models.CheckConstraint(
                condition=Q(freshness__len=len(FRESHNESS_BUCKETS) + 1),
                name="pipeline_collectionactivity_freshness_size",
            ),
            models.CheckConstraint(
                condition=Q(searches__len=len(CALL_BUCKETS) + 1), name="pipeline_collectionactivity_searches_size"
            ),
        ]
        indexes = [
            # Window sums over all collections (pipeline.performance.activity), roll-up and pruning (pipeline.history).
            models.Index(fields=["start"], name="pipeline_activity_start"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} @ {self.start:%Y-%m-%d %H:%M} ({self.seconds} s)"


class CapacityMeasurement(models.Model):
    """One `manage.py measure_capacity` run: sustained docs/s per worker count for a model, and the
    Universal Scalability Law fitted to them (pipeline.performance.capacity)."""

    model = models.CharField(max_length=200)
    measured_at = models.DateTimeField(db_index=True)
    documents = models.PositiveIntegerField(help_text="Documents embedded per worker count.")
    chars_per_document = models.PositiveIntegerField()
    # [{"workers": 1, "docs_per_second": 12.3, "documents": 300, "seconds": 24.4, "chunks": 1500}, ...]
    points = models.JSONField()
    usl_lambda = models.FloatField(null=True, blank=True, help_text="USL: docs/s of one worker without contention.")
    usl_sigma = models.FloatField(null=True, blank=True, help_text="USL: contention (serial fraction).")
    usl_kappa = models.FloatField(null=True, blank=True, help_text="USL: coherence (crosstalk) cost.")
    peak_workers = models.FloatField(null=True, blank=True, help_text="N* = sqrt((1 - sigma) / kappa).")
    fit_note = models.TextField(blank=True, help_text="How far the points determine the fit.")
    local_encoder = models.CharField(
        "local model runtime",
        max_length=40,
        blank=True,
        help_text="The local model's runtime/precision during the measurement (pipeline.encoder), e.g. openvino/bf16; "
        "the plan and the optimizer use a local-model figure only while that runtime serves.",
    )

    class Meta:
        ordering = ["-measured_at"]
        get_latest_by = "measured_at"

    def __str__(self) -> str:
        return f"{self.model} at {self.measured_at:%Y-%m-%d %H:%M}"

    def rate(self, workers: int) -> float | None:
        """The measured docs/s at this worker count, if it was measured."""
        return next((p["docs_per_second"] for p in self.points if p["workers"] == workers), None)


# --- performance (pipeline.recording writes, pipeline.history and pipeline.performance read) -------------


class BatchTiming(models.Model):
    """One collection's share of one claimed batch, the one record of its outcome (pipeline.recording):
    each stage's seconds (also each document's: percentiles weight rows by `documents`), cost, stored
    and failed. Rolled up into the minute history (pipeline.history), then pruned after
    EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    worker = models.CharField(max_length=200)
    finished_at = models.DateTimeField()
    documents = models.PositiveIntegerField(help_text="Documents stored by this batch.")
    failed = models.PositiveIntegerField(default=0, help_text="Documents failed for good by this batch.")
    chunks = models.PositiveIntegerField()
    tokens = models.BigIntegerField(default=0, help_text="Tokens the provider billed (its usage figure).")
    cost_usd = models.FloatField(default=0.0, help_text="LiteLLM's price of those tokens (0 for local models).")
    claim_seconds = models.FloatField(help_text="The claim query of the batch (shared by its collections).")
    chunking_seconds = models.FloatField()
    embedding_seconds = models.FloatField()
    storage_seconds = models.FloatField()
    total_seconds = models.FloatField(help_text="Chunking + embedding + storage, as the latency histogram's total.")
    queue_wait_seconds = models.FloatField(help_text="Mean of enqueued -> claimed over the batch's documents.")
    batch_size = models.PositiveIntegerField(help_text="The collection's embedding batch size at the time.")
    freshness = ArrayField(
        models.BigIntegerField(), help_text="Stored documents' embedded minus source modified time, bucket counts."
    )
    fresh = models.PositiveIntegerField(
        db_default=0, help_text="Stored documents whose lag was within the collection's freshness SLA."
    )
    rolled_up = models.BooleanField(default=False, help_text="Added to the minute history (CollectionActivity).")
    bulk = models.BooleanField(
        db_default=False,
        help_text="Claimed during a first load, backfill or re-embed: nobody waits on one of its documents (not "
        "searchable until the load ends, or searchable already), so document_latency leaves it to throughput.",
    )

    class Meta:
        indexes = [
            # The optimizer's windows per collection, and the change evaluator's "batches since".
            models.Index(fields=["collection", "finished_at"], name="pipeline_batchtiming_coll_at"),
            # Windows over every collection, and pruning.
            models.Index(fields=["finished_at"], name="pipeline_batchtiming_at"),
            # The minute roll-up, and history readers adding the rows not rolled up (pipeline.history.ROWS).
            models.Index(fields=["finished_at"], condition=Q(rolled_up=False), name="pipeline_batchtiming_unrolled"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} @ {self.finished_at:%Y-%m-%d %H:%M:%S} ({self.documents} docs)"


class CollectionCost(models.Model):
    """Cumulative embedding spend of a collection since it was created (never pruned)."""

    collection = models.OneToOneField(Collection, on_delete=models.CASCADE, primary_key=True, related_name="cost")
    documents = models.BigIntegerField(default=0, help_text="Documents stored.")
    tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    # The spend of the latest calendar month (UTC) a batch was recorded in: against the budget.
    month = models.DateField(null=True, blank=True, help_text="First day of the month month_cost_usd is of.")
    month_cost_usd = models.FloatField(default=0.0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.collection_id}: ${self.cost_usd:.6f}"

    @property
    def per_document(self) -> float | None:
        return self.cost_usd / self.documents if self.documents else None


class SearchLatency(models.Model):
    """One collection's recent search latencies (one upsert per search, pipeline.recording): the
    optimizer's per-collection search p95 and an ef_search change's measurement. `searches` counts
    every search, so "N searches since a change" is a subtraction."""

    collection = models.OneToOneField(
        Collection, on_delete=models.CASCADE, primary_key=True, related_name="search_latency"
    )
    searches = models.BigIntegerField(default=0, help_text="Searches since the row was created.")
    recent = ArrayField(models.FloatField(), default=list, help_text="Seconds of the latest searches, oldest first.")
    last_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.collection_id}: {self.searches} searches"


class OptimizationChangeQuerySet(models.QuerySet["OptimizationChange"]):
    def pending(self) -> OptimizationChangeQuerySet:
        return self.filter(status=OptimizationStatus.APPLIED)

    def conclude(self, status: str, measurement_after: dict, note: str) -> int:
        """CAS applied -> kept/reverted: the evaluator that loses a race gets 0 and leaves the row alone."""
        return self.filter(status=OptimizationStatus.APPLIED).update(
            status=status, measurement_after=measurement_after, note=note, evaluated_at=timezone.now()
        )


class OptimizationChange(models.Model):
    """A collection setting the optimizer changed, with the measurements that decide whether it stays."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="optimization_changes")
    setting = models.CharField(
        max_length=50, help_text="What changed: batch_size, ef_search, hnsw (m and ef_construction) or backfill."
    )
    before = models.JSONField()
    after = models.JSONField()
    reason = models.TextField(help_text="The recommendation and its expected effect.")
    measurement_before = models.JSONField(
        help_text="Before the change: worker seconds per document of the latest batches, or (ef_search) search p95."
    )
    measurement_after = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=OptimizationStatus.choices, default=OptimizationStatus.APPLIED)
    note = models.TextField(blank=True, help_text="Why it was kept or reverted.")
    applied_by = models.CharField(max_length=150, blank=True)
    applied_at = models.DateTimeField(help_text="When it took effect (an index rebuild: when the new index served).")
    evaluated_at = models.DateTimeField(null=True, blank=True)

    objects = OptimizationChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-applied_at"]
        permissions = [("apply_optimizationchange", "Can apply optimizer recommendations")]
        constraints = [
            # One change under measurement per collection: two at once could not be told apart.
            models.UniqueConstraint(
                fields=["collection"],
                condition=Q(status="applied"),
                name="pipeline_optimizationchange_one_pending",
            ),
        ]
        indexes = [
            # The evaluation schedule scans applied changes only (pipeline.performance.optimizer.evaluate_pending).
            models.Index(fields=["applied_at"], condition=Q(status="applied"), name="pipeline_optchange_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id}.{self.setting}: {self.before} -> {self.after} ({self.status})"
