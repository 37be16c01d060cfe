"""pgvector storage: per-collection HNSW indexes, atomic chunk replacement, search."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from django.db import connection, transaction

from pipeline.chunking import ChunkText
from pipeline.models import Collection, Document
from pipeline.models.collection import HNSW_EF_CONSTRUCTION_DEFAULT, HNSW_M_DEFAULT

# search_vector (the keyword index) is a generated column: PostgreSQL computes it in this COPY.
COPY_CHUNKS = (
    "COPY pipeline_chunk (document_id, collection_id, generation, ordinal, text, token_count, embedding, "
    "title, headings) FROM STDIN WITH (FORMAT BINARY)"
)
COPY_TYPES = ["bigint", "bigint", "integer", "integer", "text", "integer", "vector", "text", "text"]


def _register_vector() -> None:
    """Teach this psycopg connection pgvector's binary format (once per connection)."""
    connection.ensure_connection()
    raw = connection.connection
    if not getattr(raw, "_embedportal_vector", False):
        from pgvector.psycopg import register_vector

        register_vector(raw)
        raw._embedportal_vector = True


def index_definition(collection: Collection, generation: int, name: str, concurrently: bool = False) -> str:
    # A partial expression index (one collection's generation, cast to its dimension), so models share
    # pipeline_chunk; queries must repeat the cast and the predicate (nearest()) to use it.
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {name} ON pipeline_chunk "
        f"USING hnsw ((embedding::vector({int(collection.dimensions)})) vector_cosine_ops) "
        f"WITH (m = {int(collection.hnsw_m)}, ef_construction = {int(collection.hnsw_ef_construction)}) "
        f"WHERE collection_id = {int(collection.pk)} AND generation = {int(generation)}"
    )


def create_collection_index(collection: Collection, generation: int | None = None, name: str | None = None) -> None:
    """The collection's HNSW index over `generation` (default: the one searched), named `name` (default: its own)."""
    generation = collection.generation if generation is None else generation
    with connection.cursor() as cur:
        # CREATE INDEX refuses to run while deferred foreign key checks are pending: fire them now.
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(index_definition(collection, generation, name or collection.index_name))
        # Back to the default: every deferrable constraint here is initially deferred.
        cur.execute("SET CONSTRAINTS ALL DEFERRED")


def index_options(name: str) -> dict[str, int] | None:
    """The m and ef_construction an HNSW index was built with; None if there is no such index."""
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s AND relkind = 'i'", [name])
        row = cur.fetchone()
    return None if row is None else parse_options(row[0])


def parse_options(reloptions: list[str] | None) -> dict[str, int]:
    """pg_class.reloptions of an HNSW index; an index built without WITH has pgvector's defaults."""
    options = {"m": HNSW_M_DEFAULT, "ef_construction": HNSW_EF_CONSTRUCTION_DEFAULT}
    for option in reloptions or []:
        key, _, value = option.partition("=")
        if key in options:
            options[key] = int(value)
    return options


def drop_collection_index(collection: Collection) -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {collection.index_name}")


# A document, its chunks and their vectors, ready to store.
Embedded = tuple[Document, Sequence[ChunkText], np.ndarray]


