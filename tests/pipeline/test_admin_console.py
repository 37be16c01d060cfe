"""The admin as the operator console: actions, their permissions, the overview page; and the API twins."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission

from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.models import Chunk, Collection, Document, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import client_with as api_for
from tests.tools import run_action, staff

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/pipeline/collection/"
DOCUMENTS = "/admin/pipeline/document/"


def test_pausing_a_collection_in_the_admin_stops_workers_claiming_it(admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument("d1", "text")])
    messages = run_action(admin_client, CHANGELIST, "pause_collections", [hash_collection.pk])
    assert messages == [
        "Paused 1 collection(s); 0 were already paused. Documents in flight finish; nothing more is claimed until "
        "resumed."
    ]
    assert Collection.objects.get().paused
    assert EmbeddingIngestionPipeline().drain().claimed == 0

    assert run_action(admin_client, CHANGELIST, "pause_collections", [hash_collection.pk])[0].startswith(
        "Paused 0 collection(s); 1 were already paused."
    )
    assert run_action(admin_client, CHANGELIST, "resume_collections", [hash_collection.pk]) == [
        "Resumed 1 collection(s); 0 were not paused."
    ]
    assert EmbeddingIngestionPipeline().drain().embedded == 1


def test_pause_and_resume_on_a_filtered_list_count_the_selection_before_changing_it(admin_client, hash_collection):
    # The action's rows are the list's, filters included: counted after the pause, the active ones were none.
    active, paused = f"{CHANGELIST}?paused__exact=0", f"{CHANGELIST}?paused__exact=1"
    assert run_action(admin_client, active, "pause_collections", [hash_collection.pk])[0].startswith(
        "Paused 1 collection(s); 0 were already paused."
    )
    assert run_action(admin_client, paused, "resume_collections", [hash_collection.pk]) == [
        "Resumed 1 collection(s); 0 were not paused."
    ]


def test_saving_a_collection_form_keeps_a_pause_made_while_it_was_open(admin_client, hash_collection):
    url = f"{CHANGELIST}{hash_collection.pk}/change/"
    page = admin_client.get(url)
    assert 'name="initial-paused"' in page.content.decode()
    form = page.context["adminform"].form
    # What the browser sends back: every field as shown (an unticked box is not sent) and its hidden initial.
    shown = {name: "" if value is None else value for name in form.fields if (value := form[name].value()) is not False}
    data = {**shown, **{f"initial-{name}": value for name, value in shown.items()}, "batch_size": 8}
    Collection.objects.filter(pk=hash_collection.pk).pause()  # another operator, meanwhile
    assert admin_client.post(url, data).status_code == 302
    saved = Collection.objects.get()
    assert saved.batch_size == 8 and saved.paused, "the form put back the unticked paused box it was opened with"


def test_the_collection_list_gives_the_chunk_size_its_unit(admin_client, hash_collection):
    # 200 characters and 200 tokens read alike when the list showed the size alone.
    row = admin_client.get(CHANGELIST).content.decode().split('class="field-chunk_size"')[1].split("</tr>")[0]
    assert '<td class="field-chunk_unit">Characters</td>' in row


def test_reembedding_a_collection_requeues_its_embedded_and_failed_documents(admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    EmbeddingIngestionPipeline().drain()
    Document.objects.filter(external_id="d2").update(status=DocumentStatus.FAILED)
    enqueue(hash_collection, [IncomingDocument("new", "not yet embedded")])

    messages = run_action(admin_client, CHANGELIST, "reembed_collections", [hash_collection.pk])
    assert messages == [
        "Requeued 3 document(s) of 1 collection(s) for re-embedding; pending and in-flight documents were "
        "already queued."
    ]
    assert Document.objects.filter(status=DocumentStatus.PENDING).count() == 4
    assert EmbeddingIngestionPipeline().drain().embedded == 4


def test_requeue_documents_action_skips_documents_already_queued(admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument("done", "text"), IncomingDocument("waiting", "text 2")])
    Document.objects.filter(external_id="done").update(status=DocumentStatus.FAILED, attempts=3)
    pks = list(Document.objects.values_list("pk", flat=True))

    messages = run_action(admin_client, DOCUMENTS, "requeue_documents", pks)
    assert messages == ["Requeued 1 document(s); 1 skipped (already pending or processing)."]
    done = Document.objects.get(external_id="done")
    assert (done.status, done.attempts) == (DocumentStatus.PENDING, 0)


def test_documents_list_shows_why_and_until_when_a_pending_document_waits(admin_client, hash_collection):
    """The runbooks send operators to this list for deferred documents: it showed no last_error."""
    enqueue(hash_collection, [IncomingDocument("deferred", "text")])
    Document.objects.update(last_error="deferred: api_error: 503 service unavailable")

    page = admin_client.get(DOCUMENTS, {"status__exact": "pending"}).content.decode()
    assert "deferred: api_error: 503 service unavailable" in page
    assert "column-available_at" in page


def test_an_action_on_a_selection_that_holds_no_ids_is_a_message_not_a_500(admin_client, hash_collection):
    """A hand-made or mangled form: Django's pk__in filter raised ValueError for "abc" (a 500)."""
    enqueue(hash_collection, [IncomingDocument("done", "text")])
    EmbeddingIngestionPipeline().drain()
    for url, action in ((DOCUMENTS, "requeue_documents"), (CHANGELIST, "delete_selected")):
        messages = run_action(admin_client, url, action, ["abc", str(Document.objects.get().pk)])
        assert messages == ["The selection holds 'abc', which is no row's id; select the rows again."], messages
    assert Document.objects.get().status == DocumentStatus.EMBEDDED and Collection.objects.exists()


