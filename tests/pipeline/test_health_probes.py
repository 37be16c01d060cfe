"""The health endpoint costs nothing and reveals nothing to anonymous callers: pass/fail only,
model probes reused for an interval (one provider call per configuration, whatever the number
of probes), every model configuration reported, and a model's load kept apart from its answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from pipeline import providers
from pipeline.collections import create_collection
from pipeline.models import Collection, ModelCheck
from tests.conftest import ROOT, database_url, manage, wait_for
from tests.factories import fake_backed
from tests.tools import api_token, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_collection(fake_collection, second_provider) -> Collection:
    """A second model configuration (another provider endpoint), beside `fake_collection`."""
    return fake_backed("other", second_provider.api_base, model="openai/other-embedder")


def configurations(body: dict) -> list[dict]:
    return next(c for c in body["checks"] if c["name"] == "model")["details"]["configurations"]


def test_anonymous_callers_get_pass_fail_only_never_names_or_provider_errors(
    client, admin_client, fake_collection, fake_provider
):
    fake_provider.mode = "401"  # the provider's error echoes the key
    anonymous = client.get("/api/v1/health/")
    assert anonymous.status_code == 503
    body = anonymous.json()
    assert body == {
        "healthy": False,
        "checks": [{"name": "model", "ok": False}, {"name": "pgvector", "ok": True}, {"name": "queue", "ok": False}],
    }
    text = anonymous.content.decode()
    for secret in ("fake", "Incorrect API key", "sk-test", "openai", "heartbeat"):
        assert secret not in text

    detailed = admin_client.get("/api/v1/health/")
    assert detailed.status_code == 503
    [config] = configurations(detailed.json())
    assert config["collections"] == ["fake"] and "Incorrect API key provided: [redacted]" in config["reason"]


def test_a_bad_token_is_refused_rather_than_answered_as_anonymous(client, hash_collection):
    response = client.get("/api/v1/health/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401


def test_many_anonymous_probes_make_one_provider_call_per_configuration_per_interval(
    client, fake_collection, fake_provider, second_collection, second_provider, settings
):
    settings.EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS = 60
    for _ in range(20):
        client.get("/api/v1/health/")
    assert (len(fake_provider.requests), len(second_provider.requests)) == (1, 1)

    # Once the stored probes are older than the interval, the next probe refreshes each once.
    ModelCheck.objects.update(checked_at=timezone.now() - timedelta(seconds=61))
    for _ in range(20):
        client.get("/api/v1/health/")
    assert (len(fake_provider.requests), len(second_provider.requests)) == (2, 2)


def test_the_probe_is_shared_through_the_database_not_a_process(
    fake_collection, fake_provider, second_collection, second_provider, settings
):
    from pipeline import health

    health.check_model()  # e.g. another web worker, or check_health, just probed
    assert len(fake_provider.requests) == 1
    result = health.run_checks(["model"], cached=True)[0]
    assert result.ok and len(fake_provider.requests) == 1 and len(second_provider.requests) == 1


def test_every_failing_configuration_is_reported_not_only_the_first(
    admin_client, fake_collection, fake_provider, second_collection, second_provider
):
    fake_provider.mode = "500"
    second_provider.mode = "wrong_dims"
    body = admin_client.get("/api/v1/health/").json()
    model = next(c for c in body["checks"] if c["name"] == "model")
    assert not model["ok"]
    assert model["reason"].startswith("2 of 2 model configurations failed: openai/fake-embedder (collection fake)")
    assert "openai/other-embedder (collection other) failed: dimension_mismatch:" in model["reason"]
    assert "returned vectors of [9] dimensions, collection expects 8" in model["reason"]
    by_model = {c["model"]: c for c in configurations(body)}
    assert set(by_model) == {"openai/fake-embedder", "openai/other-embedder"}
    assert not by_model["openai/fake-embedder"]["ok"] and not by_model["openai/other-embedder"]["ok"]


def test_a_healthy_configuration_is_reported_beside_a_failing_one(
    admin_client, fake_collection, fake_provider, second_collection, second_provider
):
    second_provider.mode = "500"
    body = admin_client.get("/api/v1/health/").json()
    by_model = {c["model"]: c for c in configurations(body)}
    assert by_model["openai/fake-embedder"]["ok"] and by_model["openai/fake-embedder"]["collections"] == ["fake"]
    assert not by_model["openai/other-embedder"]["ok"]
    model = next(c for c in body["checks"] if c["name"] == "model")
    assert model["reason"].startswith("openai/other-embedder (collection other) failed: api_error")


def test_a_paused_collections_stored_probe_is_dropped(fake_collection, fake_provider, second_collection):
    from pipeline import health

    health.check_model()
    assert ModelCheck.objects.count() == 2
    Collection.objects.filter(name="other").pause()
    health.check_model()
    assert list(ModelCheck.objects.values_list("collections", flat=True)) == [["fake"]]


@pytest.mark.django_db(transaction=True)
def test_a_fresh_process_reports_the_local_models_load_apart_from_its_answer(tmp_path):
    create_collection(name="minilm", model="local/all-MiniLM-L6-v2", chunk_size=128, chunk_overlap=16)
    # A fresh process loads LiteLLM and the model's weights on its first probe: here ~20 s,
    # over the 10 s timeout. Only the answer is held against the timeout.
    child = manage(
        "check_health", "--json", "--check", "model", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, out + err
    [config] = configurations(json.loads(out))
    print(f"\nfresh process: load {config['load_seconds']:.2f} s, answer {config['seconds']:.3f} s")
    assert config["ok"] and config["collections"] == ["minilm"]
    assert config["load_seconds"] > 0


@pytest.mark.django_db(transaction=True)
def test_web_workers_share_the_local_model_loaded_before_gunicorn_forks(tmp_path):
    create_collection(name="minilm", model="local/all-MiniLM-L6-v2", chunk_size=128, chunk_overlap=16)
    user = User.objects.create_user("monitor")
    # The full report names every team's collections: a platform operator's.
    user.user_permissions.add(Permission.objects.get(codename="access_all_collections"))
    token = api_token(user)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    (tmp_path / "prometheus").mkdir()
    web = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "embedportal.wsgi",
            "--config",
            "python:embedportal.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    return True
            except OSError:
                return False

        wait_for(answers, timeout=240)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/health/", headers={"Authorization": f"Token {token}"}
        )
        try:
            body = json.load(urllib.request.urlopen(request, timeout=60))
        except urllib.error.HTTPError as exc:  # 503: no worker heartbeat in this test
            body = json.load(exc)
        [config] = configurations(body)
        # The worker that answered loaded no weights (4 s and more): the master had loaded them before forking.
        # It compiled its own OpenVINO inference requests (0.2 to 0.7 s), timed as loading, not as the probe.
        assert config["ok"] and config["load_seconds"] < 2.0, config
        with open(f"/proc/{web.pid}/maps") as maps:
            mapped = maps.read()
        # The model's runtime is in the master, shared by fork: OpenVINO, and no torch at all.
        assert "libopenvino" in mapped and "libtorch" not in mapped
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=60)
    assert providers.LOCAL_MINILM in config["model"]
    # No control socket: its default path is per user, and two stacks on one machine bound the same one.
    assert "Control socket" not in web.stderr.read()


def test_the_overview_page_reuses_the_stored_probe(admin_client, fake_collection, fake_provider, settings):
    settings.EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS = 60
    for _ in range(3):
        assert admin_client.get("/admin/pipeline/collection/overview/").status_code == 200
    assert len(fake_provider.requests) == 1


def test_check_health_command_always_probes_now(fake_collection, fake_provider, settings):
    from django.core.management import call_command

    settings.EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS = 60
    call_command("check_health", "--check", "model")
    call_command("check_health", "--check", "model")
    assert len(fake_provider.requests) == 2
    assert ModelCheck.objects.count() == 1


def test_stored_probes_are_listed_read_only_in_the_admin(admin_client, fake_collection, fake_provider):
    fake_provider.mode = "500"
    admin_client.get("/api/v1/health/")
    page = admin_client.get("/admin/pipeline/modelcheck/")
    assert page.status_code == 200 and "openai/fake-embedder" in page.content.decode()
    assert admin_client.get("/admin/pipeline/modelcheck/add/").status_code == 403