def store(worker: str, results: Iterable[Embedded], embedded_at: datetime) -> list[int]:
    """Replace the chunks of every document the worker still holds (mark_embedded's CAS refuses the
    others), in the generation being built or else searched, in one transaction; the ids stored."""
    results = list(results)
    if not results:
        return []
    _register_vector()  # before the cursor: it copies the connection's adapters
    with transaction.atomic(), connection.cursor() as cur:
        # The collections' rows before the documents, Collection.delete()'s lock order: the chunks' foreign
        # keys take them at commit, after the documents, and deadlocked with a delete waiting for those.
        # A delete holding one runs first; its documents are then gone and refused below.
        cur.execute(
            "SELECT id FROM pipeline_collection WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
            [sorted({d.collection_id for d, _, _ in results})],
        )
        accepted = Document.objects.mark_embedded(worker, [(d.pk, d.content_hash) for d, _, _ in results], embedded_at)
        if not accepted:
            return []
        # Read in this transaction: a re-embed that started after the claim has requeued these
        # documents, so the CAS above refused them; the generation here matches their vectors.
        cur.execute(
            "SELECT id, COALESCE(building_generation, generation) FROM pipeline_collection WHERE id = ANY(%s)",
            [sorted({d.collection_id for d, _, _ in results})],
        )
        targets = dict(cur.fetchall())
        stored = [r for r in results if r[0].pk in accepted]
        cur.execute(
            "DELETE FROM pipeline_chunk c USING unnest(%s::bigint[], %s::integer[]) AS v(id, generation) "
            "WHERE c.document_id = v.id AND c.generation = v.generation",
            [[d.pk for d, _, _ in stored], [targets[d.collection_id] for d, _, _ in stored]],
        )
        with cur.cursor.copy(COPY_CHUNKS) as copy:
            copy.set_types(COPY_TYPES)
            for doc, chunks, vectors in stored:
                generation = targets[doc.collection_id]
                for chunk, vector in zip(chunks, vectors, strict=True):
                    copy.write_row(
                        (
                            doc.pk,
                            doc.collection_id,
                            generation,
                            chunk.ordinal,
                            chunk.text,
                            chunk.token_count,
                            vector,
                            chunk.title,
                            " > ".join(chunk.headings),
                        )
                    )
    return sorted(accepted)


@dataclass(slots=True)
class Hit:
    document_id: str
    ordinal: int
    score: float
    text: str
    metadata: dict

    def as_dict(self) -> dict:
        return {**asdict(self), "score": round(self.score, 6)}


# The most chunks one search ranks (pgvector's hnsw.ef_search tops out at 1000).
MAX_CANDIDATES = 1000


def ef_search(collection: Collection, k: int) -> int:
    """hnsw.ef_search for a k-nearest query: the collection's own (the optimizer's), never below k; else
    pgvector's default 40, at least 2k (benchmark_search: recall and p95 on 100k chunks). Never over
    MAX_CANDIDATES, pgvector's bound: 2k for a search by document of k 51 or more was refused (a 500)."""
    if collection.ef_search is not None:
        return min(max(int(collection.ef_search), k), MAX_CANDIDATES)
    return min(max(40, 2 * k), MAX_CANDIDATES)


def nearest(collection: Collection, vector: np.ndarray, k: int) -> list[Hit]:
    """The k chunks of the searched generation nearest to `vector` (`collection`: backfill.serving's view)."""
    dims = int(collection.dimensions)
    literal = "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
    with transaction.atomic(), connection.cursor() as cur:
        # The index keeps a replaced chunk's entry until VACUUM: a scan whose ef_search candidates were
        # mostly replaced ones answered fewer than k, or none. iterative_scan goes on, in distance order,
        # until k rows are live (or hnsw.max_scan_tuples, 20,000, were visited).
        cur.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'strict_order', true)",
            [str(ef_search(collection, k))],
        )
        cur.execute(
            f"""
            SELECT d.external_id, c.ordinal, 1 - (c.embedding::vector({dims}) <=> %s::vector({dims})) AS score,
                   c.text, d.metadata
              FROM pipeline_chunk c JOIN pipeline_document d ON d.id = c.document_id
             WHERE c.collection_id = {int(collection.pk)} AND c.generation = {int(collection.generation)}
          ORDER BY c.embedding::vector({dims}) <=> %s::vector({dims})
             LIMIT %s
            """,
            [literal, literal, k],
        )
        # A raw cursor returns jsonb as its text (Django leaves decoding to JSONField): decode it here.
        return [Hit(row[0], row[1], float(row[2]), row[3], json.loads(row[4])) for row in cur.fetchall()]
