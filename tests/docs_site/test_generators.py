"""The generated reference pages follow the running code: every setting, endpoint, metric,
alert and command is on its page; a missing source is named instead of failing the build."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from prometheus_client.parser import text_string_to_metric_families

from docs_site.generators import (
    EmbeddingPipelineOperationsDocGenerator,
    alerts,
    api,
    architecture,
    commands,
    configuration,
    metrics,
)
from docs_site.generators.base import GeneratedPage
from embedportal.config import SETTINGS


def test_committed_generated_pages_match_the_code() -> None:
    """The CI gate: `manage.py docs check` exits 0 only when docs/reference/ is up to date."""
    call_command("docs", "check", "--no-record")


def test_docs_check_fails_naming_the_page_and_why(settings, tmp_path: Path, capsys) -> None:
    docs = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = docs  # the alerts page checks the runbooks of this folder
    EmbeddingPipelineOperationsDocGenerator(docs).write()
    call_command("docs", "check", "--no-record")
    (docs / "reference" / "alerts.md").unlink()
    page = docs / "reference" / "configuration.md"
    page.write_text(page.read_text().replace("Documents a worker claims at a time.", "Whatever."))

    with pytest.raises(CommandError) as failure:
        call_command("docs", "check", "--no-record")
    message = str(failure.value)
    assert "reference/alerts.md: not generated yet" in message
    assert "reference/configuration.md: same inputs, different text" in message and "Whatever." in message
    assert "reference/api.md" not in message

    call_command("docs", "generate")
    call_command("docs", "check", "--no-record")


def test_generating_twice_gives_the_same_text_and_hash() -> None:
    first = [p.render() for p in EmbeddingPipelineOperationsDocGenerator().pages()]
    second = [p.render() for p in EmbeddingPipelineOperationsDocGenerator().pages()]
    assert first == second
    assert all(re.search(r"^inputs_sha256: [0-9a-f]{64}$", text, re.M) for text in first)
    assert not any(str(settings.BASE_DIR) in text for text in first)  # nothing of this machine's paths


def test_every_registered_setting_is_on_the_configuration_page() -> None:
    text = configuration.generate().render()
    for name, setting in SETTINGS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert setting.kind in row and setting.description.split("`")[0][:30] in row


def test_live_configuration_redacts_secrets_and_names_no_collection(db, monkeypatch, hash_collection) -> None:
    monkeypatch.setenv("EMBEDPORTAL_METRICS_BASIC_AUTH", "prometheus:hunter2-secret")
    monkeypatch.setenv("EMBEDPORTAL_CLAIM_BATCH", "48")
    text = configuration.generate(live=True).render(live=True)
    assert "hunter2" not in text
    assert "| `EMBEDPORTAL_METRICS_BASIC_AUTH` | set |" in text
    assert "| `EMBEDPORTAL_CLAIM_BATCH` | 48 |" in text
    assert "| `EMBEDPORTAL_LEASE_SECONDS` | 30 (default) |" in text
    assert "hashes" not in text  # every team reads the docs: a collection's configuration is its team's
    # The committed page carries none of it.
    assert "Current values" not in configuration.generate().render()


def test_every_operation_of_the_openapi_schema_is_on_the_api_page() -> None:
    text = api.generate().render()
    for method, path, _op in api.operations(api.schema()):
        assert f"### `{method} {path}`" in text
    assert "/api/v1/embedding-pipeline-operations/docs" in text


def test_every_metric_of_ours_is_on_the_metrics_page_with_labels_and_help() -> None:
    found, missing = metrics.app_metrics()
    assert not missing
    names = {m.name for m in found}
    assert {"embedding_pipeline_errors_total", "documentation_freshness_embedding_pipeline_operations"} <= names
    text = metrics.generate().render()
    for m in found:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{m.name}` |"))
        assert m.type in row and all(f"`{label}`" in row for label in m.labels)


@pytest.mark.django_db
def test_every_family_on_the_metrics_endpoint_is_ours_on_the_page_or_another_exporters(client) -> None:
    # The text format writes a counter's or histogram's _created, and a gauge histogram's _gcount
    # and _gsum, as families of their own: they are samples of the family they belong to.
    text = client.get("/metrics").content.decode()
    scraped = {re.sub(r"_(created|gcount|gsum)$", "", f.name) for f in text_string_to_metric_families(text)}
    documented = {m.name.removesuffix("_total") for m in metrics.app_metrics()[0]}
    ours = {n for n in scraped if not n.startswith(metrics.FOREIGN_METRIC_PREFIXES)}
    assert {"test_pass_rate_embedding_pipeline_operations", "performance_slo_target_embedding_pipeline_operations"} <= (
        ours
    )
    assert ours - documented == set()


def test_every_alert_rule_is_on_the_alerts_page() -> None:
    text = alerts.generate().render()
    rules = alerts.alert_rules()
    assert len(rules) >= 13
    for rule in rules:
        assert f"| `{rule.name}` |" in text and f"### {rule.name}" in text


def test_every_project_command_and_subcommand_is_on_the_commands_page() -> None:
    text = commands.generate().render()
    names = commands.project_commands()
    assert {"docs", "run_pipeline", "reprocess_failed"} <= set(names)
    assert "migrate" not in names  # Django's own commands are Django's to document
    for name in names:
        assert f"## `{name}`" in text
    assert "### `docs check`" in text and "`--strict`" in text


def test_architecture_from_the_kustomize_overlay_draws_the_deployment() -> None:
    text = architecture.generate().render()
    assert "```mermaid\nflowchart LR" in text
    assert "Deployment_embedportal_worker -- SQL --> Cluster_embedportal_db" in text
    assert "ScaledObject_embedportal_worker -. scales .-> Deployment_embedportal_worker" in text
    assert "Service_embedportal_web --> Deployment_embedportal_web" in text
    assert "Generated without some of its sources" not in text


def test_without_kubectl_the_architecture_page_names_the_missing_source(tmp_path: Path) -> None:
    page = architecture.generate(kubectl=str(tmp_path / "no-kubectl"))
    text = page.render()
    assert "Generated without some of its sources" in text
    assert "rendered Kustomize overlay" in text and "could not run" in text
    assert "## Local topology" in text  # the rest of the page is still there
    assert page.missing and "missing_sources:" in text


def test_live_architecture_shows_workers_and_schedules_and_says_there_is_no_cluster(db) -> None:
    from django.core.management import call_command as run

    from pipeline.choices import WorkerRole
    from pipeline.models import WorkerHeartbeat

    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    run("migrate", "docs_site", verbosity=0)  # post_migrate registers the schedules
    page = architecture.generate(live=True)
    text = page.render(live=True)
    assert "## Live topology" in text and "alive" in text
    assert "docs_site.tasks.check_documentation" in text
    assert "Kubernetes API: not running in a cluster" in text
    assert page.inputs_hash == architecture.generate().inputs_hash  # live parts are never hashed


def test_a_page_records_the_hash_of_its_inputs() -> None:
    page = GeneratedPage("x.md", "X", "test", inputs={"a": 1}, body="b", sources=[])
    other = GeneratedPage("x.md", "X", "test", inputs={"a": 2}, body="b", sources=[])
    assert page.inputs_hash != other.inputs_hash
    assert f"inputs_sha256: {page.inputs_hash}" in page.render()