def test_operations_need_their_own_permissions_in_the_admin(client, hash_collection):
    client.force_login(staff("view_collection", "change_collection", "view_document", "change_document"))
    page = client.get(CHANGELIST).content.decode()
    assert "pause_collections" not in page and "reembed_collections" not in page
    run_action(client, CHANGELIST, "pause_collections", [hash_collection.pk])
    assert not Collection.objects.get().paused

    enqueue(hash_collection, [IncomingDocument("d1", "text")])
    Document.objects.update(status=DocumentStatus.FAILED)
    run_action(client, DOCUMENTS, "requeue_documents", list(Document.objects.values_list("pk", flat=True)))
    assert Document.objects.get().status == DocumentStatus.FAILED


def test_operator_with_pause_permission_sees_and_runs_only_that_action(client, hash_collection):
    client.force_login(staff("view_collection", "pause_collection"))
    page = client.get(CHANGELIST).content.decode()
    assert "pause_collections" in page and "reembed_collections" not in page
    run_action(client, CHANGELIST, "pause_collections", [hash_collection.pk])
    assert Collection.objects.get().paused


def test_throughput_counts_every_embedding_of_a_document_as_the_batch_rows_do(admin_client, hash_collection):
    # A re-embed or a requeue embeds documents again: that is throughput too (it was counted from each
    # document's last embedding time, so once).
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 30) for i in range(3)])
    EmbeddingIngestionPipeline().drain()
    assert Document.objects.all().requeue() == 3
    EmbeddingIngestionPipeline().drain()

    ctx = admin_client.get("/admin/pipeline/collection/overview/").context
    assert ctx["per_minute_total"] == 6
    assert ctx["snapshot"].throughput == pytest.approx(6 / 300)


