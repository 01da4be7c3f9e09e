"""nftables flat-layout rendering: golden text, a kernel model that applies `nft -f` text
(failing where the kernel would), and a packet tracer over that model.

IP plan (this node is n1):
  node n1 address            172.31.0.10 (node network 172.31.0.0/24); n2 is 172.31.0.11
  cluster (pod) CIDR         10.244.0.0/16; n1 pods 10.244.0.0/24, n2 pods 10.244.1.0/24
  ClusterIPs                 10.96.0.0/16
  externalIPs                172.31.0.100-199; load-balancer IPs 172.31.0.200-254
  outside client             192.168.1.1
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field

import pytest

from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort
from kubesvc.proxy.nftables import render as r
from kubesvc.proxy.nftables.backend import filter_listing, objects_in_listing

NODE, NODE_IP, CIDR = "n1", "172.31.0.10", "10.244.0.0/16"
LOCAL_ADDRS = {NODE_IP, "10.244.0.1", "127.0.0.1"}
OUTSIDE = "192.168.1.1"


# -- builders ---------------------------------------------------------------------------------
def make_port(ns: str, name: str, **changes: object) -> ServicePort:
    base = ServicePort(ns, name, "http", "TCP", "10.96.0.10", 80)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def ep(ip: str, port: int = 8080, node: str = NODE, **kw: object) -> Endpoint:
    return Endpoint(ip, port, node=node, **kw)  # type: ignore[arg-type]


def make_state(*entries: tuple[ServicePort, tuple[Endpoint, ...]], cidr: str = CIDR) -> ProxyState:
    return ProxyState(
        NODE,
        (NODE_IP,),
        cidr,
        {sp.key: sp for sp, _ in entries},
        {sp.key: eps for sp, eps in entries},
    )


# -- kernel model -----------------------------------------------------------------------------
class NftError(Exception):
    pass


@dataclass
class Container:
    kind: str
    spec: str
    elements: dict[str, str] = field(default_factory=dict)


@dataclass
class Kernel:
    """The one table, as the kernel would hold it after a sequence of `nft -f` loads."""

    exists: bool = False
    chains: dict[str, list[str]] = field(default_factory=dict)
    base: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)

    def load(self, text: str) -> None:
        """All or nothing, as a transaction."""
        work = copy.deepcopy(self)
        for line in text.splitlines():
            if line.strip():
                work._command(line)
        self.__dict__.update(work.__dict__)

    def _command(self, line: str) -> None:
        prefix = f" {r.FAMILY} {r.TABLE}"
        m = re.match(r"(add|flush|delete) (table|chain|map|set|rule|element)(.*)$", line)
        if not m:
            raise NftError(f"cannot parse {line!r}")
        verb, obj, rest = m.groups()
        if not rest.startswith(prefix):
            raise NftError(f"not our table: {line!r}")
        rest = rest[len(prefix) :].strip()
        if obj == "table":
            if verb == "add":
                self.exists = True
            else:
                raise NftError("the table is never flushed or deleted by a sync")
            return
        if not self.exists:
            raise NftError(f"no table for {line!r}")
        getattr(self, f"_{verb}_{obj}")(rest)

    def _add_chain(self, rest: str) -> None:
        m = re.match(r"(\S+)(?: \{ type (\S+) hook (\S+) priority (-?\d+) ; \})?$", rest)
        assert m, rest
        name = m.group(1)
        self.chains.setdefault(name, [])
        if m.group(2):
            spec = (m.group(2), m.group(3), int(m.group(4)))
            if self.base.get(name, spec) != spec:
                raise NftError(f"chain {name} exists with another hook")
            self.base[name] = spec

    def _flush_chain(self, name: str) -> None:
        self._chain(name).clear()

    def _delete_chain(self, name: str) -> None:
        self._chain(name)
        users = [c for c, rules in self.chains.items() if c != name and _refers(rules, name)]
        users += [
            c for c, ct in self.containers.items() if _refers(list(ct.elements.values()), name)
        ]
        if users:
            raise NftError(f"chain {name} is in use by {users}")
        del self.chains[name]
        self.base.pop(name, None)

    def _add_rule(self, rest: str) -> None:
        name, rule = rest.split(" ", 1)
        for ref in re.findall(r"(?:jump|goto) (\S+)", rule):
            self._chain(ref)
        for ref in re.findall(r"@([\w-]+)", rule):
            self._container(ref)
        self._chain(name).append(rule)

    def _add_map(self, rest: str) -> None:
        self._add_container("map", rest)

    def _add_set(self, rest: str) -> None:
        self._add_container("set", rest)

    def _add_container(self, kind: str, rest: str) -> None:
        name, spec = rest.split(" ", 1)
        have = self.containers.get(name)
        if have is not None and (have.kind, have.spec) != (kind, spec):
            raise NftError(f"{name} exists with another definition")
        self.containers.setdefault(name, Container(kind, spec))

    def _flush_map(self, name: str) -> None:
        self._container(name).elements.clear()

    _flush_set = _flush_map

    def _delete_map(self, name: str) -> None:
        self._container(name)
        if any(
            f"@{name} " in rule or rule.endswith(f"@{name}")
            for rules in self.chains.values()
            for rule in rules
        ):
            raise NftError(f"{name} is in use")
        del self.containers[name]

    _delete_set = _delete_map

    def _add_element(self, rest: str) -> None:
        name, items = _element_items(rest)
        ct = self._container(name)
        for item in items:
            key, value = _split_item(item)
            for ref in re.findall(r"(?:jump|goto) (\S+)", value):
                self._chain(ref)
            if key in ct.elements and ct.elements[key] != value:
                raise NftError(f"{name}: {key} exists with another value")
            ct.elements[key] = value

    def _delete_element(self, rest: str) -> None:
        name, items = _element_items(rest)
        ct = self._container(name)
        for item in items:
            key, _ = _split_item(item)
            if key not in ct.elements:
                raise NftError(f"{name}: no element {key}")
            del ct.elements[key]

    def _chain(self, name: str) -> list[str]:
        if name not in self.chains:
            raise NftError(f"no chain {name}")
        return self.chains[name]

    def _container(self, name: str) -> Container:
        if name not in self.containers:
            raise NftError(f"no map/set {name}")
        return self.containers[name]


def _refers(texts: list[str], chain: str) -> bool:
    return any(re.search(rf"(?:jump|goto) {re.escape(chain)}(?:$|\s)", t) for t in texts)


def _element_items(rest: str) -> tuple[str, list[str]]:
    name, body = rest.split(" ", 1)
    assert body.startswith("{ ") and body.endswith(" }"), body
    items, cur, quoted = [], "", False
    for ch in body[2:-2]:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    return name, [i for i in items if i]


def _split_item(item: str) -> tuple[str, str]:
    item = re.sub(r' comment "[^"]*"', "", item)
    key, _, value = item.partition(" : ")
    return key.strip(), value.strip()


# -- packet tracer ----------------------------------------------------------------------------
@dataclass
class Pkt:
    saddr: str
    daddr: str
    proto: str
    dport: int
    mark: int = 0
    ctmark: int = 0
    dnat: bool = False
    masq: bool = False
    affinity: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    action: str  # dnat | reject | drop | accept
    target: str = ""  # "ip:port" after DNAT
    masq: bool = False


_FIELD = r"(?:ip saddr|ip daddr|meta l4proto|th dport|meta mark)"
_CONCAT = rf"{_FIELD}(?: \. {_FIELD})*"


def _value(p: Pkt, expr: str) -> str:
    vals = {
        "ip saddr": p.saddr,
        "ip daddr": p.daddr,
        "meta l4proto": p.proto,
        "th dport": str(p.dport),
        "meta mark": f"{p.mark:#010x}",
    }
    return " . ".join(vals[f.strip()] for f in expr.split(" . "))


def _in(addr: str, spec: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(addr) in ipaddress.ip_network(spec, strict=False)


class Tracer:
    def __init__(self, kernel: Kernel, local: set[str] = LOCAL_ADDRS) -> None:
        self.k, self.local = kernel, local
        self.affinity = {n: dict(c.elements) for n, c in kernel.containers.items()}

    def _elements(self, p: Pkt, name: str) -> dict[str, str]:
        if "dynamic" in self.k.containers[name].spec:
            return p.affinity[name]
        return self.k.containers[name].elements

    # Each step returns a list of (result, packet) for the possible paths; result is
    # "continue" (fell off / no verdict) or a verdict.
    def chain(self, name: str, p: Pkt, start: int = 0) -> list[tuple[str, Pkt]]:
        rules = self.k.chains[name]
        for i in range(start, len(rules)):
            outs = self.rule(rules[i], p)
            if outs is None:
                continue
            results: list[tuple[str, Pkt]] = []
            for res, q in outs:
                if res == "next":
                    results += self.chain(name, q, i + 1)
                else:
                    results.append((res, q))
            return results
        return [("continue", p)]

    def _call(self, verb: str, target: str, p: Pkt) -> list[tuple[str, Pkt]]:
        out = []
        for res, q in self.chain(target, p):
            if res == "continue":
                out.append(("next" if verb == "jump" else "continue", q))
            else:
                out.append((res, q))
        return out

    def rule(self, rule: str, p: Pkt) -> list[tuple[str, Pkt]] | None:
        """None: the rule did not match. Otherwise possible (result, packet) pairs, where
        "next" means: go on with the next rule."""
        s = rule
        p = copy.deepcopy(p)
        while s:
            s = s.strip()
            if m := re.match(r"ct state new", s):
                pass
            elif m := re.match(r"fib (saddr|daddr) type local", s):
                if (p.saddr if m.group(1) == "saddr" else p.daddr) not in self.local:
                    return None
            elif m := re.match(r"ip (saddr|daddr) (!= )?(\d[\d.]*(?:/\d+)?)(?=\s|$)", s):
                addr = p.saddr if m.group(1) == "saddr" else p.daddr
                if _in(addr, m.group(3)) == bool(m.group(2)):
                    return None
            elif m := re.match(rf"({_CONCAT}) vmap @(\S+)", s):
                verdict = self._elements(p, m.group(2)).get(_value(p, m.group(1)))
                if verdict is None:
                    return None
                return self._verdict(verdict, p)
            elif m := re.match(rf"({_CONCAT}) (!= )?@(\S+)", s):
                found = _value(p, m.group(1)) in self._member_keys(p, m.group(3), m.group(1))
                if found == bool(m.group(2)):
                    return None
            elif m := re.match(r"ct mark set ct mark \| (0x[0-9a-f]+)", s):
                p.ctmark |= int(m.group(1), 16)
            elif m := re.match(r"ct mark & (0x[0-9a-f]+) == (0x[0-9a-f]+)", s):
                if p.ctmark & int(m.group(1), 16) != int(m.group(2), 16):
                    return None
            elif m := re.match(r"ct status dnat", s):
                if not p.dnat:
                    return None
            elif m := re.match(
                r"meta mark set numgen random mod (\d+)(?: offset (0x[0-9a-f]+))?", s
            ):
                offset = int(m.group(2), 16) if m.group(2) else 0
                rest = s[m.end() :]
                outs: list[tuple[str, Pkt]] = []
                for i in range(int(m.group(1))):
                    q = copy.deepcopy(p)
                    q.mark = offset + i
                    outs += self._rest(rest, q)
                return outs
            elif m := re.match(rf"meta mark set ({_CONCAT}) map @(\S+)", s):
                found = self._elements(p, m.group(2)).get(_value(p, m.group(1)))
                if found is None:
                    return None
                p.mark = int(found, 16)
            elif m := re.match(rf"(update|delete) @(\S+) \{{ ({_CONCAT}) : meta mark \}}", s):
                elems = p.affinity[m.group(2)]
                key = _value(p, m.group(3))
                if m.group(1) == "update":
                    elems.setdefault(key, f"{p.mark:#010x}")
                else:
                    elems.pop(key, None)
            elif m := re.match(rf"dnat ip to ({_CONCAT}) map @(\S+)", s):
                target = self._elements(p, m.group(2)).get(_value(p, m.group(1)))
                if target is None:
                    return None
                ip, port = target.split(" . ")
                p.daddr, p.dport, p.dnat = ip, int(port), True
                return [("accept", p)]
            elif m := re.match(r"masquerade fully-random", s):
                p.masq = True
                return [("accept", p)]
            elif m := re.match(r"(jump|goto) (\S+)", s):
                return self._call(m.group(1), m.group(2), p)
            elif m := re.match(r"(reject|drop|accept)$", s):
                return [(m.group(1), p)]
            else:
                raise AssertionError(f"tracer does not know {s!r} in {rule!r}")
            s = s[m.end() :]
        return [("next", p)]

    def _rest(self, rest: str, p: Pkt) -> list[tuple[str, Pkt]]:
        outs = self.rule(rest, p) if rest.strip() else [("next", p)]
        return outs if outs is not None else [("next", p)]

    def _member_keys(self, p: Pkt, name: str, expr: str) -> set[str]:
        keys = set(self._elements(p, name))
        # interval elements (firewall-allow): expand the CIDR in the last field
        out = set()
        for key in keys:
            parts = key.split(" . ")
            if "/" in parts[-1] and expr.endswith("ip saddr"):
                if _in(p.saddr, parts[-1]):
                    out.add(" . ".join([*parts[:-1], p.saddr]))
            else:
                out.add(key)
        return out

    def _verdict(self, verdict: str, p: Pkt) -> list[tuple[str, Pkt]]:
        if m := re.match(r"(jump|goto) (\S+)$", verdict):
            return self._call(m.group(1), m.group(2), p)
        return [(verdict, p)]

    # -- whole paths ------------------------------------------------------------------------
    def hook(self, hook: str, p: Pkt) -> list[tuple[str, Pkt]]:
        paths = [("accept", p)]
        chains = sorted(
            (c for c in self.k.base if self.k.base[c][1] == hook), key=lambda c: self.k.base[c][2]
        )
        for name in chains:
            nxt = []
            for res, q in paths:
                if res != "accept":
                    nxt.append((res, q))
                    continue
                for res2, q2 in self.chain(name, q):
                    nxt.append(("accept" if res2 == "continue" else res2, q2))
            paths = nxt
        return paths

    def trace(
        self, saddr: str, daddr: str, proto: str, dport: int, *, host: bool = False
    ) -> set[Outcome]:
        """Outcomes of a new connection: from this node's own processes (host=True, through
        output) or arriving from a pod or another machine (through prerouting)."""
        p = Pkt(saddr, daddr, proto, dport, affinity=copy.deepcopy(self.affinity))
        first = self.hook("output" if host else "prerouting", p)
        outcomes: set[Outcome] = set()
        for res, q in first:
            if res != "accept":
                outcomes.add(Outcome(res))
                continue
            hook = "forward" if host or q.daddr not in self.local else "input"
            after = self.hook(hook, q) if not host else [("accept", q)]
            if not host and hook == "input":
                after = [(res2, q2) for res2, q2 in after]
            for res2, q2 in after:
                if res2 != "accept":
                    outcomes.add(Outcome(res2))
                    continue
                final = q2
                if hook == "forward" or host:
                    for _, q3 in self.hook("postrouting", q2):
                        final = q3
                outcomes.add(
                    Outcome(
                        "dnat" if final.dnat else "accept",
                        f"{final.daddr}:{final.dport}" if final.dnat else "",
                        final.masq,
                    )
                )
        return outcomes


def kernel_for(state: ProxyState) -> Kernel:
    k = Kernel()
    k.load(r.render_full(state))
    return k


def dnat(*targets: str, masq: bool = False) -> set[Outcome]:
    return {Outcome("dnat", t, masq) for t in targets}


# -- states used below ------------------------------------------------------------------------
WEB = make_port("default", "web", node_port=30080)
WEB_EPS = (ep("10.244.0.5"), ep("10.244.1.5", node="n2"))
DNS = make_port(
    "kube-system", "dns", port_name="dns", protocol="UDP", cluster_ip="10.96.0.53", port=53
)
DNS_EPS = (ep("10.244.0.7", 53),)
EMPTY = make_port("default", "empty", cluster_ip="10.96.0.20", node_port=30020)
LOCAL = make_port(
    "default",
    "local",
    cluster_ip="10.96.0.30",
    node_port=30030,
    external_ips=("172.31.0.100",),
    external_local=True,
)
LOCAL_EPS = (ep("10.244.0.8"), ep("10.244.1.8", node="n2"))
REMOTE_ONLY = dataclasses.replace(
    LOCAL,
    name="remote-only",
    cluster_ip="10.96.0.31",
    node_port=30031,
    external_ips=("172.31.0.101",),
)
REMOTE_ONLY_EPS = (ep("10.244.1.9", node="n2"),)
ITP = make_port("default", "itp", cluster_ip="10.96.0.40", internal_local=True)
ITP_EPS = (ep("10.244.1.10", node="n2"),)
STICKY = make_port("default", "sticky", cluster_ip="10.96.0.50", affinity_timeout=30)
STICKY_EPS = (ep("10.244.0.11"), ep("10.244.1.11", node="n2"))
LB = make_port(
    "default",
    "lb",
    cluster_ip="10.96.0.60",
    load_balancer_ips=("172.31.0.200",),
    load_balancer_source_ranges=("192.168.0.0/16",),
)
LB_EPS = (ep("10.244.1.12", node="n2"),)

ALL = make_state(
    (WEB, WEB_EPS),
    (DNS, DNS_EPS),
    (EMPTY, ()),
    (LOCAL, LOCAL_EPS),
    (REMOTE_ONLY, REMOTE_ONLY_EPS),
    (ITP, ITP_EPS),
    (STICKY, STICKY_EPS),
    (LB, LB_EPS),
)
POD, POD2 = "10.244.0.5", "10.244.0.99"

TRACE_ROWS = [
    # ClusterIP from a pod: spread over both endpoints, source kept
    pytest.param(
        POD2,
        "10.96.0.10",
        "tcp",
        80,
        False,
        dnat("10.244.0.5:8080", "10.244.1.5:8080"),
        id="clusterip-pod",
    ),
    # hairpin: the endpoint reaching itself is masqueraded, the other endpoint is not
    pytest.param(
        POD,
        "10.96.0.10",
        "tcp",
        80,
        False,
        {Outcome("dnat", "10.244.0.5:8080", True), Outcome("dnat", "10.244.1.5:8080", False)},
        id="clusterip-hairpin",
    ),
    # from the node itself (output hook) or another host: masqueraded
    pytest.param(
        NODE_IP,
        "10.96.0.10",
        "tcp",
        80,
        True,
        dnat("10.244.0.5:8080", "10.244.1.5:8080", masq=True),
        id="clusterip-host",
    ),
    pytest.param(
        OUTSIDE,
        "10.96.0.10",
        "tcp",
        80,
        False,
        dnat("10.244.0.5:8080", "10.244.1.5:8080", masq=True),
        id="clusterip-offcluster",
    ),
    # only declared protocol/port pairs are DNATed; the rest of a ClusterIP is refused
    pytest.param(
        POD2, "10.96.0.10", "udp", 80, False, {Outcome("reject")}, id="clusterip-wrong-proto"
    ),
    pytest.param(POD2, "10.96.0.10", "icmp", 0, False, {Outcome("reject")}, id="clusterip-icmp"),
    pytest.param(POD2, "10.96.0.53", "udp", 53, False, dnat("10.244.0.7:53"), id="udp"),
    # NodePort on any local address, masqueraded (Cluster policy); not on other addresses
    pytest.param(
        OUTSIDE,
        NODE_IP,
        "tcp",
        30080,
        False,
        dnat("10.244.0.5:8080", "10.244.1.5:8080", masq=True),
        id="nodeport",
    ),
    pytest.param(
        POD2,
        "10.244.0.1",
        "tcp",
        30080,
        False,
        dnat("10.244.0.5:8080", "10.244.1.5:8080", masq=True),
        id="nodeport-gateway",
    ),
    pytest.param(
        NODE_IP,
        NODE_IP,
        "tcp",
        30080,
        True,
        dnat("10.244.0.5:8080", "10.244.1.5:8080", masq=True),
        id="nodeport-host",
    ),
    pytest.param(
        OUTSIDE, "172.31.0.11", "tcp", 30080, False, {Outcome("accept")}, id="nodeport-not-local"
    ),
    # no endpoints: refused at once, for ClusterIP and NodePort, from pods and the host
    pytest.param(POD2, "10.96.0.20", "tcp", 80, False, {Outcome("reject")}, id="no-endpoints"),
    pytest.param(
        NODE_IP, "10.96.0.20", "tcp", 80, True, {Outcome("reject")}, id="no-endpoints-host"
    ),
    pytest.param(
        OUTSIDE, NODE_IP, "tcp", 30020, False, {Outcome("reject")}, id="no-endpoints-nodeport"
    ),
    # externalTrafficPolicy Local: outside clients keep their source and reach local endpoints
    # only; pods and the node short-circuit to all endpoints
    pytest.param(
        OUTSIDE, NODE_IP, "tcp", 30030, False, dnat("10.244.0.8:8080"), id="etp-local-nodeport"
    ),
    pytest.param(
        OUTSIDE,
        "172.31.0.100",
        "tcp",
        80,
        False,
        dnat("10.244.0.8:8080"),
        id="etp-local-externalip",
    ),
    pytest.param(
        POD2,
        "172.31.0.100",
        "tcp",
        80,
        False,
        dnat("10.244.0.8:8080", "10.244.1.8:8080"),
        id="etp-local-pod-shortcut",
    ),
    pytest.param(
        NODE_IP,
        NODE_IP,
        "tcp",
        30030,
        True,
        dnat("10.244.0.8:8080", "10.244.1.8:8080", masq=True),
        id="etp-local-host",
    ),
    pytest.param(
        POD2,
        "10.96.0.30",
        "tcp",
        80,
        False,
        dnat("10.244.0.8:8080", "10.244.1.8:8080"),
        id="etp-local-clusterip",
    ),
    # ... and with no local endpoint: outside traffic dropped, pods still served
    pytest.param(
        OUTSIDE, NODE_IP, "tcp", 30031, False, {Outcome("drop")}, id="etp-local-none-nodeport"
    ),
    pytest.param(
        OUTSIDE, "172.31.0.101", "tcp", 80, False, {Outcome("drop")}, id="etp-local-none-externalip"
    ),
    pytest.param(
        POD2, "172.31.0.101", "tcp", 80, False, dnat("10.244.1.9:8080"), id="etp-local-none-pod"
    ),
    # internalTrafficPolicy Local with no local endpoint: ClusterIP traffic dropped
    pytest.param(POD2, "10.96.0.40", "tcp", 80, False, {Outcome("drop")}, id="itp-local-none"),
    # loadBalancerSourceRanges
    pytest.param(
        "192.168.1.1",
        "172.31.0.200",
        "tcp",
        80,
        False,
        dnat("10.244.1.12:8080", masq=True),
        id="lb-allowed",
    ),
    pytest.param("10.1.2.3", "172.31.0.200", "tcp", 80, False, {Outcome("drop")}, id="lb-blocked"),
    pytest.param(
        "10.1.2.3",
        "10.96.0.60",
        "tcp",
        80,
        False,
        dnat("10.244.1.12:8080", masq=True),
        id="lb-clusterip-unfiltered",
    ),
    # not a service at all: untouched
    pytest.param(POD2, "10.244.1.5", "tcp", 8080, False, {Outcome("accept")}, id="pod-to-pod"),
]


@pytest.mark.parametrize(("src", "dst", "proto", "dport", "host", "want"), TRACE_ROWS)
def test_trace(src: str, dst: str, proto: str, dport: int, host: bool, want: set[Outcome]) -> None:
    assert Tracer(kernel_for(ALL)).trace(src, dst, proto, dport, host=host) == want


# -- affinity ---------------------------------------------------------------------------------
def test_affinity_remembered_client_sticks_and_stale_slot_repicks() -> None:
    k = kernel_for(ALL)
    amap = r.affinity_map_name("ip", 30)
    assert "dynamic" in k.containers[amap].spec and "timeout 30s" in k.containers[amap].spec
    t = Tracer(k)
    spread = dnat("10.244.0.11:8080", "10.244.1.11:8080")
    assert t.trace(POD2, "10.96.0.50", "tcp", 80) == spread
    key = f"{POD2} . 10.96.0.50 . tcp . 80"
    t.affinity[amap][key] = "0x00000001"
    assert t.trace(POD2, "10.96.0.50", "tcp", 80) == dnat("10.244.1.11:8080")
    # another client is not affected
    assert t.trace("10.244.0.98", "10.96.0.50", "tcp", 80) == spread
    # a slot whose endpoint is gone: forgotten, picked afresh
    t.affinity[amap][key] = "0x00000007"
    assert t.trace(POD2, "10.96.0.50", "tcp", 80) == spread


def test_affinity_records_the_pick() -> None:
    k = kernel_for(make_state((STICKY, STICKY_EPS[:1])))
    t = Tracer(k)
    p = Pkt(POD2, "10.96.0.50", "tcp", 80, affinity=copy.deepcopy(t.affinity))
    [(res, q)] = t.hook("prerouting", p)
    assert res == "accept" and q.daddr == "10.244.0.11"
    assert q.affinity[r.affinity_map_name("ip", 30)] == {
        f"{POD2} . 10.96.0.50 . tcp . 80": "0x00000000"
    }


# -- golden text ------------------------------------------------------------------------------
GOLDEN_STATE = make_state((WEB, WEB_EPS), (EMPTY, ()))
GOLDEN = """\
add table ip kubesvc-proxy
add map ip kubesvc-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kubesvc-proxy service-nodeports { type inet_proto . inet_service : verdict ; }
add map ip kubesvc-proxy shortcut-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kubesvc-proxy shortcut-nodeports { type inet_proto . inet_service : verdict ; }
add map ip kubesvc-proxy service-endpoints { type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service ; }
add map ip kubesvc-proxy nodeport-endpoints { type inet_proto . inet_service . mark : ipv4_addr . inet_service ; }
add map ip kubesvc-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kubesvc-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }
add set ip kubesvc-proxy cluster-ips { type ipv4_addr ; }
add set ip kubesvc-proxy hairpin { type ipv4_addr . ipv4_addr ; }
add set ip kubesvc-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service ; }
add set ip kubesvc-proxy firewall-allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }
add chain ip kubesvc-proxy filter-prerouting { type filter hook prerouting priority -110 ; }
add chain ip kubesvc-proxy filter-input { type filter hook input priority -110 ; }
add chain ip kubesvc-proxy filter-forward { type filter hook forward priority -110 ; }
add chain ip kubesvc-proxy filter-output { type filter hook output priority -110 ; }
add chain ip kubesvc-proxy filter-output-post-dnat { type filter hook output priority -90 ; }
add chain ip kubesvc-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kubesvc-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kubesvc-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kubesvc-proxy services
add chain ip kubesvc-proxy service-endpoints-check
add chain ip kubesvc-proxy nodeport-endpoints-check
add chain ip kubesvc-proxy cluster-ips-check
add chain ip kubesvc-proxy firewall-check
add chain ip kubesvc-proxy reject-chain
add chain ip kubesvc-proxy dnat-ip
add chain ip kubesvc-proxy dnat-np
add chain ip kubesvc-proxy masquerading
add chain ip kubesvc-proxy pick-ip-int-2
add chain ip kubesvc-proxy pick-np-ext-2
flush chain ip kubesvc-proxy filter-prerouting
flush chain ip kubesvc-proxy filter-input
flush chain ip kubesvc-proxy filter-forward
flush chain ip kubesvc-proxy filter-output
flush chain ip kubesvc-proxy filter-output-post-dnat
flush chain ip kubesvc-proxy nat-prerouting
flush chain ip kubesvc-proxy nat-output
flush chain ip kubesvc-proxy nat-postrouting
flush chain ip kubesvc-proxy services
flush chain ip kubesvc-proxy service-endpoints-check
flush chain ip kubesvc-proxy nodeport-endpoints-check
flush chain ip kubesvc-proxy cluster-ips-check
flush chain ip kubesvc-proxy firewall-check
flush chain ip kubesvc-proxy reject-chain
flush chain ip kubesvc-proxy dnat-ip
flush chain ip kubesvc-proxy dnat-np
flush chain ip kubesvc-proxy masquerading
flush chain ip kubesvc-proxy pick-ip-int-2
flush chain ip kubesvc-proxy pick-np-ext-2
flush map ip kubesvc-proxy service-ips
flush map ip kubesvc-proxy service-nodeports
flush map ip kubesvc-proxy shortcut-ips
flush map ip kubesvc-proxy shortcut-nodeports
flush map ip kubesvc-proxy service-endpoints
flush map ip kubesvc-proxy nodeport-endpoints
flush map ip kubesvc-proxy no-endpoint-services
flush map ip kubesvc-proxy no-endpoint-nodeports
flush set ip kubesvc-proxy cluster-ips
flush set ip kubesvc-proxy hairpin
flush set ip kubesvc-proxy firewall-ips
flush set ip kubesvc-proxy firewall-allow
add rule ip kubesvc-proxy filter-prerouting ct state new jump firewall-check
add rule ip kubesvc-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kubesvc-proxy filter-input ct state new jump service-endpoints-check
add rule ip kubesvc-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kubesvc-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kubesvc-proxy filter-output ct state new jump service-endpoints-check
add rule ip kubesvc-proxy filter-output ct state new jump firewall-check
add rule ip kubesvc-proxy filter-output-post-dnat ct state new jump cluster-ips-check
add rule ip kubesvc-proxy nat-prerouting jump services
add rule ip kubesvc-proxy nat-output jump services
add rule ip kubesvc-proxy nat-postrouting jump masquerading
add rule ip kubesvc-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kubesvc-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
add rule ip kubesvc-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip kubesvc-proxy nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kubesvc-proxy cluster-ips-check ip daddr @cluster-ips reject
add rule ip kubesvc-proxy firewall-check ip daddr . meta l4proto . th dport @firewall-ips ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop
add rule ip kubesvc-proxy reject-chain reject
add rule ip kubesvc-proxy dnat-ip dnat ip to ip daddr . meta l4proto . th dport . meta mark map @service-endpoints
add rule ip kubesvc-proxy dnat-np dnat ip to meta l4proto . th dport . meta mark map @nodeport-endpoints
add rule ip kubesvc-proxy masquerading ct mark & 0x4000 == 0x4000 masquerade fully-random
add rule ip kubesvc-proxy masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random
add rule ip kubesvc-proxy pick-ip-int-2 ip saddr != 10.244.0.0/16 ct mark set ct mark | 0x4000
add rule ip kubesvc-proxy pick-ip-int-2 meta mark set numgen random mod 2
add rule ip kubesvc-proxy pick-ip-int-2 goto dnat-ip
add rule ip kubesvc-proxy pick-np-ext-2 ct mark set ct mark | 0x4000
add rule ip kubesvc-proxy pick-np-ext-2 meta mark set numgen random mod 2
add rule ip kubesvc-proxy pick-np-ext-2 goto dnat-np
add element ip kubesvc-proxy service-ips { 10.96.0.10 . tcp . 80 comment "default/web:http" : goto pick-ip-int-2 }
add element ip kubesvc-proxy service-nodeports { tcp . 30080 comment "default/web:http" : goto pick-np-ext-2 }
add element ip kubesvc-proxy service-endpoints { 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.0.5 . 8080, 10.96.0.10 . tcp . 80 . 0x00000001 : 10.244.1.5 . 8080 }
add element ip kubesvc-proxy nodeport-endpoints { tcp . 30080 . 0x00000000 : 10.244.0.5 . 8080, tcp . 30080 . 0x00000001 : 10.244.1.5 . 8080 }
add element ip kubesvc-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 comment "default/empty:http" : goto reject-chain }
add element ip kubesvc-proxy no-endpoint-nodeports { tcp . 30020 comment "default/empty:http" : goto reject-chain }
add element ip kubesvc-proxy cluster-ips { 10.96.0.20, 10.96.0.10 }
add element ip kubesvc-proxy hairpin { 10.244.0.5 . 10.244.0.5 }
"""  # noqa: E501


GOLDEN_DIFF = """\
add chain ip kubesvc-proxy pick-ip-int-3
add chain ip kubesvc-proxy pick-np-ext-3
add rule ip kubesvc-proxy pick-ip-int-3 ip saddr != 10.244.0.0/16 ct mark set ct mark | 0x4000
add rule ip kubesvc-proxy pick-ip-int-3 meta mark set numgen random mod 3
add rule ip kubesvc-proxy pick-ip-int-3 goto dnat-ip
add rule ip kubesvc-proxy pick-np-ext-3 ct mark set ct mark | 0x4000
add rule ip kubesvc-proxy pick-np-ext-3 meta mark set numgen random mod 3
add rule ip kubesvc-proxy pick-np-ext-3 goto dnat-np
delete element ip kubesvc-proxy service-ips { 10.96.0.10 . tcp . 80 }
delete element ip kubesvc-proxy service-nodeports { tcp . 30080 }
add element ip kubesvc-proxy nodeport-endpoints { tcp . 30080 . 0x00000002 : 10.244.1.6 . 8080 }
add element ip kubesvc-proxy service-endpoints { 10.96.0.10 . tcp . 80 . 0x00000002 : 10.244.1.6 . 8080 }
add element ip kubesvc-proxy service-ips { 10.96.0.10 . tcp . 80 comment "default/web:http" : goto pick-ip-int-3 }
add element ip kubesvc-proxy service-nodeports { tcp . 30080 comment "default/web:http" : goto pick-np-ext-3 }
delete chain ip kubesvc-proxy pick-ip-int-2
delete chain ip kubesvc-proxy pick-np-ext-2
"""  # noqa: E501


def test_golden_full() -> None:
    assert r.render_full(GOLDEN_STATE) == GOLDEN


def test_golden_one_endpoint_added_is_element_adds_only() -> None:
    t = r.NftTracker()
    t.diff(GOLDEN_STATE)
    t.applied(GOLDEN_STATE)
    new = make_state((WEB, (*WEB_EPS, ep("10.244.1.6", node="n2"))), (EMPTY, ()))
    assert t.diff(new) == GOLDEN_DIFF


# -- tracker ----------------------------------------------------------------------------------
def _endpoint_groups(k: Kernel) -> dict[tuple[str, str], set[str]]:
    """Endpoint maps up to slot numbering: (map, destination . slot class) -> endpoints."""
    out: dict[tuple[str, str], set[str]] = {}
    for name in (r.SERVICE_ENDPOINTS, r.NODEPORT_ENDPOINTS):
        for key, value in k.containers[name].elements.items():
            *dest, mark = key.split(" . ")
            cls = "sc" if int(mark, 16) >= r.SHORTCUT_OFFSET else "primary"
            out.setdefault((name, " . ".join([*dest, cls])), set()).add(value)
    return out


def _same_tables(a: Kernel, b: Kernel) -> None:
    assert a.chains == b.chains and a.base == b.base
    assert {n: (c.kind, c.spec) for n, c in a.containers.items()} == {
        n: (c.kind, c.spec) for n, c in b.containers.items()
    }
    for name, c in a.containers.items():
        if name not in (r.SERVICE_ENDPOINTS, r.NODEPORT_ENDPOINTS) and "dynamic" not in c.spec:
            assert c.elements == b.containers[name].elements, name
    assert _endpoint_groups(a) == _endpoint_groups(b)


def _changes(base: ProxyState) -> list[ProxyState]:
    """A walk through one-service changes from `base`."""
    svcs, eps = dict(base.services), dict(base.endpoints)
    out = []

    def step() -> None:
        out.append(ProxyState(base.node, base.node_ips, base.cluster_cidr, dict(svcs), dict(eps)))

    eps[WEB.key] = (*WEB_EPS, ep("10.244.1.6", node="n2"))  # scale up
    step()
    eps[WEB.key] = (WEB_EPS[1], ep("10.244.1.6", node="n2"))  # endpoint in slot 0 goes
    step()
    eps[EMPTY.key] = (ep("10.244.0.13"),)  # no longer empty
    step()
    eps[STICKY.key] = STICKY_EPS[:1]  # affinity service shrinks
    step()
    del svcs[STICKY.key], eps[STICKY.key]  # last affinity user gone: map and chains go
    step()
    svcs[DNS.key] = dataclasses.replace(DNS, affinity_timeout=60)  # new timeout value
    step()
    eps[LOCAL.key] = LOCAL_EPS[1:]  # Local policy loses its local endpoint
    step()
    https = dataclasses.replace(WEB, port_name="https", port=443, node_port=0)
    svcs[https.key] = https  # a second port: shares the ClusterIP element and a hairpin pair
    eps[https.key] = (ep("10.244.1.5", 8443, node="n2"), ep("10.244.0.14", 8443))
    step()
    eps[WEB.key] = (ep("10.244.0.14"),)
    step()
    del svcs[https.key]
    step()
    eps[WEB.key] = ()  # now rejected
    step()
    return out


def test_diffs_reach_the_same_table_as_full_syncs() -> None:
    t = r.NftTracker()
    kernel = Kernel()
    kernel.load(t.diff(ALL))
    t.applied(ALL)
    assert t.diff(ALL) == ""
    for state in _changes(ALL):
        text = t.diff(state)
        assert "flush" not in text and "add table" not in text
        kernel.load(text)  # raises where the kernel would refuse
        t.applied(state)
        _same_tables(kernel, kernel_for(state))
        assert t.diff(state) == ""


def test_diff_touches_only_the_changed_service() -> None:
    t = r.NftTracker()
    t.diff(ALL)
    t.applied(ALL)
    eps = dict(ALL.endpoints)
    eps[DNS.key] = (*DNS_EPS, ep("10.244.1.7", 53, node="n2"))
    text = t.diff(dataclasses.replace(ALL, endpoints=eps))
    for line in text.splitlines():
        assert "10.96.0.53" in line or "pick-ip-int-" in line or "hairpin" not in line, line
    assert all(ip not in text for ip in ("10.96.0.10", "10.96.0.50", "172.31.0.100"))


def test_slots_stay_put_for_surviving_endpoints() -> None:
    assert r.assign_slots(["a", "b", "c"], None) == ("a", "b", "c")
    assert r.assign_slots(["a", "c"], ("a", "b", "c")) == ("a", "c")
    assert r.assign_slots(["b", "c"], ("a", "b", "c")) == ("c", "b")  # last fills the hole
    assert r.assign_slots(["a", "c", "d"], ("a", "b", "c")) == ("a", "d", "c")  # newcomer fills
    assert r.assign_slots(["a", "b", "c", "d"], ("b", "a")) == ("b", "a", "c", "d")
    assert r.assign_slots([], ("a",)) == ()


def test_reset_gives_full_sync_that_deletes_leftovers_but_keeps_affinity_maps() -> None:
    t = r.NftTracker()
    t.diff(ALL)
    t.applied(ALL)
    t.reset()
    small = make_state((WEB, WEB_EPS))
    k = kernel_for(ALL)
    t.note_kernel_objects(k.chains, {n: c.kind for n, c in k.containers.items()})
    text = t.diff(small)
    assert text.startswith("add table ip kubesvc-proxy\n")
    assert "flush map ip kubesvc-proxy service-ips" in text
    assert "flush map ip kubesvc-proxy affinity-" not in text
    assert text.endswith(
        "delete chain ip kubesvc-proxy pick-ip-ext-1\n"
        "delete chain ip kubesvc-proxy pick-ip-int-1\n"
        "delete chain ip kubesvc-proxy pick-ip-int-2-a30\n"
        "delete chain ip kubesvc-proxy pick-ip-loc-0\n"
        "delete chain ip kubesvc-proxy pick-ip-loc-1\n"
        "delete chain ip kubesvc-proxy pick-ip-sc-1\n"
        "delete chain ip kubesvc-proxy pick-ip-sc-2\n"
        "delete chain ip kubesvc-proxy pick-np-loc-0\n"
        "delete chain ip kubesvc-proxy pick-np-loc-1\n"
        "delete chain ip kubesvc-proxy pick-np-sc-1\n"
        "delete chain ip kubesvc-proxy pick-np-sc-2\n"
        "delete chain ip kubesvc-proxy affinity-hit-ip-30\n"
        "delete map ip kubesvc-proxy affinity-ip-30\n"
    )
    k.load(text)
    _same_tables(k, kernel_for(small))


def test_full_sync_keeps_dynamic_affinity_entries() -> None:
    k = kernel_for(ALL)
    amap = r.affinity_map_name("ip", 30)
    k.containers[amap].elements["x . y . tcp . 80"] = "0x00000001"
    k.load(r.render_full(ALL))
    assert k.containers[amap].elements == {"x . y . tcp . 80": "0x00000001"}


def test_node_context_change_is_a_table_compare() -> None:
    t = r.NftTracker()
    t.diff(ALL)
    t.applied(ALL)
    moved = dataclasses.replace(ALL, cluster_cidr="10.245.0.0/16")
    text = t.diff(moved)
    assert "flush chain ip kubesvc-proxy pick-ip-int-2" in text
    k = kernel_for(ALL)
    k.load(text)
    t.applied(moved)
    _same_tables(k, kernel_for(moved))


def test_terminating_endpoints_used_only_without_ready_ones() -> None:
    eps = (
        ep("10.244.0.5", ready=False, serving=True, terminating=True),
        ep("10.244.1.5", node="n2"),
    )
    t = Tracer(kernel_for(make_state((WEB, eps))))
    assert t.trace(POD2, "10.96.0.10", "tcp", 80) == dnat("10.244.1.5:8080")
    only_term = (eps[0],)
    t = Tracer(kernel_for(make_state((WEB, only_term))))
    assert t.trace(POD2, "10.96.0.10", "tcp", 80) == dnat("10.244.0.5:8080")
    not_serving = (ep("10.244.0.5", ready=False, serving=False, terminating=True),)
    t = Tracer(kernel_for(make_state((WEB, not_serving))))
    assert t.trace(POD2, "10.96.0.10", "tcp", 80) == {Outcome("reject")}


# -- `kubesvc proxy rules` --------------------------------------------------------------------
LISTING = """\
table ip kubesvc-proxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.10 . tcp . 80 comment "default/web:http" : goto pick-ip-int-2,
\t\t\t     10.96.0.53 . udp . 53 comment "kube-system/dns:dns" : goto pick-ip-int-1 }
\t}

