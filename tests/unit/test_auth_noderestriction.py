"""NodeRestriction (kubesvc/auth/noderestriction.py): a node's writes limited to its own
objects, with upstream's reasons; hostile objects never make it raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from kubesvc.auth.noderestriction import CREATE, DELETE, UPDATE, admit, forbidden_labels
from tests.unit.test_poison_properties import PROPERTY, json_values

PODS, NODES, LEASES = ("", "pods"), ("", "nodes"), ("coordination.k8s.io", "leases")
SA, PVCS = ("", "serviceaccounts"), ("", "persistentvolumeclaims")


def node_obj(name: str = "n1", labels: dict[str, str] | None = None, **spec: Any) -> Any:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def pod(node: str = "n1", labels: dict[str, str] | None = None, **spec: Any) -> Any:
    meta = {"name": "p", "namespace": "ns", "uid": "u1", "labels": labels or {}}
    return {"metadata": meta, "spec": {"nodeName": node, **spec}}


MIRROR_META = {
    "name": "static-n1",
    "namespace": "ns",
    "annotations": {"kubernetes.io/config.mirror": "x"},
    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "controller": True}],
}


def mirror(**spec: Any) -> Any:
    return {"metadata": MIRROR_META, "spec": {"nodeName": "n1", **spec}}


def test_a_node_changes_only_its_own_node_and_not_its_taints_or_foreign_labels() -> None:
    own = node_obj(labels={"kubernetes.io/hostname": "n1"})
    assert admit("n1", CREATE, NODES, "", "", "n1", own) is None
    assert admit("n1", UPDATE, NODES, "status", "", "n2", own, own) == (
        'node "n1" is not allowed to modify node "n2"'
    )
    tainted = node_obj(labels={"kubernetes.io/hostname": "n1"}, taints=[{"key": "k"}])
    assert admit("n1", UPDATE, NODES, "", "", "n1", own, tainted) == (
        'node "n1" is not allowed to modify taints'
    )
    role = node_obj(labels={"node-role.kubernetes.io/control-plane": ""})
    assert admit("n1", CREATE, NODES, "", "", "n1", role) == (
        'node "n1" is not allowed to set the following labels: '
        "node-role.kubernetes.io/control-plane"
    )
    more = node_obj(labels={"kubernetes.io/hostname": "n1", "node.kubernetes.io/x": "1", "a": "b"})
    assert admit("n1", UPDATE, NODES, "", "", "n1", more, own) is None
    fenced = node_obj(labels={"node-restriction.kubernetes.io/pool": "gold"})
    # (dropping kubernetes.io/hostname is the kubelet's own business)
    assert admit("n1", UPDATE, NODES, "", "", "n1", fenced, own) == (
        "is not allowed to modify labels: node-restriction.kubernetes.io/pool"
    )


def test_kubelet_labels() -> None:
    assert forbidden_labels(
        node_obj(labels={"kubernetes.io/os": "linux", "example.com/x": "1", "k8s.io/y": ""}), None
    ) == ["k8s.io/y"]
    assert forbidden_labels(node_obj(labels={"sub.kubelet.kubernetes.io/z": ""}), None) == []


@pytest.mark.parametrize(
    ("operation", "subresource", "new", "old", "reason"),
    [
        (UPDATE, "status", pod(), pod(), None),
        (UPDATE, "status", pod(node="n2"), pod(node="n2"),
         'node "n1" can only update pod status for pods with spec.nodeName set to itself'),
        (UPDATE, "status", pod(labels={"a": "b"}), pod(),
         'node "n1" cannot update labels through pod status'),
        (DELETE, "", None, pod(), None),
        (DELETE, "", None, pod(node="n2"),
         'node "n1" can only delete pods with spec.nodeName set to itself'),
        (UPDATE, "", pod(), pod(),
         'unexpected operation "UPDATE", node "n1" can only create and delete mirror pods'),
        (CREATE, "eviction", None, pod(), None),
        (CREATE, "eviction", None, pod(node="n2"),
         "node n1 can only evict pods with spec.nodeName set to itself"),
        (UPDATE, "log", pod(), pod(),
         "unexpected pod subresource \"log\", only 'status' and 'eviction' are allowed"),
        (CREATE, "", mirror(), None, None),
        (CREATE, "", pod(), None,
         'pod does not have "kubernetes.io/config.mirror" annotation, '
         'node "n1" can only create mirror pods'),
        (CREATE, "", mirror(serviceAccountName="default"), None,
         'node "n1" can not create pods that reference a service account'),
        (CREATE, "", mirror(volumes=[{"name": "s", "secret": {"secretName": "x"}}]), None,
         'node "n1" can not create pods that reference secrets'),
        (CREATE, "", mirror(containers=[{"envFrom": [{"configMapRef": {"name": "c"}}]}]), None,
         'node "n1" can not create pods that reference configmaps'),
        (CREATE, "", mirror(volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]),
         None, 'node "n1" can not create pods that reference persistentvolumeclaims'),
        (CREATE, "", {**mirror(), "spec": {"nodeName": "n2"}}, None,
         'node "n1" can only create pods with spec.nodeName set to itself'),
    ],
)  # fmt: skip
def test_pods(operation: str, subresource: str, new: Any, old: Any, reason: str | None) -> None:
    assert admit("n1", operation, PODS, subresource, "ns", "p", new, old) == reason


def test_leases_tokens_and_claims() -> None:
    lease = {"metadata": {"name": "n1"}}
    assert admit("n1", CREATE, LEASES, "", "kube-node-lease", "", lease) is None
    assert admit("n1", CREATE, LEASES, "", "kube-node-lease", "", {"metadata": {"name": "n2"}}) == (
        "can only access node lease with the same name as the requesting node"
    )
    assert admit("n1", UPDATE, LEASES, "", "default", "n1", lease, lease) == (
        'can only access leases in the "kube-node-lease" system namespace'
    )

    def token(ref: dict[str, Any] | None, bound: Any = None) -> str | None:
        request = {"spec": {"boundObjectRef": ref} if ref else {}}
        return admit("n1", CREATE, SA, "token", "ns", "default", request, bound)

    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1"}
    assert token(ref, pod()) is None
    assert token(None) == "node requested token not bound to a pod"
    assert token({**ref, "kind": "Secret"}) == "node requested token not bound to a pod"
    assert token({**ref, "uid": ""}) == "node requested token with a pod binding without a uid"
    assert token(ref, pod(node="n2")) == (
        "node requested token bound to a pod scheduled on a different node"
    )
    assert token({**ref, "uid": "u0"}, pod()) == (
        "the UID in the bound object reference (u0) does not match the UID in record. "
        "The object might have been deleted and then recreated"
    )
    assert admit("n1", UPDATE, SA, "", "ns", "default", {}, {}) is None  # not a token

    claim = {"metadata": {"name": "c", "resourceVersion": "1"}, "status": {"phase": "Bound"}}
    grown = {
        "metadata": {"name": "c", "resourceVersion": "2"},
        "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}},
    }
    assert admit("n1", UPDATE, PVCS, "status", "ns", "c", grown, claim) is None
    relabelled = {**grown, "metadata": {"name": "c", "labels": {"a": "b"}}}
    assert admit("n1", UPDATE, PVCS, "status", "ns", "c", relabelled, claim) == (
        'node "n1" is not allowed to update fields other than status.capacity and status.conditions'
    )
    assert admit("n1", UPDATE, PVCS, "", "ns", "c", grown, claim) == "may only update PVC status"


@PROPERTY
@given(json_values, json_values, json_values)
def test_hostile_objects_never_raise(new: Any, old: Any, request: Any) -> None:
    for group_resource in (PODS, NODES, LEASES, SA, PVCS):
        for op in (CREATE, UPDATE, DELETE):
            for sub in ("", "status", "eviction", "token"):
                reason = admit("n1", op, group_resource, sub, "kube-node-lease", "n1", new, old)
                assert reason is None or isinstance(reason, str)
