"""The Kubernetes manifests under deploy/: rendered with kustomize, validated offline, and
checked against what the application really reads, runs, serves and exports."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from tests.deploy import app_facts, validators
from tests.deploy.render import (
    BASE,
    DEPLOY,
    OVERLAY_NAMES,
    OVERLAYS,
    PodContext,
    app_containers,
    find,
    kustomization_files,
    manifest_files,
    one,
    pod_contexts,
    referenced_files,
    render,
    render_overlay,
    selects,
)

RENDERED = [*OVERLAY_NAMES, "base"]


def rendered(name: str) -> list[dict[str, Any]]:
    return render(BASE) if name == "base" else render_overlay(name)


def uses_cnpg(name: str) -> bool:
    return name != "statefulset-pgvector"


# --- files and kustomizations ------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


def test_kustomizations_list_only_files_that_exist() -> None:
    for kustomization in kustomization_files():
        for path in referenced_files(kustomization):
            assert path.exists(), f"{kustomization.relative_to(DEPLOY)} names missing {path}"


def test_every_manifest_file_is_listed_by_exactly_one_kustomization() -> None:
    listed: dict[str, list[str]] = {}
    for kustomization in kustomization_files():
        for path in referenced_files(kustomization):
            if path.is_file():
                listed.setdefault(str(path), []).append(str(kustomization.relative_to(DEPLOY)))
    for path in manifest_files():
        owners = listed.get(str(path.resolve()), [])
        assert len(owners) == 1, f"{path.relative_to(DEPLOY)} is listed by {owners or 'no kustomization'}"


@pytest.mark.parametrize("overlay", RENDERED)
def test_overlay_renders_with_kustomize(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Job", "CronWorkflow", "ScaledObject", "NetworkPolicy"} <= kinds
    # Everything lands in the app's namespace (the Namespace itself has none).
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"embedportal"}


# --- schema validation ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", RENDERED)
def test_every_rendered_manifest_validates_strictly(overlay: str) -> None:
    errors = []
    for doc in rendered(overlay):
        try:
            validators.validate(doc)
        except validators.ManifestError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


def _misspell(overlay_docs: list[dict[str, Any]], kind: str, mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(find(overlay_docs, kind)[0])
    mutate(doc)
    return doc


MISSPELLINGS = {
    "Deployment (kubernetes-validate)": ("Deployment", lambda d: d["spec"].__setitem__("replica", 2)),
    "container field (kubernetes-validate)": (
        "Deployment",
        lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("readinessprobe", {}),
    ),
    "NetworkPolicy (kubernetes-validate)": ("NetworkPolicy", lambda d: d["spec"].__setitem__("podselector", {})),
    "ScaledObject (cloudcoil keda)": ("ScaledObject", lambda d: d["spec"].__setitem__("maxReplicas", 3)),
    "ScaledObject trigger (cloudcoil keda)": (
        "ScaledObject",
        lambda d: d["spec"]["triggers"][0].__setitem__("metdata", {}),
    ),
    "ServiceMonitor (cloudcoil prometheus-operator)": (
        "ServiceMonitor",
        lambda d: d["spec"]["endpoints"][0].__setitem__("paht", "/metrics"),
    ),
    "PodMonitor (cloudcoil prometheus-operator)": (
        "PodMonitor",
        lambda d: d["spec"].__setitem__("podMetricEndpoints", []),
    ),
    "AlertmanagerConfig receiver (cloudcoil prometheus-operator)": (
        "AlertmanagerConfig",
        lambda d: d["spec"]["receivers"][0].__setitem__("webhookConfig", []),
    ),
    "PrometheusRule (cloudcoil prometheus-operator)": (
        "PrometheusRule",
        lambda d: d["spec"].__setitem__("groups", [{"name": "g", "rules": [{"alert": "A", "exp": "up == 0"}]}]),
    ),
    "CronWorkflow deprecated schedule (hera)": (
        "CronWorkflow",
        lambda d: d["spec"].__setitem__("schedule", "* * * * *"),
    ),
    "CronWorkflow snake_case (hera)": ("CronWorkflow", lambda d: d["spec"].__setitem__("concurrency_policy", "Forbid")),
    "CronWorkflow template container (hera)": (
        "CronWorkflow",
        lambda d: d["spec"]["workflowSpec"]["templates"][0]["container"].__setitem__("enviroment", []),
    ),
    "CronWorkflow retry backoff (hera)": (
        "CronWorkflow",
        lambda d: d["spec"]["workflowSpec"]["templates"][0]["retryStrategy"]["backoff"].__setitem__(
            "maxduration", "1m"
        ),
    ),
    "CronWorkflow concurrencyPolicy value": (
        "CronWorkflow",
        lambda d: d["spec"].__setitem__("concurrencyPolicy", "Sometimes"),
    ),
    "Cluster spec (CNPG allow-list)": ("Cluster", lambda d: d["spec"].__setitem__("instance", 3)),
    "Cluster initdb (CNPG allow-list)": (
        "Cluster",
        lambda d: d["spec"]["bootstrap"]["initdb"].__setitem__("postInitApplicationSql", []),
    ),
    "Cluster parameter type (CNPG allow-list)": (
        "Cluster",
        lambda d: d["spec"]["postgresql"]["parameters"].__setitem__("max_connections", 200),
    ),
}


@pytest.mark.parametrize("case", sorted(MISSPELLINGS))
def test_each_validator_rejects_a_misspelt_or_invalid_field(case: str) -> None:
    kind, mutate = MISSPELLINGS[case]
    docs = render_overlay("vcluster")
    validators.validate(find(docs, kind)[0])  # the original is valid...
    with pytest.raises(validators.ManifestError):
        validators.validate(_misspell(docs, kind, mutate))  # ...and the broken one is not


def test_an_unknown_custom_kind_has_no_silent_pass() -> None:
    with pytest.raises(validators.ManifestError, match="no validator"):
        validators.validate({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}})


# --- the application's commands ------------------------------------------------------------------


def _dockerfile_entrypoint() -> list[str]:
    import json

    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert len(lines) == 1, "the Dockerfile needs exactly one ENTRYPOINT"
    return json.loads(lines[0].removeprefix("ENTRYPOINT").strip())


def argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: its command, or the image's ENTRYPOINT, followed by its args."""
    return [*(container.get("command") or _dockerfile_entrypoint()), *container.get("args", [])]


