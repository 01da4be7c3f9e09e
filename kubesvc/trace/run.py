"""Make one request for real from a pod, node or outside host, and gather what the kernel
and the cluster observed of it: the DNS queries and who answered them, the proxy rules the
first packet went through on every node (`nft monitor trace`, or the iptables rules whose
counters moved), its conntrack entry, the route to the endpoint, and the answer.

Sockets are made inside the source's network namespace (`netns.socket_in_netns`), so the
request is the source's own. Nothing is sent outside the cluster: a nameserver or target
outside its node, pod and service ranges is refused before any packet leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from kubesvc import netns
from kubesvc.cluster import hosts
from kubesvc.cluster.lifecycle import Cluster, home, running_nodes
from kubesvc.node.netplan import DNS_SERVICE_IP
from kubesvc.trace import evidence, resolver
from kubesvc.trace.target import Target

DNS_TIMEOUT = 2.0
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
TRACE_TABLE_PREFIX = "kubesvc-trace-"


class TraceError(RuntimeError):
    """The trace cannot be made (no such cluster, pod or node); the message says why."""


@dataclass
class Source:
    kind: str  # "pod", "node", "host"
    name: str  # ns/name for a pod
    netns: str  # where its sockets live
    ip: str
    node: str | None  # the node whose kernel routes its packets first (none: a host)
    resolv: resolver.ResolvConf


@dataclass
class Query:
    name: str
    server: str
    rcode: str
    answers: list[str]
    ms: float
    answered_by: str | None = None  # the address that really answered (conntrack)


@dataclass
class Observed:
    source: Source
    target: Target
    queries: list[Query] = field(default_factory=list)
    address: str | None = None  # what the name resolved to
    sport: int = 0
    connect_error: str | None = None
    connect_ms: float | None = None
    status_line: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    total_ms: float | None = None
    conntrack: dict[str, evidence.ConntrackEntry | None] = field(default_factory=dict)
    rules: dict[str, list[evidence.TraceEvent]] = field(default_factory=dict)
    moved: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy_mode: str = "nftables"
    nodes: dict[str, str] = field(default_factory=dict)  # node -> its IP
    user_agent: str = ""  # unique to this request, to find it in an ingress access log
    access_log: dict[str, str] | None = None  # the ingress controller's line for it


def _in_cluster(net: Any, ip: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    nets = (net.node_cidr, net.pod_cidr, net.service_cidr)
    return any(addr in ipaddress.ip_network(n, strict=False) for n in nets) or addr.is_loopback


def open_cluster(name: str) -> Cluster:
    cluster = Cluster(name, home() / name)
    if not cluster.exists():
        raise TraceError(f"no cluster named {name!r} (kubesvc status lists them)")
    nodes = running_nodes(cluster.load())
    if not all(netns.exists(cluster.net().node_netns(n)) for n in nodes):
        raise TraceError(f"cluster {name!r} is not running (kubesvc start --name {name})")
    return cluster


async def find_source(cluster: Cluster, spec: str, pods: list[dict[str, Any]]) -> Source:
    """`node/NAME`, `host/NAME` or a pod (`NAME` in default, or `NS/NAME`)."""
    net = cluster.net()
    state = cluster.load()
    nodes = list(state["nodes"])
    fqdn_only = resolver.ResolvConf((DNS_SERVICE_IP,), (), 1)
    if spec.startswith("node/"):
        node = spec[5:]
        if node not in nodes:
            raise TraceError(f"no node {node!r}; nodes: {', '.join(nodes)}")
        ip = net.node_ip(nodes.index(node))
        return Source("node", node, net.node_netns(node), ip, node, fqdn_only)
    if spec.startswith("host/"):
        host = spec[5:]
        known = hosts.recorded(state)
        if host not in known:
            raise TraceError(f"no host {host!r} (kubesvc host list --name {cluster.name})")
        ip = net.outside_host_ip(known[host])
        return Source("host", host, net.outside_host_netns(host), ip, None, fqdn_only)
    ns, _, name = spec.rpartition("/")
    ns = ns or "default"
    pod = next(
        (p for p in pods if p["metadata"]["name"] == name and p["metadata"].get("namespace") == ns),
        None,
    )
    if pod is None:
        raise TraceError(f"no pod {ns}/{name}")
    node = (pod.get("spec") or {}).get("nodeName")
    ip = (pod.get("status") or {}).get("podIP")
    if not node or not ip:
        raise TraceError(f"pod {ns}/{name} is not running yet (no node or IP)")
    uid = pod["metadata"]["uid"]
    host_network = (pod.get("spec") or {}).get("hostNetwork") is True
    ns_name = net.node_netns(node) if host_network else net.pod_netns(uid)
    if not netns.exists(ns_name):
        raise TraceError(f"pod {ns}/{name} has no sandbox on {node}")
    try:
        text = (cluster.node_dir(node) / "pods" / uid / "files" / "resolv.conf").read_text()
        conf = resolver.parse(text)
    except OSError:
        conf = fqdn_only
    return Source("pod", f"{ns}/{name}", ns_name, ip, node, conf)


def _query(source: Source, name: str, server: str) -> tuple[Query, int]:
    q = dns.message.make_query(name, dns.rdatatype.A)
    sock = netns.socket_in_netns(source.netns, socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    try:
        sock.bind(("0.0.0.0", 0))
        port = sock.getsockname()[1]
        try:
            r = dns.query.udp(q, server, timeout=DNS_TIMEOUT, sock=sock)
        except dns.exception.Timeout:
            return Query(name, server, "TIMEOUT", [], (time.monotonic() - t0) * 1000), port
        except OSError as e:
            return Query(name, server, f"ERROR {e.strerror or e}", [], 0.0), port
    finally:
        sock.close()
    answers = []
    for rrset in r.answer:
        for rr in rrset:
            answers.append(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rr.to_text()}")
    ms = (time.monotonic() - t0) * 1000
    return Query(name, server, dns.rcode.to_text(r.rcode()), answers, ms), port


async def resolve(obs: Observed, net: Any) -> None:
    """The pod resolver's walk through its search list, one real query at a time."""
    conf = obs.source.resolv
    if not conf.nameservers:
        return
    server = conf.nameservers[0]
    if not _in_cluster(net, server):
        obs.queries.append(Query(obs.target.host, server, "NOT SENT (outside the cluster)", [], 0))
        return
    for name in resolver.candidates(obs.target.host, conf):
        query, port = await asyncio.to_thread(_query, obs.source, name, server)
        if obs.source.node is not None:
            entry = await _conntrack(net.node_netns(obs.source.node), "udp", obs.source.ip, port)
            if entry is not None:
                query.answered_by = entry.reply.src
        obs.queries.append(query)
        addrs = [a.split()[-1] for a in query.answers if " A " in a]
        if query.rcode == "NOERROR" and addrs:
            obs.address = addrs[0]
            return
        if query.rcode not in ("NXDOMAIN", "NOERROR"):
            return


