"""Keyword and hybrid search inside PostgreSQL: any query term matches, rare terms weigh more,
titles and headings more than text; fusion of the two rankings; results grouped by document."""

from __future__ import annotations

import json
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection

from pipeline import keyword
from pipeline.collections import create_collection
from pipeline.models import Chunk
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import best_per_document, fuse, search
from pipeline.storage import Hit
from tests.tools import error_of

# Every page mentions databases; one page is the only one about vacuuming.
PAGES = {
    f"page-{i}.md": f"# Page {i}\n\nNotes about the database server and its configuration, part {i}." for i in range(8)
}
PAGES["maintenance.md"] = (
    "# Maintenance\n\n"
    + "Routine chores keep the cluster healthy. " * 4
    + "\n\n## Vacuum\n\nRun a vacuum on the database at night."
)
PAGES["indexes.md"] = "# Indexes\n\nA B-tree speeds up lookups; rebuild bloated ones."
PAGES["long.md"] = "# Long\n\n" + "\n\n".join(f"Paragraph {i} about replication lag." for i in range(40))


@pytest.fixture
def pages(hash_collection):
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in PAGES.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == len(PAGES)
    return hash_collection


def documents(hits: list[Hit]) -> list[str]:
    return [h.document_id for h in hits]


def test_chunks_store_their_title_and_headings_and_postgres_indexes_them(pages):
    chunk = Chunk.objects.get(document__external_id="maintenance.md", text__contains="at night")
    assert (chunk.title, chunk.headings) == ("Maintenance", "Vacuum")
    assert "'vacuum':" in chunk.search_vector and not Chunk.objects.filter(search_vector=None).exists()


def test_keyword_search_matches_any_term_and_weighs_rare_terms_more(pages):
    # ANDed, "how do I vacuum tables of a database" matches nothing; any term matches here.
    hits = keyword.matches(pages, "how do I vacuum tables of a database", 3)
    assert documents(hits)[0] == "maintenance.md"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert keyword.matches(pages, "zeppelin", 3) == [], "no term in any chunk: no results"


def test_keyword_search_works_in_the_first_minutes_after_the_machine_booted(pages, monkeypatch):
    """The statistics cache is read the first time whatever the monotonic clock (seconds since boot)."""
    monkeypatch.setattr(keyword, "_cache", {})
    monkeypatch.setattr(keyword, "time", SimpleNamespace(monotonic=lambda: 12.0))
    assert documents(keyword.matches(pages, "vacuum", 1)) == ["maintenance.md"]


def test_a_title_match_outranks_the_same_word_in_the_text(pages):
    enqueue(pages, [IncomingDocument("mentions.md", "# Other\n\nWe never rebuild indexes here, see there.")])
    EmbeddingIngestionPipeline().drain()
    assert documents(keyword.matches(pages, "indexes", 2)) == ["indexes.md", "mentions.md"]


def test_keyword_search_stays_inside_the_collection(pages):
    other = create_collection(name="other", model="local/hash-16", chunk_unit="characters", chunk_size=200)
    enqueue(other, [IncomingDocument("vacuum.md", "vacuum vacuum vacuum")])
    EmbeddingIngestionPipeline().drain()
    assert "vacuum.md" not in documents(keyword.matches(pages, "vacuum", 10))
    assert documents(keyword.matches(other, "vacuum", 10)) == ["vacuum.md"]


def hit(doc: str, score: float) -> Hit:
    return Hit(doc, 0, score, doc, {})


def test_blend_adds_normalised_scores_by_weight_and_rrf_adds_reciprocal_ranks():
    vector = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.5)]
    words = [hit("c", 12.0), hit("d", 3.0)]
    # Normalised: vector a 1, b 0.75, c 0; keyword c 1, d 0.
    assert [(h.document_id, round(h.score, 3)) for h in fuse(vector, words, 0.3)] == [
        ("a", 0.7),
        ("b", 0.525),
        ("c", 0.3),
        ("d", 0.0),
    ]
    assert documents(fuse(vector, words, 0.8))[0] == "c", "a higher keyword share lets its best win"
    rrf = fuse(vector, words, 0.5, "rrf")
    assert documents(rrf)[0] == "c", "ranked by both lists beats first in one"
    # Scaled so that a first place counts 1: c is third among vectors (61/63) and first among words.
    assert rrf[0].score == pytest.approx(0.5 * 61 / 63 + 0.5 * 61 / 61)


