"""The audit trail: each state-changing action through the API, the admin and the commands leaves
exactly one event (who, what, which collection, from where); refused requests and reads leave none;
secrets never reach it; the API export filters and needs its permission; old events are pruned."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django import forms
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule
from rest_framework.test import APIClient

from audit import trail
from audit.models import AuditEvent
from audit.tasks import prune_history
from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.collections import create_collection
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument
from testing.models import TestRun
from tests.pipeline.test_admin_enqueue import DOCUMENT_ADD, document_form
from tests.pipeline.test_optimizer import embedding_bound
from tests.tokens.test_tokens import create_in_admin
from tests.tools import client_with, error_of, run_action
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

COLLECTION = "/api/v1/collections/hashes/"
AUDIT = "/api/v1/audit/"


def only_event() -> AuditEvent:
    events = list(AuditEvent.objects.all())
    assert len(events) == 1, [str(e) for e in events]
    return events[0]


def embedded(collection: Collection, *ids: str) -> None:
    enqueue(collection, [IncomingDocument(i, f"text of {i}. " * 20) for i in ids])
    EmbeddingIngestionPipeline().drain()


def more_collections(*names: str) -> None:
    for name in names:
        create_collection(name=name, model="local/hash-16", chunk_unit="characters", chunk_size=200, chunk_overlap=20)


# --- the API --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "action", "documents"),
    [
        ("patch", COLLECTION, {"batch_size": 8}, "collection.change", None),
        ("post", COLLECTION + "pause/", None, "collection.pause", None),
        ("post", COLLECTION + "resume/", None, "collection.resume", None),
        ("post", COLLECTION + "documents/", [{"id": "new", "text": "fresh text"}], "collection.enqueue", 1),
        ("post", COLLECTION + "reembed/", {}, "collection.reembed", 2),
        ("post", COLLECTION + "documents/d1/requeue/", None, "collection-document-requeue", 1),
        ("delete", COLLECTION + "documents/d1/", None, "collection-document.delete", 1),
        ("delete", COLLECTION, None, "collection.delete", 2),
    ],
)
def test_each_api_action_leaves_one_event_with_its_actor_action_and_collection(
    hash_collection, api, admin_user, method, path, body, action, documents
):
    embedded(hash_collection, "d1", "d2")
    AuditEvent.objects.all().delete()

    response = getattr(api, method)(path, body, format="json")

    assert 200 <= response.status_code < 300, response.content
    event = only_event()
    assert (event.via, event.actor, event.action, event.collection) == ("api", admin_user.username, action, "hashes")
    assert event.documents == documents
    assert event.address == "127.0.0.1"


def test_a_token_request_records_its_token_and_the_address_the_throttles_count(hash_collection, admin_user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    _, secret = ApiToken.objects.issue(admin_user, "deployer", "operate", 1)
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")

    # A client-written X-Forwarded-For entry counts for nothing: the ingress appends the real one.
    client.post(COLLECTION + "pause/", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9")

    event = only_event()
    assert (event.actor, event.token, event.address) == (admin_user.username, "deployer", "203.0.113.9")


def test_a_patch_records_the_settings_before_and_after(hash_collection, api):
    api.patch(COLLECTION, {"chunk_size": 300, "chunk_overlap": 20, "name": "renamed"}, format="json")

    # chunk_overlap did not change: only what changed is recorded; a rename under the new name.
    event = only_event()
    assert event.changes == {"chunk_size": [200, 300], "name": ["hashes", "renamed"]}
    assert (event.action, event.collection) == ("collection.change", "renamed")


def test_a_reembed_records_the_settings_it_changes(hash_collection, api):
    embedded(hash_collection, "d1")
    response = api.post(COLLECTION + "reembed/", {"chunk_size": 300, "chunk_overlap": 20}, format="json")
    assert response.status_code == 202, response.content

    event = only_event()
    assert (event.action, event.documents) == ("collection.reembed", 1)
    assert event.changes == {"chunk_size": [200, 300]}  # chunk_overlap was 20 already


def test_creating_a_collection_names_it(db, api):
    body = {"name": "made", "model": "local/hash-16", "chunk_unit": "characters", "chunk_size": 100}
    assert api.post("/api/v1/collections/", body, format="json").status_code == 201

    event = only_event()
    assert (event.action, event.collection) == ("collection.add", "made")


def test_deleting_four_collections_leaves_four_events(hash_collection, api):
    more_collections("second", "third", "fourth")

    for name in ("hashes", "second", "third", "fourth"):
        assert api.delete(f"/api/v1/collections/{name}/").status_code == 204

    events = AuditEvent.objects.order_by("at")
    assert [(e.action, e.collection) for e in events] == [
        ("collection.delete", name) for name in ("hashes", "second", "third", "fourth")
    ]


def test_applying_an_optimization_records_the_setting_before_and_after(hash_collection, api):
    embedding_bound(hash_collection)
    body = {"collection": "hashes", "recommendation": "batch-size-hashes"}

    assert api.post("/api/v1/embedding-pipeline-operations/performance/apply/", body, format="json").status_code == 201

    event = only_event()
    assert (event.action, event.collection) == ("performance-apply", "hashes")
    assert event.changes == {"batch_size": [16, 32]}


def test_retrying_failures_counts_the_documents_requeued(hash_collection, api):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    Document.objects.update(status=DocumentStatus.FAILED)
    for doc in Document.objects.order_by("external_id"):
        record_failure(doc.pk, PipelineError(ErrorType.RATE_LIMIT, Stage.EMBEDDING, "429"), "429")
    one = FailedDocument.objects.order_by("pk").first()

    assert api.post(f"/api/v1/failures/{one.pk}/retry/").status_code == 200
    assert api.post("/api/v1/failures/retry/", {"error_type": "rate_limit"}, format="json").status_code == 200

    assert list(AuditEvent.objects.order_by("at").values_list("action", "collection", "target", "documents")) == [
        ("failure.retry", "hashes", f"failure {one.pk}", 1),
        ("failure.bulk_retry", "", "", 2),
    ]


def test_starting_a_test_run_leaves_one_event_and_the_refused_second_none(db, api, admin_client):
    body = {"categories": ["edge"], "scenarios": ["health_checks_pass"], "wait": 0}

    started = api.post("/api/v1/embedding-pipeline-operations/test", body, format="json")
    assert started.status_code == 202, started.content
    error_of(api.post("/api/v1/embedding-pipeline-operations/test", {}, format="json"), 409)
    admin_client.post("/admin/testing/testrun/run-now/", {})  # refused too: a run is queued

    event = only_event()
    assert (event.via, event.action, event.target) == ("api", "ops-test.add", f"ops-test {started.json()['id']}")


def test_reads_searches_and_refused_requests_leave_no_event(hash_collection, api):
    embedded(hash_collection, "d1")
    AuditEvent.objects.all().delete()
    viewer = client_with("view_collection")

    assert api.get(COLLECTION).status_code == 200
    assert api.post(COLLECTION + "search/", {"query": "text of d1.", "k": 1}, format="json").status_code == 200
    error_of(viewer.patch(COLLECTION, {"chunk_size": 300}, format="json"), 403)
    error_of(viewer.post(COLLECTION + "pause/"), 403)
    error_of(api.patch(COLLECTION, {"chunk_size": "big"}, format="json"), 400)
    error_of(api.post(COLLECTION + "pause/", {"now": True}, format="json"), 400)
    enqueue(hash_collection, [IncomingDocument("pending", "not embedded yet")])
    error_of(api.post(COLLECTION + "documents/pending/requeue/"), 409)
    error_of(api.delete("/api/v1/collections/nope/"), 404)

    assert AuditEvent.objects.count() == 0


def test_secrets_in_changed_settings_are_redacted(hash_collection, api, monkeypatch):
    monkeypatch.setenv("PROVIDER_API_KEY", "s3cr3t-value-from-env")
    params = {"note": "key s3cr3t-value-from-env", "hint": "Bearer abcdef123456", "dimensions": 16}
    # A provider's model: a bundled local one takes no extra_params.
    Collection.objects.filter(pk=hash_collection.pk).update(model="openai/text-embedding-3-small")

    assert api.patch(COLLECTION, {"extra_params": params}, format="json").status_code == 200, "accepted"

    changes = only_event().changes["extra_params"]
    assert changes == [{}, {"note": "key [redacted]", "hint": "Bearer [redacted]", "dimensions": 16}]
    exported = api.get(AUDIT).content.decode()
    assert "s3cr3t-value-from-env" not in exported and "abcdef123456" not in exported


def test_values_under_credential_names_are_redacted_whatever_they_look_like():
    # The API refuses such keys in extra_params today; an older row or another model may hold them.
    value = {"api_key": "plain", "headers": {"Authorization": "x"}, "tokens_per_minute": 10, "api_key_env": "KEY"}
    # An api_base stored with credentials before the API refused them: a change records its before.
    api_base = ["https://user:hunter22@llm.example/v1", "https://llm.example/v1"]

    assert trail.safe(value) == {
        "api_key": "[redacted]",
        "headers": {"Authorization": "[redacted]"},
        "tokens_per_minute": 10,
        "api_key_env": "KEY",
    }
    assert trail.safe(api_base) == ["https://[redacted]@llm.example/v1", "https://llm.example/v1"]


# --- the admin ------------------------------------------------------------------------------------


def form_data(form: forms.ModelForm) -> dict:
    """What the admin's change form posts unchanged."""
    data = {}
    for name, field in form.fields.items():
        value = field.prepare_value(form.initial.get(name, field.initial))
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    return data


