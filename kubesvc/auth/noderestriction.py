"""Upstream's NodeRestriction admission (plugin/pkg/admission/noderestriction), pure: the
Node authorizer lets a node write Nodes, pods' status, mirror pods and Leases by kind; this
limits each write to the node's own objects, with upstream's reasons:

- its own Node only, without changing its taints, nor labels other than the kubelet's own
  (`kubernetes.io/hostname`, `.../os`, `.../arch`, ..., `node.kubernetes.io/*`,
  `kubelet.kubernetes.io/*`; never `node-restriction.kubernetes.io/*`);
- status of pods bound to it (not their labels); deleting pods bound to it; creating only
  mirror pods bound to it that refer to nothing else;
- its own Lease in `kube-node-lease`;
- tokens only bound to a pod of its own, by uid;
- PersistentVolumeClaims: only their status' capacity and conditions.

`admit` answers the reason a write is refused, or None.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesvc.auth.node import NODE_LEASE_NAMESPACE, references

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
NODE_RESTRICTION_LABEL_NAMESPACE = "node-restriction.kubernetes.io"
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


def _dict(value: Any) -> dict[str, Any]:
    return value if value.__class__ is dict else {}


def _list(value: Any) -> list[Any]:
    return value if value.__class__ is list else []


def _meta(obj: Any) -> dict[str, Any]:
    return _dict(_dict(obj).get("metadata"))


def _spec(obj: Any) -> dict[str, Any]:
    return _dict(_dict(obj).get("spec"))


def _label_namespace(key: str) -> str:
    namespace, sep, _ = key.partition("/")
    return namespace if sep else ""


def _in_namespace(namespace: str, wanted: str) -> bool:
    return namespace == wanted or namespace.endswith("." + wanted)


def is_kubelet_label(key: str) -> bool:
    if key in KUBELET_LABELS:
        return True
    namespace = _label_namespace(key)
    return any(_in_namespace(namespace, ns) for ns in KUBELET_LABEL_NAMESPACES)


def _is_kubernetes_label(key: str) -> bool:
    namespace = _label_namespace(key)
    return _in_namespace(namespace, "kubernetes.io") or _in_namespace(namespace, "k8s.io")


def forbidden_labels(new: Any, old: Any) -> list[str]:
    """The labels a node may not add, remove or change (sorted)."""
    a, b = _dict(_meta(new).get("labels")), _dict(_meta(old).get("labels"))
    modified = {k for k in a.keys() | b.keys() if a.get(k, None) != b.get(k, None)}
    return sorted(
        k
        for k in modified
        if _in_namespace(_label_namespace(k), NODE_RESTRICTION_LABEL_NAMESPACE)
        or (_is_kubernetes_label(k) and not is_kubelet_label(k))
    )


def _node(node: str, operation: str, name: str, new: Any, old: Any) -> str | None:
    if name != node:
        return f'node "{node}" is not allowed to modify node "{name}"'
    source = _spec(new).get("configSource")
    if operation == CREATE:
        if source is not None:  # upstream's wording
            return f'node "{node}" is not allowed to create pods with a non-nil configSource'
        labels = forbidden_labels(new, None)
        if labels:
            return f'node "{node}" is not allowed to set the following labels: {", ".join(labels)}'
    if operation == UPDATE:
        if source is not None and source != _spec(old).get("configSource"):
            return (
                f'node "{node}" is not allowed to update configSource to a new non-nil configSource'
            )
        if _spec(new).get("taints") != _spec(old).get("taints"):
            return f'node "{node}" is not allowed to modify taints'
        labels = forbidden_labels(new, old)
        if labels:
            return f"is not allowed to modify labels: {', '.join(labels)}"
    return None


def _mirror_pod(node: str, pod: Any) -> str | None:
    meta, spec = _meta(pod), _spec(pod)
    if MIRROR_POD_ANNOTATION not in _dict(meta.get("annotations")):
        return (
            f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, '
            f'node "{node}" can only create mirror pods'
        )
    if spec.get("nodeName") != node:
        return f'node "{node}" can only create pods with spec.nodeName set to itself'
    owners = _list(meta.get("ownerReferences"))
    if len(owners) > 1:
        return f'node "{node}" can only create pods with a single owner reference set to itself'
    owner = _dict(owners[0]) if owners else {}
    if (
        not owners
        or owner.get("apiVersion") != "v1"
        or owner.get("kind") != "Node"
        or owner.get("name") != node
    ):
        return f'node "{node}" can only create pods with an owner reference set to itself'
    if owner.get("controller") is not True:
        return f'node "{node}" can only create pods with a controller owner reference set to itself'
    if owner.get("blockOwnerDeletion") is True:
        return f'node "{node}" must not set blockOwnerDeletion on an owner reference'
    if spec.get("serviceAccountName"):
        return f'node "{node}" can not create pods that reference a service account'
    kinds = {kind for kind, _, _ in references(pod)}
    for kind, what in (("secret", "secrets"), ("configmap", "configmaps")):
        if kind in kinds:
            return f'node "{node}" can not create pods that reference {what}'
    for vol in _list(spec.get("volumes")):
        for source in _list(_dict(_dict(vol).get("projected")).get("sources")):
            if _dict(source).get("clusterTrustBundle") is not None:
                return f'node "{node}" can not create pods that reference clustertrustbundles'
    if "pvc" in kinds:
        return f'node "{node}" can not create pods that reference persistentvolumeclaims'
    return None


def _pod(node: str, operation: str, subresource: str, new: Any, old: Any) -> str | None:
    if subresource == "":
        if operation == CREATE:
            return _mirror_pod(node, new)
        if operation == DELETE:
            if _spec(old).get("nodeName") != node:
                return f'node "{node}" can only delete pods with spec.nodeName set to itself'
            return None
        return f'unexpected operation "{operation}", node "{node}" can only create and delete mirror pods'  # noqa: E501
    if subresource == "status":
        if operation != UPDATE:
            return f'unexpected operation "{operation}"'
        if _spec(old).get("nodeName") != node:
            return (
                f'node "{node}" can only update pod status for pods with spec.nodeName set '
                "to itself"
            )
        if (_meta(new).get("labels") or {}) != (_meta(old).get("labels") or {}):
            return f'node "{node}" cannot update labels through pod status'
        return None
    if subresource == "eviction":
        if operation != CREATE:
            return f"unexpected operation {operation}"
        if _spec(old).get("nodeName") != node:
            return f"node {node} can only evict pods with spec.nodeName set to itself"
        return None
    return f"unexpected pod subresource \"{subresource}\", only 'status' and 'eviction' are allowed"


def _pvc_status(node: str, operation: str, subresource: str, new: Any, old: Any) -> str | None:
    if subresource != "status":
        return "may only update PVC status"
    if operation != UPDATE:
        return f'unexpected operation "{operation}"'

    def comparable(obj: Any) -> dict[str, Any]:
        out = copy.deepcopy(_dict(obj))
        meta = _dict(out.get("metadata"))
        for volatile in ("resourceVersion", "managedFields"):
            meta.pop(volatile, None)
        status = _dict(out.get("status"))
        for allowed in ("capacity", "conditions", "allocatedResources"):
            status.pop(allowed, None)
        status.pop("allocatedResourceStatuses", None)
        return out

    if comparable(new) != comparable(old):
        return (
            f'node "{node}" is not allowed to update fields other than status.capacity and '
            "status.conditions"
        )
    return None


def _token(node: str, request: Any, bound_pod: Any) -> str | None:
    ref = _dict(_spec(request).get("boundObjectRef"))
    if ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        return "node requested token not bound to a pod"
    if not ref.get("uid"):
        return "node requested token with a pod binding without a uid"
    if ref.get("uid") != _meta(bound_pod).get("uid"):
        return (
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
            "record. The object might have been deleted and then recreated"
        )
    if _spec(bound_pod).get("nodeName") != node:
        return "node requested token bound to a pod scheduled on a different node"
    return None


def _lease(node: str, operation: str, namespace: str, name: str, new: Any) -> str | None:
    if namespace != NODE_LEASE_NAMESPACE:
        return f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
    lease_name = _meta(new).get("name") if operation == CREATE else name
    if lease_name != node:
        return "can only access node lease with the same name as the requesting node"
    return None


def admit(
    node: str,
    operation: str,
    group_resource: tuple[str, str],
    subresource: str,
    namespace: str,
    name: str,
    new: Any = None,
    old: Any = None,
) -> str | None:
    """Why node `node` may not make this write (CREATE, UPDATE or DELETE of `name`; `new`
    is the object as it would be stored, `old` the one stored before: for a pod's eviction
    or a token, the pod), or None when it may. `node` must not be empty (the caller refuses
    a node user without a name first: `could not determine node from user`)."""
    match group_resource:
        case ("", "pods"):
            return _pod(node, operation, subresource, new, old)
        case ("", "nodes"):
            return _node(node, operation, name, new, old)
        case ("", "persistentvolumeclaims"):
            return _pvc_status(node, operation, subresource, new, old)
        case ("", "serviceaccounts"):
            if operation != CREATE or subresource != "token":
                return None
            return _token(node, new, old)
        case ("coordination.k8s.io", "leases"):
            return _lease(node, operation, namespace, name, new)
    return None
