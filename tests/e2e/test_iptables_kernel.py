"""IptablesBackend against the real kernel (root only).

A tiny cluster of namespaces made for this module and deleted afterwards:

  node  ksvt-<id>-n  cbr0 10.244.0.1/24 (bridge, br_netfilter on), eth0 172.30.255.2/24 (a bridge
                     without ports: nothing beyond it),
                     route 10.96.0.0/12 dev eth0, ip_forward=1; the rules under test live here
  pod a ksvt-<id>-a  eth0 10.244.0.2/24 (veth into cbr0, hairpin on), default via 10.244.0.1
  pod b ksvt-<id>-b  eth0 10.244.0.3/24

Each pod runs a server answering "<pod> <peer ip>" on TCP 8080 and UDP 5353. All traffic
stays inside these namespaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kubesvc.proxy.iptables import render as r
from kubesvc.proxy.iptables.backend import IptablesBackend
from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(
        shutil.which("iptables-legacy-restore") is None, reason="iptables is not installed"
    ),
]

NODE_IP = "172.30.255.2"
POD_A, POD_B = "10.244.0.2", "10.244.0.3"
GATEWAY = "10.244.0.1"
WEB, DNS, EMPTY, STICKY, SELF = "10.96.0.10", "10.96.0.11", "10.96.0.12", "10.96.0.13", "10.96.0.14"
NODE_PORT = 30080

SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8080))
tcp.listen(128)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 5353))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(512)
        udp.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    conn.sendall(f"{name} {peer[0]}".encode())
    conn.close()
"""

CLIENT = r"""
import json, socket, sys, time
proto, ip = sys.argv[1], sys.argv[2]
port, count, timeout = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
out = []
for _ in range(count):
    start = time.monotonic()
    try:
        if proto == "tcp":
            with socket.create_connection((ip, port), timeout=timeout) as s:
                data = s.recv(512)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.connect((ip, port))
                s.send(b"?")
                data = s.recv(512)
        out.append({"reply": data.decode(), "t": time.monotonic() - start})
    except OSError as e:
        out.append({"error": type(e).__name__, "t": time.monotonic() - start})
print(json.dumps(out))
"""


def sh(*argv: str, input: str | None = None) -> str:
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


@dataclass
class Topology:
    node: str
    pods: dict[str, str]  # pod name -> netns
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def call(
        self, ns: str, proto: str, ip: str, port: int, count: int = 1, timeout: float = 2.0
    ) -> list[dict[str, object]]:
        out = sh(
            *in_ns(ns, sys.executable, "-c", CLIENT, proto, ip, str(port), str(count), str(timeout))
        )
        return json.loads(out)  # type: ignore[no-any-return]

    def replies(self, ns: str, proto: str, ip: str, port: int, count: int) -> list[str]:
        results = self.call(ns, proto, ip, port, count)
        errors = [x for x in results if "error" in x]
        assert not errors, errors
        return [str(x["reply"]) for x in results]


def build_topology(node: str, pods: dict[str, tuple[str, str]]) -> None:
    sh("ip", "netns", "add", node)
    sh(*in_ns(node, "sh", "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward;"
        " echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables"))  # fmt: skip
    batch = [
        "link set lo up",
        "link add cbr0 type bridge",
        f"addr add {GATEWAY}/24 dev cbr0",
        "link set cbr0 up",
        "link add eth0 type bridge",  # no ports: what is routed here goes nowhere
        f"addr add {NODE_IP}/24 dev eth0",
        "link set eth0 up",
        f"route add 10.96.0.0/12 dev eth0 src {NODE_IP}",
    ]
    for name, (ns, _ip) in pods.items():
        sh("ip", "netns", "add", ns)
        veth = f"kv{node[5:11]}{name}"
        batch += [
            f"link add {veth} type veth peer name eth0 netns {ns}",
            f"link set {veth} master cbr0",
            f"link set {veth} up",
            f"link set dev {veth} type bridge_slave hairpin on",
        ]
    sh("ip", "-n", node, "-b", "-", input="\n".join(batch) + "\n")
    for ns, ip in pods.values():  # the pod side exists once the node's veths do
        pod = ["link set lo up", f"addr add {ip}/24 dev eth0", "link set eth0 up"]
        pod.append(f"route add default via {GATEWAY}")
        sh("ip", "-n", ns, "-b", "-", input="\n".join(pod) + "\n")


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    node = f"ksvt-{secrets.token_hex(3)}"
    pods = {"a": (f"{node}-a", POD_A), "b": (f"{node}-b", POD_B)}
    t = Topology(f"{node}-n", {name: ns for name, (ns, _) in pods.items()})
    try:
        build_topology(t.node, pods)
        for name, ns in t.pods.items():
            proc = subprocess.Popen(
                in_ns(ns, sys.executable, "-c", SERVER, name),
                stdout=subprocess.PIPE,
                text=True,
            )
            t.servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield t
    finally:
        for proc in t.servers:
            proc.kill()
            proc.wait()
        for ns in (t.node, *t.pods.values()):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# -- the cluster state -------------------------------------------------------------------
