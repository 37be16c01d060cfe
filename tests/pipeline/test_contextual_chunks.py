"""Contextual chunks: the model embeds a chunk after its document's title and heading path; the
stored and returned text is the chunk alone; YAML front matter is metadata, never chunk text."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pipeline.chunking import Chunker
from pipeline.collections import create_collection
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.structure import Outline, front_matter, headings, only_front_matter
from tests.factories import fake_backed

MARKDOWN = """---
title: Deployment guide
tags: [ops, docker]
---
# Overview

Why we deploy with containers.

## Database

### Backups

Take a nightly dump of the primary.

```
# not a heading: a shell comment in a code block
pg_dump mydb
```
"""

REST = """==============
Managing files
==============

Intro text.

File storage
============

Storage objects
---------------

Storage objects hold files.

Using files in models
=====================

Models hold files too.
"""


def test_front_matter_is_split_off_as_metadata():
    fields, body = front_matter(MARKDOWN)
    assert fields == {"title": "Deployment guide", "tags": ["ops", "docker"]}
    assert body.startswith("# Overview") and "tags:" not in body
    assert front_matter("no front matter\n---\n") == ({}, "no front matter\n---\n")
    assert front_matter("---\n: not yaml [\n---\ntext") == ({}, "---\n: not yaml [\n---\ntext")


def test_markdown_headings_outside_code_fences_give_the_path():
    _, body = front_matter(MARKDOWN)
    assert [(level, title) for _, level, title in headings(body)] == [(1, "Overview"), (2, "Database"), (3, "Backups")]
    outline = Outline(body, "guide.md", {"title": "Deployment guide"})
    assert outline.title == "Deployment guide"
    assert outline.path(body.index("pg_dump")) == ("Overview", "Database", "Backups")
    assert outline.path(body.index("Why we")) == ("Overview",)


def test_rest_section_levels_follow_their_adornment_and_the_first_title_is_the_documents():
    outline = Outline(REST, "topics/files.txt")
    assert outline.title == "Managing files"
    assert outline.path(REST.index("Storage objects hold")) == ("File storage", "Storage objects")
    assert outline.path(REST.index("Models hold")) == ("Using files in models",), "a sibling closes the section"
    assert Outline("plain text, no headings", "notes/a.txt").title == "notes/a.txt"


def test_titles_and_headings_are_bounded_and_a_title_is_a_scalar(db):
    # An adversarial-input soak: a 960,000-character heading was put before each of 3,244 chunks (3 GB
    # of worker memory) and made a tsvector PostgreSQL refuses; a 437-byte front matter of nested YAML
    # aliases made a 312-million-character title.
    laughs = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 5)
    )
    long_heading = "# " + "word " * 2000 + "\n\nBody under it.\n"
    bomb = f"---\n{laughs}title: *l4\n---\n{long_heading}"
    outline = Outline(front_matter(bomb)[1], "bomb.md", front_matter(bomb)[0])
    assert outline.title.startswith("word word") and len(outline.title) == 200 and outline.title.endswith("…")
    nested = "".join(f"h{n}\n{mark * 4}\n\ntext {n}\n\n" for n, mark in enumerate("=-^+*:.'<>"))  # 10 reST levels
    assert Outline(nested, "deep.txt").path(len(nested)) == tuple(f"h{n}" for n in range(2, 10)), "the innermost 8"
    assert Outline("text", "n.md", {"title": ["a", "b"]}).title == "n.md"
    assert Outline("text", "n.md", {"title": 2026}).title == "2026"
    collection = create_collection(name="bounded", model="local/hash-16", chunking_strategy="markdown")
    enqueue(collection, [IncomingDocument("bomb.md", bomb), IncomingDocument("fine.md", "# Fine\n\nAll good.")])
    assert EmbeddingIngestionPipeline().drain().embedded == 2
    assert max(len(c.title) for c in Chunk.objects.filter(collection=collection)) == 200


def test_contextual_chunks_embed_title_and_headings_but_store_the_text_alone():
    chunker = Chunker("recursive", "characters", 60, 0, "local/hash-16", contextual=True)
    chunks = chunker.chunk_many([MARKDOWN], ["guide.md"])[0]
    assert not any("tags:" in c.text or "title:" in c.text for c in chunks), "front matter is not chunk text"
    backups = next(c for c in chunks if "nightly dump" in c.text)
    assert backups.embedded == "Deployment guide > Overview > Database > Backups\n\n" + backups.text
    plain = Chunker("recursive", "characters", 60, 0, "local/hash-16").chunk_many([MARKDOWN], ["guide.md"])[0]
    assert "tags:" in plain[0].text and plain[0].embedded == plain[0].text, "the option off: as before"


@pytest.mark.django_db
def test_the_provider_receives_contextual_text_and_stores_the_chunk_alone(fake_provider, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test")
    enqueue(
        fake_backed("ctx", fake_provider.api_base, contextual_chunks=True), [IncomingDocument("guide.md", MARKDOWN)]
    )
    assert EmbeddingIngestionPipeline().drain().embedded == 1
    sent = [text for request in fake_provider.requests for text in request["inputs"]]
    stored = list(Chunk.objects.order_by("ordinal").values_list("text", flat=True))
    assert len(sent) == len(stored)
    assert all(text.startswith("Deployment guide") for text in sent)
    assert sorted(text.split("\n\n", 1)[1] for text in sent) == sorted(stored)
    assert not any("tags:" in text for text in stored)


def test_the_option_changes_only_through_a_reembed(api, hash_collection):
    response = api.patch("/api/v1/collections/hashes/", {"contextual_chunks": True}, format="json")
    assert response.status_code == 400
    assert "re-embed" in response.json()["error"]["details"]["contextual_chunks"][0]
    enqueue(hash_collection, [IncomingDocument("guide.md", MARKDOWN)])
    EmbeddingIngestionPipeline().drain()
    assert any("tags:" in t for t in Chunk.objects.values_list("text", flat=True)), "off: front matter is text"
    response = api.post("/api/v1/collections/hashes/reembed/", {"contextual_chunks": True}, format="json")
    assert response.status_code == 202, response.content
    EmbeddingIngestionPipeline().drain()
    hash_collection.refresh_from_db()
    assert hash_collection.contextual_chunks is True and hash_collection.building_generation is None
    texts = Chunk.objects.filter(generation=hash_collection.generation).values_list("text", flat=True)
    assert texts and not any("tags:" in t for t in texts), "the new generation leaves the front matter out"


# Hugo's and Jekyll's section pages (`_index.md`) often hold front matter alone.
SECTION_INDEX = "---\ntitle: Guides\nweight: 3\n---\n\n"


def test_a_text_of_front_matter_alone_is_refused_where_front_matter_is_metadata(
    api, admin_client, hash_collection, tmp_path
):
    """With contextual chunks nothing of it is left to embed: refused at the door, as an empty text
    is, instead of failing at chunking and being retried for a day. Where front matter is text
    (contextual chunks off), it is embedded."""
    ctx = create_collection(name="ctx", model="local/hash-16", chunk_unit="characters", chunk_size=200)
    assert ctx.contextual_chunks
    assert only_front_matter(SECTION_INDEX) and not only_front_matter("---\njust words\n---\n")
    response = api.post("/api/v1/collections/ctx/documents/", {"id": "_index.md", "text": SECTION_INDEX}, format="json")
    assert response.status_code == 400
    assert "only YAML front matter" in response.json()["error"]["message"]
    form = {"collection": str(ctx.pk), "external_id": "_index.md", "text": SECTION_INDEX, "metadata": "{}"}
    response = admin_client.post("/admin/pipeline/document/add/", form)
    assert response.status_code == 200, "the form again, not a 500"
    assert "only YAML front matter" in str(response.context["adminform"].form.errors)

    (tmp_path / "_index.md").write_text(SECTION_INDEX)
    (tmp_path / "page.md").write_text("---\ntitle: Page\n---\nBody text.\n")
    err = StringIO()
    with pytest.raises(CommandError, match=r"1 document\(s\) rejected"):
        call_command("enqueue", str(tmp_path), collection="ctx", base=str(tmp_path), no_progress=True, stderr=err)
    assert "_index.md: text is only YAML front matter" in err.getvalue()
    assert list(Document.objects.filter(collection=ctx).values_list("external_id", flat=True)) == ["page.md"]

    enqueue(hash_collection, [IncomingDocument("_index.md", SECTION_INDEX)])
    assert EmbeddingIngestionPipeline().drain().embedded == 2