async def _conntrack(
    node_ns: str, proto: str, src: str, sport: int
) -> evidence.ConntrackEntry | None:
    out = await netns.in_netns(
        node_ns, "conntrack", "-L", "-p", proto, "-s", src, "--sport", str(sport), check=False
    )
    for line in out.splitlines():
        entry = evidence.parse_conntrack(line)
        if entry is not None:
            return entry
    return None


def _trace_table(name: str, src: str, sport: int) -> str:
    match = f"ip saddr {src} tcp sport {sport} meta nftrace set 1"
    return (
        f"table ip {name} {{\n"
        f"  chain prerouting {{ type filter hook prerouting priority -400; {match}; }}\n"
        f"  chain output {{ type filter hook output priority -400; {match}; }}\n"
        "}\n"
    )


class _Monitors:
    """`nft monitor trace` in every node's namespace, with a trace table that marks the
    request's packets; everything is removed on exit, whatever happened."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes  # node -> its namespace
        self.table = TRACE_TABLE_PREFIX + secrets.token_hex(4)
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.installed: list[str] = []

    async def start(self, src: str, sport: int) -> None:
        for node, ns in self.nodes.items():
            self.procs[node] = await asyncio.create_subprocess_exec(
                *netns.nsenter(ns),
                "nft",
                "monitor",
                "trace",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        for ns in self.nodes.values():
            await netns.in_netns(ns, "nft", "-f", "-", input=_trace_table(self.table, src, sport))
            self.installed.append(ns)
        await asyncio.sleep(0.1)  # the monitors subscribe before the first packet

    async def stop(self) -> dict[str, list[str]]:
        for ns in self.installed:
            await netns.in_netns(ns, "nft", "delete", "table", "ip", self.table, check=False)
        self.installed.clear()
        out: dict[str, list[str]] = {}
        await asyncio.sleep(0.05)
        for node, proc in self.procs.items():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            data, _ = await proc.communicate()
            out[node] = data.decode(errors="replace").splitlines()
        self.procs.clear()
        return out


async def _iptables_save(nodes: dict[str, str]) -> dict[str, str]:
    out = {}
    for node, ns in nodes.items():
        out[node] = await netns.in_netns(ns, "iptables-legacy-save", "-c", check=False)
    return out


def _request(obs: Observed, sock: socket.socket, ip: str) -> None:
    """Connect and GET from the socket already bound in the source's namespace."""
    t0 = time.monotonic()
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect((ip, obs.target.port))
    except ConnectionRefusedError:
        obs.connect_error = "connection refused"
        return
    except TimeoutError:
        obs.connect_error = f"no answer in {CONNECT_TIMEOUT:g} s"
        return
    except OSError as e:
        obs.connect_error = e.strerror or str(e)
        return
    obs.connect_ms = (time.monotonic() - t0) * 1000
    host = obs.target.host.rstrip(".")
    request = (
        f"GET {obs.target.path} HTTP/1.1\r\nHost: {host}:{obs.target.port}\r\n"
        f"User-Agent: {obs.user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    sock.settimeout(READ_TIMEOUT)
    data = b""
    try:
        sock.sendall(request.encode())
        while len(data) < MAX_BODY + 16384:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, OSError) as e:
        if not data:
            obs.connect_error = f"no response: {getattr(e, 'strerror', None) or e}"
    obs.total_ms = (time.monotonic() - t0) * 1000
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if lines and lines[0].startswith("HTTP/"):
        obs.status_line = lines[0]
        for line in lines[1:]:
            k, _, v = line.partition(":")
            obs.headers[k.strip().lower()] = v.strip()
        obs.body = body[:MAX_BODY]