def test_renaming_in_the_admin_change_form_records_before_and_after(hash_collection, admin_client, admin_user):
    url = f"/admin/pipeline/collection/{hash_collection.pk}/change/"
    data = {**form_data(admin_client.get(url).context["adminform"].form), "name": "renamed", "chunk_size": 300}

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    event = only_event()
    assert (event.via, event.actor, event.action) == ("admin", admin_user.username, "collection.change")
    assert event.collection == "renamed"
    assert event.changes == {"name": ["hashes", "renamed"], "chunk_size": [200, 300]}


def test_enqueueing_a_document_in_the_admin_leaves_one_event(hash_collection, admin_client):
    response = admin_client.post(DOCUMENT_ADD, document_form(hash_collection, "ops-1", "Added by an operator."))

    assert response.status_code == 302
    event = only_event()
    assert (event.via, event.action, event.collection, event.documents) == ("admin", "document.add", "hashes", 1)
    assert "ops-1" in event.target


def test_an_admin_action_leaves_one_event_per_collection(hash_collection, admin_client):
    more_collections("second")
    pks = list(Collection.objects.values_list("pk", flat=True))

    run_action(admin_client, "/admin/pipeline/collection/", "pause_collections", pks)

    assert sorted(AuditEvent.objects.values_list("action", "collection")) == [
        ("collection.pause_collections", "hashes"),
        ("collection.pause_collections", "second"),
    ]