def test_hybrid_search_fuses_twenty_candidates_a_side_by_rank_and_fifty_by_blend(pages, monkeypatch):
    asked, matches = [], keyword.matches
    monkeypatch.setattr(keyword, "matches", lambda c, q, k, fill: asked.append((k, fill)) or matches(c, q, k, fill))
    assert len(search(pages, "vacuum the database", 3)) == 3
    pages.fusion = "blend"
    search(pages, "vacuum the database", 3)
    search(pages, "vacuum the database", 3, by_document=True)  # ten chunks per document asked for
    search(pages, "vacuum the database", 3, mode="keyword")
    assert asked == [(20, False), (50, False), (50, False), (3, True)], "the vector side fills a hybrid list"


def test_results_grouped_by_document_keep_each_documents_best_chunk(pages):
    chunks = search(pages, "replication lag paragraph", 5, mode="keyword")
    assert documents(chunks) == ["long.md"] * 5, "one long page crowds the chunk ranking"
    grouped = search(pages, "replication lag paragraph", 5, mode="keyword", by_document=True)
    assert documents(grouped)[0] == "long.md" and len(set(documents(grouped))) == len(grouped)
    assert grouped[0].score == chunks[0].score
    assert best_per_document([hit("a", 3), hit("b", 2), hit("a", 1)]) == [hit("a", 3), hit("b", 2)]


def test_the_api_and_the_command_take_a_mode_and_document_grouping(api, pages):
    url = "/api/v1/collections/hashes/search/"
    body = {"query": "vacuum the database", "k": 3, "mode": "keyword", "by_document": True}
    response = api.post(url, body, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert results[0]["document_id"] == "maintenance.md" and len({r["document_id"] for r in results}) == 3
    assert "mode" in error_of(api.post(url, {**body, "mode": "psychic"}, format="json"), 400)["details"]
    out = StringIO()
    call_command("search", "vacuum the database", collection="hashes", mode="keyword", json=True, stdout=out)
    assert json.loads(out.getvalue())[0]["document_id"] == "maintenance.md"
    assert (pages.search_mode, pages.fusion) == ("hybrid", "rrf"), "new collections: hybrid, fused by rank"
    # Hash vectors rank at random: with the whole share the keyword ranking decides the hybrid one.
    assert api.patch("/api/v1/collections/hashes/", {"keyword_weight": 1.0}, format="json").status_code == 200
    hybrid = api.post(url, {"query": "vacuum the database", "k": 3}, format="json").json()["results"]
    assert hybrid[0]["document_id"] == "maintenance.md"
    assert "keyword_weight" in error_of(api.patch("/api/v1/collections/hashes/", {"keyword_weight": 2}), 400)["details"]


def test_the_admin_sets_a_collections_search_mode_and_weights(admin_client, hash_collection):
    page = admin_client.get(f"/admin/pipeline/collection/{hash_collection.pk}/change/").content.decode()
    for field in ("search_mode", "keyword_weight", "fusion", "retrieval_target"):
        assert f'name="{field}"' in page


def chunks_holding(collection, lexeme: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pipeline_chunk WHERE collection_id = %s AND search_vector @@ %s::tsquery",
            [collection.pk, lexeme],
        )
        return cur.fetchone()[0]


def test_common_terms_are_weighed_from_the_collections_own_chunks_without_counting(pages, monkeypatch):
    monkeypatch.setattr(keyword, "COUNTED_CHUNKS", 2)  # common: in more than two chunks
    chunks, common = keyword.term_statistics(pages)
    assert chunks == Chunk.objects.filter(collection=pages).count()
    assert common["databas"] == pytest.approx(chunks_holding(pages, "databas") / chunks)
    assert "vacuum" not in common, "in one chunk: counted, not estimated"
    assert documents(keyword.matches(pages, "vacuum the database", 3))[0] == "maintenance.md"
    # A generation larger than the sample: shares of a fixed pick of its chunks, the count exact.
    monkeypatch.setattr(keyword, "SAMPLED_CHUNKS", 5)
    sampled = keyword.term_statistics(pages)
    assert sampled[0] == chunks and sampled == keyword.term_statistics(pages)
    # Which five depends on the chunks' ids (a hash of each): read the share from those five, as a
    # term of the sample is estimated only when it would be in more than COUNTED_CHUNKS chunks.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM (SELECT search_vector FROM pipeline_chunk WHERE collection_id = %s"
            " ORDER BY hashint8(id) LIMIT 5) picked WHERE search_vector @@ 'databas'::tsquery",
            [pages.pk],
        )
        held = cur.fetchone()[0]
    assert sampled[1].get("databas") == (held / 5 if held * chunks > 2 * 5 else None)


