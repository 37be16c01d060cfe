"""Scrape-time metrics of reprocessing, computed from the database: exact at any backlog and the same
from every replica (dashboards use max(), not sum())."""

from __future__ import annotations

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, HistogramMetricFamily

from embedportal import collectors
from pipeline.choices import ErrorType
from pipeline.models.rules import is_reserved_name
from reprocessing import metrics, staleness
from reprocessing.choices import FailureState, ReprocessReason
from reprocessing.models import FailedDocument, PassTotals

# Seconds since the first failure; the edges are the backoff steps plus 3 d and 7 d.
AGE_BUCKETS = (300.0, 1800.0, 7200.0, 86400.0, 259200.0, 604800.0)

_AGE_SQL = (
    "SELECT count(*), COALESCE(sum(age), 0), "
    + ", ".join(f"count(*) FILTER (WHERE age <= {edge:g})" for edge in AGE_BUCKETS)
    + " FROM (SELECT EXTRACT(EPOCH FROM (%s - first_failed_at)) AS age"
    " FROM failed_documents WHERE state = %s) AS queued"
)

QUEUE = "pipeline_reprocessing_queue_size"
AGE = "pipeline_reprocessing_queue_age_seconds"
DEAD = "pipeline_dead_letter_documents"
# The queue's `state` label: an open failure waits for its due time, or was requeued and is retrying.
PHASES = {(FailureState.OPEN, False): "waiting", (FailureState.OPEN, True): "retrying"}
STALE = "pipeline_stale_documents_count"


class DatabaseCollector(collectors.DatabaseCollector):
    """Reprocessing queue size and age distribution, dead letters, stale documents; and the passes'
    counter and histograms, which one-shot pods write to the database."""

    subject = "reprocessing"
    families = collectors.fresh(
        (QUEUE, "Failed documents waiting for or undergoing a retry.", ["state", "error_type"]),
        (AGE, "Age since first failure of documents in the reprocessing queue.", None, GaugeHistogramMetricFamily),
        (DEAD, "Dead-lettered documents awaiting an operator.", ["error_type"]),
        (
            STALE,
            "Documents whose source changed after their last embedding, longer ago than the freshness SLA.",
            ["collection"],
        ),
        (
            metrics.REPROCESSED,
            "Documents requeued for reprocessing, by reason: the error type of their failure, or stale.",
            ["reason"],
            CounterMetricFamily,
        ),
        (
            metrics.REPROCESSING_PASS,
            "Seconds one reprocessing workflow pass took (requeue due failures).",
            None,
            HistogramMetricFamily,
        ),
        (
            metrics.STALENESS_PASS,
            "Seconds one staleness pass took (count stale documents and requeue them).",
            None,
            HistogramMetricFamily,
        ),
    )

    def fill(self, cur, queue, age, dead, stale, requeued, *passes) -> None:
        now = timezone.now()
        counts = {
            (PHASES.get((row["state"], row["requeued"]), row["state"]), row["error_type"]): row["n"]
            for row in FailedDocument.objects.unresolved()
            .order_by()
            .values("state", "error_type", requeued=Q(next_retry_at=None))
            .annotate(n=Count("id"))
        }
        cur.execute(_AGE_SQL, [now, FailureState.OPEN.value])
        total, seconds, *cumulative = cur.fetchone()
        for phase in PHASES.values():
            for error_type in ErrorType.values:
                queue.add_metric([phase, error_type], counts.get((phase, error_type), 0))
        for error_type in ErrorType.values:
            dead.add_metric([error_type], counts.get((FailureState.DEAD_LETTERED, error_type), 0))
        buckets = [(str(edge), n) for edge, n in zip(AGE_BUCKETS, cumulative, strict=True)]
        age.add_metric([], [*buckets, ("+Inf", total)], float(seconds))
        for name, n in sorted(staleness.stale_counts(now).items()):
            if not is_reserved_name(name):  # a scenario's stale document paged as a user's
                stale.add_metric([name], n)
        totals = {t.key: t for t in PassTotals.objects.all()}
        for reason in (*ErrorType.values, *ReprocessReason.values):
            requeued.add_metric([reason], getattr(totals.get(f"requeued:{reason}"), "count", 0))
        for family in passes:
            row = totals.get(f"pass:{metrics.PASSES[family.name]}", PassTotals())
            per_edge = row.buckets or [0] * (len(metrics.PASS_BUCKETS) + 1)
            cumulative = [sum(per_edge[: i + 1]) for i in range(len(per_edge))]
            edges = [*(str(float(le)) for le in metrics.PASS_BUCKETS), "+Inf"]
            family.add_metric([], list(zip(edges, cumulative, strict=True)), row.seconds)
