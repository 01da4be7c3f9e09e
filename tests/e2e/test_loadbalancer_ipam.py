"""LoadBalancer IPs from MetalLB-compatible IPAddressPools, handed out by the
controller-manager: the default pool `kubesvc up` creates, requested IPs, conflicts and
exhausted pools (pending, with MetalLB's Events), MetalLB's documented manifests, live pool
edits, shared IPs, release on delete and type change, other loadBalancerClasses, and a
restarted controller-manager that hands out nothing twice.

One 1-node cluster for the module; each test works in its own namespace and removes the
pools it adds. The addresses of the extra pools are documentation ranges: nothing is sent
to them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures" / "metallb"
METALLB_NS = "metallb-system"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-lbipam-", dir="/tmp"))
    with running_cluster(tmp, "lb", "--nodes", "1") as c:
        yield c


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = "lb-" + secrets.token_hex(3)
    cluster.out("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- helpers -------------------------------------------------------------------------------
def lb_service(
    c: Cluster,
    ns: str,
    name: str,
    *ports: int,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": annotations or {},
            "labels": labels or {},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"name": f"p{p}", "port": p, "targetPort": 8080} for p in ports or (80,)],
            **spec,
        },
    }
    c.out("apply", "-f", "-", input=json.dumps(body))


def ingress_ips(c: Cluster, ns: str, name: str) -> list[str]:
    svc = c.json("get", "service", name, "-n", ns)
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if "ip" in i]


def external_ip(c: Cluster, ns: str, name: str) -> str:
    ips = wait_for(lambda: ingress_ips(c, ns, name), timeout=20, what=f"an IP for {ns}/{name}")
    assert len(ips) == 1, ips
    return str(ips[0])


def event(c: Cluster, ns: str, name: str, reason: str) -> str:
    """The message of the (latest) Event `reason` about Service ns/name."""

    def find() -> str | None:
        items = c.json(
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            f"involvedObject.kind=Service,involvedObject.name={name},reason={reason}",
        )["items"]
        return items[-1]["message"] if items else None

    return str(wait_for(find, timeout=20, what=f"a {reason} event for {ns}/{name}"))


def default_range(c: Cluster) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    pool = c.json("get", "ipaddresspool", "default", "-n", METALLB_NS)
    first, last = pool["spec"]["addresses"][0].split("-")
    return ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)


def in_default_pool(c: Cluster, ip: str) -> bool:
    first, last = default_range(c)
    return first <= ipaddress.IPv4Address(ip) <= last


def add_pool(c: Cluster, name: str, *addresses: str, **spec: Any) -> None:
    body = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": METALLB_NS},
        "spec": {"addresses": list(addresses), **spec},
    }
    c.out("apply", "-f", "-", input=json.dumps(body))


def delete_pool(c: Cluster, name: str) -> None:
    c.kubectl("delete", "ipaddresspool", name, "-n", METALLB_NS, "--ignore-not-found", check=False)


def stays_pending(c: Cluster, ns: str, name: str) -> None:
    assert ingress_ips(c, ns, name) == []
    row = c.out("get", "service", name, "-n", ns, "--no-headers").split()
    assert row[3] == "<pending>", row


# -- tests ---------------------------------------------------------------------------------
def test_default_pool_is_on_the_node_network(cluster: Cluster) -> None:
    first, last = default_range(cluster)
    nodes = cluster.json("get", "nodes")["items"]
    node_ip = next(
        a["address"] for a in nodes[0]["status"]["addresses"] if a["type"] == "InternalIP"
    )
    net = ipaddress.ip_network(f"{node_ip}/24", strict=False)
    assert (first, last) == (net.network_address + 240, net.network_address + 254)
    l2 = cluster.json("get", "l2advertisement", "default", "-n", METALLB_NS)
    assert not l2.get("spec", {}).get("ipAddressPools")  # every pool


def test_expose_gets_an_ip_shown_by_kubectl(cluster: Cluster, ns: str) -> None:
    image = "registry.k8s.io/e2e-test-images/agnhost:2.47"
    cluster.out("create", "deployment", "web", f"--image={image}", "--replicas=0", "-n", ns)
    cluster.out(
        "expose", "deployment", "web", "--type=LoadBalancer", "--port=80", "--target-port=8080",
        "-n", ns,
    )  # fmt: skip
    ip = external_ip(cluster, ns, "web")
    assert in_default_pool(cluster, ip)
    row = cluster.out("get", "service", "web", "-n", ns, "--no-headers").split()
    assert row[1:4] == ["LoadBalancer", row[2], ip]
    svc = cluster.json("get", "service", "web", "-n", ns)
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": ip, "ipMode": "VIP"}]
    assert svc["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "default"
    assert event(cluster, ns, "web", "IPAllocated") == f'Assigned IP ["{ip}"]'
    described = cluster.out("describe", "service", "web", "-n", ns)
    assert "IPAllocated" in described and f'Assigned IP ["{ip}"]' in described
    # `kubectl create service loadbalancer` as well
    cluster.out("create", "service", "loadbalancer", "lb2", "--tcp=443:8443", "-n", ns)
    assert in_default_pool(cluster, external_ip(cluster, ns, "lb2"))


def test_requested_ip_conflict_and_release_on_delete(cluster: Cluster, ns: str) -> None:
    first, _ = default_range(cluster)
    wanted = str(first + 10)
    lb_service(cluster, ns, "a", loadBalancerIP=wanted)
    assert external_ip(cluster, ns, "a") == wanted
    lb_service(cluster, ns, "b", annotations={"metallb.io/loadBalancerIPs": wanted})
    message = event(cluster, ns, "b", "AllocationFailed")
    assert message.startswith(f'Failed to allocate IP for "{ns}/b": ')
    assert f"address also in use by {ns}/a" in message
    stays_pending(cluster, ns, "b")
    # outside every pool
    lb_service(cluster, ns, "c", annotations={"metallb.universe.tf/loadBalancerIPs": "192.0.2.1"})
    message = event(cluster, ns, "c", "AllocationFailed")
    assert message == f'Failed to allocate IP for "{ns}/c": ["192.0.2.1"] is not allowed in config'
    stays_pending(cluster, ns, "c")
    # deleting the holder gives the address to the one waiting for it
    cluster.out("delete", "service", "a", "-n", ns)
    assert external_ip(cluster, ns, "b") == wanted


def test_exhausted_pool_and_release_on_type_change(cluster: Cluster, ns: str) -> None:
    pool = "tiny-" + ns
    add_pool(cluster, pool, "198.51.100.7/32", autoAssign=False)
    try:
        ask = {"metallb.io/address-pool": pool}
        lb_service(cluster, ns, "x", annotations=ask)
        assert external_ip(cluster, ns, "x") == "198.51.100.7"
        lb_service(cluster, ns, "y", annotations=ask)
        message = event(cluster, ns, "y", "AllocationFailed")
        assert message == f'Failed to allocate IP for "{ns}/y": no available IPs in pool "{pool}"'
        stays_pending(cluster, ns, "y")
        # x stops being a LoadBalancer: its status is cleared and y gets the address
        cluster.out("patch", "service", "x", "-n", ns, "-p", '{"spec":{"type":"ClusterIP"}}')
        assert external_ip(cluster, ns, "y") == "198.51.100.7"
        wait_for(lambda: ingress_ips(cluster, ns, "x") == [], timeout=20, what="x cleared")
        annotations = cluster.json("get", "service", "x", "-n", ns)["metadata"]["annotations"]
        assert "metallb.io/ip-allocated-from-pool" not in annotations
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=true", check=False)
        delete_pool(cluster, pool)


def test_metallb_documented_manifests(cluster: Cluster, ns: str) -> None:
    files = sorted(FIXTURES.glob("*.yaml"))
    for f in files:
        cluster.out("apply", "-f", str(f))
    try:
        # a Service that the namespace- and label-scoped pool admits gets its address
        # (avoidBuggyIPs: not .0), the others the default pool's
        cluster.out("label", "namespace", ns, "foo=bar")
        lb_service(cluster, ns, "pinned", labels={"app": "bar"})
        assert external_ip(cluster, ns, "pinned") == "192.168.20.1"
        lb_service(cluster, ns, "plain", 81)
        assert in_default_pool(cluster, external_ip(cluster, ns, "plain"))
        # a pool by name, its addresses in the order listed
        lb_service(cluster, ns, "first", annotations={"metallb.io/address-pool": "first-pool"})
        assert external_ip(cluster, ns, "first") == "192.168.10.0"
        # autoAssign: false, but asked for by address
        ask = {"metallb.io/loadBalancerIPs": "42.176.25.66"}
        lb_service(cluster, ns, "dear", annotations=ask)
        assert external_ip(cluster, ns, "dear") == "42.176.25.66"
        svc = cluster.json("get", "service", "dear", "-n", ns)
        assert svc["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "expensive"
        # an IPv6 address on this IPv4-only cluster stays pending with MetalLB's reason
        lb_service(
            cluster, ns, "six", annotations={"metallb.io/loadBalancerIPs": "fc00:f853:ccd:e799::1"}
        )
        assert "does not match the ipFamily of the service" in event(
            cluster, ns, "six", "AllocationFailed"
        )
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=true", check=False)
        for f in files:
            cluster.kubectl("delete", "-f", str(f), "--ignore-not-found", check=False)


def test_live_pool_edit_moves_the_ip(cluster: Cluster, ns: str) -> None:
    pool = "edit-" + ns
    add_pool(cluster, pool, "203.0.113.10/32", autoAssign=False)
    try:
        lb_service(cluster, ns, "moving", annotations={"metallb.io/address-pool": pool})
        assert external_ip(cluster, ns, "moving") == "203.0.113.10"
        add_pool(cluster, pool, "203.0.113.20/32", autoAssign=False)
        wait_for(
            lambda: ingress_ips(cluster, ns, "moving") == ["203.0.113.20"],
            timeout=20,
            what="the IP moved into the edited pool",
        )
        message = event(cluster, ns, "moving", "ClearAssignment")
        assert message.startswith(f'current IP for "{ns}/moving" not allowed by config')
        # an invalid pool is reported, and takes nobody's address away
        bad = {"spec": {"addresses": ["203.0.113.20/32", "not-an-address"]}}
        cluster.out(
            "patch", "ipaddresspool", pool, "-n", METALLB_NS, "--type=merge", "-p", json.dumps(bad)
        )
        wait_for(
            lambda: any(
                e["reason"] == "InvalidPool"
                for e in cluster.json("get", "events", "-n", METALLB_NS)["items"]
                if e["involvedObject"]["name"] == pool
            ),
            timeout=20,
            what="an InvalidPool event",
        )
        # the pools were read again and every Service queued behind them: a Service created
        # now is synced after "moving" (one worker, in order)
        lb_service(cluster, ns, "probe", 81)
        external_ip(cluster, ns, "probe")
        assert ingress_ips(cluster, ns, "moving") == ["203.0.113.20"]
        events = cluster.json("get", "events", "-n", ns)["items"]
        assert [e["reason"] for e in events if e["involvedObject"]["name"] == "moving"].count(
            "ClearAssignment"
        ) == 1
    finally:
        delete_pool(cluster, pool)


def test_shared_ip_on_different_ports(cluster: Cluster, ns: str) -> None:
    share = {"metallb.io/allow-shared-ip": "web"}
    lb_service(cluster, ns, "http", 80, annotations=share)
    ip = external_ip(cluster, ns, "http")
    lb_service(cluster, ns, "https", 443, annotations={**share, "metallb.io/loadBalancerIPs": ip})
    assert external_ip(cluster, ns, "https") == ip
    # the same port cannot share; no key, no sharing
    lb_service(cluster, ns, "clash", 80, annotations={**share, "metallb.io/loadBalancerIPs": ip})
    assert event(cluster, ns, "clash", "AllocationFailed").endswith(
        f'port TCP/80 is already in use on "{ip}"'
    )
    lb_service(cluster, ns, "loner", 8443, loadBalancerIP=ip)
    assert "address also in use by" in event(cluster, ns, "loner", "AllocationFailed")
    # one of them goes: the other keeps the address
    cluster.out("delete", "service", "http", "-n", ns)
    assert external_ip(cluster, ns, "clash") == ip
    assert ingress_ips(cluster, ns, "https") == [ip]


def test_other_load_balancer_class_is_left_alone(cluster: Cluster, ns: str) -> None:
    lb_service(cluster, ns, "theirs", loadBalancerClass="example.com/other")
    lb_service(cluster, ns, "ours", 81)
    external_ip(cluster, ns, "ours")  # synced after "theirs" was
    assert ingress_ips(cluster, ns, "theirs") == []
    events = cluster.json("get", "events", "-n", ns)["items"]
    assert not [e for e in events if e["involvedObject"]["name"] == "theirs"]


def test_restarted_controller_manager_hands_out_nothing_twice(cluster: Cluster, ns: str) -> None:
    before = {}
    for i in range(3):
        lb_service(cluster, ns, f"old{i}", 80)
        before[f"old{i}"] = external_ip(cluster, ns, f"old{i}")
    pid_file = cluster.home / cluster.name / "pids" / "controller-manager.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)
    # Services created while it is down or starting wait for it, and must not get an
    # address the Services above hold (a fresh allocator would hand out the lowest first)
    for i in range(3):
        lb_service(cluster, ns, f"new{i}", 80)
    wait_for(
        lambda: int(pid_file.read_text()) != old_pid, timeout=30, what="controller-manager back"
    )
    after = {f"new{i}": external_ip(cluster, ns, f"new{i}") for i in range(3)}
    for name, ip in before.items():
        assert ingress_ips(cluster, ns, name) == [ip], name
    everything = [
        ip
        for svc in cluster.json("get", "services", "-A")["items"]
        for ip in [
            i.get("ip")
            for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ]
        if ip and not (svc["metadata"].get("annotations") or {}).get("metallb.io/allow-shared-ip")
    ]
    assert len(everything) == len(set(everything)), everything
    assert set(after.values()).isdisjoint(before.values())


def test_fixtures_are_metallb_objects() -> None:
    for f in FIXTURES.glob("*.yaml"):
        doc = yaml.safe_load(f.read_text())
        assert doc["apiVersion"] == "metallb.io/v1beta1"
        assert doc["metadata"]["namespace"] == METALLB_NS
