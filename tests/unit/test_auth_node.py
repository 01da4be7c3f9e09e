"""The Node authorizer (kubesvc/auth/node.py): the graph of what nodes' pods refer to, and
its decisions, with upstream's reasons, for the requests a kubelet makes and those it must
not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.auth.bootstrap import node_rules
from kubesvc.auth.node import NodeGraph, authorize, pod_references
from kubesvc.auth.request import request_info
from tests.unit.test_poison_properties import PROPERTY, json_values, mutated


def pod(name: str, node: str = "n1", ns: str = "ns", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node, **spec}}


FULL = pod(
    "full",
    serviceAccountName="robot",
    imagePullSecrets=[{"name": "pull"}],
    initContainers=[{"envFrom": [{"secretRef": {"name": "init-env"}}]}],
    containers=[
        {
            "envFrom": [{"configMapRef": {"name": "cm-env"}}],
            "env": [
                {"valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}},
                {"valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}},
            ],
        }
    ],
    volumes=[
        {"name": "a", "secret": {"secretName": "s-vol"}},
        {"name": "b", "configMap": {"name": "cm-vol"}},
        {
            "name": "c",
            "projected": {
                "sources": [{"secret": {"name": "s-proj"}}, {"configMap": {"name": "cm-proj"}}]
            },
        },
        {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
        {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "s-csi"}}},
        {"name": "g", "cephfs": {"monitors": [], "secretRef": {"name": "s-ceph"}}},
    ],
)


def test_a_pod_refers_to_everything_it_names() -> None:
    found = pod_references(FULL)
    assert found is not None
    node, ns, name, refs = found
    assert (node, ns, name) == ("n1", "ns", "full")
    assert refs == {
        ("pod", "ns", "full"),
        ("sa", "ns", "robot"),
        *(("secret", "ns", s) for s in ("pull", "init-env", "s-key", "s-vol", "s-proj")),
        *(("secret", "ns", s) for s in ("s-csi", "s-ceph")),
        *(("configmap", "ns", c) for c in ("cm-env", "cm-key", "cm-vol", "cm-proj")),
        ("pvc", "ns", "claim"),
        ("pvc", "ns", "full-scratch"),  # the claim an ephemeral volume makes
    }
    assert pod_references(pod("unbound", node="")) is None


@PROPERTY
@given(st.one_of(mutated(FULL), json_values))
def test_any_object_as_a_pod_never_raises(obj: Any) -> None:
    graph = NodeGraph()
    graph.set_pod(obj)
    found = pod_references(obj)
    if found is not None:
        node, ns, _, refs = found
        assert all(r[1] == ns and r[2] and isinstance(r[2], str) for r in refs)
        assert all(graph.related(node, *r) for r in refs)
    graph.delete_pod(obj)
    assert not graph._edges and not graph._pods


def test_the_graph_follows_pods_as_they_come_move_and_go() -> None:
    g = NodeGraph()
    g.set_pod(pod("a", volumes=[{"name": "v", "secret": {"secretName": "shared"}}]))
    g.set_pod(pod("b", volumes=[{"name": "v", "secret": {"secretName": "shared"}}]))
    assert g.related("n1", "secret", "ns", "shared")
    g.delete_pod(pod("a"))
    assert g.related("n1", "secret", "ns", "shared")  # b still refers to it
    # b moves to another node (a new pod of the same name, say)
    g.set_pod(pod("b", node="n2", volumes=[{"name": "v", "secret": {"secretName": "shared"}}]))
    assert not g.related("n1", "secret", "ns", "shared")
    assert g.related("n2", "secret", "ns", "shared")
    assert not g.related("n2", "secret", "other", "shared")  # namespaced
    g.replace([])
    assert not g.related("n2", "secret", "ns", "shared")


GRAPH = NodeGraph()
GRAPH.replace(
    [FULL, pod("elsewhere", node="n2", volumes=[{"name": "v", "secret": {"secretName": "theirs"}}])]
)


def decide(node: str, method: str, path: str, **query: str) -> tuple[bool, str]:
    d = authorize(node, request_info(method, path, query), GRAPH, node_rules())
    return d.allowed, d.reason


NONE = "no relationship found between node 'n1' and this object"
NS = "/api/v1/namespaces/ns"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
READ_ONLY = "can only read resources of this type"
GET_ONLY = "can only get individual resources of this type"
STATUS_ONLY = "can only get/update/patch this type"
TOKENS_ONLY = "can only create tokens for individual service accounts"
OWN_LEASE = "can only access node lease with the same name as the requesting node"
LEASE_NS = 'can only access leases in the "kube-node-lease" system namespace'
LEASE_VERBS = "can only get, create, update, patch, or delete a node lease"
OWN_NODE = "only its own Node object"
OWN_PODS = "can only list/watch pods with spec.nodeName field selector"


@pytest.mark.parametrize(
    ("method", "path", "query", "allowed", "reason"),
    [
        # Secrets and ConfigMaps: read only, only those its pods refer to
        ("GET", f"{NS}/secrets/s-vol", {}, True, ""),
        ("GET", f"{NS}/secrets/theirs", {}, False, NONE),
        ("GET", f"{NS}/secrets", {}, False, "No Object name found"),
        ("GET", f"{NS}/secrets", {"fieldSelector": "metadata.name=s-vol"}, True, ""),
        ("GET", f"{NS}/secrets", {"watch": "1", "fieldSelector": "metadata.name=pull"}, True, ""),
        ("GET", "/api/v1/secrets", {}, False, "can only read namespaced object of this type"),
        ("PUT", f"{NS}/secrets/s-vol", {}, False, READ_ONLY),
        ("DELETE", f"{NS}/secrets/s-vol", {}, False, READ_ONLY),
        ("GET", f"{NS}/configmaps/cm-proj", {}, True, ""),
        ("GET", f"{NS}/configmaps/kube-root-ca.crt", {}, False, NONE),
        # claims: get, and status updates
        ("GET", f"{NS}/persistentvolumeclaims/claim", {}, True, ""),
        ("GET", f"{NS}/persistentvolumeclaims", {}, False, GET_ONLY),
        ("PATCH", f"{NS}/persistentvolumeclaims/claim/status", {}, True, ""),
        ("GET", f"{NS}/persistentvolumeclaims/claim/status", {}, False, STATUS_ONLY),
        # tokens of its pods' service accounts
        ("POST", f"{NS}/serviceaccounts/robot/token", {}, True, ""),
        ("POST", f"{NS}/serviceaccounts/default/token", {}, False, NONE),
        ("GET", f"{NS}/serviceaccounts/robot", {}, False, TOKENS_ONLY),
        # its own Lease
        ("PUT", f"{LEASES}/n1", {}, True, ""),
        ("POST", f"{LEASES}", {}, True, ""),
        ("PUT", f"{LEASES}/n2", {}, False, OWN_LEASE),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1", {}, False, LEASE_NS),
        ("GET", f"{LEASES}", {}, False, LEASE_VERBS),
        # its own Node
        ("GET", "/api/v1/nodes/n1", {}, True, ""),
        ("GET", "/api/v1/nodes", {"fieldSelector": "metadata.name=n1"}, True, ""),
        ("GET", "/api/v1/nodes", {}, False, f"node 'n1' cannot read all nodes, {OWN_NODE}"),
        ("GET", "/api/v1/nodes/n2", {}, False, f"node 'n1' cannot read 'n2', {OWN_NODE}"),
        ("POST", "/api/v1/nodes", {}, True, ""),
        ("PATCH", "/api/v1/nodes/n1/status", {}, True, ""),
        ("DELETE", "/api/v1/nodes/n1", {}, False, ""),
        # pods: its own, listed by spec.nodeName
        ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=n1"}, True, ""),
        ("GET", "/api/v1/pods", {"watch": "true", "fieldSelector": "spec.nodeName==n1"}, True, ""),
        ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=n2"}, False, OWN_PODS),
        ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName!=n1"}, False, OWN_PODS),
        ("GET", "/api/v1/pods", {}, False, OWN_PODS),
        ("GET", f"{NS}/pods/full", {}, True, ""),
        ("GET", f"{NS}/pods/elsewhere", {}, False, NONE),
        ("PATCH", f"{NS}/pods/full/status", {}, True, ""),
        ("POST", f"{NS}/pods/full/eviction", {}, True, ""),
        ("DELETE", f"{NS}/pods/full", {}, True, ""),
        ("GET", f"{NS}/pods/full/log", {}, False, ""),
        # everything else by the system:node role's rules
        ("GET", "/api/v1/services", {}, True, ""),
        ("POST", f"{NS}/events", {}, True, ""),
        ("GET", "/apis/discovery.k8s.io/v1/endpointslices", {}, False, ""),
        ("GET", f"{NS}/endpoints/web", {}, True, ""),
        ("GET", f"{NS}/endpoints", {}, False, ""),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {}, True, ""),
        ("GET", "/healthz", {}, False, ""),
    ],
)  # fmt: skip
def test_a_node_may_do_what_upstream_lets_it(
    method: str, path: str, query: dict[str, str], allowed: bool, reason: str
) -> None:
    assert decide("n1", method, path, **query) == (allowed, reason)


def test_a_node_user_without_a_name_gets_no_opinion() -> None:
    assert decide("", "GET", "/api/v1/services") == (False, "unknown node")
