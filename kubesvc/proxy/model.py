"""What the proxy programs, as plain values: the desired state computed from Services and
EndpointSlices (pure functions, no I/O). Both backends (nftables, iptables) render this."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.kinds import slice_service_key
from kubesvc.client.informer import object_key

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""
    zone: str = ""


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int = 0  # seconds of ClientIP affinity; 0 = none
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local
    health_check_node_port: int = 0

    @property
    def key(self) -> str:
        """`ns/name:port-name` (port-name may be empty), as upstream's ServicePortName."""
        return f"{self.namespace}/{self.name}:{self.port_name}"

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ProxyState:
    """Everything one node's rules are made of."""

    node: str
    node_ips: tuple[str, ...]
    cluster_cidr: str  # pod network, e.g. 10.244.0.0/16 (masquerade decisions)
    services: Mapping[str, ServicePort] = field(default_factory=dict)  # by ServicePort.key
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)  # by key


def service_ports(svc: Mapping[str, Any]) -> list[ServicePort]:
    """The ServicePorts a proxy handles for one Service; [] for ones it must ignore."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    if PROXY_NAME_LABEL in (meta.get("labels") or {}):
        return []
    if spec.get("type") == "ExternalName":
        return []
    cluster_ip = spec.get("clusterIP") or ""
    if not cluster_ip or cluster_ip == "None":
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(cfg.get("timeoutSeconds") or 10800)
    lb_ips = tuple(
        i["ip"]
        for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if i.get("ip")
    )
    out = []
    for p in spec.get("ports") or []:
        out.append(
            ServicePort(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                port_name=p.get("name") or "",
                protocol=p.get("protocol") or "TCP",
                cluster_ip=cluster_ip,
                port=int(p.get("port") or 0),
                node_port=int(p.get("nodePort") or 0),
                external_ips=tuple(spec.get("externalIPs") or ()),
                load_balancer_ips=lb_ips,
                load_balancer_source_ranges=tuple(spec.get("loadBalancerSourceRanges") or ()),
                affinity_timeout=affinity,
                external_local=spec.get("externalTrafficPolicy") == "Local"
                and (
                    spec.get("type") in ("NodePort", "LoadBalancer")
                    or bool(spec.get("externalIPs"))
                ),
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
            )
        )
    return out


def slice_endpoints(slc: Mapping[str, Any]) -> dict[str, list[Endpoint]]:
    """port name -> endpoints of one EndpointSlice (IPv4 only)."""
    if slc.get("addressType", "IPv4") != "IPv4":
        return {}
    out: dict[str, list[Endpoint]] = {}
    for port in slc.get("ports") or []:
        if port.get("port") is None:
            continue
        eps = out.setdefault(port.get("name") or "", [])
        for ep in slc.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False  # nil means ready
            serving = cond.get("serving", ready) is not False
            terminating = cond.get("terminating") is True
            for addr in (ep.get("addresses") or [])[:1]:  # one address per endpoint, as upstream
                eps.append(
                    Endpoint(
                        addr,
                        int(port["port"]),
                        ready,
                        serving,
                        terminating,
                        ep.get("nodeName") or "",
                        ep.get("zone") or "",
                    )
                )
    return out


def merge_slices(
    service: str, ports: Iterable[ServicePort], slices: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[Endpoint, ...]]:
    """Endpoints of one Service's ports (by ServicePort.key) from its EndpointSlices."""
    wanted = {sp.port_name for sp in ports}
    merged: dict[str, dict[tuple[str, int], Endpoint]] = {}
    for slc in slices:
        for port_name, eps in slice_endpoints(slc).items():
            if port_name not in wanted:
                continue
            bucket = merged.setdefault(f"{service}:{port_name}", {})
            for ep in eps:
                bucket.setdefault((ep.ip, ep.port), ep)  # duplicates across slices: first wins
    return {k: tuple(sorted(v.values(), key=lambda e: (e.ip, e.port))) for k, v in merged.items()}