async def observe(
    cluster: Cluster, source_spec: str, target: Target, resolve_to: str | None = None
) -> tuple[Observed, Any]:
    """Make the request and gather the evidence; returns it with the cluster's objects.
    `resolve_to`: the address to send to without asking DNS (curl's --resolve)."""
    from kubesvc.client.rest import ApiClient

    net = cluster.net()
    state = cluster.load()
    node_names = running_nodes(state)
    async with ApiClient.from_kubeconfig(
        str(cluster.kubeconfig), user_agent="kubesvc-trace"
    ) as api:
        pods = (await api.list("Pod"))["items"]
        source = await find_source(cluster, source_spec, pods)
        obs = Observed(source, target, proxy_mode=str(state.get("proxy_mode", "nftables")))
        obs.nodes = {n: net.node_ip(list(state["nodes"]).index(n)) for n in state["nodes"]}
        obs.user_agent = f"kubesvc-trace/{secrets.token_hex(6)}"
        if resolve_to is not None:
            obs.address = resolve_to
        elif target.is_ip:
            obs.address = target.host
        else:
            await resolve(obs, net)
        if obs.address is not None and not _in_cluster(net, obs.address):
            obs.connect_error = f"not sent: {obs.address} is outside the cluster"
        elif obs.address is not None:
            await _connect(obs, {n: net.node_netns(n) for n in node_names})
        objects = {
            "pods": pods,
            "services": (await api.list("Service"))["items"],
            "endpointslices": (await api.list("EndpointSlice"))["items"],
            "nodes": (await api.list("Node"))["items"],
            "ingresses": (await api.list("Ingress"))["items"],
            "ingressclasses": (await api.list("IngressClass"))["items"],
        }
        if obs.status_line is not None:
            reached = {obs.address} | {
                e.dnat[0] for e in obs.conntrack.values() if e is not None and e.dnat is not None
            }
            obs.access_log = await _ingress_access_log(api, pods, obs.user_agent, reached)
    return obs, objects


INGRESS_POD_LABEL = ("app.kubernetes.io/name", "ingress-kubesvc")


