"""Which node announces each LoadBalancer IP: MetalLB's layer-2 election, as plain values.

Pure functions, no I/O. Objects are read into small values first (`read_*`); an object
that is not what the API defines (a stored object can hold anything) raises there and is
left out by `Inputs.build`, which names it in `problems`, so one bad object never stops the
election of the others.

The election is MetalLB's `ShouldAnnounce` (speaker/layer2_controller.go):

- a Service is announced only when it is `type: LoadBalancer`, has no
  `spec.loadBalancerClass` (MetalLB's default), has an IP in its status that lies in this
  cluster's node network (ARP means nothing elsewhere), that IP is in an IPAddressPool, an
  L2Advertisement covers that pool, and it has at least one serving endpoint;
- the eligible nodes are those whose speaker is alive (heartbeats), that are Ready, not
  `NetworkUnavailable`, not labelled `node.kubernetes.io/exclude-from-external-load-balancers`,
  matched by a nodeSelector of an L2Advertisement covering the pool, and, for
  `externalTrafficPolicy: Local`, hold a serving endpoint of the Service;
- the winner is the first eligible node ordered by sha256(node + "#" + ip) (the Service's
  first IP), so every speaker that sees the same nodes picks the same one, and each IP
  lands on its own node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.kinds import SERVICE_NAME_LABEL
from kubesvc.api.objmeta import object_key
from kubesvc.api.selectors import MATCH_NOTHING, Requirement, labels_match
from kubesvc.api.selectors import selector_from_match_labels as _selector
from kubesvc.client.shape import Invalid
from kubesvc.client.shape import typed_field as _get
from kubesvc.controllers.lbipam.model import Pool, PoolError, build_pools, parse_ipv4, parse_pool

PROTOCOL = "layer2"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
MAX_SELECTORS = 64  # selectors of one L2Advertisement list
MAX_NAMES = 1024  # pool names of one L2Advertisement
MAX_INGRESS = 16  # status.loadBalancer.ingress entries read per Service


@dataclass(frozen=True)
class LBService:
    key: str  # namespace/name
    ips: tuple[str, ...]  # IPv4 ingress IPs, in status order
    local: bool  # externalTrafficPolicy: Local


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool
    network_unavailable: bool
    labels: Mapping[str, str]

    @property
    def excluded(self) -> bool:
        return EXCLUDE_LABEL in self.labels


@dataclass(frozen=True)
class L2Advertisement:
    name: str
    pools: tuple[str, ...] = ()
    pool_selectors: tuple[list[Requirement], ...] = ()
    node_selectors: tuple[list[Requirement], ...] = ()

    def covers(self, pool: str, labels: Mapping[str, str]) -> bool:
        if not self.pools and not self.pool_selectors:
            return True  # MetalLB: an advertisement naming no pools covers them all
        return pool in self.pools or any(labels_match(s, dict(labels)) for s in self.pool_selectors)

    def selects(self, node: NodeInfo) -> bool:
        if not self.node_selectors:
            return True
        return any(labels_match(s, dict(node.labels)) for s in self.node_selectors)


@dataclass(frozen=True)
class Decision:
    """What the election says about one Service: `node` announces `ips`, or nobody does
    (`node` "") and `reason` says why, with MetalLB's reasons where it has one."""

    service: str
    ips: tuple[str, ...]
    node: str
    reason: str = ""


# -- reading objects ---------------------------------------------------------------------------
def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = _get(obj, "metadata", dict, {})
    labels = _get(meta, "labels", dict, {}, "metadata")
    return {k: v for k, v in labels.items() if k.__class__ is str and v.__class__ is str}


def _ipv4(text: Any) -> ipaddress.IPv4Address | None:
    if text.__class__ is not str or len(text) > 15:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def read_service(obj: Mapping[str, Any]) -> LBService | None:
    """The Service as the speaker sees it; None when no speaker of this cluster announces
    it (not a LoadBalancer, another loadBalancerClass, no IPv4 address in its status)."""
    key = object_key(obj)  # type: ignore[arg-type]
    if not key or "/" not in key:
        raise Invalid("required field is missing", ("metadata", "name"))
    spec = _get(obj, "spec", dict, {})
    if spec.get("type") != "LoadBalancer":
        return None
    if spec.get("loadBalancerClass") is not None:
        return None  # a Service with any class belongs to that class's implementation
    status = _get(obj, "status", dict, {})
    lb = _get(status, "loadBalancer", dict, {}, "status")
    ingress = _get(lb, "ingress", list, [], "status", "loadBalancer")
    ips: list[str] = []
    for entry in ingress[:MAX_INGRESS]:
        if entry.__class__ is not dict:
            continue
        ip = _ipv4(entry.get("ip"))
        if ip is not None and str(ip) not in ips:
            ips.append(str(ip))
    if not ips:
        return None
    return LBService(key, tuple(ips), spec.get("externalTrafficPolicy") == "Local")


