"""The system of record: collections, the documents queued into them, their chunks, the state
workers share, and what the pipeline measured. One module per concern, all importable from
`pipeline.models` (migrations refer to validators by that path)."""

from pipeline.models.collection import (
    ACCESS_ALL,
    CAPACITY_PREFIX,
    ENV_NAME,
    RESERVED_PREFIX,
    RESERVED_PREFIXES,
    SECRET_PARAM_PARTS,
    Collection,
    CollectionQuerySet,
    default_freshness_sla,
    dimensions_mismatch,
    freshness_sla_problem,
    hnsw_build_problem,
    reserved_name_problem,
    reserved_names_allowed,
    sees_all_collections,
    validate_extra_params,
    visible,
)
from pipeline.models.document import (
    _CIRCUIT_CLOSED,
    _ENDPOINT,
    _NEXT_COLLECTIONS_SQL,
    CLAIM_CANDIDATES,
    SEARCH_CONFIG,
    Chunk,
    Document,
    DocumentQuerySet,
)
from pipeline.models.measurements import (
    BatchTiming,
    CapacityMeasurement,
    CollectionActivity,
    CollectionCost,
    OptimizationChange,
    OptimizationChangeQuerySet,
    SearchLatency,
)
from pipeline.models.operations import (
    SCHEDULE_MAX_AGE,
    ModelCheck,
    ProviderCircuit,
    ProviderCircuitQuerySet,
    ProviderRate,
    WorkerHeartbeat,
    WorkerHeartbeatQuerySet,
    endpoint_label,
    process_name,
)
from pipeline.models.quality import METRICS, GoldenQuery, RetrievalEvaluation