def management_commands_run(docs: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(owner, subcommand, its arguments) for every app container that runs `embedportal SUBCOMMAND`."""
    found = []
    for pod, container in app_containers(docs):
        run = argv(container)
        if run[0] == "embedportal":
            assert len(run) > 1, f"{pod.owner}/{container.get('name', 'main')}: `embedportal` without a subcommand"
            found.append((f"{pod.owner}/{container.get('name', 'main')}", run[1], run[2:]))
    return found


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_command_the_manifests_run_is_a_management_command(overlay: str) -> None:
    from django.core.management import CommandError, get_commands, load_command_class

    commands = get_commands()
    ran = management_commands_run(render_overlay(overlay))
    assert {c for _, c, _ in ran} >= {"migrate", "qcluster", "serve_metrics", "reprocess_failed", "detect_stale"}
    missing = [f"{owner}: {command}" for owner, command, _ in ran if command not in commands]
    assert not missing, f"not management commands of the app: {missing}"
    for owner, command, args in ran:
        # The command's own parser must accept the arguments (raises CommandError otherwise).
        parser = load_command_class(commands[command], command).create_parser("embedportal", command)
        try:
            parser.parse_args(args)
        except CommandError as exc:
            raise AssertionError(f"{owner}: embedportal {command} {' '.join(args)}: {exc}") from None


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_app_container_runs_embedportal_or_gunicorn_on_the_wsgi_app(overlay: str) -> None:
    for pod, container in app_containers(render_overlay(overlay)):
        run = argv(container)
        assert run[0] in {"embedportal", "gunicorn"}, f"{pod.owner}: runs {run}"
        if run[0] == "gunicorn":
            from django.conf import settings

            assert run[1] + ".application" == settings.WSGI_APPLICATION


def test_scheduled_jobs_run_the_reprocessing_commands_on_their_schedules() -> None:
    docs = render_overlay("vcluster")
    expected = {
        "embedportal-reprocess-failed": (["* * * * *"], ["reprocess_failed"]),
        "embedportal-detect-stale": (["*/5 * * * *"], ["detect_stale"]),
    }
    for name, (schedules, command) in expected.items():
        spec = one(docs, "CronWorkflow", name)["spec"]
        assert spec["schedules"] == schedules
        assert "schedule" not in spec, "the string `schedule` is deprecated since Argo 3.6"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["timezone"] == "UTC"
        assert 0 < spec["startingDeadlineSeconds"] < 60 * 5
        (template,) = spec["workflowSpec"]["templates"]
        assert template["name"] == spec["workflowSpec"]["entrypoint"]
        assert argv(template["container"])[1:] == command
        retry = template["retryStrategy"]
        assert retry["limit"] >= 1 and retry["retryPolicy"] == "OnFailure"
        assert {"duration", "factor", "maxDuration"} <= set(retry["backoff"])


def test_migrations_run_once_per_release_as_a_job() -> None:
    job = one(render_overlay("vcluster"), "Job", "embedportal-migrate")
    assert "generateName" not in job["metadata"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert argv(container) == ["embedportal", "migrate", "--noinput"]


# --- environment -------------------------------------------------------------------------------


def _env_sources(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """Every variable a container gets: envFrom ConfigMaps, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, "secrets come as files (*_FILE), not envFrom secretRef"
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<valueFrom>")
    return env


def _mounted_secret_files(pod: PodContext, container: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Mount path (or file path, for items) -> (secret name, key or None for the whole secret)."""
    volumes = {v["name"]: v for v in pod.volumes}
    files: dict[str, tuple[str, str | None]] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if not secret:
            continue
        if "items" in secret:
            for item in secret["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
        else:
            files[mount["mountPath"]] = (secret["secretName"], None)
    return files


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_env_var_the_manifests_set_is_read_by_the_app(overlay: str) -> None:
    docs = render_overlay(overlay)
    known = app_facts.settings_env_names() | set(app_facts.NON_SETTINGS_ENV)
    unknown = []
    for pod, container in app_containers(docs):
        secret_dirs = [p for p, (_, key) in _mounted_secret_files(pod, container).items() if key is None]
        for name, value in _env_sources(docs, container).items():
            if name in known:
                continue
            is_provider_key = app_facts.PROVIDER_KEY_FILE_ENV.match(name) and any(
                value.startswith(d + "/") for d in secret_dirs
            )
            if not is_provider_key:
                unknown.append(f"{pod.owner}/{container.get('name', 'main')}: {name}")
    assert not unknown, f"set but never read by embedportal/settings.py: {unknown}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_secrets_reach_the_app_as_mounted_files(overlay: str) -> None:
    docs = render_overlay(overlay)
    for pod, container in app_containers(docs):
        where = f"{pod.owner}/{container.get('name', 'main')}"
        env = _env_sources(docs, container)
        files = _mounted_secret_files(pod, container)
        # Without a database URL the settings would start the embedded PostgreSQL in the pod.
        assert env.get("DATABASE_URL_FILE") in files, f"{where}: DATABASE_URL_FILE is not a mounted file"
        assert files[env["DATABASE_URL_FILE"]] == ("embedportal-db-app", "uri"), where
        assert files.get(env.get("DJANGO_SECRET_KEY_FILE", "")) == ("embedportal-django", "secret-key"), where
        assert "DATABASE_URL" not in env and "DJANGO_SECRET_KEY" not in env, f"{where}: a secret in plain env"
        for name, value in env.items():
            if name.endswith("_FILE"):
                inside = value in files or any(value.startswith(d + "/") for d, (_, k) in files.items() if k is None)
                assert inside, f"{where}: {name}={value} is not inside a mounted Secret"


def test_prometheus_multiproc_dir_is_an_emptydir_shared_by_the_worker_containers() -> None:
    docs = render_overlay("vcluster")
    for name, containers in {"embedportal-worker": {"qcluster", "metrics"}, "embedportal-web": {"web"}}.items():
        spec = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounted = set()
        for container in spec["containers"]:
            directory = _env_sources(docs, container).get("PROMETHEUS_MULTIPROC_DIR")
            if directory is None:
                continue
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
            assert "emptyDir" in volumes[mount["name"]], f"{name}: PROMETHEUS_MULTIPROC_DIR must be an emptyDir"
            mounted.add((container["name"], mount["name"]))
        assert {c for c, _ in mounted} == containers
        assert len({v for _, v in mounted}) == 1, f"{name}: the containers must share one directory"


# --- what the app serves -----------------------------------------------------------------------


def _http_probes(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        container[p]["httpGet"]
        for p in ("livenessProbe", "readinessProbe", "startupProbe")
        if "httpGet" in container.get(p, {})
    ]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_probes_use_the_health_endpoints_on_the_serving_port(overlay: str) -> None:
    for pod, container in app_containers(render_overlay(overlay)):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in _http_probes(container):
            assert probe["path"] in app_facts.PROBE_PATHS, f"{pod.owner}: probes {probe['path']}"
            assert ports.get(probe["port"], probe["port"]) in ports.values()


def test_web_probes_liveness_healthz_readiness_readyz_and_has_a_startup_probe() -> None:
    spec = one(render_overlay("vcluster"), "Deployment", "embedportal-web")["spec"]["template"]["spec"]
    (web,) = spec["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "startupProbe" in web
    assert web["resources"]["requests"] and web["resources"]["limits"]


def test_gunicorn_binds_the_port_the_container_and_service_expose() -> None:
    docs = render_overlay("vcluster")
    (web,) = one(docs, "Deployment", "embedportal-web")["spec"]["template"]["spec"]["containers"]
    run = argv(web)
    bind = run[run.index("--bind") + 1]
    port = int(bind.rsplit(":", 1)[1])
    assert bind.startswith("0.0.0.0:"), "gunicorn must listen on all interfaces in a pod"
    assert {p["name"]: p["containerPort"] for p in web["ports"]} == {"http": port} == {"http": 8000}
    (service_port,) = one(docs, "Service", "embedportal-web")["spec"]["ports"]
    assert service_port["name"] == "http" and service_port["targetPort"] == "http"


def test_the_metrics_path_is_served_by_the_app() -> None:
    from django.urls import resolve

    monitor = one(render_overlay("vcluster"), "ServiceMonitor", "embedportal-web")
    for endpoint in monitor["spec"]["endpoints"]:
        resolve(endpoint["path"])  # raises Resolver404 when the app has no such URL


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_monitors_select_pods_exposing_the_named_port(overlay: str) -> None:
    docs = render_overlay(overlay)
    service = one(docs, "Service", "embedportal-web")
    monitor = one(docs, "ServiceMonitor", "embedportal-web")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}

    worker_monitor = one(docs, "PodMonitor", "embedportal-worker")
    worker_pods = [
        p for p in pod_contexts(docs) if selects(worker_monitor["spec"]["selector"]["matchLabels"], p.labels)
    ]
    assert [p.owner for p in worker_pods] == ["Deployment/embedportal-worker"]
    ports = {port["name"] for c in worker_pods[0].containers for port in c.get("ports", [])}
    assert {e["port"] for e in worker_monitor["spec"]["podMetricsEndpoints"]} == {"metrics"} <= ports

    if uses_cnpg(overlay):
        cluster = one(docs, "Cluster", "embedportal-db")
        db_monitor = one(docs, "PodMonitor", "embedportal-db")
        # CloudNativePG labels each instance pod cnpg.io/cluster=<name>; its exporter port is `metrics`.
        assert db_monitor["spec"]["selector"]["matchLabels"] == {"cnpg.io/cluster": cluster["metadata"]["name"]}
        assert [e["port"] for e in db_monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def _queries(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for scaled in find(docs, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                found.append((f"ScaledObject/{scaled['metadata']['name']}", trigger["metadata"]["query"]))
    for rule_doc in find(docs, "PrometheusRule"):
        for group in rule_doc["spec"]["groups"]:
            for rule in group.get("rules", []):
                found.append(
                    (f"PrometheusRule/{group['name']}/{rule.get('alert') or rule.get('record')}", rule["expr"])
                )
    return found


def test_queries_use_only_metrics_the_app_exports() -> None:
    exported = app_facts.exported_metric_names()
    queries = _queries(render_overlay("vcluster"))
    assert queries, "at least the KEDA trigger queries a metric"
    missing = {
        f"{where}: {name}"
        for where, expr in queries
        for name in app_facts.app_metric_names_in(str(expr))
        if name not in exported
    }
    assert not missing, f"not exported by the apps' metrics modules: {sorted(missing)}"


def test_workers_scale_on_the_claimable_queue() -> None:
    docs = render_overlay("vcluster")
    scaled = one(docs, "ScaledObject", "embedportal-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert one(docs, target["kind"], target["name"])["metadata"]["name"] == "embedportal-worker"
    assert [t["metadata"]["query"] for t in scaled["spec"]["triggers"]] == ["max(embedding_pipeline_claimable_depth)"]
    # KEDA owns the count; a replicas field would fight it on every `kubectl apply`.
    assert "replicas" not in one(docs, "Deployment", "embedportal-worker")["spec"]


# --- database and overlays ---------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "instances"), [("vcluster", 1), ("production", 3)])
def test_cnpg_cluster_runs_pgvector_with_the_extension_created(overlay: str, instances: int) -> None:
    spec = one(render_overlay(overlay), "Cluster", "embedportal-db")["spec"]
    assert spec["instances"] == instances
    assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+\.\d+-standard-[a-z]+", spec["imageName"]), (
        "pin a CloudNativePG `standard` image (it carries pgvector)"
    )
    assert "CREATE EXTENSION IF NOT EXISTS vector" in spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert spec["storage"]["size"] and spec["resources"]["requests"]


def test_production_runs_more_web_pods_and_workers_than_vcluster() -> None:
    small, large = render_overlay("vcluster"), render_overlay("production")

    def sizes(docs: list[dict[str, Any]]) -> tuple[int, int, str]:
        config = one(docs, "ConfigMap", "embedportal-config")["data"]
        return (
            one(docs, "Deployment", "embedportal-web")["spec"]["replicas"],
            one(docs, "ScaledObject", "embedportal-worker")["spec"]["maxReplicaCount"],
            config["Q_WORKERS"],
        )

    (web_s, max_s, q_s), (web_l, max_l, q_l) = sizes(small), sizes(large)
    assert web_l > web_s and max_l > max_s and int(q_l) > int(q_s)


def cron_commands(docs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The management command each CronWorkflow runs, without the options that only label a run."""
    commands = []
    for doc in find(docs, "CronWorkflow"):
        for template in doc["spec"]["workflowSpec"]["templates"]:
            args = list(template.get("container", {}).get("args", []))
            for option in ("--trigger", "--junit-xml"):
                if option in args:
                    del args[args.index(option) : args.index(option) + 2]
            commands.append(tuple(args))
    return commands


@pytest.mark.parametrize("overlay", RENDERED)
def test_every_scheduled_pass_has_exactly_one_runner(overlay: str) -> None:
    from embedportal import schedules

    docs = rendered(overlay)
    external = one(docs, "ConfigMap", "embedportal-config")["data"].get("EMBEDPORTAL_SCHEDULER") == "external"
    commands = cron_commands(docs)
    for every in schedules.declared():
        argo = commands.count(every.command) if every.command else 0
        django_q = not (external and every.command)  # what schedules.register keeps
        assert argo + django_q == 1, f"{overlay}: {every.name} runs {argo} time(s) in Argo, django-q2: {django_q}"
    declared = {every.command for every in schedules.declared()}
    # The nightly benchmark has no django-q2 schedule: Argo is its one runner.
    assert set(commands) - declared == {("benchmark", "--suite", "full")}


@pytest.mark.parametrize("overlay", RENDERED)
def test_queued_test_runs_have_exactly_one_runner_and_it_serves_the_fault_provider(overlay: str) -> None:
    docs = rendered(overlay)
    runners = [
        d
        for d in find(docs, "Deployment")
        if any("run_test_runner" in c.get("args", []) for c in d["spec"]["template"]["spec"]["containers"])
    ]
    assert [d["metadata"]["name"] for d in runners] == ["embedportal-test-runner"]
    spec = runners[0]["spec"]
    # One at a time, also during a rollout; the workers (other pods) reach its fault provider.
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert spec["template"]["metadata"]["labels"]["embedportal.io/fault-provider"] == "true"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert int(env["EMBEDPORTAL_OPS_TEST_FAULT_PORT"]["value"]) == container["ports"][0]["containerPort"]
    assert not [c for c in cron_commands(docs) if c[:1] == ("run_test_runner",)]
    # A config-change run's workload benchmark (~90% of a core, ~750 MB beside the runner's ~540 MB)
    # is measured on what the pod is given: a share of the node's CPU it can count on, never throttled.
    resources = container["resources"]
    cpu = resources["requests"]["cpu"]
    assert (int(cpu[:-1]) if cpu.endswith("m") else float(cpu) * 1000) >= 500, cpu
    assert resources["requests"]["memory"] == "1Gi" and resources["limits"] == {"memory": "2Gi"}


def test_production_sets_its_public_host_once_for_tls_hosts_origins_and_runbook_links(tmp_path) -> None:
    import shutil

    # A copy of deploy/ whose Ingress rule names another host: everything follows that one edit.
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    ingress = tmp_path / "deploy" / "overlays" / "production" / "ingress.yaml"
    ingress.write_text(ingress.read_text().replace("host: embedportal.example.com", "host: portal.acme.test"))
    docs = render(tmp_path / "deploy" / "overlays" / "production")
    assert one(docs, "Ingress", "embedportal-web")["spec"]["tls"][0]["hosts"] == ["portal.acme.test"]
    config = one(docs, "ConfigMap", "embedportal-config")["data"]
    assert config["DJANGO_ALLOWED_HOSTS"].split(",")[0] == "portal.acme.test"
    assert config["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://portal.acme.test"
    links = [
        rule["annotations"]["runbook_url"]
        for group in one(docs, "PrometheusRule", "embedportal")["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert links and all(link.startswith("https://portal.acme.test/docs/runbooks/") for link in links)


def test_statefulset_flavour_replaces_cnpg_with_a_pinned_pgvector_statefulset() -> None:
    docs = render_overlay("statefulset-pgvector")
    assert not find(docs, "Cluster") and not find(docs, "PodMonitor", "embedportal-db")
    statefulset = one(docs, "StatefulSet", "embedportal-db")
    (postgres,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"pgvector/pgvector:\d+\.\d+\.\d+-pg\d+.*", postgres["image"])
    # The app finds it under the name CloudNativePG would give it.
    assert one(docs, "Service", "embedportal-db-rw")["spec"]["ports"][0]["port"] == 5432
    initdb = one(docs, "ConfigMap", "embedportal-db-initdb")["data"]
    assert any("CREATE EXTENSION IF NOT EXISTS vector" in sql for sql in initdb.values())


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_image_is_pinned_and_the_placeholder_replaced(overlay: str) -> None:
    for pod in pod_contexts(render_overlay(overlay)):
        for container in pod.containers:
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{pod.owner}: image {image} is not pinned to a tag"


# --- network policies --------------------------------------------------------------------------


def _database_pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    clusters = find(docs, "Cluster")
    if clusters:
        # CloudNativePG copies inheritedMetadata labels to the instance pods.
        return clusters[0]["spec"]["inheritedMetadata"]["labels"]
    return one(docs, "StatefulSet", "embedportal-db")["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_database_is_reachable_only_from_app_pods_operator_and_prometheus(overlay: str) -> None:
    docs = render_overlay(overlay)
    policies = [p for p in find(docs, "NetworkPolicy") if "Ingress" in p["spec"]["policyTypes"]]
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies), "default deny"
    db_labels = _database_pod_labels(docs)
    (db_policy,) = [p for p in policies if selects(p["spec"]["podSelector"].get("matchLabels", {}), db_labels)]

    peers_on_5432 = [
        peer
        for rule in db_policy["spec"]["ingress"]
        if 5432 in {p["port"] for p in rule["ports"]}
        for peer in rule["from"]
    ]
    assert all(peer for peer in peers_on_5432), "an empty peer would admit everyone"
    client_selectors = [p["podSelector"]["matchLabels"] for p in peers_on_5432 if set(p) == {"podSelector"}]
    # Every pod that runs the app carries a label an allowed selector matches...
    for pod, _ in app_containers(docs):
        assert any(selects(s, pod.labels) for s in client_selectors), f"{pod.owner} cannot reach the database"
    # ...and no same-namespace selector is so broad that it matches everything.
    assert all(s for s in client_selectors)
    operator = [p for p in peers_on_5432 if "namespaceSelector" in p]
    assert any(
        p["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "cnpg-system"} for p in operator
    )
    metrics_rules = [r for r in db_policy["spec"]["ingress"] if {p["port"] for p in r["ports"]} == {9187}]
    assert metrics_rules, "Prometheus must be allowed to scrape the database exporter"


def test_web_accepts_http_on_8000_and_worker_metrics_are_scrapeable() -> None:
    docs = render_overlay("vcluster")
    web = one(docs, "NetworkPolicy", "embedportal-web")["spec"]
    assert [p["port"] for r in web["ingress"] for p in r["ports"]] == [8000]
    worker = one(docs, "NetworkPolicy", "embedportal-worker-metrics")["spec"]
    assert [p["port"] for r in worker["ingress"] for p in r["ports"]] == [9100]


def test_rbac_service_account_subjects_name_their_namespace() -> None:
    for binding in find(render_overlay("vcluster"), "RoleBinding"):
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                assert subject.get("namespace") == binding["metadata"]["namespace"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_workflow_pods_use_the_service_account_with_executor_rights(overlay: str) -> None:
    docs = render_overlay(overlay)
    for cron in find(docs, "CronWorkflow"):
        account = cron["spec"]["workflowSpec"]["serviceAccountName"]
        one(docs, "ServiceAccount", account)
        bindings = [b for b in find(docs, "RoleBinding") if any(s["name"] == account for s in b["subjects"])]
        rules = [r for b in bindings for r in one(docs, "Role", b["roleRef"]["name"])["rules"]]
        assert any("workflowtaskresults" in r["resources"] and "create" in r["verbs"] for r in rules)


def test_web_pdb_and_service_select_the_web_pods() -> None:
    docs = render_overlay("vcluster")
    web_labels = one(docs, "Deployment", "embedportal-web")["spec"]["template"]["metadata"]["labels"]
    assert selects(one(docs, "PodDisruptionBudget", "embedportal-web")["spec"]["selector"]["matchLabels"], web_labels)
    assert selects(one(docs, "Service", "embedportal-web")["spec"]["selector"], web_labels)


def test_overlay_directories_are_the_ones_tested() -> None:
    assert sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()) == sorted(OVERLAY_NAMES)