def sp(name: str, ip: str, port: int, proto: str = "TCP", **kw: object) -> ServicePort:
    return ServicePort("default", name, "", proto, ip, port, **kw)  # type: ignore[arg-type]


A_TCP, B_TCP = Endpoint(POD_A, 8080, node="node"), Endpoint(POD_B, 8080, node="node")
A_UDP, B_UDP = Endpoint(POD_A, 5353, node="node"), Endpoint(POD_B, 5353, node="node")


def cluster(*, web_eps: tuple[Endpoint, ...] = (A_TCP, B_TCP), extra: int = 0) -> ProxyState:
    ports = [
        sp("web", WEB, 80, node_port=NODE_PORT),
        sp("dns", DNS, 53, "UDP"),
        sp("empty", EMPTY, 80),
        sp("empty-udp", EMPTY, 53, "UDP"),
        sp("sticky", STICKY, 80, affinity_timeout=60),
        sp("self", SELF, 80),
    ]
    eps = {
        "default/web:": web_eps,
        "default/dns:": (A_UDP, B_UDP),
        "default/sticky:": (A_TCP, B_TCP),
        "default/self:": (A_TCP,),
    }
    for i in range(extra):  # unrelated services, to make partial syncs happen
        extra_sp = sp(f"extra-{i}", f"10.96.1.{i + 1}", 80)
        ports.append(extra_sp)
        eps[extra_sp.key] = (A_TCP,)
    return ProxyState("node", (NODE_IP,), "10.244.0.0/16", {p.key: p for p in ports}, eps)


@pytest.fixture(scope="module")
def backend(topo: Topology) -> IptablesBackend:
    b = IptablesBackend(topo.node)
    asyncio.run(b.sync(cluster()))
    assert b.last_sync_full
    return b


def sync(b: IptablesBackend, state: ProxyState) -> None:
    asyncio.run(b.sync(state))


# -- traffic -----------------------------------------------------------------------------
def test_cluster_ip_tcp_spreads_over_both_endpoints_keeping_pod_source(
    topo: Topology, backend: IptablesBackend
) -> None:
    sync(backend, cluster())
    replies = topo.replies(topo.pods["b"], "tcp", WEB, 80, 40)
    assert {x.split()[0] for x in replies} == {"a", "b"}
    # to another pod the client's own IP arrives; to itself (hairpin) it is masqueraded
    assert {x for x in replies if x.startswith("a ")} == {f"a {POD_B}"}
    assert {x for x in replies if x.startswith("b ")} == {f"b {GATEWAY}"}


def test_udp_cluster_ip_spreads(topo: Topology, backend: IptablesBackend) -> None:
    sync(backend, cluster())
    replies = topo.replies(topo.pods["a"], "udp", DNS, 53, 40)
    assert {x.split()[0] for x in replies} == {"a", "b"}


def test_only_listed_ports_are_translated(topo: Topology, backend: IptablesBackend) -> None:
    sync(backend, cluster())
    # port 81 of the web ClusterIP is not a service port: nothing answers (eth0 leads nowhere)
    result = topo.call(topo.pods["a"], "tcp", WEB, 81, timeout=0.5)[0]
    assert result.get("error") == "TimeoutError", result


def test_no_endpoints_is_refused_at_once(topo: Topology, backend: IptablesBackend) -> None:
    sync(backend, cluster())
    for ns in (topo.pods["a"], topo.node):  # forwarded and locally generated
        tcp = topo.call(ns, "tcp", EMPTY, 80, count=3, timeout=3.0)
        assert all(x.get("error") == "ConnectionRefusedError" for x in tcp), tcp
        assert max(float(x["t"]) for x in tcp) < 0.5, tcp  # type: ignore[arg-type]
    udp = topo.call(topo.pods["a"], "udp", EMPTY, 53, timeout=3.0)[0]
    assert udp.get("error") == "ConnectionRefusedError", udp


def test_hairpin_pod_reaches_itself_through_its_service(
    topo: Topology, backend: IptablesBackend
) -> None:
    sync(backend, cluster())
    assert set(topo.replies(topo.pods["a"], "tcp", SELF, 80, 5)) == {f"a {GATEWAY}"}


