"""The scheduler's pure parts: which nodes fit, which one wins, and what a failure says."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.controllers.scheduler import (
    NO_NODES,
    binding_body,
    filter_nodes,
    needs_scheduling,
    node_fit_reason,
    pick_node,
    pod_spec_changed,
    scheduling_relevant_change,
    tolerates,
    unschedulable_message,
    unschedulable_patch,
)

Obj = dict[str, Any]


def node(
    name: str,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    max_pods: int | None = None,
) -> Obj:
    n: Obj = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}, "status": {}}
    if ready is not None:
        n["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if max_pods is not None:
        n["status"]["allocatable"] = {"pods": str(max_pods)}
    return n


def pod(
    name: str = "p",
    node_name: str = "",
    owner: str = "",
    phase: str = "Pending",
    **spec: Any,
) -> Obj:
    p: Obj = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
        "status": {"phase": phase},
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
    if owner:
        p["metadata"]["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner,
             "controller": True}
        ]  # fmt: skip
    return p


NOT_READY_TAINT = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
UNREACHABLE_TAINT = "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def required(*terms: Obj) -> Obj:
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)
        }}
    }  # fmt: skip


def expr(key: str, op: str, *values: str) -> Obj:
    e: Obj = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


@pytest.mark.parametrize(
    ("p", "n", "want"),
    [
        pytest.param(pod(), node("a"), None, id="ready-node-fits"),
        pytest.param(pod(), node("a", ready="False"), NOT_READY_TAINT, id="not-ready"),
        pytest.param(pod(), node("a", ready=None), NOT_READY_TAINT, id="no-ready-condition"),
        pytest.param(pod(), node("a", ready="Unknown"), UNREACHABLE_TAINT, id="unknown"),
        pytest.param(
            pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]),
            node("a", ready="False"),
            None,
            id="tolerates-not-ready",
        ),
        pytest.param(
            pod(),
            node("a", unschedulable=True),
            "node(s) were unschedulable",
            id="unschedulable",
        ),
        pytest.param(
            pod(
                tolerations=[
                    {
                        "key": "node.kubernetes.io/unschedulable",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    }
                ]
            ),
            node("a", unschedulable=True),
            None,
            id="tolerates-unschedulable",
        ),
        pytest.param(
            pod(),
            node("a", unschedulable=True, ready="False"),
            "node(s) were unschedulable",
            id="unschedulable-checked-before-taints",
        ),
        pytest.param(
            pod(),
            node("a", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            "node(s) had untolerated taint {dedicated: gpu}",
            id="user-taint",
        ),
        pytest.param(
            pod(),
            node("a", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]),
            None,
            id="prefer-no-schedule-ignored",
        ),
        pytest.param(
            pod(),
            node("a", taints=[{"key": "x", "effect": "NoExecute"}]),
            "node(s) had untolerated taint {x: }",
            id="no-execute-filters",
        ),
        pytest.param(
            pod(tolerations=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            node("a", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            None,
            id="tolerated-equal",
        ),
        pytest.param(
            pod(tolerations=[{"key": "dedicated", "value": "cpu"}]),
            node("a", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            "node(s) had untolerated taint {dedicated: gpu}",
            id="wrong-value",
        ),
        pytest.param(
            pod(tolerations=[{"operator": "Exists"}]),
            node("a", ready="Unknown", taints=[{"key": "k", "effect": "NoExecute"}]),
            None,
            id="tolerate-everything",
        ),
        pytest.param(pod(nodeSelector={"disk": "ssd"}), node("a"), AFFINITY, id="selector-miss"),
        pytest.param(
            pod(nodeSelector={"disk": "ssd"}),
            node("a", labels={"disk": "ssd", "x": "y"}),
            None,
            id="selector-hit",
        ),
        pytest.param(
            pod(nodeSelector={"disk": "ssd"}),
            node("a", ready="False"),
            NOT_READY_TAINT,
            id="taints-checked-before-affinity",
        ),
        pytest.param(
            pod(affinity=required({"matchExpressions": [expr("zone", "In", "a", "b")]})),
            node("n", labels={"zone": "b"}),
            None,
            id="affinity-in",
        ),
        pytest.param(
            pod(affinity=required({"matchExpressions": [expr("zone", "NotIn", "b")]})),
            node("n", labels={"zone": "b"}),
            AFFINITY,
            id="affinity-notin",
        ),
        pytest.param(
            pod(affinity=required({"matchExpressions": [expr("zone", "NotIn", "b")]})),
            node("n"),
            None,
            id="affinity-notin-absent-label",
        ),
        pytest.param(
            pod(
                affinity=required(
                    {"matchExpressions": [expr("gpu", "Exists")]},
                    {"matchExpressions": [expr("cores", "Gt", "8")]},
                )
            ),
            node("n", labels={"cores": "16"}),
            None,
            id="affinity-terms-are-ored",
        ),
        pytest.param(
            pod(
                affinity=required(
                    {"matchExpressions": [expr("gpu", "Exists"), expr("cores", "Lt", "8")]}
                )
            ),
            node("n", labels={"gpu": "1", "cores": "16"}),
            AFFINITY,
            id="affinity-expressions-are-anded",
        ),
        pytest.param(
            pod(affinity=required({"matchExpressions": [expr("gpu", "DoesNotExist")]})),
            node("n"),
            None,
            id="affinity-does-not-exist",
        ),
        pytest.param(
            pod(affinity=required({"matchFields": [expr("metadata.name", "In", "n")]})),
            node("n"),
            None,
            id="affinity-match-fields",
        ),
        pytest.param(
            pod(affinity=required({})),
            node("n"),
            AFFINITY,
            id="empty-term-matches-nothing",
        ),
    ],
)
def test_node_fit_reason(p: Obj, n: Obj, want: str | None) -> None:
    assert node_fit_reason(p, n) == want


def test_too_many_pods_counts_active_pods_on_the_node() -> None:
    nodes = [node("a", max_pods=2), node("b", max_pods=2)]
    pods = [
        pod("x", node_name="a"),
        pod("y", node_name="a"),
        pod("z", node_name="b"),
        pod("done", node_name="b", phase="Succeeded"),
    ]
    feasible, reasons = filter_nodes(pod(), nodes, pods)
    assert [n["metadata"]["name"] for n in feasible] == ["b"]
    assert reasons == {"Too many pods": 1}


def test_filter_nodes_counts_reasons_per_node() -> None:
    nodes = [
        node("a", ready="False"),
        node("b", labels={"disk": "hdd"}),
        node("c", labels={"disk": "ssd"}),
        node("d", unschedulable=True),
    ]
    feasible, reasons = filter_nodes(pod(nodeSelector={"disk": "ssd"}), nodes, [])
    assert [n["metadata"]["name"] for n in feasible] == ["c"]
    assert reasons == {
        NOT_READY_TAINT: 1,
        AFFINITY: 1,
        "node(s) were unschedulable": 1,
    }


@pytest.mark.parametrize(
    ("reasons", "total", "policy", "want"),
    [
        pytest.param({}, 0, None, NO_NODES, id="no-nodes"),
        pytest.param(
            {AFFINITY: 1, NOT_READY_TAINT: 1},
            2,
            None,
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. "
            "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
            id="upstream-example",
        ),
        pytest.param(
            {NOT_READY_TAINT: 1},
            1,
            None,
            "0/1 nodes are available: 1 node(s) had untolerated taint "
            "{node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: "
            "1 Preemption is not helpful for scheduling.",
            id="one-not-ready",
        ),
        pytest.param(
            {"node(s) were unschedulable": 2, AFFINITY: 10},
            12,
            None,
            # upstream sorts the "N reason" strings, so "10 ..." comes before "2 ..."
            "0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, "
            "2 node(s) were unschedulable. preemption: 0/12 nodes are available: "
            "12 Preemption is not helpful for scheduling.",
            id="string-sorted",
        ),
        pytest.param(
            {"Too many pods": 1, NOT_READY_TAINT: 1},
            2,
            None,
            "0/2 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint "
            "{node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: "
            "1 No preemption victims found for incoming pod, "
            "1 Preemption is not helpful for scheduling.",
            id="resolvable-and-not",
        ),
        pytest.param(
            {AFFINITY: 3},
            3,
            "Never",
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
            "preemption: not eligible due to preemptionPolicy=Never.",
            id="preemption-never",
        ),
    ],
)
def test_unschedulable_message(
    reasons: dict[str, int], total: int, policy: str | None, want: str
) -> None:
    assert unschedulable_message(reasons, total, policy) == want


def names(*ns: str) -> list[Obj]:
    return [node(n) for n in ns]


@pytest.mark.parametrize(
    ("p", "feasible", "pods", "want"),
    [
        pytest.param(pod(), [], [], None, id="nothing-feasible"),
        pytest.param(pod(), names("b", "a"), [], "a", id="tie-broken-by-name"),
        pytest.param(pod(), names("a", "b"), [pod("x", node_name="a")], "b", id="fewest-pods"),
        pytest.param(
            pod(),
            names("a", "b"),
            [pod("x", node_name="a"), pod("y", node_name="b", phase="Failed")],
            "b",
            id="terminal-pods-do-not-count",
        ),
        pytest.param(
            pod(owner="rs1"),
            names("a", "b"),
            [pod("x", node_name="a"), pod("y", node_name="b", owner="rs1")],
            "a",
            id="same-owner-breaks-tie",
        ),
        pytest.param(
            pod(owner="rs1"),
            names("a", "b"),
            [pod("x", node_name="a", owner="rs1"), pod("y", node_name="a", owner="rs2")],
            "b",
            id="total-before-owner",
        ),
        pytest.param(
            pod(),
            names("a"),
            [pod("x", node_name="b"), pod("y", node_name="b")],
            "a",
            id="only-feasible-nodes-considered",
        ),
    ],
)
def test_pick_node(p: Obj, feasible: list[Obj], pods: list[Obj], want: str | None) -> None:
    assert pick_node(p, feasible, pods) == want


def test_spreading_a_replica_set_over_two_nodes() -> None:
    nodes = names("a", "b")
    placed: list[Obj] = []
    for i in range(3):
        p = pod(f"r{i}", owner="rs")
        target = pick_node(p, nodes, placed)
        assert target is not None
        placed.append({**p, "spec": {**p["spec"], "nodeName": target}})
    assert sorted(p["spec"]["nodeName"] for p in placed) == ["a", "a", "b"]
    for i in range(3, 6):
        p = pod(f"r{i}", owner="rs")
        target = pick_node(p, nodes, placed)
        placed.append({**p, "spec": {**p["spec"], "nodeName": target}})
    assert sorted(p["spec"]["nodeName"] for p in placed) == ["a"] * 3 + ["b"] * 3


@pytest.mark.parametrize(
    ("p", "want"),
    [
        pytest.param(pod(), True, id="pending"),
        pytest.param(pod(schedulerName="default-scheduler"), True, id="explicit-default"),
        pytest.param(pod(node_name="n"), False, id="has-node"),
        pytest.param(pod(schedulerName="other"), False, id="other-scheduler"),
        pytest.param(pod(phase="Failed"), False, id="terminal"),
        pytest.param(pod(schedulingGates=[{"name": "g"}]), False, id="gated"),
        pytest.param(
            {**pod(), "metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"}},
            False,
            id="deleting",
        ),
    ],
)
def test_needs_scheduling(p: Obj, want: bool) -> None:
    assert needs_scheduling(p) is want


@pytest.mark.parametrize(
    ("toleration", "taint", "want"),
    [
        pytest.param({"key": "k", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"},
                     True, id="exists-any-effect"),
        pytest.param({"key": "k", "operator": "Exists", "effect": "NoExecute"},
                     {"key": "k", "effect": "NoSchedule"}, False, id="effect-mismatch"),
        pytest.param({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"},
                     True, id="equal-default-operator"),
        pytest.param({"key": "k"}, {"key": "k", "value": "v", "effect": "NoSchedule"},
                     False, id="equal-empty-value"),
        pytest.param({"operator": "Exists"}, {"key": "any", "effect": "NoExecute"},
                     True, id="empty-key-exists"),
    ],
)  # fmt: skip
def test_tolerates(toleration: Obj, taint: Obj, want: bool) -> None:
    assert tolerates(toleration, taint) is want


def test_unschedulable_patch_only_when_changed() -> None:
    p = pod()
    p["metadata"]["resourceVersion"] = "7"
    patch = unschedulable_patch(p, "msg", "2024-01-01T00:00:00Z")
    assert patch == {
        "metadata": {"resourceVersion": "7"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "msg",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                }
            ]
        },
    }
    p["status"]["conditions"] = patch["status"]["conditions"]
    assert unschedulable_patch(p, "msg", "2024-01-02T00:00:00Z") is None
    changed = unschedulable_patch(p, "other", "2024-01-02T00:00:00Z")
    assert changed is not None
    # still False: the transition time stays
    assert changed["status"]["conditions"][0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"


def test_binding_body() -> None:
    assert binding_body(pod("web"), "n1") == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
    }


def test_node_heartbeat_is_not_a_relevant_change() -> None:
    old = node("a")
    old["status"]["conditions"][0]["lastHeartbeatTime"] = "2024-01-01T00:00:00Z"
    beat = node("a")
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2024-01-01T00:00:10Z"
    assert not scheduling_relevant_change(old, beat)
    assert scheduling_relevant_change(old, node("a", ready="False"))
    assert scheduling_relevant_change(old, node("a", labels={"x": "y"}))
    assert scheduling_relevant_change(old, node("a", unschedulable=True))
    assert scheduling_relevant_change(old, node("a", taints=[{"key": "k", "effect": "NoSchedule"}]))


def test_status_only_pod_update_is_not_a_spec_change() -> None:
    old = pod()
    new = {**pod(), "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}}
    new["metadata"]["resourceVersion"] = "9"
    assert not pod_spec_changed(old, new)
    assert pod_spec_changed(old, pod(tolerations=[{"operator": "Exists"}]))