def test_a_larger_collection_of_other_text_leaves_a_collections_term_weights_alone(pages, monkeypatch):
    """PostgreSQL's column statistics are the whole table's: beside 200 chunks without it, a term in
    most of this collection's chunks passed for rare, and its chunks crowded the candidates."""
    monkeypatch.setattr(keyword, "COUNTED_CHUNKS", 2)
    monkeypatch.setattr(keyword, "CANDIDATES", 3)
    alone = keyword.term_statistics(pages)
    garden = create_collection(name="garden", model="local/hash-16", chunk_unit="characters", chunk_size=200)
    enqueue(garden, [IncomingDocument(f"roses-{i}.md", f"Pruning roses in spring, part {i}.") for i in range(200)])
    assert EmbeddingIngestionPipeline().drain().embedded == 200
    with connection.cursor() as cur:
        cur.execute("ANALYZE pipeline_chunk")
    keyword._cache.clear()
    assert keyword.term_statistics(pages) == alone
    assert documents(keyword.matches(pages, "vacuum the database", 10))[0] == "maintenance.md"
    assert documents(keyword.matches(garden, "roses, part 7", 1)) == ["roses-7.md"], "a share of 1 beside a count"


def test_candidates_come_from_the_rarest_terms_that_fit_the_cap(pages, monkeypatch):
    # Nine chunks mention the database, one vacuuming: with room for three candidates, the common
    # term's chunks are left out whole instead of cut at random, and the rare term's page is found.
    monkeypatch.setattr(keyword, "CANDIDATES", 3)
    hits = keyword.matches(pages, "vacuum the database", 1)
    assert documents(hits) == ["maintenance.md"]
    assert documents(keyword.matches(pages, "database", 10)) != [], "the rarest term always probes"


def test_a_keyword_search_answers_k_chunks_when_its_rare_terms_are_in_fewer(pages, monkeypatch):
    """A soak's sentinel query ("zebracorn ... page", "page" in all 1,200 chunks) answered its one
    chunk at k 10: the common term's chunks were never read, so hybrid search falling back to keywords
    during an outage answered fewer than k while more chunks matched."""
    monkeypatch.setattr(keyword, "CANDIDATES", 3)
    assert chunks_holding(pages, "vacuum") < 3 < chunks_holding(pages, "databas")
    hits = keyword.matches(pages, "vacuum the database", 10)
    held = chunks_holding(pages, "vacuum | databas")
    assert len(hits) == min(10, held), "the rare term's chunks, then the common term's up to k"
    assert documents(hits)[0] == "maintenance.md"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({(h.document_id, h.ordinal) for h in hits}) == len(hits), "no chunk twice"
    assert len(keyword.matches(pages, "vacuum the database", 2)) == 2
    assert len(search(pages, "vacuum the database", 10, mode="keyword")) == min(10, held), "as the API searches"
