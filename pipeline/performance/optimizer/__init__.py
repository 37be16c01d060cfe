"""EmbeddingPipelineOperationsOptimizer: where the pipeline's time goes, and what to change.

The figures are per-document percentiles of each stage (queue wait, claim, chunking, embedding,
storage, and their total) over a window, and each stage's utilisation (worker seconds in the
stage / worker seconds available). They come from Prometheus when EMBEDPORTAL_PROMETHEUS_URL is
set (histogram_quantile over the buckets' rates, the busy-seconds counter over the workers
alive), else from the database's per-batch timings (pipeline.timings), weighted by documents
(every document of a batch waited for the whole stage). Per-collection figures always come from
the database: the Prometheus histograms carry no collection label.

The bottleneck is the processing stage with the largest share of the per-document p95, unless
the workers are saturated (busy most of the time) and documents wait in the queue longer than
they are processed: then it is the number of workers. Recommendations say what to change and
the effect expected; one that changes a collection (its embedding batch size, its HNSW build
parameters, its ef_search, or loading it in backfill mode) can be applied: the change is recorded
as an OptimizationChange with a measurement before it (worker seconds per document of its latest
batches, or for ef_search the p95 of its latest searches), and the evaluation schedule keeps or
reverts it once as much was measured after it (pipeline.performance.optimizer.changes). Deployment settings
(workers, the claim batch, provider limits, maintenance_work_mem) stay advice.

Modules: figures (percentiles, utilisation, bottleneck), recommendations, analysis, changes.
"""

from __future__ import annotations

from pipeline.models import Collection, OptimizationChange
from pipeline.performance.optimizer.analysis import Analysis, analyse
from pipeline.performance.optimizer.changes import Evaluated, apply, evaluate, evaluate_pending
from pipeline.performance.optimizer.figures import APPLIABLE, STAGES, OptimizerError, Percentiles, Recommendation

__all__ = [
    "APPLIABLE",
    "STAGES",
    "Analysis",
    "EmbeddingPipelineOperationsOptimizer",
    "Evaluated",
    "OptimizerError",
    "Percentiles",
    "Recommendation",
    "analyse",
    "apply",
    "evaluate",
    "evaluate_pending",
]


class EmbeddingPipelineOperationsOptimizer:
    """The optimizer's entry points, for the command, the API and the admin."""

    def __init__(self, window: int | None = None) -> None:
        self.window = window

    def analyse(self, collection: Collection | None = None) -> Analysis:
        return analyse(collection, self.window)

    def apply(self, collection: Collection, recommendation_id: str, applied_by: str = "") -> OptimizationChange:
        for rec in self.analyse(collection).recommendations:
            if rec.id == recommendation_id and rec.collection == collection.name:
                return apply(collection, rec, applied_by)
        raise OptimizerError(f"no recommendation {recommendation_id!r} for collection {collection.name!r} now")

    def apply_all(self, collection: Collection | None = None, applied_by: str = "") -> list[OptimizationChange]:
        changes = []
        for rec in self.analyse(collection).recommendations:
            if rec.appliable:
                c = Collection.objects.get(name=rec.collection)
                try:
                    changes.append(apply(c, rec, applied_by))
                except OptimizerError:
                    continue  # one under measurement already, or nothing to compare against
        return changes

    def evaluate_pending(self) -> list[Evaluated]:
        return evaluate_pending()