class ChangeTracker:
    """Services and EndpointSlices folded into a ProxyState as they change (upstream's
    ServiceChangeTracker and EndpointsChangeTracker in one): handlers record objects and
    mark their Service dirty; `take()` recomputes only the dirty Services and says which
    service ports changed, so a one-Service change costs the same at any scale."""

    def __init__(self, node: str, node_ips: Iterable[str], cluster_cidr: str) -> None:
        self.node, self.node_ips, self.cluster_cidr = node, tuple(node_ips), cluster_cidr
        self._objects: dict[str, Mapping[str, Any]] = {}  # ns/name -> Service
        self._slices: dict[str, dict[str, Mapping[str, Any]]] = {}  # ns/name -> slices by name
        self._slice_owner: dict[str, str] = {}  # ns/slice-name -> ns/name
        self._keys: dict[str, tuple[str, ...]] = {}  # ns/name -> its port keys
        self._services: dict[str, ServicePort] = {}
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._dirty: set[str] = set()

    def service(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        key = object_key(obj)
        if deleted:
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._dirty.add(key)

    def slice(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        slice_key = object_key(obj)
        owner = None if deleted else slice_service_key(obj)
        previous = self._slice_owner.pop(slice_key, None)
        if previous is not None:  # also when the service-name label changed
            self._slices.get(previous, {}).pop(slice_key, None)
            self._dirty.add(previous)
        if owner is not None:
            self._slices.setdefault(owner, {})[slice_key] = obj
            self._slice_owner[slice_key] = owner
            self._dirty.add(owner)

    def take(self) -> tuple[ProxyState, frozenset[str]]:
        """The state now, and the ServicePort keys that differ from the last `take()`."""
        changed: set[str] = set()
        for name in self._dirty:
            old = self._keys.pop(name, ())
            for key in old:
                self._services.pop(key, None)
                self._endpoints.pop(key, None)
            obj = self._objects.get(name)
            ports = service_ports(obj) if obj is not None else []
            slices = self._slices.get(name) or {}
            if not slices:
                self._slices.pop(name, None)
            for sp in ports:
                self._services[sp.key] = sp
            self._endpoints.update(merge_slices(name, ports, slices.values()))
            new = tuple(sp.key for sp in ports)
            if new:
                self._keys[name] = new
            changed.update(old, new)
        self._dirty.clear()
        state = ProxyState(
            self.node, self.node_ips, self.cluster_cidr, dict(self._services), dict(self._endpoints)
        )
        return state, frozenset(changed)


def build_state(
    node: str,
    node_ips: Iterable[str],
    cluster_cidr: str,
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
) -> ProxyState:
    """The whole state from scratch (what a ChangeTracker fed everything gives)."""
    tracker = ChangeTracker(node, node_ips, cluster_cidr)
    for svc in services:
        tracker.service(svc)
    for slc in slices:
        tracker.slice(slc)
    return tracker.take()[0]


def usable_endpoints(
    sp: ServicePort, eps: Iterable[Endpoint], node: str, *, local_only: bool
) -> tuple[Endpoint, ...]:
    """Upstream's endpoint selection (CategorizeEndpoints): ready endpoints; if none,
    serving-terminating ones; restricted to this node's when a Local policy applies."""
    pool = [e for e in eps if not local_only or e.node == node]
    ready = tuple(e for e in pool if e.ready)
    if ready:
        return ready
    return tuple(e for e in pool if e.serving and e.terminating)


def cluster_endpoints(state: ProxyState, sp: ServicePort) -> tuple[Endpoint, ...]:
    """Endpoints for traffic from inside the cluster (ClusterIP)."""
    return usable_endpoints(
        sp, state.endpoints.get(sp.key, ()), state.node, local_only=sp.internal_local
    )


def external_endpoints(state: ProxyState, sp: ServicePort) -> tuple[Endpoint, ...]:
    """Endpoints for traffic from outside (NodePort, externalIPs, load balancer IPs)."""
    return usable_endpoints(
        sp, state.endpoints.get(sp.key, ()), state.node, local_only=sp.external_local
    )


def local_endpoint_count(state: ProxyState, sp: ServicePort) -> int:
    """For the health-check node port: ready endpoints of this service on this node."""
    return sum(1 for e in state.endpoints.get(sp.key, ()) if e.ready and e.node == state.node)
