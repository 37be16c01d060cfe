"""Keyword search inside PostgreSQL: a chunk matches if it holds any query term, scored by IDF x ts_rank of
each term over its weighted tsvector (pipeline.models.Chunk.search_vector). docs/search.md has the ranking
("Modes") and how its work stays bounded at any size ("Staying under 50 ms at 100k chunks")."""

from __future__ import annotations

import json
import time

from django.db import connection

from pipeline.models import SEARCH_CONFIG, Collection
from pipeline.storage import Hit

COUNTED_CHUNKS = 1000
CANDIDATES = 1000
# ts_rank's weights of the tsvector's D, C (text), B (headings) and A (title) positions: tuned on the
# development set (docs/search.md); a title or heading word is in every chunk under it, so it weighs
# less than a word of the chunk itself.
FIELD_WEIGHTS = [0.1, 0.6, 0.4, 0.4]
# A generation's chunk count (the N of the IDF) and the shares of its common terms are read at most
# this often per process: both change slowly.
STATS_SECONDS = 300
# Common terms' shares come from this many of the generation's own chunks (all of a smaller one), a
# fixed pseudo-random pick: the table's column statistics mix every collection, and beside a larger
# collection of other text a term in most of this one's chunks would pass for rare.
SAMPLED_CHUNKS = 2000
_cache: dict[object, tuple[float, object]] = {}

TERMS_SQL = """
WITH picked AS MATERIALIZED (
    SELECT id, count(*) OVER () AS chunks FROM pipeline_chunk
     WHERE collection_id = %(collection)s AND generation = %(generation)s
     ORDER BY hashint8(id) LIMIT %(sampled)s
), terms AS (
    SELECT t.lexeme, count(*) AS n FROM picked p JOIN pipeline_chunk c ON c.id = p.id, unnest(c.search_vector) t
     GROUP BY t.lexeme
), sizes AS (SELECT coalesce(max(chunks), 0) AS chunks, count(*) AS sampled FROM picked)
SELECT s.chunks, (SELECT coalesce(json_object_agg(t.lexeme, t.n::float8 / s.sampled), '{}')
                    FROM terms t WHERE t.n * s.chunks > %(counted)s * s.sampled)
  FROM sizes s
"""

COUNT_SQL = """
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM pipeline_chunk c
             WHERE c.collection_id = %(collection)s AND c.generation = %(generation)s
               AND c.search_vector @@ quote_literal(t)::tsquery
             LIMIT %(counted)s) hits)
  FROM unnest(%(terms)s::text[]) AS t
"""

KEYWORD_SQL = """
WITH weighted AS MATERIALIZED (
    SELECT quote_literal(t)::tsquery AS q, probe, ln(1 + (greatest(%(chunks)s, df) - df + 0.5) / (df + 0.5)) AS idf
      FROM unnest(%(terms)s::text[], %(dfs)s::float8[], %(probes)s::bool[]) AS g(t, df, probe)
     WHERE df > 0
), candidates AS MATERIALIZED (
    SELECT c.id, c.search_vector FROM pipeline_chunk c
     WHERE c.collection_id = %(collection)s AND c.generation = %(generation)s
       AND c.search_vector @@ (SELECT string_agg(q::text, ' | ')::tsquery FROM weighted WHERE probe)
     LIMIT %(candidates)s
), filled AS MATERIALIZED (
    SELECT * FROM candidates
    UNION ALL
    (SELECT c.id, c.search_vector FROM pipeline_chunk c
      WHERE c.collection_id = %(collection)s AND c.generation = %(generation)s
        AND c.search_vector @@ quote_literal(%(filler)s)::tsquery
        AND NOT c.search_vector @@ (SELECT string_agg(q::text, ' | ')::tsquery FROM weighted WHERE probe)
      LIMIT greatest(%(fill)s - (SELECT count(*) FROM candidates), 0))
), scored AS (
    SELECT c.id, sum(w.idf * ts_rank(%(weights)s::float4[], c.search_vector, w.q, 1)) AS score
      FROM filled c CROSS JOIN weighted w GROUP BY c.id ORDER BY score DESC LIMIT %(k)s
)
SELECT d.external_id, c.ordinal, s.score, c.text, d.metadata
  FROM scored s JOIN pipeline_chunk c ON c.id = s.id JOIN pipeline_document d ON d.id = c.document_id
 ORDER BY s.score DESC, c.id
"""


def _cached(key: object, read):  # noqa: ANN001, ANN202
    # Never read yet is not "read at 0": the monotonic clock starts at boot, under STATS_SECONDS ago
    # on a machine just started.
    read_at, value = _cache.get(key, (None, None))
    if read_at is None or time.monotonic() - read_at > STATS_SECONDS:
        value = read()
        _cache[key] = (time.monotonic(), value)
    return value


def _rows(sql: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def term_statistics(collection: Collection) -> tuple[int, dict[str, float]]:
    """The chunk count of the collection's searched generation, and the share of its chunks holding
    each term estimated in more than COUNTED_CHUNKS of them (from up to SAMPLED_CHUNKS of them)."""
    params = {"collection": collection.pk, "generation": collection.generation}
    return _rows(TERMS_SQL, {**params, "sampled": SAMPLED_CHUNKS, "counted": COUNTED_CHUNKS})[0]


def matches(collection: Collection, query: str, k: int, fill: bool = True) -> list[Hit]:
    """The k chunks of the collection's searched generation scoring highest for `query`'s terms (those
    of its rarest terms; when they are fewer than k and `fill`, any others holding a term fill up to k)."""
    terms = _rows(f"SELECT tsvector_to_array(to_tsvector('{SEARCH_CONFIG}'::regconfig, %s))", [query])[0][0]
    if not terms:
        return []
    chunks, common = _cached((collection.pk, collection.generation), lambda: term_statistics(collection))
    where = {"collection": collection.pk, "generation": collection.generation, "counted": COUNTED_CHUNKS}
    rare = [t for t in terms if t not in common]
    counts = _rows(COUNT_SQL, {**where, "terms": rare}) if rare else []
    counted = dict(zip(rare, (row[0] for row in counts), strict=True))
    # float(): JSON writes a share of 1.0 as 1, and psycopg refuses a list of ints and floats.
    dfs = [float(counted[t] if t in counted else common[t] * chunks) for t in terms]
    # Candidates: the chunks of the rarest terms, as long as they fit in CANDIDATES together (the
    # rarest term's at least), so the cap never cuts an arbitrary part of a common term's chunks.
    # Only when they are fewer than k do the chunks of the least common other term fill up to k: any
    # of them (its best chunk may be among those not read), for a read of that term's index entries.
    probes, room = [False] * len(terms), CANDIDATES
    for i in sorted(range(len(terms)), key=lambda i: dfs[i]):
        if dfs[i] > 0 and (room >= dfs[i] or room == CANDIDATES):
            probes[i], room = True, room - dfs[i]
    others = sorted((dfs[i], terms[i]) for i in range(len(terms)) if dfs[i] > 0 and not probes[i])
    filler = others[0][1] if fill and others else None
    params = {**where, "terms": terms, "dfs": dfs, "probes": probes, "chunks": chunks, "k": k}
    params |= {"filler": filler, "fill": k if filler else 0}
    params |= {"candidates": CANDIDATES, "weights": FIELD_WEIGHTS}
    return [Hit(row[0], row[1], float(row[2]), row[3], json.loads(row[4])) for row in _rows(KEYWORD_SQL, params)]
