"""Strict offline validation of rendered manifests, one validator per API group.

- Core kinds: kubernetes-validate with strict=True (its schemas set additionalProperties: false).
- KEDA and Prometheus-operator kinds: cloudcoil's generated pydantic models.
- Argo CronWorkflow: hera's generated pydantic models.
- CloudNativePG Cluster: an allow-list of the documented API (no maintained typed package exists).

The pydantic models of cloudcoil and hera ignore unknown keys (pydantic's default extra="ignore"),
and accept snake_case field names (populate_by_name). A misspelt field would pass silently, so
after type validation `unknown_keys` walks the data along the model's fields and reports every
key that is not a field's wire name (its alias, else its name), as extra="forbid" would.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes_validate
from pydantic import BaseModel, RootModel, ValidationError

KUBERNETES_VERSION = "1.33"


class ManifestError(AssertionError):
    pass


# ---------------------------------------------------------------------------------------------
# pydantic models, made strict


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def unknown_keys(annotation: Any, value: Any, path: str = "") -> list[str]:
    """Paths of keys in `value` that the model type `annotation` does not define."""
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        candidates = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        results = [unknown_keys(arg, value, path) for arg in candidates]
        # A union accepts the value if any member does; report the closest member's findings.
        return min(results, key=len) if results else []
    if origin in (list, Sequence, typing.List) and isinstance(value, list):  # noqa: UP006
        (item,) = typing.get_args(annotation) or (Any,)
        return [e for i, v in enumerate(value) for e in unknown_keys(item, v, f"{path}[{i}]")]
    if origin in (dict, Mapping, typing.Dict) and isinstance(value, dict):  # noqa: UP006
        args = typing.get_args(annotation)
        item = args[1] if len(args) == 2 else Any
        return [e for k, v in value.items() for e in unknown_keys(item, v, f"{path}.{k}")]
    if inspect.isclass(annotation) and issubclass(annotation, RootModel):
        return unknown_keys(annotation.model_fields["root"].annotation, value, path)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return []
        fields = {(field.alias or name): field for name, field in annotation.model_fields.items()}
        errors: list[str] = []
        for key, child in value.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                errors.append(where)
            else:
                errors.extend(unknown_keys(fields[key].annotation, child, where))
        return errors
    return []


def validate_model(model: type[BaseModel], doc: dict[str, Any]) -> None:
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(f"{model.__name__}: {exc}") from None
    extra = unknown_keys(model, doc)
    if extra:
        raise ManifestError(f"{model.__name__}: unknown fields {extra}")


# ---------------------------------------------------------------------------------------------
# CRDs without enum checks in their models

# Argo Workflows docs (cron-workflows): the values the controller accepts. hera types it as str.
ARGO_CONCURRENCY_POLICIES = {"Allow", "Forbid", "Replace"}
# Argo Workflows docs (retries).
ARGO_RETRY_POLICIES = {"Always", "OnFailure", "OnError", "OnTransientError"}


def validate_cron_workflow(doc: dict[str, Any]) -> None:
    from hera.workflows.models import CronWorkflow

    validate_model(CronWorkflow, doc)
    spec = doc["spec"]
    policy = spec.get("concurrencyPolicy")
    if policy is not None and policy not in ARGO_CONCURRENCY_POLICIES:
        raise ManifestError(f"CronWorkflow: concurrencyPolicy {policy!r} not in {sorted(ARGO_CONCURRENCY_POLICIES)}")
    for template in spec["workflowSpec"].get("templates", []):
        retry = template.get("retryStrategy") or {}
        if "retryPolicy" in retry and retry["retryPolicy"] not in ARGO_RETRY_POLICIES:
            raise ManifestError(f"CronWorkflow: retryPolicy {retry['retryPolicy']!r} not in {ARGO_RETRY_POLICIES}")


# ---------------------------------------------------------------------------------------------
# CloudNativePG: the documented API (cloudnative-pg.io/documentation/current/cloudnative-pg.v1/,
# postgresql.cnpg.io/v1). Field names of ClusterSpec and the nested types we use; a nested dict
# not listed here must be one of the free-form maps in CNPG_FREE_MAPS.

CNPG_CLUSTER_FIELDS: dict[str, set[str]] = {
    "": {"apiVersion", "kind", "metadata", "spec"},
    "spec": set(
        (
            "description inheritedMetadata imageName imageCatalogRef imagePullPolicy schedulerName "
            "postgresUID postgresGID instances minSyncReplicas maxSyncReplicas postgresql "
            "replicationSlots bootstrap replica superuserSecret enableSuperuserAccess certificates "
            "imagePullSecrets storage serviceAccountTemplate walStorage ephemeralVolumeSource startDelay "
            "stopDelay smartShutdownTimeout switchoverDelay failoverDelay livenessProbeTimeout affinity "
            "topologySpreadConstraints resources ephemeralVolumesSizeLimit priorityClassName "
            "primaryUpdateStrategy primaryUpdateMethod backup nodeMaintenanceWindow monitoring "
            "externalClusters logLevel projectedVolumeTemplate env envFrom managed seccompProfile "
            "tablespaces enablePDB plugins probes"
        ).split()
    ),
    "spec.inheritedMetadata": {"labels", "annotations"},
    "spec.postgresql": set(
        (
            "parameters synchronous pg_hba pg_ident syncReplicaElectionConstraint "
            "shared_preload_libraries ldap promotionTimeout enableAlterSystem extensions"
        ).split()
    ),
    "spec.bootstrap": {"initdb", "recovery", "pg_basebackup"},
    "spec.bootstrap.initdb": set(
        (
            "database owner secret options dataChecksums encoding localeCollate localeCType locale "
            "localeProvider icuLocale icuRules builtinLocale walSegmentSize postInitSQL "
            "postInitApplicationSQL postInitTemplateSQL import postInitSQLRefs postInitApplicationSQLRefs "
            "postInitTemplateSQLRefs"
        ).split()
    ),
    "spec.storage": {"storageClass", "size", "resizeInUseVolumes", "pvcTemplate"},
    "spec.backup": {"barmanObjectStore", "retentionPolicy", "target", "volumeSnapshot"},
    "spec.backup.barmanObjectStore": set(
        (
            "destinationPath endpointURL endpointCA s3Credentials azureCredentials googleCredentials "
            "serverName wal data tags historyTags"
        ).split()
    ),
    "spec.backup.barmanObjectStore.s3Credentials": {
        "accessKeyId",
        "secretAccessKey",
        "region",
        "sessionToken",
        "inheritFromIAMRole",
    },
    "spec.backup.barmanObjectStore.s3Credentials.accessKeyId": {"name", "key"},
    "spec.backup.barmanObjectStore.s3Credentials.secretAccessKey": {"name", "key"},
    "spec.backup.barmanObjectStore.wal": {
        "compression",
        "encryption",
        "maxParallel",
        "archiveAdditionalCommandArgs",
        "restoreAdditionalCommandArgs",
    },
    "spec.backup.barmanObjectStore.data": {
        "compression",
        "encryption",
        "jobs",
        "immediateCheckpoint",
        "additionalCommandArgs",
    },
    "spec.resources": {"requests", "limits", "claims"},
}
# Maps whose keys are data, not field names.
CNPG_FREE_MAPS = {
    "metadata",
    "spec.inheritedMetadata.labels",
    "spec.inheritedMetadata.annotations",
    "spec.postgresql.parameters",
    "spec.resources.requests",
    "spec.resources.limits",
}
CNPG_PRIMARY_UPDATE_STRATEGIES = {"unsupervised", "supervised"}
CNPG_RETENTION = r"[1-9][0-9]*[dwm]"  # the CRD's pattern for retentionPolicy
CNPG_COMPRESSIONS = {"bzip2", "gzip", "lz4", "snappy", "xz", "zstd"}


def _cnpg_walk(value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict) or path in CNPG_FREE_MAPS:
        return
    allowed = CNPG_CLUSTER_FIELDS.get(path)
    if allowed is None:
        errors.append(f"{path or '<root>'}: nested object not in the checked subset of the CNPG API")
        return
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else key
        if key not in allowed:
            errors.append(f"{child_path}: not a documented field")
        else:
            _cnpg_walk(child, child_path, errors)


def validate_cnpg_cluster(doc: dict[str, Any]) -> None:
    if doc.get("apiVersion") != "postgresql.cnpg.io/v1":
        raise ManifestError(f"Cluster: apiVersion {doc.get('apiVersion')!r} is not postgresql.cnpg.io/v1")
    errors: list[str] = []
    _cnpg_walk(doc, "", errors)
    spec = doc.get("spec", {})
    if not (isinstance(spec.get("instances"), int) and spec["instances"] >= 1):
        errors.append("spec.instances: must be an integer >= 1")
    if not isinstance(spec.get("storage", {}).get("size"), str):
        errors.append("spec.storage.size: a quantity string is required")
    # CNPG's parameters map is map[string]string: `max_connections: 200` is rejected by the API.
    for key, val in spec.get("postgresql", {}).get("parameters", {}).items():
        if not isinstance(val, str):
            errors.append(f"spec.postgresql.parameters.{key}: must be a string, got {type(val).__name__}")
    sql = spec.get("bootstrap", {}).get("initdb", {}).get("postInitApplicationSQL", [])
    if not (isinstance(sql, list) and all(isinstance(s, str) for s in sql)):
        errors.append("spec.bootstrap.initdb.postInitApplicationSQL: must be a list of strings")
    backup = spec.get("backup", {})
    if "retentionPolicy" in backup and not re.fullmatch(CNPG_RETENTION, str(backup["retentionPolicy"])):
        errors.append(f"spec.backup.retentionPolicy: {backup['retentionPolicy']!r} is not like 30d, 4w, 6m")
    for part in ("wal", "data"):
        compression = backup.get("barmanObjectStore", {}).get(part, {}).get("compression")
        if compression is not None and compression not in CNPG_COMPRESSIONS:
            errors.append(f"spec.backup.barmanObjectStore.{part}.compression: {compression!r}")
    strategy = spec.get("primaryUpdateStrategy")
    if strategy is not None and strategy not in CNPG_PRIMARY_UPDATE_STRATEGIES:
        errors.append(f"spec.primaryUpdateStrategy: {strategy!r} not in {sorted(CNPG_PRIMARY_UPDATE_STRATEGIES)}")
    if errors:
        raise ManifestError("Cluster: " + "; ".join(errors))


# CloudNativePG ScheduledBackup (postgresql.cnpg.io/v1, ScheduledBackupSpec).
CNPG_SCHEDULED_BACKUP_FIELDS = set(
    (
        "suspend immediate schedule cluster backupOwnerReference target method pluginConfiguration "
        "online onlineConfiguration"
    ).split()
)
CNPG_BACKUP_METHODS = {"barmanObjectStore", "volumeSnapshot", "plugin"}
CNPG_BACKUP_OWNER_REFERENCES = {"none", "self", "cluster"}


def validate_cnpg_scheduled_backup(doc: dict[str, Any]) -> None:
    spec = doc.get("spec", {})
    errors = [f"spec.{key}: not a documented field" for key in spec if key not in CNPG_SCHEDULED_BACKUP_FIELDS]
    if set(spec.get("cluster", {})) != {"name"}:
        errors.append("spec.cluster: must be {name: <cluster>}")
    # robfig/cron with seconds: six fields, unlike a CronJob's five.
    if len(str(spec.get("schedule", "")).split()) != 6:
        errors.append(f"spec.schedule: {spec.get('schedule')!r} needs six fields (seconds first)")
    if spec.get("method", "barmanObjectStore") not in CNPG_BACKUP_METHODS:
        errors.append(f"spec.method: {spec['method']!r} not in {sorted(CNPG_BACKUP_METHODS)}")
    if spec.get("backupOwnerReference", "none") not in CNPG_BACKUP_OWNER_REFERENCES:
        errors.append(f"spec.backupOwnerReference: {spec['backupOwnerReference']!r}")
    if errors:
        raise ManifestError("ScheduledBackup: " + "; ".join(errors))


# CloudNativePG Database (postgresql.cnpg.io/v1, DatabaseSpec; `extensions` since 1.26).
CNPG_DATABASE_FIELDS = set(
    (
        "cluster ensure name owner template tablespace databaseReclaimPolicy encoding locale localeProvider "
        "localeCollate localeCType icuLocale icuRules builtinLocale collationVersion isTemplate allowConnections "
        "connectionLimit extensions schemas fdws"
    ).split()
)
CNPG_EXTENSION_FIELDS = {"name", "ensure", "version", "schema"}


def validate_cnpg_database(doc: dict[str, Any]) -> None:
    spec = doc.get("spec", {})
    errors = [f"spec.{key}: not a documented field" for key in spec if key not in CNPG_DATABASE_FIELDS]
    if set(spec.get("cluster", {})) != {"name"}:
        errors.append("spec.cluster: must be {name: <cluster>}")
    if not spec.get("name") or not spec.get("owner"):
        errors.append("spec.name and spec.owner are required")
    for i, extension in enumerate(spec.get("extensions", [])):
        errors += [
            f"spec.extensions[{i}].{key}: not a documented field" for key in set(extension) - CNPG_EXTENSION_FIELDS
        ]
        if extension.get("ensure", "present") not in {"present", "absent"}:
            errors.append(f"spec.extensions[{i}].ensure: {extension['ensure']!r}")
    if errors:
        raise ManifestError("Database: " + "; ".join(errors))


# ---------------------------------------------------------------------------------------------
# Core kinds


def validate_core(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # The library's message embeds the whole schema; the first lines say what is wrong.
        first = str(exc).split("\n\n")[0]
        path = "/".join(str(p) for p in exc.path)
        raise ManifestError(f"{doc['kind']}/{doc['metadata'].get('name')}: {first} at {path or '<root>'}") from None


# ---------------------------------------------------------------------------------------------


def _cloudcoil(module: str, name: str) -> Callable[[dict[str, Any]], None]:
    def validate(doc: dict[str, Any]) -> None:
        import importlib

        validate_model(getattr(importlib.import_module(module), name), doc)

    return validate


_KEDA = "cloudcoil.models.keda.v1alpha1"
_PROM = "cloudcoil.models.prometheus_operator.v1"
_PROM_ALPHA = "cloudcoil.models.prometheus_operator.v1alpha1"
CUSTOM_VALIDATORS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _cloudcoil(_KEDA, "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _cloudcoil(_PROM, "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"): _cloudcoil(_PROM, "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _cloudcoil(_PROM, "PrometheusRule"),
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): _cloudcoil(_PROM_ALPHA, "AlertmanagerConfig"),
    ("argoproj.io/v1alpha1", "CronWorkflow"): validate_cron_workflow,
    ("postgresql.cnpg.io/v1", "Cluster"): validate_cnpg_cluster,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): validate_cnpg_scheduled_backup,
    ("postgresql.cnpg.io/v1", "Database"): validate_cnpg_database,
}


def is_core(doc: dict[str, Any]) -> bool:
    """Kinds served by Kubernetes itself (kubernetes-validate ships their schemas)."""
    group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
    return group == "" or group.endswith(".k8s.io") or group in {"apps", "batch", "policy", "autoscaling"}


def validate(doc: dict[str, Any]) -> None:
    """Raise ManifestError unless `doc` is valid for its kind; every kind must have a validator."""
    if is_core(doc):
        validate_core(doc)
        return
    validator = CUSTOM_VALIDATORS.get((doc["apiVersion"], doc["kind"]))
    if validator is None:
        raise ManifestError(
            f"no validator for {doc['apiVersion']} {doc['kind']}: add one to tests/deploy/validators.py"
        )
    validator(doc)
