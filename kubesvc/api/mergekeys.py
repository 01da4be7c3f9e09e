"""Strategic-merge and server-side-apply metadata for the list and struct fields of our kinds.

Mirrors the Go struct tags of k8s.io/api (`patchStrategy:"merge" patchMergeKey:"name"`) and the
`+listType` / `+listMapKey` / `+structType=atomic` markers that become the OpenAPI extensions
`x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` used by
server-side apply. Only fields that carry such metadata, or lead to one that does, are listed:
any other list is atomic (replaced whole) and any other map is merged key by key.

Paths are sequences of JSON keys; list levels are skipped, so `("spec", "containers", "env")` is the
env list of every container of a Pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldMeta:
    """What the schema says about one field."""

    patch_strategy: str = ""  # "", "merge", "replace", "retainKeys", "merge,retainKeys"
    patch_merge_key: str = ""
    list_type: str = ""  # explicit +listType: "atomic", "set", "map"; "" if untagged
    list_map_keys: tuple[str, ...] = ()
    atomic: bool = False  # +structType=atomic / +mapType=atomic
    type_name: str = ""  # struct type of the value (or of the list items)
    key_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(s for s in self.patch_strategy.split(",") if s)

    @property
    def merge_strategy(self) -> str:
        """The strategy without retainKeys: "merge", "replace" or ""."""
        for s in self.strategies:
            if s in ("merge", "replace"):
                return s
        return ""

    @property
    def retain_keys(self) -> bool:
        return "retainKeys" in self.strategies

    @property
    def ssa_list_type(self) -> str:
        """The list type structured-merge-diff uses: the tag, else derived from the patch tags."""
        if self.list_type:
            return self.list_type
        if self.merge_strategy == "merge":
            return "map" if self.patch_merge_key else "set"
        return "atomic"

    @property
    def ssa_keys(self) -> tuple[str, ...]:
        if self.list_map_keys:
            return self.list_map_keys
        if self.ssa_list_type == "map" and self.patch_merge_key:
            return (self.patch_merge_key,)
        return ()


NONE = FieldMeta()
ATOMIC_LIST = FieldMeta(list_type="atomic")
# Struct types marked +structType=atomic that appear as list items.
ATOMIC_TYPES = frozenset({"OwnerReference", "LocalObjectReference"})
_TCP = {"protocol": "TCP"}


def _struct(type_name: str, *, atomic: bool = False, patch_strategy: str = "") -> FieldMeta:
    return FieldMeta(type_name=type_name, atomic=atomic, patch_strategy=patch_strategy)


def _atomic_struct() -> FieldMeta:
    return FieldMeta(atomic=True)


def _merge_map(
    key: str,
    type_name: str = "",
    *,
    keys: Iterable[str] = (),
    strategy: str = "merge",
    list_type: str = "map",
    defaults: Mapping[str, Any] | None = None,
) -> FieldMeta:
    """A list merged by `key` (strategic merge) and keyed by `keys` (apply)."""
    return FieldMeta(
        patch_strategy=strategy,
        patch_merge_key=key,
        list_type=list_type,
        list_map_keys=tuple(keys) or ((key,) if list_type == "map" else ()),
        type_name=type_name,
        key_defaults=dict(defaults or {}),
    )


def _merge_set() -> FieldMeta:
    """A list of scalars merged as a set (finalizers, podCIDRs)."""
    return FieldMeta(patch_strategy="merge", list_type="set")


def _conditions(type_name: str = "Condition") -> FieldMeta:
    return _merge_map("type", type_name)


# Struct type name -> field name -> metadata.
TYPES: dict[str, dict[str, FieldMeta]] = {
    "ObjectMeta": {
        "finalizers": _merge_set(),
        "ownerReferences": _merge_map("uid", "OwnerReference"),
        "managedFields": ATOMIC_LIST,
    },
    "PodTemplateSpec": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("PodSpec"),
    },
    "PodSpec": {
        "volumes": _merge_map("name", "Volume", strategy="merge,retainKeys"),
        "initContainers": _merge_map("name", "Container"),
        "containers": _merge_map("name", "Container"),
        "ephemeralContainers": _merge_map("name", "Container"),
        "imagePullSecrets": _merge_map("name", "LocalObjectReference"),
        "hostAliases": _merge_map("ip", "HostAlias"),
        "topologySpreadConstraints": _merge_map(
            "topologyKey",
            "TopologySpreadConstraint",
            keys=("topologyKey", "whenUnsatisfiable"),
        ),
        "schedulingGates": _merge_map("name"),
        "resourceClaims": _merge_map("name", strategy="merge,retainKeys"),
        "tolerations": ATOMIC_LIST,
        "readinessGates": ATOMIC_LIST,
        "affinity": _struct("Affinity"),
    },
    "Container": {
        "ports": _merge_map("containerPort", keys=("containerPort", "protocol"), defaults=_TCP),
        "env": _merge_map("name", "EnvVar"),
        "envFrom": ATOMIC_LIST,
        "volumeMounts": _merge_map("mountPath"),
        "volumeDevices": _merge_map("devicePath"),
        "resources": _struct("ResourceRequirements"),
        "command": ATOMIC_LIST,
        "args": ATOMIC_LIST,
        "resizePolicy": ATOMIC_LIST,
    },
    "ResourceRequirements": {
        "claims": FieldMeta(list_type="map", list_map_keys=("name",)),
    },
    "EnvVar": {"valueFrom": _struct("EnvVarSource")},
    "EnvVarSource": {
        "fieldRef": _atomic_struct(),
        "resourceFieldRef": _atomic_struct(),
        "configMapKeyRef": _atomic_struct(),
        "secretKeyRef": _atomic_struct(),
    },
    "Volume": {},
    "HostAlias": {"hostnames": ATOMIC_LIST},
    "TopologySpreadConstraint": {
        "labelSelector": _atomic_struct(),
        "matchLabelKeys": ATOMIC_LIST,
    },
    "Affinity": {"nodeAffinity": _struct("NodeAffinity")},
    "NodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _atomic_struct()},
    "Pod": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("PodSpec"),
        "status": _struct("PodStatus"),
    },
    "PodStatus": {
        "conditions": _conditions(),
        "podIPs": _merge_map("ip"),
        "hostIPs": _merge_map("ip", list_type="atomic"),
        "resourceClaimStatuses": _merge_map("name"),
        "containerStatuses": ATOMIC_LIST,
        "initContainerStatuses": ATOMIC_LIST,
        "ephemeralContainerStatuses": ATOMIC_LIST,
    },
    "Service": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("ServiceSpec"),
        "status": _struct("ServiceStatus"),
    },
    "ServiceSpec": {
        "ports": _merge_map("port", keys=("port", "protocol"), defaults=_TCP),
        "clusterIPs": ATOMIC_LIST,
        "externalIPs": ATOMIC_LIST,
        "ipFamilies": ATOMIC_LIST,
        "loadBalancerSourceRanges": ATOMIC_LIST,
    },
    "ServiceStatus": {"conditions": _conditions()},
    "Node": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("NodeSpec"),
        "status": _struct("NodeStatus"),
    },
    "NodeSpec": {"podCIDRs": _merge_set(), "taints": ATOMIC_LIST},
    "NodeStatus": {
        "conditions": _conditions(),
        "addresses": _merge_map("type"),
        "images": ATOMIC_LIST,
        "volumesInUse": ATOMIC_LIST,
        "volumesAttached": ATOMIC_LIST,
    },
    "Namespace": {
        "metadata": _struct("ObjectMeta"),
        "status": _struct("NamespaceStatus"),
    },
    "NamespaceStatus": {"conditions": _conditions()},
    "Event": {
        "metadata": _struct("ObjectMeta"),
        "involvedObject": _atomic_struct(),
        "related": _atomic_struct(),
    },
    "Deployment": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("DeploymentSpec"),
        "status": _struct("DeploymentStatus"),
    },
    "DeploymentSpec": {
        "selector": _atomic_struct(),
        "template": _struct("PodTemplateSpec"),
        "strategy": _struct("", patch_strategy="retainKeys"),
    },
    "DeploymentStatus": {"conditions": _conditions()},
    "ReplicaSet": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("ReplicaSetSpec"),
        "status": _struct("ReplicaSetStatus"),
    },
    "ReplicaSetSpec": {
        "selector": _atomic_struct(),
        "template": _struct("PodTemplateSpec"),
    },
    "ReplicaSetStatus": {"conditions": _conditions()},
    "Endpoints": {"metadata": _struct("ObjectMeta"), "subsets": ATOMIC_LIST},
    "EndpointSlice": {
        "metadata": _struct("ObjectMeta"),
        "endpoints": ATOMIC_LIST,
        "ports": ATOMIC_LIST,
    },
    "Ingress": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("IngressSpec"),
    },
    "IngressSpec": {"rules": ATOMIC_LIST, "tls": ATOMIC_LIST},
    "DaemonSet": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("DaemonSetSpec"),
        "status": _struct("WorkloadStatus"),
    },
    "DaemonSetSpec": {"selector": _atomic_struct(), "template": _struct("PodTemplateSpec")},
    "StatefulSet": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("StatefulSetSpec"),
        "status": _struct("WorkloadStatus"),
    },
    "StatefulSetSpec": {
        "selector": _atomic_struct(),
        "template": _struct("PodTemplateSpec"),
        "volumeClaimTemplates": ATOMIC_LIST,
    },
    "ReplicationController": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("ReplicationControllerSpec"),
        "status": _struct("WorkloadStatus"),
    },
    "ReplicationControllerSpec": {"template": _struct("PodTemplateSpec")},
    "WorkloadStatus": {"conditions": _conditions()},
    "Job": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("JobSpec"),
        "status": _struct("JobStatus"),
    },
    "JobSpec": {"selector": _atomic_struct(), "template": _struct("PodTemplateSpec")},
    "JobStatus": {"conditions": FieldMeta(list_type="atomic")},
    "CronJob": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("CronJobSpec"),
        "status": _struct("CronJobStatus"),
    },
    "CronJobSpec": {"jobTemplate": _struct("JobTemplateSpec")},
    "JobTemplateSpec": {"metadata": _struct("ObjectMeta"), "spec": _struct("JobSpec")},
    "CronJobStatus": {"active": ATOMIC_LIST},
}

# Kinds whose top level is just metadata plus free-form fields.
for _kind in (
    "Secret",
    "ConfigMap",
    "IngressClass",
    "Lease",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "ServiceAccount",
    "ResourceQuota",
    "LimitRange",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "PriorityClass",
    "StorageClass",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "APIService",
):
    TYPES.setdefault(_kind, {"metadata": _struct("ObjectMeta")})


def field_meta(type_name: str, name: str) -> FieldMeta:
    """Metadata of field `name` of struct `type_name` (NONE if unknown)."""
    return TYPES.get(type_name, {}).get(name, NONE)


def item_meta(list_meta: FieldMeta) -> FieldMeta:
    """Metadata of one item of a list field."""
    name = list_meta.type_name
    return FieldMeta(type_name=name, atomic=name in ATOMIC_TYPES)


def root(kind: str) -> FieldMeta:
    """Metadata standing for a whole object of `kind`."""
    return FieldMeta(type_name=kind)


def lookup(kind: str, path: Iterable[str]) -> FieldMeta:
    """Metadata of the field at `path` (JSON keys, list levels skipped) in an object of `kind`."""
    meta = root(kind)
    for name in path:
        meta = field_meta(meta.type_name, name)
    return meta
