"""Endpoints, EndpointSlices and mirrored slices following pods, driven by the real kubectl.

No kubelet runs: the test plays it, binding pods to a (tainted, so nothing else lands there)
Ready node of its own and patching pod status to Running/Ready.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.harness import ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e

SLICE_MANAGER = "endpointslice-controller.k8s.io"
MIRROR_MANAGER = "endpointslicemirroring-controller.k8s.io"


# -- helpers ---------------------------------------------------------------------------------
def get_json(cp: ApiServerProcess, ns: str, *args: str) -> Any:
    return json.loads(cp.out("-n", ns, "get", *args, "-o", "json"))


def try_get(cp: ApiServerProcess, ns: str, *args: str) -> Any:
    res = cp.kubectl("-n", ns, "get", *args, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def apply(cp: ApiServerProcess, ns: str, obj: dict[str, Any]) -> None:
    cp.out("-n", ns, "apply", "-f", "-", input=json.dumps(obj))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def node(cp: ApiServerProcess) -> Iterator[str]:
    """A Ready node in zone-a that only this test's pods (bound directly) use."""
    name = f"ep-node-{uuid.uuid4().hex[:8]}"
    cp.out(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}},
                "spec": {"taints": [{"key": "kubesvc.test/endpoints", "effect": "NoSchedule"}]},
            }
        ),
    )
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": now(),
                }
            ]
        }
    }
    cp.out("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    yield name
    cp.kubectl("delete", "node", name, "--wait=false", check=False)


def pod(
    name: str,
    node: str,
    labels: dict[str, str],
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "nginx:1.25"}
    if ports:
        container["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [container], **spec},
    }


def set_status(cp: ApiServerProcess, ns: str, name: str, ip: str, ready: bool) -> None:
    status = {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": now(),
                }
            ],
        }
    }
    cp.out(
        "-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip


def service(name: str, selector: dict[str, str] | None, ports: list[dict[str, Any]]) -> Any:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def ep_ips(cp: ApiServerProcess, ns: str, name: str) -> tuple[list[str], list[str]] | None:
    """(ready IPs, not-ready IPs) of Endpoints `name`, None when it does not exist."""
    ep = try_get(cp, ns, "endpoints", name)
    if ep is None:
        return None
    ready, not_ready = [], []
    for ss in ep.get("subsets") or []:
        ready += [a["ip"] for a in ss.get("addresses") or []]
        not_ready += [a["ip"] for a in ss.get("notReadyAddresses") or []]
    return sorted(ready), sorted(not_ready)


def slices(cp: ApiServerProcess, ns: str, svc: str, manager: str = SLICE_MANAGER) -> list[Any]:
    sel = f"kubernetes.io/service-name={svc},endpointslice.kubernetes.io/managed-by={manager}"
    return list(get_json(cp, ns, "endpointslices", "-l", sel)["items"])


def slice_endpoints(cp: ApiServerProcess, ns: str, svc: str) -> dict[str, dict[str, Any]]:
    """ip -> conditions across the Service's slices."""
    out: dict[str, dict[str, Any]] = {}
    for s in slices(cp, ns, svc):
        for ep in s.get("endpoints") or []:
            out[ep["addresses"][0]] = ep["conditions"]
    return out


# -- tests -----------------------------------------------------------------------------------
def test_endpoints_and_slices_follow_pod_lifecycle(
    cp: ApiServerProcess, cp_ns: str, node: str
) -> None:
    ns = cp_ns
    apply(cp, ns, service("web", {"app": "web"}, [{"port": 80, "targetPort": 8080}]))
    # no pods yet: Endpoints without subsets and exactly one empty slice
    wait_for(lambda: ep_ips(cp, ns, "web") == ([], []), what="empty Endpoints")
    placeholder = wait_for(lambda: slices(cp, ns, "web"), what="placeholder slice")
    assert len(placeholder) == 1
    assert not placeholder[0].get("endpoints")
    assert placeholder[0]["addressType"] == "IPv4"
    svc_uid = get_json(cp, ns, "service", "web")["metadata"]["uid"]
    owner = placeholder[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Service" and owner["uid"] == svc_uid and owner["controller"]
    assert placeholder[0]["metadata"]["generateName"] == "web-"

    for name in ("a", "b"):
        apply(cp, ns, pod(name, node, {"app": "web"}))
    set_status(cp, ns, "a", "10.244.7.1", ready=True)
    set_status(cp, ns, "b", "10.244.7.2", ready=False)
    wait_for(
        lambda: ep_ips(cp, ns, "web") == (["10.244.7.1"], ["10.244.7.2"]),
        what="a ready, b not ready",
    )
    ep = get_json(cp, ns, "endpoints", "web")
    [subset] = ep["subsets"]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]
    addr = subset["addresses"][0]
    assert addr["nodeName"] == node
    assert addr["targetRef"]["kind"] == "Pod" and addr["targetRef"]["name"] == "a"
    assert addr["targetRef"]["namespace"] == ns and addr["targetRef"]["uid"]

    conds = wait_for(
        lambda: len(slice_endpoints(cp, ns, "web")) == 2 and slice_endpoints(cp, ns, "web")
    )
    assert conds["10.244.7.1"] == {"ready": True, "serving": True, "terminating": False}
    assert conds["10.244.7.2"] == {"ready": False, "serving": False, "terminating": False}
    [s] = slices(cp, ns, "web")
    assert s["metadata"]["name"] == placeholder[0]["metadata"]["name"]  # reused, not replaced
    assert s["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    ep_a = next(e for e in s["endpoints"] if e["addresses"] == ["10.244.7.1"])
    assert ep_a["nodeName"] == node and ep_a["zone"] == "zone-a"
    assert ep_a["targetRef"]["name"] == "a"

    # b becomes ready
    set_status(cp, ns, "b", "10.244.7.2", ready=True)
    wait_for(lambda: ep_ips(cp, ns, "web") == (["10.244.7.1", "10.244.7.2"], []), what="both ready")
    wait_for(lambda: slice_endpoints(cp, ns, "web").get("10.244.7.2", {}).get("ready"))

    # a is relabelled out of the Service
    cp.out("-n", ns, "label", "pod", "a", "app=other", "--overwrite")
    wait_for(lambda: ep_ips(cp, ns, "web") == (["10.244.7.2"], []), what="a relabelled away")
    wait_for(lambda: list(slice_endpoints(cp, ns, "web")) == ["10.244.7.2"], what="slice w/o a")

    # b is deleted gracefully: gone from Endpoints, terminating in the slice
    cp.out("-n", ns, "delete", "pod", "b", "--wait=false")
    wait_for(lambda: ep_ips(cp, ns, "web") == ([], []), what="terminating b dropped")
    wait_for(
        lambda: (
            slice_endpoints(cp, ns, "web").get("10.244.7.2")
            == {"ready": False, "serving": True, "terminating": True}
        ),
        what="b terminating in slice",
    )
    cp.out("-n", ns, "delete", "pod", "b", "--grace-period=0", "--force")
    wait_for(lambda: slice_endpoints(cp, ns, "web") == {}, what="b removed from slice")
    assert len(slices(cp, ns, "web")) == 1  # back to one empty slice

    # the Service goes: its Endpoints and slices go with it
    cp.out("-n", ns, "delete", "service", "web")
    wait_for(lambda: ep_ips(cp, ns, "web") is None, what="Endpoints deleted")
    wait_for(lambda: slices(cp, ns, "web") == [], what="slices garbage-collected")


def test_named_target_port_resolved_per_pod_and_multiport(
    cp: ApiServerProcess, cp_ns: str, node: str
) -> None:
    ns = cp_ns
    ports = [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
        {"name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": 5353},
    ]
    apply(cp, ns, service("multi", {"app": "multi"}, ports))
    apply(cp, ns, pod("p1", node, {"app": "multi"}, [{"name": "web", "containerPort": 8080}]))
    apply(cp, ns, pod("p2", node, {"app": "multi"}, [{"name": "web", "containerPort": 9090}]))
    # "web" exists on p3 only for UDP: http (TCP) cannot be resolved there
    p3_ports = [{"name": "web", "containerPort": 7070, "protocol": "UDP"}]
    apply(cp, ns, pod("p3", node, {"app": "multi"}, p3_ports))
    for i, name in enumerate(("p1", "p2", "p3"), start=1):
        set_status(cp, ns, name, f"10.244.8.{i}", ready=True)

    def ports_by_ip() -> dict[str, list[tuple[str, int, str]]]:
        """An address may sit in several subsets (one per distinct address set)."""
        ep = try_get(cp, ns, "endpoints", "multi") or {}
        out: dict[str, list[tuple[str, int, str]]] = {}
        for ss in ep.get("subsets") or []:
            ports = [(p["name"], p["port"], p["protocol"]) for p in ss.get("ports") or []]
            for a in ss.get("addresses") or []:
                out[a["ip"]] = sorted(out.get(a["ip"], []) + ports)
        return out

    dns = [("dns-tcp", 5353, "TCP"), ("dns-udp", 5353, "UDP")]
    want = {
        "10.244.8.1": sorted([*dns, ("http", 8080, "TCP")]),
        "10.244.8.2": sorted([*dns, ("http", 9090, "TCP")]),
        "10.244.8.3": dns,
    }
    wait_for(lambda: ports_by_ip() == want, what="per-pod ports in Endpoints")
    # repacked: the DNS ports are offered by all three, http by p1 and p2 on different numbers
    subsets = get_json(cp, ns, "endpoints", "multi")["subsets"]
    shapes = sorted(
        (len(ss["addresses"]), sorted(p["name"] for p in ss["ports"])) for ss in subsets
    )
    assert shapes == [(1, ["http"]), (1, ["http"]), (3, ["dns-tcp", "dns-udp"])]

    def slice_ports_by_ip() -> dict[str, list[tuple[str, int, str]]]:
        out = {}
        for s in slices(cp, ns, "multi"):
            ports = sorted((p["name"], p["port"], p["protocol"]) for p in s.get("ports") or [])
            for e in s.get("endpoints") or []:
                out[e["addresses"][0]] = ports
        return out

    wait_for(lambda: slice_ports_by_ip() == want, what="one slice per port set")
    assert len(slices(cp, ns, "multi")) == 3


def test_describe_service_shows_endpoints(cp: ApiServerProcess, cp_ns: str, node: str) -> None:
    ns = cp_ns
    apply(cp, ns, service("shown", {"app": "shown"}, [{"port": 80, "targetPort": 8080}]))
    for i, name in enumerate(("x", "y"), start=1):
        apply(cp, ns, pod(name, node, {"app": "shown"}))
        set_status(cp, ns, name, f"10.244.9.{i}", ready=True)

    def endpoints_line() -> str:
        out = cp.out("-n", ns, "describe", "service", "shown")
        return next((ln for ln in out.splitlines() if ln.startswith("Endpoints:")), "")

    line = wait_for(lambda: "10.244.9.2" in endpoints_line() and endpoints_line())
    assert line.split(None, 1)[1].strip() == "10.244.9.1:8080,10.244.9.2:8080"

    # a pod change that does not matter to endpoints rewrites nothing
    wait_for(lambda: len(slice_endpoints(cp, ns, "shown")) == 2, what="slice caught up")

    def versions() -> list[str]:
        ep = get_json(cp, ns, "endpoints", "shown")
        slice_rvs = sorted(s["metadata"]["resourceVersion"] for s in slices(cp, ns, "shown"))
        return [ep["metadata"]["resourceVersion"], *slice_rvs]

    before = versions()
    cp.out("-n", ns, "annotate", "pod", "x", "note=irrelevant")
    time.sleep(1.0)
    assert versions() == before


def test_headless_service_hostname_and_labels(cp: ApiServerProcess, cp_ns: str, node: str) -> None:
    ns = cp_ns
    svc = service("db", {"app": "db"}, [{"port": 5432}])
    svc["spec"]["clusterIP"] = "None"
    svc["metadata"]["labels"] = {"tier": "data"}
    apply(cp, ns, svc)
    apply(cp, ns, pod("db-0", node, {"app": "db"}, hostname="db-0", subdomain="db"))
    set_status(cp, ns, "db-0", "10.244.10.1", ready=True)
    wait_for(lambda: ep_ips(cp, ns, "db") == (["10.244.10.1"], []), what="headless endpoints")
    ep = get_json(cp, ns, "endpoints", "db")
    assert ep["metadata"]["labels"] == {"tier": "data", "service.kubernetes.io/headless": ""}
    assert ep["subsets"][0]["addresses"][0]["hostname"] == "db-0"
    [s] = wait_for(lambda: [s for s in slices(cp, ns, "db") if s.get("endpoints")])
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert s["metadata"]["labels"]["tier"] == "data"
    assert s["endpoints"][0]["hostname"] == "db-0"


def test_deleted_slice_is_recreated(cp: ApiServerProcess, cp_ns: str, node: str) -> None:
    ns = cp_ns
    apply(cp, ns, service("keep", {"app": "keep"}, [{"port": 80}]))
    apply(cp, ns, pod("k", node, {"app": "keep"}))
    set_status(cp, ns, "k", "10.244.11.1", ready=True)
    wait_for(lambda: "10.244.11.1" in slice_endpoints(cp, ns, "keep"), what="slice with k")
    [old] = slices(cp, ns, "keep")
    cp.out("-n", ns, "delete", "endpointslice", old["metadata"]["name"])

    def recreated() -> list[Any]:
        found = slices(cp, ns, "keep")
        return [s for s in found if s["metadata"]["uid"] != old["metadata"]["uid"]]

    [new] = wait_for(recreated, what="slice recreated")
    assert [e["addresses"] for e in new["endpoints"]] == [["10.244.11.1"]]
    assert len(slices(cp, ns, "keep")) == 1


def test_selectorless_service_keeps_endpoints_and_is_mirrored(
    cp: ApiServerProcess, cp_ns: str
) -> None:
    ns = cp_ns
    apply(cp, ns, service("ext", None, [{"name": "http", "port": 80, "targetPort": 8080}]))
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "ext", "labels": {"team": "a"}},
        "subsets": [
            {
                "addresses": [{"ip": "192.0.2.10"}],
                "notReadyAddresses": [{"ip": "192.0.2.11"}],
                "ports": [{"name": "http", "port": 8080}],
            }
        ],
    }
    apply(cp, ns, endpoints)
    [mirrored] = wait_for(lambda: slices(cp, ns, "ext", MIRROR_MANAGER), what="mirrored slice")
    ep = get_json(cp, ns, "endpoints", "ext")
    owner = mirrored["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Endpoints" and owner["uid"] == ep["metadata"]["uid"]
    assert mirrored["metadata"]["labels"]["team"] == "a"
    assert mirrored["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conds = {e["addresses"][0]: e["conditions"]["ready"] for e in mirrored["endpoints"]}
    assert conds == {"192.0.2.10": True, "192.0.2.11": False}
    # the endpoints controller leaves hand-written Endpoints alone, the slice controller too
    assert ep_ips(cp, ns, "ext") == (["192.0.2.10"], ["192.0.2.11"])
    assert slices(cp, ns, "ext") == []

    # edits are mirrored in place
    endpoints["subsets"][0]["addresses"].append({"ip": "192.0.2.12"})
    apply(cp, ns, endpoints)
    wait_for(
        lambda: (
            sorted(
                e["addresses"][0]
                for s in slices(cp, ns, "ext", MIRROR_MANAGER)
                for e in s["endpoints"]
            )
            == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
        ),
        what="mirrored update",
    )
    [after] = slices(cp, ns, "ext", MIRROR_MANAGER)
    assert after["metadata"]["name"] == mirrored["metadata"]["name"]

    # skip-mirror removes the mirrored slice
    cp.out("-n", ns, "label", "endpoints", "ext", "endpointslice.kubernetes.io/skip-mirror=true")
    wait_for(lambda: slices(cp, ns, "ext", MIRROR_MANAGER) == [], what="skip-mirror honoured")
    cp.out("-n", ns, "label", "endpoints", "ext", "endpointslice.kubernetes.io/skip-mirror-")
    wait_for(lambda: slices(cp, ns, "ext", MIRROR_MANAGER), what="mirrored again")

    # the Endpoints goes away: so does its slice
    cp.out("-n", ns, "delete", "endpoints", "ext")
    wait_for(lambda: slices(cp, ns, "ext", MIRROR_MANAGER) == [], what="mirror removed")
    assert try_get(cp, ns, "service", "ext") is not None