def read_node(obj: Mapping[str, Any]) -> NodeInfo:
    name = object_key(obj)  # type: ignore[arg-type]
    if not name:
        raise Invalid("required field is missing", ("metadata", "name"))
    status = _get(obj, "status", dict, {})
    conditions = _get(status, "conditions", list, [], "status")
    state = {
        c.get("type"): c.get("status")
        for c in conditions
        if c.__class__ is dict and c.get("type").__class__ is str
    }
    return NodeInfo(
        name=name,
        ready=state.get("Ready") == "True",
        network_unavailable=state.get("NetworkUnavailable") == "True",
        labels=_labels(obj),
    )


def _selectors(spec: Mapping[str, Any], name: str) -> tuple[list[Requirement], ...]:
    values = _get(spec, name, list, [], "spec")
    if len(values) > MAX_SELECTORS:
        raise Invalid(f"more than {MAX_SELECTORS} selectors", ("spec", name))
    out = []
    for v in values:
        # an empty selector selects everything; one that cannot be read selects nothing
        out.append(_selector(v) if v.__class__ is dict else MATCH_NOTHING)
    return tuple(out)


def read_l2advertisement(obj: Mapping[str, Any]) -> L2Advertisement:
    name = _get(_get(obj, "metadata", dict, {}), "name", str, "", "metadata")
    if not name:
        raise Invalid("required field is missing", ("metadata", "name"))
    spec = _get(obj, "spec", dict, {})
    pools = _get(spec, "ipAddressPools", list, [], "spec")
    if len(pools) > MAX_NAMES:
        raise Invalid(f"more than {MAX_NAMES} names", ("spec", "ipAddressPools"))
    return L2Advertisement(
        name=name,
        pools=tuple(p for p in pools if p.__class__ is str),
        pool_selectors=_selectors(spec, "ipAddressPoolSelectors"),
        node_selectors=_selectors(spec, "nodeSelectors"),
    )


def is_load_balancer(obj: Any) -> bool:
    """A Service of `type: LoadBalancer` (a cheap look, for filtering what changed)."""
    spec = obj.get("spec") if obj.__class__ is dict else None
    return spec.__class__ is dict and spec.get("type") == "LoadBalancer"


def slice_service(obj: Any) -> str:
    """namespace/name of the Service an EndpointSlice belongs to; "" when it names none."""
    meta = obj.get("metadata") if obj.__class__ is dict else None
    if meta.__class__ is not dict:
        return ""
    ns, labels = meta.get("namespace"), meta.get("labels")
    name = labels.get(SERVICE_NAME_LABEL) if labels.__class__ is dict else None
    if ns.__class__ is not str or name.__class__ is not str or not ns or not name:
        return ""
    return f"{ns}/{name}"


def serving_nodes(slice_: Mapping[str, Any]) -> tuple[str, set[str], bool]:
    """(namespace/service, nodes with a serving endpoint, any serving endpoint at all) of
    one EndpointSlice. Serving as MetalLB's EndpointCanServe: ready (or unknown), or
    serving."""
    meta = _get(slice_, "metadata", dict, {})
    ns = _get(meta, "namespace", str, "", "metadata")
    service = _labels(slice_).get(SERVICE_NAME_LABEL, "")
    if not ns or not service:
        return "", set(), False
    nodes: set[str] = set()
    any_serving = False
    for ep in _get(slice_, "endpoints", list, []):
        if ep.__class__ is not dict:
            continue
        cond = ep.get("conditions")
        cond = cond if cond.__class__ is dict else {}
        ready, serving = cond.get("ready"), cond.get("serving")
        if not (ready is None or ready is True or serving is True):
            continue
        any_serving = True
        node = ep.get("nodeName")
        if node.__class__ is str and node:
            nodes.add(node)
    return f"{ns}/{service}", nodes, any_serving