def test_overview_links_only_to_pages_the_operator_may_open(client, admin_client, hash_collection):
    slos, collections = "/admin/pipeline/collection/slos/", '/admin/pipeline/collection/"'
    client.force_login(staff("view_document"))
    page = client.get("/admin/pipeline/collection/overview/").content.decode()
    assert slos not in page and collections not in page, "links that would answer 403"
    assert client.get(slos).status_code == 403
    full = admin_client.get("/admin/pipeline/collection/overview/").content.decode()
    assert slos in full and collections in full
    # The pause permission without a view of the collection list: the link led to 403.
    client.force_login(staff("view_document", "pause_collection"))
    assert collections not in client.get("/admin/pipeline/collection/overview/").content.decode()
    assert client.get("/admin/pipeline/collection/").status_code == 403
    # The SLO and performance pages' own permissions without the overview's: the home page hid their
    # links, and the SLO page's breadcrumb led to the overview's 403 (an admin crawl).
    overview, performance = "/admin/pipeline/collection/overview/", "/admin/pipeline/optimizationchange/performance/"
    client.force_login(staff("view_collectionactivity", "view_optimizationchange"))
    home = client.get("/admin/").content.decode()
    assert slos in home and performance in home and overview not in home
    assert overview not in client.get(slos).content.decode() and client.get(overview).status_code == 403


def test_overview_page_shows_queue_throughput_latency_errors_and_health(admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 30) for i in range(4)])
    EmbeddingIngestionPipeline().drain()
    enqueue(hash_collection, [IncomingDocument("later", "queued after the run")])

    index = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/pipeline/collection/overview/"' in index

    response = admin_client.get("/admin/pipeline/collection/overview/")
    assert response.status_code == 200
    ctx = response.context
    assert ctx["snapshot"].depth == 1
    assert ctx["snapshot"].workers_alive == 1
    assert ctx["per_minute_total"] == 4
    assert [c["name"] for c in ctx["collections"]] == ["hashes"]
    assert (ctx["collections"][0]["embedded"], ctx["collections"][0]["pending"]) == (4, 1)
    assert {check.name: check.ok for check in ctx["checks"]} == {"model": True, "pgvector": True, "queue": True}
    # The last hour's batch rows: our 4 documents.
    latency = {row["stage"]: row for row in ctx["latencies"]}
    assert {"chunking", "embedding", "storage", "total"} <= set(latency)
    assert latency["total"]["count"] == 4 and latency["total"]["p95"] >= latency["total"]["p50"] > 0
    html = response.content.decode()
    # Chart.js draws the last hour per minute (oldest first) from the page's own JSON.
    assert '<canvas id="throughput-chart"' in html and ctx["chart_data"]["per_minute"][-1] == 4
    assert len(ctx["chart_data"]["per_minute"]) == 60
    assert 'id="tile-queue"><span class="figure">1</span>' in html
    # Scripts come from our static files only (vendored Chart.js), never from another host.
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert "/static/pipeline/vendor/chartjs/chart.umd.min.js" in scripts
    assert all(src.startswith("/static/") for src in scripts) and "cdn" not in html.lower()


def test_overview_needs_the_view_document_permission(client):
    client.force_login(staff("view_collection"))
    assert client.get("/admin/pipeline/collection/overview/").status_code == 403
    assert "overview" not in client.get("/admin/").content.decode()


def test_chunk_admin_shows_the_dimension_never_the_vector(admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument("d1", "text to embed")])
    EmbeddingIngestionPipeline().drain()
    chunk = Chunk.objects.get()
    page = admin_client.get(f"/admin/pipeline/chunk/{chunk.pk}/change/").content.decode()
    assert "16" in page
    assert f"{chunk.embedding[0]:.6f}"[:8] not in page and "[0." not in page and "[-0." not in page


def test_worker_heartbeats_are_listed_read_only(admin_client):
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="host-a:42")
    page = admin_client.get("/admin/pipeline/workerheartbeat/").content.decode()
    assert "host-a:42" in page
    assert admin_client.get("/admin/pipeline/workerheartbeat/add/").status_code == 403


# -- the same operations through the API --------------------------------------------------------


