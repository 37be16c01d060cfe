"""The system of record: collections, the documents queued into them, their chunks, the state
workers share, and what the pipeline measured. One module per concern, all importable from
`pipeline.models`; the rules on collection settings are in `pipeline.models.rules`."""

from pipeline.models.collection import Collection, default_freshness_sla, sees_all_collections, visible
from pipeline.models.document import _NEXT_COLLECTIONS_SQL, SEARCH_CONFIG, Chunk, Document
from pipeline.models.measurements import (
    BatchTiming,
    CapacityMeasurement,
    CollectionActivity,
    CollectionCost,
    OptimizationChange,
    SearchLatency,
)
from pipeline.models.operations import (
    ModelCheck,
    ProviderCircuit,
    ProviderRate,
    WorkerHeartbeat,
    endpoint_label,
    process_name,
)
from pipeline.models.quality import METRICS, GoldenQuery, RetrievalEvaluation
from pipeline.models.rules import (
    BENCHMARK_PREFIX,
    CAPACITY_PREFIX,
    RESERVED_PREFIX,
    reserved_names,
    validate_extra_params,
)
