"""The nftables backend in a real kernel: a tiny node (netns with a pod bridge, br_netfilter
and a route for the service CIDR) with three pods, rules loaded through NftBackend, checked
with real traffic. Everything happens inside namespaces created here (ksvt-*), deleted at
the end.

IP plan: node eth0 (dummy) 172.31.0.10/24, cbr0 10.244.0.1/24; pods a=10.244.0.2 and
b=10.244.0.3 serve TCP 8080 and UDP 5353, c=10.244.0.4 is a client; ClusterIPs 10.96.0.0/16.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort
from kubesvc.proxy.nftables import render as r
from kubesvc.proxy.nftables.backend import NftBackend

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft"),
]

NODE_IP, GW, CIDR = "172.31.0.10", "10.244.0.1", "10.244.0.0/16"
PODS = {"a": "10.244.0.2", "b": "10.244.0.3", "c": "10.244.0.4"}

SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def serve_tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(256)
    while True:
        c, peer = s.accept()
        threading.Thread(target=talk, args=(c, peer), daemon=True).start()
def talk(c, peer):
    # greet with our name and the source address we see, then echo
    with c:
        c.sendall(f"{name} {peer[0]}\n".encode())
        while data := c.recv(4096):
            c.sendall(data)
def serve_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
serve_tcp()
"""

CLIENT = r"""
import json, socket, sys, time
proto, ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = []
for _ in range(n):
    t = time.monotonic()
    try:
        if proto == "tcp":
            with socket.create_connection((ip, port), timeout=2) as s:
                out.append(s.makefile().readline().strip())
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2); s.connect((ip, port)); s.send(b"x")
                out.append(s.recv(256).decode())
    except ConnectionRefusedError:
        out.append(f"refused {time.monotonic() - t:.3f}")
    except (socket.timeout, TimeoutError):
        out.append("timeout")
    except OSError as e:
        out.append(f"error {e.errno}")
print(json.dumps(out))
"""

# a client that keeps one connection open and echoes lines given on stdin
HOLDER = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile("rw")
print(f.readline().strip(), flush=True)
for line in sys.stdin:
    f.write(line); f.flush()
    print(f.readline().strip(), flush=True)
