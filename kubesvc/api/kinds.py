"""The resource kinds kubesvc serves: names, scope, discovery metadata, subresources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# the label that ties an EndpointSlice to its Service
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_service_key(obj: Mapping[str, Any]) -> str | None:
    """`ns/name` of the Service an EndpointSlice belongs to, None without the label."""
    meta = obj.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{svc}" if svc else None


@dataclass(frozen=True)
class Kind:
    group: str  # "" for core
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", ...

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def group_resource(self) -> str:
        """`services`, `deployments.apps`: the name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",), (), ("status",)),
    Kind(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        True,
        ("po",),
        ("all",),
        ("status", "binding", "log", "exec", "attach", "portforward", "proxy"),
    ),
    Kind("", "v1", "Service", "services", "service", True, ("svc",), ("all",), ("status", "proxy")),
    Kind("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    Kind("", "v1", "Secret", "secrets", "secret", True),
    Kind("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    Kind("", "v1", "Node", "nodes", "node", False, ("no",), (), ("status", "proxy")),
    Kind("", "v1", "Event", "events", "event", True, ("ev",)),
    Kind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        True,
        ("deploy",),
        ("all",),
        ("status", "scale"),
    ),
    Kind(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        True,
        ("rs",),
        ("all",),
        ("status", "scale"),
    ),
    Kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    Kind(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        True,
        ("ing",),
        (),
        ("status",),
    ),
    Kind("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    Kind("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    Kind(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        True,
        ("rc",),
        ("all",),
        ("status", "scale"),
    ),
    Kind(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        True,
        ("pvc",),
        (),
        ("status",),
    ),
    Kind(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        False,
        ("pv",),
        (),
        ("status",),
    ),
    Kind(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        True,
        ("sa",),
        (),
        ("token",),
    ),
    Kind(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        True,
        ("quota",),
        (),
        ("status",),
    ),
    Kind("", "v1", "LimitRange", "limitranges", "limitrange", True, ("limits",)),
    Kind(
        "apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), ("all",), ("status",)
    ),
    Kind(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        True,
        ("sts",),
        ("all",),
        ("status", "scale"),
    ),
    Kind("batch", "v1", "Job", "jobs", "job", True, (), ("all",), ("status",)),
    Kind("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",), ("all",), ("status",)),
    Kind(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        True,
        ("hpa",),
        ("all",),
        ("status",),
    ),
    Kind(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        True,
        ("pdb",),
        (),
        ("status",),
    ),
    Kind(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        True,
        ("netpol",),
    ),
    Kind(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        False,
        ("pc",),
    ),
    Kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False, ("sc",)),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        False,
    ),
    Kind(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        False,
        (),
        ("api-extensions",),
        ("status",),
    ),
    Kind(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        "validatingadmissionpolicy",
        False,
        (),
        ("api-extensions",),
        ("status",),
    ),
    Kind(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicybinding",
        False,
        (),
        ("api-extensions",),
    ),
)

BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
BY_PLURAL: dict[tuple[str, str], Kind] = {(k.group, k.plural): k for k in KINDS}


def groups() -> dict[str, list[Kind]]:
    """Group name -> kinds, in a stable order (core first)."""
    out: dict[str, list[Kind]] = {}
    for k in KINDS:
        out.setdefault(k.group, []).append(k)
    return out