def test_requeueing_documents_in_the_admin_counts_them(hash_collection, admin_client):
    embedded(hash_collection, "d1", "d2", "d3")
    AuditEvent.objects.all().delete()

    run_action(
        admin_client,
        "/admin/pipeline/document/",
        "requeue_documents",
        list(Document.objects.values_list("pk", flat=True)),
    )

    event = only_event()
    assert (event.action, event.collection, event.documents) == ("document.requeue_documents", "hashes", 3)


def test_deleting_four_collections_in_the_admin_leaves_four_events(hash_collection, admin_client):
    more_collections("second", "third", "fourth")
    pks = list(Collection.objects.values_list("pk", flat=True))
    selected = {"action": "delete_selected", "_selected_action": pks}

    admin_client.post("/admin/pipeline/collection/", selected)  # the confirmation page
    assert AuditEvent.objects.count() == 0
    admin_client.post("/admin/pipeline/collection/", {**selected, "post": "yes"})

    assert Collection.objects.count() == 0
    assert sorted(AuditEvent.objects.values_list("action", "collection")) == [
        ("collection.delete", name) for name in ("fourth", "hashes", "second", "third")
    ]


def test_applying_an_optimization_in_the_admin_records_before_and_after(hash_collection, admin_client):
    embedding_bound(hash_collection)
    body = {"collection": "hashes", "recommendation": "batch-size-hashes"}

    assert admin_client.post("/admin/pipeline/optimizationchange/performance/", body).status_code == 302

    event = only_event()
    assert (event.via, event.action, event.collection) == ("admin", "optimizationchange.apply", "hashes")
    assert event.changes == {"batch_size": [16, 32]}