def test_node_reaches_cluster_ip_and_pods_reach_node_port(
    topo: Topology, backend: IptablesBackend
) -> None:
    sync(backend, cluster())
    from_node = topo.replies(topo.node, "tcp", WEB, 80, 10)
    assert {x.split()[0] for x in from_node} <= {"a", "b"}
    via_node_port = topo.replies(topo.pods["b"], "tcp", NODE_IP, NODE_PORT, 20)
    assert {x.split()[0] for x in via_node_port} == {"a", "b"}
    # Cluster policy: NodePort traffic is masqueraded to the node
    assert {x.split()[1] for x in via_node_port} == {GATEWAY}


def test_client_ip_affinity_sticks_and_survives_rule_updates(
    topo: Topology, backend: IptablesBackend
) -> None:
    sync(backend, cluster())
    first = topo.replies(topo.pods["b"], "tcp", STICKY, 80, 15)
    assert len(set(first)) == 1, first
    # a partial sync touching other services, then a full sync by a fresh backend
    sync(backend, cluster(extra=3))
    assert not backend.last_sync_full and backend.last_changed
    assert set(topo.replies(topo.pods["b"], "tcp", STICKY, 80, 10)) == set(first)
    fresh = IptablesBackend(topo.node)
    sync(fresh, cluster())
    assert fresh.last_sync_full
    assert set(topo.replies(topo.pods["b"], "tcp", STICKY, 80, 10)) == set(first)


def test_partial_sync_updates_and_deletes_chains(topo: Topology, backend: IptablesBackend) -> None:
    sync(backend, cluster())
    sync(backend, cluster(web_eps=(A_TCP,)))
    assert not backend.last_sync_full
    assert backend.last_changed == {"default/web"}
    gone = r.endpoint_chain_name(sp("web", WEB, 80), B_TCP)
    assert f"-X {gone}" in backend.last_input
    web_rules = asyncio.run(backend.rules("default/web"))
    assert f"--to-destination {POD_A}:8080" in web_rules
    assert POD_B not in web_rules and gone not in asyncio.run(backend.rules())
    assert {x.split()[0] for x in topo.replies(topo.pods["b"], "tcp", WEB, 80, 10)} == {"a"}
    sync(backend, cluster())
    assert {x.split()[0] for x in topo.replies(topo.pods["b"], "tcp", WEB, 80, 30)} == {"a", "b"}


def test_check_and_cleanup(topo: Topology) -> None:
    b = IptablesBackend(topo.node)
    assert asyncio.run(b.check())
    asyncio.run(b.cleanup())
    assert not asyncio.run(b.check())
    assert "KUBE-" not in asyncio.run(b.rules())
    sync(b, cluster())  # back for whatever runs next
    assert b.last_sync_full and asyncio.run(b.check())


# -- scale -------------------------------------------------------------------------------
def scale_state(n: int, per: int = 5) -> ProxyState:
    ports, eps = {}, {}
    for i in range(n):
        p = ServicePort(
            f"ns{i % 50}",
            f"svc{i}",
            "http",
            "TCP",
            f"10.{96 + i // 65000}.{i // 250 % 256}.{i % 250 + 1}",
            80,
        )
        ports[p.key] = p
        eps[p.key] = tuple(
            Endpoint(f"10.244.{(i * per + j) // 250 % 256}.{(i * per + j) % 250 + 1}", 8080)
            for j in range(per)
        )
    return ProxyState("node", (NODE_IP,), "10.244.0.0/16", ports, eps)


@pytest.mark.parametrize("n", [1000, 10000])
def test_print_full_restore_times(n: int) -> None:
    """Prints (does not assert) timings of the chosen variant (legacy)."""
    ns = f"ksvt-{secrets.token_hex(3)}-s"
    sh("ip", "netns", "add", ns)
    try:
        state = scale_state(n)
        start = time.monotonic()
        text = r.render(state)
        rendered = time.monotonic() - start
        b = IptablesBackend(ns, "legacy")
        start = time.monotonic()
        sync(b, state)
        full = time.monotonic() - start
        assert b.last_sync_full
        start = time.monotonic()
        sh(*in_ns(ns, "iptables-legacy-restore", "-w", "5", "--noflush"), input=text)
        restore_only = time.monotonic() - start
        changed = dict(state.endpoints)
        key = next(iter(state.services))
        changed[key] = changed[key][:-1]
        start = time.monotonic()
        sync(b, ProxyState(state.node, state.node_ips, state.cluster_cidr, state.services, changed))
        partial = time.monotonic() - start
        assert not b.last_sync_full
        lines = text.count("\n-A ")
        print(
            f"\niptables-legacy, {n} services x 5 endpoints ({lines} rules, {len(text) >> 10} KiB):"
            f" render {rendered:.2f} s, first full sync {full:.2f} s,"
            f" restore of the same text {restore_only:.2f} s, partial sync {partial:.2f} s"
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