# -- the election ------------------------------------------------------------------------------
@dataclass
class Inputs:
    services: list[LBService] = field(default_factory=list)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)  # the pools in effect
    pool_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    advertisements: list[L2Advertisement] = field(default_factory=list)
    endpoints: dict[str, set[str]] = field(default_factory=dict)  # service -> serving nodes
    has_endpoints: set[str] = field(default_factory=set)  # services with a serving endpoint
    problems: dict[str, str] = field(default_factory=dict)  # "Kind ns/name" -> why left out
    _parsed_pools: list[Pool | tuple[str, str]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        services: Iterable[Any] = (),
        slices: Iterable[Any] = (),
        nodes: Iterable[Any] = (),
        pools: Iterable[Any] = (),
        advertisements: Iterable[Any] = (),
    ) -> Inputs:
        out = cls()
        for kind, objs in (
            ("Service", services),
            ("EndpointSlice", slices),
            ("Node", nodes),
            ("IPAddressPool", pools),
            ("L2Advertisement", advertisements),
        ):
            for obj in objs:
                try:
                    out._add(kind, obj)
                except Exception as e:  # hostile objects never stop the election
                    out.problems[f"{kind} {_describe(obj)}"] = str(e)[:200]
        # the pools the allocator sees: of two that overlap, the older is in effect
        pool_set = build_pools(out._parsed_pools)
        out.pools = pool_set.pools
        for name, why in pool_set.invalid.items():
            out.problems[f"IPAddressPool {name}"] = why[:200]
        return out

    def _add(self, kind: str, obj: Any) -> None:
        if obj.__class__ is not dict:
            raise Invalid(f"expected object, got {type(obj).__name__}", ())
        if kind == "Service":
            svc = read_service(obj)
            if svc is not None:
                self.services.append(svc)
        elif kind == "EndpointSlice":
            service, nodes, serving = serving_nodes(obj)
            if service:
                self.endpoints.setdefault(service, set()).update(nodes)
                if serving:
                    self.has_endpoints.add(service)
        elif kind == "Node":
            node = read_node(obj)
            self.nodes[node.name] = node
        elif kind == "IPAddressPool":
            try:
                pool = parse_pool(obj)
            except PoolError as e:
                self._parsed_pools.append((_describe(obj), str(e)))
                return
            self._parsed_pools.append(pool)
            self.pool_labels[pool.name] = _labels(obj)
        else:
            self.advertisements.append(read_l2advertisement(obj))


def _describe(obj: Any) -> str:
    if obj.__class__ is not dict:
        return "?"
    try:
        return object_key(obj) or "?"
    except Exception:
        return "?"


def ranking(nodes: Iterable[str], ip: str) -> list[str]:
    """MetalLB's order of candidates for `ip`: by sha256(node + "#" + ip), then by name."""
    return sorted(nodes, key=lambda n: (hashlib.sha256(f"{n}#{ip}".encode()).digest(), n))


def pool_for(pools: Mapping[str, Pool], ips: Iterable[str]) -> str:
    """The pool holding every one of `ips` (MetalLB's poolFor), "" when none does."""
    addrs = [parse_ipv4(ip) for ip in ips]
    for name in sorted(pools):
        if all(a is not None and pools[name].contains(a) for a in addrs):
            return name
    return ""


def decide(inputs: Inputs, alive: Iterable[str], node_network: str) -> list[Decision]:
    """The election for every LoadBalancer Service, given the speakers known to be alive."""
    network = ipaddress.IPv4Network(node_network, strict=False)
    live = set(alive)
    out = []
    for svc in sorted(inputs.services, key=lambda s: s.key):
        ips = tuple(ip for ip in svc.ips if ipaddress.IPv4Address(ip) in network)
        out.append(_decide_one(inputs, svc, ips, live))
    return out


def _decide_one(inputs: Inputs, svc: LBService, ips: tuple[str, ...], live: set[str]) -> Decision:
    def nobody(reason: str) -> Decision:
        return Decision(svc.key, ips, "", reason)

    if not ips:
        return nobody("notInNodeNetwork")
    pool = pool_for(inputs.pools, ips)
    if not pool:
        return nobody("ipNotAllowed")
    labels = inputs.pool_labels.get(pool, {})
    advertisements = [a for a in inputs.advertisements if a.covers(pool, labels)]
    if not advertisements:
        return nobody("noL2Advertisement")
    if svc.key not in inputs.has_endpoints:
        return nobody("noEndpoints")
    candidates = []
    for name in live:
        node = inputs.nodes.get(name)
        if node is None or not node.ready or node.network_unavailable or node.excluded:
            continue
        if not any(a.selects(node) for a in advertisements):
            continue
        if svc.local and name not in inputs.endpoints.get(svc.key, ()):
            continue
        candidates.append(name)
    if not candidates:
        return nobody("noAvailableNodes")
    return Decision(svc.key, ips, ranking(candidates, ips[0])[0])


def announced_by(decisions: Iterable[Decision], node: str) -> dict[str, tuple[str, ...]]:
    """Service key -> the IPs `node` announces for it."""
    return {d.service: d.ips for d in decisions if d.node == node}