def test_run_tests_now_in_the_admin_leaves_one_event_naming_the_run(db, admin_client):
    response = admin_client.post("/admin/testing/testrun/run-now/", {"category": "edge", "quick": "1"})

    assert response.status_code == 302
    run = TestRun.objects.get()
    event = only_event()
    assert (event.via, event.action, event.target) == ("admin", "testrun.run", f"test run {run.pk}")


def test_the_admin_shows_the_trail_read_only_with_its_filters(hash_collection, api, admin_client):
    api.post(COLLECTION + "pause/")
    event = only_event()

    page = admin_client.get("/admin/audit/auditevent/", {"via": "api", "collection": "hashes"})
    assert page.status_code == 200 and "collection.pause" in page.content.decode()
    detail = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert 'name="_save"' not in detail
    assert admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.count() == 1


# --- management commands --------------------------------------------------------------------------


def test_a_command_leaves_one_event_with_the_command_and_host(db):
    call_command("create_collection", "cli", "--model", "local/hash-16")

    event = only_event()
    assert (event.via, event.action, event.collection) == ("command", "create_collection", "cli")
    assert event.address == f"cli@{socket.gethostname()}"
    assert event.actor and event.token == ""


def test_the_enqueue_command_counts_the_documents(hash_collection, tmp_path):
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"# {name}\n\nSome text.")

    call_command("enqueue", str(tmp_path), "--collection", "hashes", "--base", str(tmp_path), "--no-progress")

    event = only_event()
    assert (event.action, event.collection, event.documents) == ("enqueue", "hashes", 2)


def test_optimize_apply_records_each_applied_change_with_before_and_after(hash_collection):
    embedding_bound(hash_collection)

    call_command("optimize", "--apply", "--json", stdout=StringIO())

    event = only_event()
    assert (event.action, event.collection, event.changes) == ("optimize", "hashes", {"batch_size": [16, 32]})


def test_import_golden_queries_records_the_import_not_a_dry_run(hash_collection, tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps({"query": "what is d1?", "expected": "d1"}) + "\n")

    call_command("import_golden_queries", str(path), collection="hashes", dry_run=True, stdout=StringIO())
    call_command("import_golden_queries", str(path), collection="hashes", stdout=StringIO())

    event = only_event()
    assert (event.action, event.collection, event.target) == ("import_golden_queries", "hashes", "1 golden queries")


def test_create_api_token_records_whose_token_never_its_key(admin_user):
    out = StringIO()
    call_command("create_api_token", admin_user.username, name="ci", stdout=out, stderr=StringIO())

    event = only_event()
    assert (event.action, event.target) == ("create_api_token", f"token 'ci' of {admin_user.username}")
    key = out.getvalue().strip()
    assert key and key not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_creating_and_revoking_a_token_in_the_admin_records_whose_token_never_its_secret(admin_client, admin_user):
    robot = User.objects.create_user("robot")
    secret = create_in_admin(admin_client, user=robot.pk, name="deploy", scope="write", days=5)
    created = only_event()
    assert (created.via, created.actor, created.action, created.target) == (
        "admin",
        admin_user.username,
        "apitoken.add",
        "token 'deploy' of robot",
    )

    token = ApiToken.objects.get()
    assert run_action(admin_client, "/admin/tokens/apitoken/", "revoke", [token.pk]) == ["1 token(s) revoked."]
    revoked = AuditEvent.objects.exclude(pk=created.pk).get()
    assert (revoked.actor, revoked.action, revoked.target) == (
        admin_user.username,
        "apitoken.revoke",
        "token 'deploy' of robot",
    )
    events = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert secret[3:] not in events and token.token_key not in events