\tmap service-endpoints {
\t\ttype ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service
\t\telements = { 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.0.5 . 8080,
\t\t\t     10.96.0.53 . udp . 53 . 0x00000000 : 10.244.0.7 . 53,
\t\t\t     10.96.0.10 . tcp . 80 . 0x00000001 : 10.244.1.5 . 8080 }
\t}

\tchain dnat-ip {
\t\tdnat ip to ip daddr . meta l4proto . th dport . meta mark map @service-endpoints
\t}

\tchain pick-ip-int-2 {
\t\tmeta mark set numgen random mod 2
\t\tgoto dnat-ip
\t}

\tchain pick-ip-int-1 {
\t\tmeta mark set numgen random mod 1
\t\tgoto dnat-ip
\t}
}
table ip other {
\tchain x {
\t}
}
"""


def test_filter_listing_for_one_service() -> None:
    out = filter_listing(LISTING, "default/web")
    assert "10.96.0.53" not in out and "pick-ip-int-1" not in out
    assert "10.96.0.10 . tcp . 80 . 0x00000001 : 10.244.1.5 . 8080" in out
    assert "chain pick-ip-int-2 {" in out
    assert "chain dnat-ip {" in out  # where the pick chain leads: the DNAT itself


def test_objects_in_listing_only_ours() -> None:
    assert objects_in_listing(LISTING) == [
        ("map", "service-ips"),
        ("map", "service-endpoints"),
        ("chain", "dnat-ip"),
        ("chain", "pick-ip-int-2"),
        ("chain", "pick-ip-int-1"),
    ]
