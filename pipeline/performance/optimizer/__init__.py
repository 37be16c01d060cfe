"""EmbeddingPipelineOperationsOptimizer: where the pipeline's time goes (figures, analysis), what to
change (recommendations, deployment), and applying and judging it (changes); docs/performance.md."""

from __future__ import annotations

from contextlib import suppress

from pipeline.models import Collection, OptimizationChange
from pipeline.percentiles import STAGES as STAGES
from pipeline.performance.optimizer.analysis import Analysis, analyse
from pipeline.performance.optimizer.analysis import window_problem as window_problem
from pipeline.performance.optimizer.changes import apply
from pipeline.performance.optimizer.changes import evaluate as evaluate
from pipeline.performance.optimizer.changes import evaluate_pending as evaluate_pending
from pipeline.performance.optimizer.figures import OptimizerError
from pipeline.performance.optimizer.figures import Recommendation as Recommendation


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
        for rec in filter(lambda r: r.appliable, self.analyse(collection).recommendations):
            # Skipped when one is under measurement already, or there is nothing to compare against.
            with suppress(OptimizerError):
                changes.append(apply(Collection.objects.get(name=rec.collection), rec, applied_by))
        return changes
