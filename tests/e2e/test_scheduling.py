"""The scheduler and the node lifecycle controller, driven with the real kubectl.

Nodes are cluster-wide, so these tests run their own API server and controller-manager (with
only the two controllers here) rather than share one with tests that create nodes of their
own: one cluster with the default grace period for scheduling, one with a short grace period
for node heartbeats. The tests play the kubelet: they post node status and renew Leases.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.harness import ApiServerProcess, ControllerManagerProcess, wait_for

pytestmark = pytest.mark.e2e

GRACE_ENV = "KUBESVC_NODE_MONITOR_GRACE_PERIOD"
SHORT_GRACE = 3.0


def _cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, grace: float | None
) -> Iterator[ApiServerProcess]:
    server = ApiServerProcess(tmp_path_factory.mktemp(name) / "data")
    server.start()
    cm = ControllerManagerProcess(server.kubeconfig, controllers="scheduler,nodelifecycle")
    try:
        with pytest.MonkeyPatch.context() as mp:
            if grace is None:
                mp.delenv(GRACE_ENV, raising=False)
            else:
                mp.setenv(GRACE_ENV, str(grace))
            cm.start()
        yield server
    finally:
        cm.stop()
        server.stop()


@pytest.fixture(scope="module")
def sched_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    yield from _cluster(tmp_path_factory, "sched", None)


@pytest.fixture(scope="module")
def heartbeat_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    yield from _cluster(tmp_path_factory, "heartbeat", SHORT_GRACE)


def _namespace(api: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "s-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    api.out("create", "namespace", name)
    yield name
    api.kubectl("delete", "namespace", name, "--wait=false", check=False)
    api.kubectl("delete", "nodes", "--all", "--wait=false", check=False)


@pytest.fixture
def sc(sched_cluster: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace in the scheduling cluster; the test's nodes are deleted afterwards."""
    yield from _namespace(sched_cluster, request)


@pytest.fixture
def hc(heartbeat_cluster: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _namespace(heartbeat_cluster, request)


# -- playing the kubelet -------------------------------------------------------------------
def _now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def post_status(api: ApiServerProcess, name: str, ready: str = "True") -> None:
    now = _now()
    reason = "KubeletReady" if ready == "True" else "KubeletNotReady"
    status = {
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "allocatable": {"pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
    }
    api.out(
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def add_node(
    api: ApiServerProcess, name: str, labels: dict[str, str] | None = None, ready: str = "True"
) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
    }
    api.out("create", "-f", "-", input=json.dumps(node))
    post_status(api, name, ready)


def pod_manifest(
    name: str, node_selector: dict[str, str] | None = None, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]},
    }
    if node_selector:
        pod["spec"]["nodeSelector"] = node_selector
    if owner:
        pod["metadata"]["ownerReferences"] = [owner]
    return pod


def create_pods(api: ApiServerProcess, ns: str, pods: list[dict[str, Any]]) -> None:
    # a stream of JSON objects (kubectl validates a kind: List against OpenAPI v2)
    api.out("create", "-n", ns, "-f", "-", input="\n".join(json.dumps(p) for p in pods))


def get_json(api: ApiServerProcess, *args: str) -> Any:
    return json.loads(api.out("get", *args, "-o", "json"))


def placement(api: ApiServerProcess, ns: str) -> dict[str, str]:
    pods = get_json(api, "pods", "-n", ns)["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


def all_bound(api: ApiServerProcess, ns: str, n: int) -> dict[str, str] | None:
    where = placement(api, ns)
    return where if len(where) == n and all(where.values()) else None


def pod_condition(api: ApiServerProcess, ns: str, name: str, type_: str) -> dict[str, Any]:
    return condition(get_json(api, "pod", name, "-n", ns), type_)


def node_taints(api: ApiServerProcess, name: str) -> set[tuple[str, str]]:
    node = get_json(api, "node", name)
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {}
    )


# -- scheduling ----------------------------------------------------------------------------
def test_pods_spread_evenly_over_ready_nodes(sched_cluster: ApiServerProcess, sc: str) -> None:
    api = sched_cluster
    add_node(api, "node-a")
    add_node(api, "node-b")
    create_pods(api, sc, [pod_manifest(f"web-{i}") for i in range(6)])
    where = wait_for(lambda: all_bound(api, sc, 6), what="6 pods bound")
    assert Counter(where.values()) == {"node-a": 3, "node-b": 3}

    wide = api.out("get", "pods", "-n", sc, "-o", "wide")
    header = wide.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    for line in wide.splitlines()[1:]:
        assert line.split()[6] in ("node-a", "node-b")

    pod = get_json(api, "pod", "web-0", "-n", sc)
    assert condition(pod, "PodScheduled")["status"] == "True"
    events = get_json(api, "events", "-n", sc, "--field-selector", "involvedObject.name=web-0")
    scheduled = [e for e in events["items"] if e["reason"] == "Scheduled"]
    assert scheduled, events
    assert scheduled[0]["type"] == "Normal"
    assert scheduled[0]["message"] == f"Successfully assigned {sc}/web-0 to {where['web-0']}"
    assert scheduled[0]["source"]["component"] == "default-scheduler"


