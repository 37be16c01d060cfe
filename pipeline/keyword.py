"""Keyword search inside PostgreSQL: BM25-style scores over the chunks' weighted tsvector
(title > headings > text; pipeline.models.Chunk.search_vector).

A chunk matches if it holds ANY query term (a natural question ANDed matches almost nothing).
Each term weighs its inverse document frequency, which ts_rank lacks; ts_rank of the term alone
gives the saturating, length-normalised and field-weighted term frequency. Work stays bounded at
any collection size: a term's chunk count is counted up to COMMON_TERM_CHUNKS (past that it is a
common term, weighed as if that common), and candidates come from the chunks holding an uncommon
term (all terms if every one is common), at most CANDIDATES of them.
"""

from __future__ import annotations

import json
import time

from django.db import connection

from pipeline.models import SEARCH_CONFIG, Collection
from pipeline.storage import Hit

COMMON_TERM_CHUNKS = 2000
CANDIDATES = 2000
# A generation's chunk count (the N of the IDF) is counted at most this often per process.
COUNT_SECONDS = 300
_counts: dict[tuple[int, int], tuple[float, int]] = {}

KEYWORD_SQL = f"""
WITH terms AS (
    SELECT DISTINCT quote_literal(lexeme)::tsquery AS q
      FROM unnest(tsvector_to_array(to_tsvector('{SEARCH_CONFIG}'::regconfig, %(query)s))) AS lexeme
), counted AS (
    SELECT q, (SELECT count(*) FROM (
                 SELECT 1 FROM pipeline_chunk c
                  WHERE c.collection_id = %(collection)s AND c.generation = %(generation)s AND c.search_vector @@ q
                  LIMIT %(common)s) hits) AS df
      FROM terms
), weighted AS (
    SELECT q, df < %(common)s AS uncommon,
           ln(1 + (greatest(%(chunks)s, df) - df + 0.5) / (df + 0.5)) AS idf
      FROM counted WHERE df > 0
), wanted AS (
    SELECT string_agg(q::text, ' | ')::tsquery AS q FROM weighted
     WHERE uncommon OR NOT EXISTS (SELECT 1 FROM weighted WHERE uncommon)
), candidates AS (
    SELECT c.id, c.search_vector FROM pipeline_chunk c, wanted
     WHERE c.collection_id = %(collection)s AND c.generation = %(generation)s AND c.search_vector @@ wanted.q
     LIMIT %(candidates)s
), scored AS (
    SELECT c.id, sum(w.idf * ts_rank(c.search_vector, w.q, 1)) AS score
      FROM candidates c CROSS JOIN weighted w GROUP BY c.id ORDER BY score DESC LIMIT %(k)s
)
SELECT d.external_id, c.ordinal, s.score, c.text, d.metadata
  FROM scored s JOIN pipeline_chunk c ON c.id = s.id JOIN pipeline_document d ON d.id = c.document_id
 ORDER BY s.score DESC, c.id
"""


def chunk_count(collection: Collection) -> int:
    key = (collection.pk, collection.generation)
    counted_at, count = _counts.get(key, (0.0, 0))
    if time.monotonic() - counted_at > COUNT_SECONDS:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pipeline_chunk WHERE collection_id = %s AND generation = %s",
                [collection.pk, collection.generation],
            )
            count = cur.fetchone()[0]
        _counts[key] = (time.monotonic(), count)
    return count


def matches(collection: Collection, query: str, k: int) -> list[Hit]:
    """The k chunks of the collection's searched generation scoring highest for `query`'s terms."""
    params = {
        "query": query,
        "collection": collection.pk,
        "generation": collection.generation,
        "common": COMMON_TERM_CHUNKS,
        "chunks": chunk_count(collection),
        "candidates": CANDIDATES,
        "k": k,
    }
    with connection.cursor() as cur:
        cur.execute(KEYWORD_SQL, params)
        return [Hit(row[0], row[1], float(row[2]), row[3], json.loads(row[4])) for row in cur.fetchall()]
