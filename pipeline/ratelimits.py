"""Provider rate limits per collection, held across every worker through the database (GCRA without
burst): docs/architecture.md, `pipeline/ratelimits.py`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.db import connection

from pipeline import providers
from pipeline.models import Collection

logger = logging.getLogger(__name__)

# One statement: the turn is the later of now and both limits' next turns (old values: a SET
# reads the row as it was), and both move past it; RETURNING gives the turn back.
_RESERVE_SQL = """
WITH row AS (
    INSERT INTO pipeline_providerrate AS r (collection_id, requests_at, tokens_at)
    VALUES (%(collection)s, clock_timestamp() + %(request)s * interval '1 second',
            clock_timestamp() + %(tokens)s * interval '1 second')
    ON CONFLICT (collection_id) DO UPDATE
       SET requests_at = greatest(r.requests_at, r.tokens_at, clock_timestamp()) + %(request)s * interval '1 second',
           tokens_at = greatest(r.requests_at, r.tokens_at, clock_timestamp()) + %(tokens)s * interval '1 second'
    RETURNING requests_at
)
SELECT extract(epoch FROM requests_at - %(request)s * interval '1 second' - clock_timestamp()) FROM row
"""


def estimate_tokens(texts: list[str]) -> int:
    """A call's input tokens before it is made: about four characters a token (the order of magnitude)."""
    return sum(len(text) for text in texts) // 4 + len(texts)


def calls(texts: list[str], size: int, tokens_per_minute: int | None) -> Iterator[list[str]]:
    """`texts` in calls of at most `size` texts and, under a token limit, at most that many tokens: a
    provider answers a call larger than its per-minute quota with a 429 every time, which the pipeline
    takes for a passing limit and defers for good."""
    call: list[str] = []
    tokens = 0
    for text in texts:
        cost = estimate_tokens([text])
        if call and (len(call) == size or (tokens_per_minute and tokens + cost > tokens_per_minute)):
            yield call
            call, tokens = [], 0
        call.append(text)
        tokens += cost
    if call:
        yield call


def reserve(collection: Collection, tokens: int) -> float:
    """Reserve one call of `tokens` tokens under the collection's limits: seconds until its turn."""
    rpm, tpm = collection.requests_per_minute, collection.tokens_per_minute
    if not rpm and not tpm:
        return 0.0
    spacing = {"request": 60.0 / rpm if rpm else 0.0, "tokens": tokens * 60.0 / tpm if tpm else 0.0}
    with connection.cursor() as cur:
        cur.execute(_RESERVE_SQL, {"collection": collection.pk, **spacing})
        return max(0.0, float(cur.fetchone()[0]))


def wait_for_turn(collection: Collection, tokens: int) -> None:
    """Reserve a call and sleep until its turn. LiteLLM loads first: a turn taken before a cold start
    would send late, bunched with the next ones."""
    if collection.requests_per_minute or collection.tokens_per_minute:
        providers.load(collection.model)
    if wait := reserve(collection, tokens):
        logger.debug("collection %s: waiting %.2f s for its provider rate limit", collection.name, wait)
        time.sleep(wait)