"""


def sh(*argv: str, check: bool = True, input: str | None = None) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


@dataclass
class Topology:
    node: str
    pods: dict[str, str]  # pod -> netns
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def client(self, pod: str | None, proto: str, ip: str, port: int, n: int) -> list[str]:
        ns = self.pods[pod] if pod else self.node
        out = sh(*in_ns(ns, sys.executable, "-c", CLIENT, proto, ip, str(port), str(n)))
        return json.loads(out)

    def names(self, pod: str | None, proto: str, ip: str, port: int, n: int) -> Counter[str]:
        return Counter(x.split()[0] for x in self.client(pod, proto, ip, port, n))

    def nft(self, *args: str) -> str:
        return sh(*in_ns(self.node, "nft", *args))


def _setup(topo: Topology) -> None:
    node = topo.node
    sh("ip", "netns", "add", node)
    for ns in topo.pods.values():
        sh("ip", "netns", "add", ns)
    batch = [
        "link set lo up",
        "link add eth0 type veth peer name eth0p",  # no dummy driver here; peer unused
        "link set eth0p up",
        f"addr add {NODE_IP}/24 dev eth0",
        "link set eth0 up",
        "link add cbr0 type bridge",
        f"addr add {GW}/24 dev cbr0",
        "link set cbr0 up",
        f"route add 10.96.0.0/12 dev eth0 src {NODE_IP}",
    ]
    for pod in PODS:
        host, ns = f"veth-{pod}", topo.pods[pod]
        batch += [
            f"link add {host} type veth peer name eth0 netns {ns}",
            f"link set {host} master cbr0",
            f"link set {host} type bridge_slave hairpin on",
            f"link set {host} up",
        ]
    sh(*in_ns(node, "ip", "-b", "-"), input="\n".join(batch) + "\n")
    sh(
        *in_ns(
            node,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward; "
            "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables",
        )
    )
    for pod, ip in PODS.items():
        ns = topo.pods[pod]
        cmds = ["link set lo up", f"addr add {ip}/24 dev eth0", "link set eth0 up"]
        cmds.append(f"route add default via {GW}")
        sh(*in_ns(ns, "ip", "-b", "-"), input="\n".join(cmds) + "\n")
    for pod in ("a", "b"):
        proc = subprocess.Popen(
            in_ns(topo.pods[pod], sys.executable, "-c", SERVER, pod),
            stdout=subprocess.PIPE,
            text=True,
        )
        topo.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def _teardown(topo: Topology) -> None:
    for proc in topo.procs:
        proc.kill()
        proc.wait()
    for ns in [*topo.pods.values(), topo.node]:
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    tag = secrets.token_hex(3)
    t = Topology(f"ksvt-{tag}-n", {p: f"ksvt-{tag}-{p}" for p in PODS})
    try:
        _setup(t)
        yield t
    finally:
        _teardown(t)


def port(name: str, ip: str, p: int = 80, **kw: object) -> ServicePort:
    return ServicePort("default", name, "", kw.pop("protocol", "TCP"), ip, p, **kw)  # type: ignore[arg-type]


def both(p: int) -> tuple[Endpoint, ...]:
    return (Endpoint(PODS["a"], p, node="n1"), Endpoint(PODS["b"], p, node="n1"))


WEB = port("web", "10.96.0.10", node_port=30080)
DNS = port("dns", "10.96.0.53", 53, protocol="UDP")
EMPTY = port("empty", "10.96.0.20")
STICKY = port("sticky", "10.96.0.50", affinity_timeout=60)


def state(*entries: tuple[ServicePort, tuple[Endpoint, ...]]) -> ProxyState:
    return ProxyState(
        "n1",
        (NODE_IP,),
        CIDR,
        {sp.key: sp for sp, _ in entries},
        {sp.key: eps for sp, eps in entries},
    )


BASE = state((WEB, both(8080)), (DNS, both(5353)), (EMPTY, ()), (STICKY, both(8080)))


@pytest.fixture(scope="module")
def backend(topo: Topology) -> Iterator[NftBackend]:
    b = NftBackend(topo.node)
    asyncio.run(b.sync(BASE))
    yield b
    b.close()


def test_clusterip_tcp_spreads_and_keeps_pod_source(topo: Topology, backend: NftBackend) -> None:
    got = topo.client("c", "tcp", "10.96.0.10", 80, 40)
    names = Counter(x.split()[0] for x in got)
    assert set(names) == {"a", "b"} and min(names.values()) >= 5, names
    assert {x.split()[1] for x in got} == {PODS["c"]}  # no masquerade for pod clients


def test_udp(topo: Topology, backend: NftBackend) -> None:
    names = topo.names("c", "udp", "10.96.0.53", 53, 30)
    assert set(names) == {"a", "b"}, names


def test_ping_to_clusterip_gets_no_reply(topo: Topology, backend: NftBackend) -> None:
    p = subprocess.run(
        in_ns(topo.pods["c"], "ping", "-c", "1", "-W", "1", "10.96.0.10"),
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0 and "1 received" not in p.stdout


def test_no_endpoints_refused_at_once(topo: Topology, backend: NftBackend) -> None:
    for pod in ("c", None):  # a pod (forward) and the node itself (output)
        got = topo.client(pod, "tcp", "10.96.0.20", 80, 3)
        assert all(x.startswith("refused") for x in got), got
        assert max(float(x.split()[1]) for x in got) < 0.5
    # a port the ClusterIP does not serve is refused too
    assert topo.client("c", "tcp", "10.96.0.10", 81, 1)[0].startswith("refused")


def test_node_reaches_clusterip_and_nodeport_masqueraded(
    topo: Topology, backend: NftBackend
) -> None:
    for ip, p in (("10.96.0.10", 80), (NODE_IP, 30080)):
        got = topo.client(None, "tcp", ip, p, 20)
        assert {x.split()[0] for x in got} == {"a", "b"}, got
        assert {x.split()[1] for x in got} == {GW}  # masqueraded to the node's cbr0 address


def test_hairpin(topo: Topology, backend: NftBackend) -> None:
    got = topo.client("a", "tcp", "10.96.0.10", 80, 30)
    names = Counter(x.split()[0] for x in got)
    assert set(names) == {"a", "b"}, got
    for line in got:
        name, seen = line.split()
        # an endpoint reaching itself is masqueraded; reaching another pod keeps its source
        assert seen == (GW if name == "a" else PODS["a"]), got


def test_affinity_then_off_spreads(topo: Topology, backend: NftBackend) -> None:
    names = topo.names("c", "tcp", "10.96.0.50", 80, 20)
    assert len(names) == 1, names
    asyncio.run(
        backend.sync(state((WEB, both(8080)), (DNS, both(5353)), (EMPTY, ()), (STICKY, both(8080))))
    )
    assert set(topo.names("c", "tcp", "10.96.0.50", 80, 10)) == set(names)  # still sticky
    off = dataclasses.replace(STICKY, affinity_timeout=0)
    asyncio.run(
        backend.sync(state((WEB, both(8080)), (DNS, both(5353)), (EMPTY, ()), (off, both(8080))))
    )
    assert f"delete map ip {r.TABLE} {r.affinity_map_name('ip', 60)}" in backend.last_input
    spread = topo.names("c", "tcp", "10.96.0.50", 80, 30)
    assert set(spread) == {"a", "b"}, spread
    asyncio.run(backend.sync(BASE))


def test_one_service_diff_keeps_flows_and_affinity(topo: Topology, backend: NftBackend) -> None:
    asyncio.run(backend.sync(BASE))
    sticky = topo.names("c", "tcp", "10.96.0.50", 80, 5)
    assert len(sticky) == 1
    holder = subprocess.Popen(
        in_ns(topo.pods["c"], sys.executable, "-u", "-c", HOLDER, "10.96.0.10", "80"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    topo.procs.append(holder)
    assert holder.stdin is not None and holder.stdout is not None
    first = holder.stdout.readline().split()[0]
    assert first in ("a", "b")
    # change another service: only DNS's elements move
    changed = state((WEB, both(8080)), (DNS, both(5353)[:1]), (EMPTY, ()), (STICKY, both(8080)))
    text = backend.tracker.diff(changed)
    assert "10.96.0.10" not in text and "10.96.0.50" not in text
    assert "add table" not in text and "flush" not in text
    asyncio.run(backend.sync(changed))
    assert not backend.last_sync_full
    holder.stdin.write("still there\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "still there"
    assert set(topo.names("c", "tcp", "10.96.0.50", 80, 5)) == set(sticky)
    assert topo.names("c", "udp", "10.96.0.53", 53, 10) == Counter({"a": 10})
    affinity = topo.nft("list", "map", "ip", r.TABLE, r.affinity_map_name("ip", 60))
    assert PODS["c"] in affinity
    holder.stdin.close()
    holder.wait(timeout=5)
    asyncio.run(backend.sync(BASE))


def test_flushed_table_is_detected_and_restored(topo: Topology, backend: NftBackend) -> None:
    assert asyncio.run(backend.check())
    topo.nft("delete", "table", "ip", r.TABLE)
    assert not asyncio.run(backend.check())
    asyncio.run(backend.sync(BASE))
    assert backend.last_sync_full
    assert set(topo.names("c", "tcp", "10.96.0.10", 80, 20)) == {"a", "b"}
    out = asyncio.run(backend.rules("default/web"))
    assert "10.96.0.10 . tcp . 80" in out and "10.96.0.53" not in out


def test_cleanup_removes_table(topo: Topology) -> None:
    b = NftBackend(topo.node)
    asyncio.run(b.sync(BASE))
    asyncio.run(b.cleanup())
    assert r.TABLE not in topo.nft("list", "tables")
    asyncio.run(b.sync(BASE))  # and comes back
    assert r.TABLE in topo.nft("list", "tables")
    b.close()


# -- scale: printed, not asserted -------------------------------------------------------------
def _ip(base: int, n: int) -> str:
    return f"10.{base + n // 65536}.{n // 256 % 256}.{n % 256}"


def _big_state(n: int, per: int) -> ProxyState:
    services, endpoints = {}, {}
    for i in range(n):
        sp = ServicePort("bench", f"s{i}", "", "TCP", _ip(96, i), 80)
        services[sp.key] = sp
        endpoints[sp.key] = tuple(
            Endpoint(_ip(128, i * per + j), 8080, node=f"n{j}") for j in range(per)
        )
    return ProxyState("n0", ("172.31.0.10",), CIDR, services, endpoints)


def test_scale_timing(capsys: pytest.CaptureFixture[str]) -> None:
    ns = f"ksvt-{secrets.token_hex(3)}-scale"
    sh("ip", "netns", "add", ns)
    b: NftBackend | None = None
    try:
        st = _big_state(10_000, 5)
        t0 = time.perf_counter()
        text = r.render_full(st)
        t1 = time.perf_counter()
        sh(*in_ns(ns, "nft", "-f", "-"), input=text)
        t2 = time.perf_counter()
        b = NftBackend(ns)
        t3 = time.perf_counter()
        asyncio.run(b.sync(st))  # full sync through the backend onto the loaded table
        t4 = time.perf_counter()
        time.sleep(1)
        changes = []
        for i in range(5):
            sp = st.services[f"bench/s{i * 97}:"]
            eps = dict(st.endpoints)
            eps[sp.key] = (*eps[sp.key][1:], Endpoint(f"10.250.0.{i}", 8080))
            st = dataclasses.replace(st, endpoints=eps)
            c0 = time.perf_counter()
            asyncio.run(b.sync(st))
            changes.append((time.perf_counter() - c0) * 1000)
        with capsys.disabled():
            print(
                f"\n[nft flat] 10,000 services x 5 endpoints: render {t1 - t0:.2f} s, "
                f"nft -f load {t2 - t1:.2f} s ({len(text) // 1024} KiB); backend full resync "
                f"{t4 - t3:.2f} s; one-service endpoint change (diff+apply) "
                f"{', '.join(f'{c:.0f}' for c in changes)} ms"
            )
    finally:
        if b is not None:
            b.close()
        sh("ip", "netns", "del", ns, check=False)