def test_cordoned_node_gets_no_pods(sched_cluster: ApiServerProcess, sc: str) -> None:
    api = sched_cluster
    add_node(api, "node-a")
    add_node(api, "node-b")
    api.out("cordon", "node-b")
    assert "SchedulingDisabled" in api.out("get", "node", "node-b")
    # the node lifecycle controller mirrors the cordon as a taint (so controllers have seen it)
    wait_for(
        lambda: node_taints(api, "node-b") == {("node.kubernetes.io/unschedulable", "NoSchedule")},
        what="unschedulable taint",
    )
    create_pods(api, sc, [pod_manifest(f"web-{i}") for i in range(4)])
    where = wait_for(lambda: all_bound(api, sc, 4), what="4 pods bound")
    assert set(where.values()) == {"node-a"}


def test_node_selector_is_respected(sched_cluster: ApiServerProcess, sc: str) -> None:
    api = sched_cluster
    add_node(api, "node-a", labels={"disk": "ssd"})
    add_node(api, "node-b", labels={"disk": "hdd"})
    pods = [pod_manifest(f"fast-{i}", {"disk": "ssd"}) for i in range(3)]
    create_pods(api, sc, [*pods, pod_manifest("nowhere", {"disk": "nvme"})])
    wait_for(
        lambda: all(placement(api, sc).get(f"fast-{i}") for i in range(3)), what="ssd pods bound"
    )
    where = placement(api, sc)
    assert [where[f"fast-{i}"] for i in range(3)] == ["node-a"] * 3
    want = (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    # the message settles once the scheduler has seen both nodes Ready
    wait_for(
        lambda: pod_condition(api, sc, "nowhere", "PodScheduled").get("message") == want,
        what="PodScheduled=False with the final message",
    )
    cond = pod_condition(api, sc, "nowhere", "PodScheduled")
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == want
    assert placement(api, sc)["nowhere"] == ""


def test_same_controller_pods_spread_when_totals_tie(
    sched_cluster: ApiServerProcess, sc: str
) -> None:
    api = sched_cluster
    add_node(api, "node-a")
    add_node(api, "node-b")
    other = pod_manifest("other")
    other["spec"]["nodeName"] = "node-b"  # placed by the user: left alone
    create_pods(api, sc, [other])
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    created = json.loads(api.out("create", "-n", sc, "-f", "-", "-o", "json", input=json.dumps(rs)))
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": created["metadata"]["uid"],
        "controller": True,
    }
    create_pods(api, sc, [pod_manifest("web-1", owner=owner)])
    wait_for(lambda: placement(api, sc).get("web-1"), what="web-1 bound")
    assert placement(api, sc)["web-1"] == "node-a"  # fewer pods there
    create_pods(api, sc, [pod_manifest("web-2", owner=owner)])
    wait_for(lambda: placement(api, sc).get("web-2"), what="web-2 bound")
    # one pod on each node now; node-b has none of this ReplicaSet's
    assert placement(api, sc) == {"other": "node-b", "web-1": "node-a", "web-2": "node-b"}


def test_unschedulable_until_a_ready_node_appears(sched_cluster: ApiServerProcess, sc: str) -> None:
    api = sched_cluster
    add_node(api, "node-a", ready="False")
    create_pods(api, sc, [pod_manifest("web")])
    want = (
        "0/1 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: "
        "1 Preemption is not helpful for scheduling."
    )
    wait_for(
        lambda: pod_condition(api, sc, "web", "PodScheduled").get("message") == want,
        what="PodScheduled=False with the final message",
    )
    cond = pod_condition(api, sc, "web", "PodScheduled")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", want)

    describe = wait_for(
        lambda: "FailedScheduling" in (out := api.out("describe", "pod", "web", "-n", sc)) and out,
        what="FailedScheduling event in describe",
    )
    event_line = next(line for line in describe.splitlines() if "FailedScheduling" in line)
    assert event_line.split()[0] == "Warning"
    assert "default-scheduler" in event_line
    assert want in event_line
    wide = api.out("get", "pod", "web", "-n", sc, "-o", "wide").splitlines()
    assert wide[1].split()[2] == "Pending"
    assert wide[1].split()[6] == "<none>"

    add_node(api, "node-b")
    wait_for(lambda: placement(api, sc)["web"], what="pod bound after node-b appeared")
    assert placement(api, sc)["web"] == "node-b"
    pod = get_json(api, "pod", "web", "-n", sc)
    assert condition(pod, "PodScheduled")["status"] == "True"
    wait_for(
        lambda: (
            f"Successfully assigned {sc}/web to node-b"
            in api.out("describe", "pod", "web", "-n", sc)
        ),
        what="Scheduled event",
    )


