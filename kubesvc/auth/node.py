"""Upstream's Node authorizer (plugin/pkg/auth/authorizer/node), pure: what a node, the user
`system:node:NAME` in group `system:nodes`, may do.

- Secrets, ConfigMaps, PersistentVolumeClaims (and their status) and ServiceAccount tokens:
  only those a pod bound to the node refers to. The graph below holds, for each pod with a
  `spec.nodeName`, what it refers to (upstream's graph, without PersistentVolumes,
  VolumeAttachments and ResourceClaims, which kubesvc does not serve).
- Its own Lease in `kube-node-lease` (any name on create: admission checks it there).
- Nodes and pods as with AuthorizeNodeWithSelectors (on in v1.32): its own Node only;
  pods listed or watched with `spec.nodeName=NAME`, or one pod bound to it.
- Anything else by the static node rules: the `system:node` ClusterRole's.

A request it does not allow gets no opinion, with upstream's reason, so RBAC may still allow
it (upstream's union of authorizers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from kubesvc.auth.rbac import Decision
from kubesvc.auth.request import RequestInfo, parse_field_selector
from kubesvc.auth.rules import Rule

SECRET, CONFIGMAP, PVC, SERVICE_ACCOUNT, POD = "secret", "configmap", "pvc", "sa", "pod"
NODE_LEASE_NAMESPACE = "kube-node-lease"

Ref = tuple[str, str, str]  # (kind, namespace, name)

# volume sources that name a Secret in a field of their own (VisitPodSecretNames)
_SECRET_REF_VOLUMES = ("azureFile", "cephfs", "cinder", "flexVolume", "rbd", "scaleIO")
_SECRET_REF_VOLUMES_NAMESPACED = ("iscsi", "storageos")


def _dict(value: Any) -> dict[str, Any]:
    return value if value.__class__ is dict else {}


def _list(value: Any) -> list[Any]:
    return value if value.__class__ is list else []


def _name(value: Any) -> str:
    return value if value.__class__ is str else ""


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _list(spec.get(key)):
            if c.__class__ is dict:
                yield c


def references(pod: Any) -> frozenset[Ref]:
    """What a pod refers to (itself included): its ServiceAccount, Secrets, ConfigMaps and
    claims, in its namespace (upstream's VisitPodSecretNames, VisitPodConfigmapNames and
    the graph's claims)."""
    meta, spec = _dict(_dict(pod).get("metadata")), _dict(_dict(pod).get("spec"))
    ns, name = _name(meta.get("namespace")), _name(meta.get("name"))
    refs: set[Ref] = {(POD, ns, name)} if name else set()

    def add(kind: str, ref_name: Any) -> None:
        if ref_name.__class__ is str and ref_name:
            refs.add((kind, ns, ref_name))

    add(SERVICE_ACCOUNT, spec.get("serviceAccountName") or spec.get("serviceAccount"))
    for s in _list(spec.get("imagePullSecrets")):
        add(SECRET, _dict(s).get("name"))
    for c in _containers(spec):
        for src in _list(c.get("envFrom")):
            add(SECRET, _dict(_dict(src).get("secretRef")).get("name"))
            add(CONFIGMAP, _dict(_dict(src).get("configMapRef")).get("name"))
        for env in _list(c.get("env")):
            value_from = _dict(_dict(env).get("valueFrom"))
            add(SECRET, _dict(value_from.get("secretKeyRef")).get("name"))
            add(CONFIGMAP, _dict(value_from.get("configMapKeyRef")).get("name"))
    for v in _list(spec.get("volumes")):
        vol = _dict(v)
        add(SECRET, _dict(vol.get("secret")).get("secretName"))
        add(CONFIGMAP, _dict(vol.get("configMap")).get("name"))
        for source in _list(_dict(vol.get("projected")).get("sources")):
            add(SECRET, _dict(_dict(source).get("secret")).get("name"))
            add(CONFIGMAP, _dict(_dict(source).get("configMap")).get("name"))
        add(PVC, _dict(vol.get("persistentVolumeClaim")).get("claimName"))
        if vol.get("ephemeral") is not None and name and _name(vol.get("name")):
            add(PVC, f"{name}-{vol['name']}")  # the claim an ephemeral volume makes
        for key in _SECRET_REF_VOLUMES:
            source = _dict(vol.get(key))
            add(SECRET, _dict(source.get("secretRef")).get("name") or source.get("secretName"))
        for key in _SECRET_REF_VOLUMES_NAMESPACED:
            add(SECRET, _dict(_dict(vol.get(key)).get("secretRef")).get("name"))
        add(SECRET, _dict(_dict(vol.get("csi")).get("nodePublishSecretRef")).get("name"))
    return frozenset(refs)


def pod_references(pod: Any) -> tuple[str, str, str, frozenset[Ref]] | None:
    """(node, namespace, name, what the pod refers to) of a pod bound to a node; None for a
    pod that is not bound (or not a pod at all)."""
    meta, spec = _dict(_dict(pod).get("metadata")), _dict(_dict(pod).get("spec"))
    node = _name(spec.get("nodeName"))
    ns, name = _name(meta.get("namespace")), _name(meta.get("name"))
    if not node or not ns or not name:
        return None
    return node, ns, name, references(pod)


class NodeGraph:
    """Which objects each node's pods refer to, kept as pods come, change and go."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], tuple[str, frozenset[Ref]]] = {}
        self._edges: Counter[tuple[str, Ref]] = Counter()

    def set_pod(self, pod: Any) -> None:
        meta = _dict(_dict(pod).get("metadata"))
        key = (_name(meta.get("namespace")), _name(meta.get("name")))
        self._drop(key)
        found = pod_references(pod)
        if found is None:
            return
        node, _, _, refs = found
        self._pods[key] = (node, refs)
        for ref in refs:
            self._edges[(node, ref)] += 1

    def delete_pod(self, pod: Any) -> None:
        meta = _dict(_dict(pod).get("metadata"))
        self._drop((_name(meta.get("namespace")), _name(meta.get("name"))))

    def replace(self, pods: Iterable[Any]) -> None:
        self._pods.clear()
        self._edges.clear()
        for pod in pods:
            self.set_pod(pod)

    def _drop(self, key: tuple[str, str]) -> None:
        old = self._pods.pop(key, None)
        if old is None:
            return
        node, refs = old
        for ref in refs:
            edge = (node, ref)
            self._edges[edge] -= 1
            if self._edges[edge] <= 0:
                del self._edges[edge]

    def related(self, node: str, kind: str, namespace: str, name: str) -> bool:
        return (node, (kind, namespace, name)) in self._edges


def _no(reason: str = "") -> Decision:
    return Decision(False, reason)


def _related(graph: NodeGraph, node: str, kind: str, attrs: RequestInfo) -> Decision:
    if not attrs.name:
        return _no("No Object name found")
    if graph.related(node, kind, attrs.namespace, attrs.name):
        return Decision(True)
    return _no(f"no relationship found between node '{node}' and this object")


def _read_namespaced(graph: NodeGraph, node: str, kind: str, attrs: RequestInfo) -> Decision:
    if attrs.verb not in ("get", "list", "watch"):
        return _no("can only read resources of this type")
    if attrs.subresource:
        return _no("cannot read subresource")
    if not attrs.namespace:
        return _no("can only read namespaced object of this type")
    return _related(graph, node, kind, attrs)


def _get(graph: NodeGraph, node: str, kind: str, attrs: RequestInfo) -> Decision:
    if attrs.verb != "get":
        return _no("can only get individual resources of this type")
    if attrs.subresource:
        return _no("cannot get subresource")
    return _related(graph, node, kind, attrs)


def _pvc(graph: NodeGraph, node: str, attrs: RequestInfo) -> Decision:
    if attrs.subresource != "status":
        return _get(graph, node, PVC, attrs)
    if attrs.verb not in ("update", "patch"):
        return _no("can only get/update/patch this type")
    return _related(graph, node, PVC, attrs)


def _token(graph: NodeGraph, node: str, attrs: RequestInfo) -> Decision:
    if attrs.verb != "create" or not attrs.name:
        return _no("can only create tokens for individual service accounts")
    if attrs.subresource != "token":
        return _no("can only create token subresource of serviceaccount")
    return _related(graph, node, SERVICE_ACCOUNT, attrs)


def _lease(node: str, attrs: RequestInfo) -> Decision:
    if attrs.verb not in ("get", "create", "update", "patch", "delete"):
        return _no("can only get, create, update, patch, or delete a node lease")
    if attrs.namespace != NODE_LEASE_NAMESPACE:
        return _no(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
    # the name of a lease being created is in its body: admission checks it
    if attrs.verb != "create" and attrs.name != node:
        return _no("can only access node lease with the same name as the requesting node")
    return Decision(True)


def _node(node: str, attrs: RequestInfo) -> Decision:
    if attrs.subresource == "" and attrs.verb in ("create", "update", "patch"):
        return Decision(True)  # its own Node only: admission checks the name
    if attrs.subresource == "" and attrs.verb in ("get", "list", "watch"):
        if attrs.name == node:
            return Decision(True)
        if not attrs.name:
            return _no(f"node '{node}' cannot read all nodes, only its own Node object")
        return _no(f"node '{node}' cannot read '{attrs.name}', only its own Node object")
    if attrs.subresource == "status" and attrs.verb in ("update", "patch"):
        return Decision(True)
    return _no()


def _pod(graph: NodeGraph, node: str, attrs: RequestInfo) -> Decision:
    if attrs.subresource == "":
        if attrs.verb == "get":
            return _get(graph, node, POD, attrs)
        if attrs.verb in ("list", "watch"):
            terms = parse_field_selector(attrs.field_selector) or ()
            if ("spec.nodeName", node) in {(f, v) for f, op, v in terms if op != "!="}:
                return Decision(True)
            if attrs.name:
                return _related(graph, node, POD, attrs)
            return _no("can only list/watch pods with spec.nodeName field selector")
        if attrs.verb in ("create", "delete"):
            return Decision(True)  # mirror pods: admission limits them to the node's own
    elif attrs.subresource == "status" and attrs.verb in ("update", "patch"):
        return Decision(True)  # admission limits it to pods bound to the node
    elif attrs.subresource == "eviction" and attrs.verb == "create":
        return Decision(True)
    return _no()


def authorize(node: str, attrs: RequestInfo, graph: NodeGraph, rules: Iterable[Rule]) -> Decision:
    """The Node authorizer's decision for node `node` ("" for a user in system:nodes whose
    name names no node); denied means no opinion."""
    if not node:
        return _no("unknown node")
    if attrs.is_resource_request:
        resource = (attrs.api_group, attrs.resource)
        if resource == ("", "secrets"):
            return _read_namespaced(graph, node, SECRET, attrs)
        if resource == ("", "configmaps"):
            return _read_namespaced(graph, node, CONFIGMAP, attrs)
        if resource == ("", "persistentvolumeclaims"):
            return _pvc(graph, node, attrs)
        if resource == ("", "serviceaccounts"):
            return _token(graph, node, attrs)
        if resource == ("coordination.k8s.io", "leases"):
            return _lease(node, attrs)
        if resource == ("", "nodes"):
            return _node(node, attrs)
        if resource == ("", "pods"):
            return _pod(graph, node, attrs)
    if any(rule.allows(attrs) for rule in rules):
        return Decision(True)
    return _no()