def test_api_pause_and_resume_are_compare_and_swap(hash_collection):
    api = api_for("pause_collection")
    first = api.post("/api/v1/collections/hashes/pause/")
    assert (first.status_code, first.json()) == (200, {"collection": "hashes", "paused": True, "changed": True})
    assert api.post("/api/v1/collections/hashes/pause/").json()["changed"] is False
    assert Collection.objects.get().paused
    assert api.post("/api/v1/collections/hashes/resume/").json() == {
        "collection": "hashes",
        "paused": False,
        "changed": True,
    }
    assert api.post("/api/v1/collections/missing/pause/").status_code == 404


def test_api_reembed_and_requeue_reuse_the_queue_transitions(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(2)])
    EmbeddingIngestionPipeline().drain()
    assert api_for("requeue_document").post("/api/v1/collections/hashes/reembed/").status_code == 403

    reembed = api_for("reembed_collection", "requeue_document")
    response = reembed.post("/api/v1/collections/hashes/reembed/")
    assert (response.status_code, response.json()) == (202, {"collection": "hashes", "requeued": 2})

    doc = Document.objects.first()
    conflict = reembed.post(f"/api/v1/collections/hashes/documents/{doc.external_id}/requeue/")
    assert conflict.status_code == 409
    assert (
        conflict.json()["error"]["message"] == "document is pending; only embedded or failed documents can be requeued"
    )

    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.FAILED)
    requeued = reembed.post(f"/api/v1/collections/hashes/documents/{doc.external_id}/requeue/")
    assert requeued.status_code == 202 and requeued.json()["status"] == "pending"


def test_a_document_is_deleted_through_the_api_or_the_admin_with_its_chunks(admin_client, hash_collection):
    # A producer whose source removed a page had no way to take it out of search but the admin.
    enqueue(hash_collection, [IncomingDocument(i, f"text of {i} " * 20) for i in ("docs/a.md", "b", "c")])
    EmbeddingIngestionPipeline().drain()
    assert (
        api_for("view_document").delete("/api/v1/collections/hashes/documents/docs/a.md/").json()["error"]["message"]
        == "permission pipeline.delete_document required"
    )

    api = api_for("view_document", "delete_document")
    assert api.delete("/api/v1/collections/hashes/documents/docs/a.md/").status_code == 204
    assert set(Document.objects.values_list("external_id", flat=True)) == {"b", "c"}
    assert set(Chunk.objects.values_list("document__external_id", flat=True)) == {"b", "c"}
    gone = api.delete("/api/v1/collections/hashes/documents/docs/a.md/")
    assert (gone.status_code, gone.json()["error"]["message"]) == (
        404,
        "no document 'docs/a.md' in collection 'hashes'",
    )
    assert api.delete("/api/v1/collections/hashes/documents/b/", {"force": True}, format="json").status_code == 400

    # The admin's delete action takes the same path (rows locked first: DocumentQuerySet.remove). Its
    # confirmation counts the chunks instead of listing each one (Django's collector did).
    pk = Document.objects.get(external_id="b").pk
    confirm = admin_client.post(DOCUMENTS, {"action": "delete_selected", "_selected_action": [pk]})
    chunks = Chunk.objects.filter(document_id=pk).count()
    assert chunks >= 1 and f"Chunks: {chunks}" in confirm.content.decode()
    assert "b#0" not in confirm.content.decode() and confirm.context["deletable_objects"] == [["hashes/b"]]
    response = admin_client.post(
        DOCUMENTS, {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}, follow=True
    )
    assert response.status_code == 200
    assert list(Document.objects.values_list("external_id", flat=True)) == ["c"]
    assert set(Chunk.objects.values_list("document__external_id", flat=True)) == {"c"}


def test_a_view_only_operator_opens_a_collection_page_read_only(client, hash_collection):
    viewer = staff()
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)
    response = client.get(f"{CHANGELIST}{hash_collection.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="hnsw_m"' not in page and 'name="model"' not in page
    assert '<div class="readonly">local/hash-16</div>' in page and 'name="_save"' not in page