@pytest.mark.parametrize("name", ["detect_stale", "reprocess_failed"])
def test_the_reprocessing_commands_record_a_real_run_not_a_dry_one(db, name):
    call_command(name, "--dry-run", stdout=StringIO())
    assert not AuditEvent.objects.exists()

    call_command(name, stdout=StringIO())

    event = only_event()
    assert (event.via, event.action, event.documents) == ("command", name, 0)


# --- export and retention -------------------------------------------------------------------------


def test_the_api_export_filters_and_needs_the_view_permission(hash_collection, api):
    more_collections("second")
    api.post(COLLECTION + "pause/")
    api.post("/api/v1/collections/second/pause/")
    api.patch(COLLECTION, {"chunk_size": 300}, format="json")
    AuditEvent.objects.filter(action="collection.change").update(at=timezone.now() - timedelta(days=2))

    def listed(client: APIClient, **query: str) -> list[tuple[str, str]]:
        response = client.get(AUDIT, query)
        assert response.status_code == 200, response.content
        return [(e["action"], e["collection"]) for e in response.json()["results"]]

    assert listed(api, collection="hashes") == [("collection.pause", "hashes"), ("collection.change", "hashes")]
    assert listed(api, action="collection.change") == [("collection.change", "hashes")]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert listed(api, since=since, via="api") == [("collection.pause", "second"), ("collection.pause", "hashes")]
    assert listed(client_with("view_auditevent", app="audit"), actor="nobody") == []
    error_of(client_with("view_collection").get(AUDIT), 403)
    assert "did you mean" in error_of(api.get(AUDIT, {"colection": "hashes"}), 400)["message"]


@override_settings(EMBEDPORTAL_AUDIT_RETENTION_DAYS=30)
def test_events_past_retention_are_pruned(db):
    now = timezone.now()
    for days in (31, 29):
        AuditEvent.objects.create(via="api", action="collection.pause", at=now - timedelta(days=days))

    assert prune_history(now) == {"audit_events": 1}

    assert [round((now - e.at).days) for e in AuditEvent.objects.all()] == [29]


def test_migrate_registers_the_daily_pruning_pass(db):
    # The test database was made by migrate: its post_migrate registers every app's SCHEDULES.
    pruning = Schedule.objects.get(name="audit-retention")
    assert (pruning.func, pruning.minutes, pruning.repeats) == ("audit.tasks.prune_history", 24 * 60, -1)


@pytest.mark.parametrize(
    "query",
    [{"since": "2026-01-01T00:00:00-17:16"}, {"until": "2026-01-01T00:00:00+16:00"}, {"since": "2026-01-01T00-23:59"}],
)
def test_a_utc_offset_postgresql_cannot_read_is_a_400_naming_the_parameter(hash_collection, api, query):
    # A schemathesis run: Python reads offsets up to 23:59, PostgreSQL up to 15:59; the page count was a 500.
    api.post(COLLECTION + "pause/")
    (name,) = query
    assert error_of(api.get(AUDIT, query), 400)["details"] == {
        name: ["UTC offset out of range; give one from -15:59 to +15:59, or Z"]
    }
    for moment in ("2026-01-01T00:00:00+15:59", "0001-01-01T00:00:00+15:59", "9999-12-31T23:59:59-15:59:59"):
        assert api.get(AUDIT, {name: moment}).status_code == 200, moment