async def _ingress_access_log(
    api: Any, pods: list[dict[str, Any]], agent: str, reached: set[str | None]
) -> dict[str, str] | None:
    """The ingress controller's access log line for this request (found by its unique
    User-Agent), if an ingress controller pod was what the connection `reached` (its
    address, or where it was DNATed); HAProxy writes it after the response, so it is
    looked for for up to a second."""
    from kubesvc.trace.evidence import parse_access_log

    key, value = INGRESS_POD_LABEL
    controllers = [
        p
        for p in pods
        if ((p.get("metadata") or {}).get("labels") or {}).get(key) == value
        and (p.get("status") or {}).get("podIP") in reached
    ]
    for _ in range(10):
        for pod in controllers:
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/log"
            try:
                async with api.session.get(path, params={"tailLines": "500"}) as resp:
                    text = await resp.text() if resp.status == 200 else ""
            except OSError:
                text = ""
            for line in reversed(text.splitlines()):
                if agent in line and (entry := parse_access_log(line)) is not None:
                    return {**entry, "pod": f"{meta['namespace']}/{meta['name']}"}
        if not controllers:
            return None
        await asyncio.sleep(0.1)
    return None


async def _connect(obs: Observed, node_ns: dict[str, str]) -> None:
    assert obs.address is not None
    sock = netns.socket_in_netns(obs.source.netns)
    try:
        sock.bind(("0.0.0.0", 0))
        obs.sport = sock.getsockname()[1]
        nft = obs.proxy_mode == "nftables"
        monitors = _Monitors(node_ns)
        before = {} if nft else await _iptables_save(node_ns)
        try:
            await monitors.start(obs.source.ip, obs.sport)
            await asyncio.to_thread(_request, obs, sock, obs.address)
        finally:
            lines = await monitors.stop()
        for node, node_lines in lines.items():
            events = evidence.first_packet(evidence.parse_trace(node_lines), monitors.table)
            if events:
                obs.rules[node] = events
        if not nft:
            after = await _iptables_save(node_ns)
            for node in node_ns:
                moved = evidence.moved_rules(before.get(node, ""), after.get(node, ""))
                if moved:
                    obs.moved[node] = moved
    finally:
        sock.close()
    for node, ns in node_ns.items():
        obs.conntrack[node] = await _conntrack(ns, "tcp", obs.source.ip, obs.sport)
        entry = obs.conntrack[node]
        if entry is not None and entry.dnat is not None:
            raw = await netns.in_netns(ns, "ip", "-j", "route", "get", entry.dnat[0], check=False)
            with contextlib.suppress(ValueError, IndexError, TypeError):
                obs.routes[node] = json.loads(raw)[0]


def listening_ports(ss_output: str) -> set[int]:
    """The local ports of `ss -ltnH` lines (`LISTEN 0 4096 *:8080 *:*`)."""
    ports = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].rpartition(":")[2].isdigit():
            ports.add(int(fields[3].rpartition(":")[2]))
    return ports


async def gather_service(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """Everything `kubesvc explain svc` shows, read now: the objects, the cluster DNS's
    answer for the Service's name, each node's rules for it, and the ports its pods listen on."""
    from kubesvc.client.rest import ApiClient, ApiException
    from kubesvc.proxy.proxier import make_backend

    net = cluster.net()
    state = cluster.load()
    nodes = running_nodes(state)
    async with ApiClient.from_kubeconfig(
        str(cluster.kubeconfig), user_agent="kubesvc-explain"
    ) as api:
        try:
            svc = await api.get("Service", namespace, name)
        except ApiException as e:
            if e.status == 404:
                raise TraceError(f"no Service {namespace}/{name}") from None
            raise
        pods = (await api.list("Pod", namespace))["items"]
        slices = (await api.list("EndpointSlice", namespace))["items"]
    fqdn = f"{name}.{namespace}.svc.cluster.local."
    answers: dict[str, list[str]] = {}
    if nodes:
        src = Source(
            "node", nodes[0], net.node_netns(nodes[0]), "", nodes[0], resolver.ResolvConf()
        )
        query, _ = await asyncio.to_thread(_query, src, fqdn, DNS_SERVICE_IP)
        answers[fqdn] = query.answers or [query.rcode]
    rules: dict[str, str] = {}
    for node in nodes:
        backend = make_backend(str(state.get("proxy_mode", "nftables")), net.node_netns(node))
        try:
            rules[node] = await backend.rules(f"{namespace}/{name}")
        finally:
            backend.close()
    listening: dict[str, set[int] | None] = {}
    for pod in pods:
        meta = pod["metadata"]
        ns_name = net.pod_netns(meta["uid"])
        ref = f"{meta['namespace']}/{meta['name']}"
        if netns.exists(ns_name):
            out = await netns.in_netns(ns_name, "ss", "-ltnH", check=False)
            listening[ref] = listening_ports(out)
    return {
        "svc": svc,
        "pods": pods,
        "slices": slices,
        "dns": answers,
        "rules": rules,
        "listening": listening,
    }