def test_user_assigned_pods_are_left_alone(sched_cluster: ApiServerProcess, sc: str) -> None:
    api = sched_cluster
    add_node(api, "node-a")
    pinned = pod_manifest("pinned")
    pinned["spec"]["nodeName"] = "no-such-node"
    other = pod_manifest("other-scheduler")
    other["spec"]["schedulerName"] = "my-scheduler"
    create_pods(api, sc, [pinned, other, pod_manifest("ours")])
    wait_for(lambda: placement(api, sc).get("ours"), what="ours bound")
    time.sleep(0.5)
    assert placement(api, sc) == {
        "pinned": "no-such-node",
        "other-scheduler": "",
        "ours": "node-a",
    }
    assert condition(get_json(api, "pod", "other-scheduler", "-n", sc), "PodScheduled") == {}


# -- node heartbeats -----------------------------------------------------------------------
class LeaseRenewer:
    """Renew a node's Lease like a kubelet, in the background, until stopped."""

    def __init__(self, api: ApiServerProcess, node: str, interval: float = 0.4) -> None:
        self.api, self.node, self.interval = api, node, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.renewals = 0

    def renew(self) -> None:
        patch = {"spec": {"renewTime": _now(micro=True), "holderIdentity": self.node}}
        self.api.out(
            "patch", "lease", self.node, "-n", "kube-node-lease", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        self.renewals += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.renew()

    def __enter__(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def create_lease(api: ApiServerProcess, node: str) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,
            "renewTime": _now(micro=True),
        },
    }
    api.out("create", "-f", "-", input=json.dumps(lease))


def node_status_column(api: ApiServerProcess, node: str) -> str:
    lines = api.out("get", "nodes", node).splitlines()
    return lines[1].split()[1]


def mark_pod_ready(api: ApiServerProcess, ns: str, name: str, ip: str) -> None:
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
        ],
    }
    api.out(
        "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_node_whose_lease_stops_becomes_not_ready(
    heartbeat_cluster: ApiServerProcess, hc: str
) -> None:
    api = heartbeat_cluster
    add_node(api, "node-1")
    create_lease(api, "node-1")
    pods = []
    for i in range(2):
        p = pod_manifest(f"web-{i}")
        p["spec"]["nodeName"] = "node-1"
        pods.append(p)
    create_pods(api, hc, pods)
    for i in range(2):
        mark_pod_ready(api, hc, f"web-{i}", f"10.244.1.{10 + i}")

    started = time.monotonic()
    with LeaseRenewer(api, "node-1") as renewer:
        # the node status heartbeat is stale after the grace period; the Lease keeps it alive
        while time.monotonic() - started < SHORT_GRACE * 1.7:
            assert node_status_column(api, "node-1") == "Ready"
            time.sleep(0.3)
        assert renewer.renewals >= 3
    stopped = time.monotonic()

    wait_for(
        lambda: node_status_column(api, "node-1") == "NotReady",
        timeout=SHORT_GRACE + 10,
        what="node-1 NotReady",
    )
    assert time.monotonic() - stopped >= SHORT_GRACE - 1.0  # not before the grace period
    node = get_json(api, "node", "node-1")
    ready = condition(node, "Ready")
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert condition(node, "DiskPressure")["status"] == "Unknown"
    taints = wait_for(lambda: node_taints(api, "node-1"), what="unreachable taints")
    assert taints == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }

    def pods_not_ready() -> bool:
        items = get_json(api, "pods", "-n", hc)["items"]
        return all(condition(p, "Ready").get("status") == "False" for p in items)

    wait_for(pods_not_ready, what="pods on node-1 not Ready")
    assert api.out("get", "pods", "-n", hc).count("0/1") == 2
    describe = api.out("describe", "pod", "web-0", "-n", hc)
    assert "NodeNotReady" in describe and "Node is not ready" in describe

    # the kubelet comes back: taints go, pods stay not Ready until it reports them
    LeaseRenewer(api, "node-1").renew()
    post_status(api, "node-1")
    wait_for(
        lambda: not get_json(api, "node", "node-1")["spec"].get("taints"),
        what="taints removed",
    )
    assert node_status_column(api, "node-1") == "Ready"
    assert pods_not_ready()


def test_kubelet_reported_not_ready_node_is_tainted_until_ready(
    sched_cluster: ApiServerProcess, sc: str
) -> None:
    api = sched_cluster
    add_node(api, "node-a", ready="False")

    wait_for(lambda: node_taints(api, "node-a"), what="not-ready taints")
    assert node_taints(api, "node-a") == {
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    }
    assert "node.kubernetes.io/not-ready:NoSchedule" in api.out("describe", "node", "node-a")
    post_status(api, "node-a")
    wait_for(lambda: not node_taints(api, "node-a"), what="taints removed once Ready")
