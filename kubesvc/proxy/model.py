"""What the proxy programs, as plain values: the desired state computed from Services and
EndpointSlices (pure functions, no I/O). Both backends (nftables, iptables) render this.

Objects are read into these values when they arrive (upstream's change trackers do the
same). A Service or EndpointSlice that is not what the API defines (a stored object can hold
anything) raises shape.Invalid there and is left out, logged once per revision: everything
accepted renders into a valid ruleset, so one bad object never fails the transaction that
programs all the others.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api import objmeta
from kubesvc.api.kinds import SERVICE_NAME_LABEL
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.shape import Invalid
from kubesvc.client.shape import typed_field as _get

log = logging.getLogger("kubesvc.proxy")

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


# -- reading Services and EndpointSlices --------------------------------------------------------
# names end up in rule comments and chain names: what the API allows, nothing that quotes
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?\Z")
_PORT_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
_pton, _AF_INET = socket.inet_pton, socket.AF_INET
MAX_AFFINITY_TIMEOUT = 86400  # seconds, as the API validates
_BOOL_OR_NULL = frozenset({bool, type(None)})
_SPEC_STRINGS = (
    "type",
    "clusterIP",
    "sessionAffinity",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
)


def _is_ipv4(value: str) -> bool:
    try:
        _pton(_AF_INET, value)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def _number(value: Any, low: int, path: tuple[str, ...]) -> int:
    if value.__class__ is not int or not low <= value <= 65535:
        raise Invalid(f"expected a port number ({low}-65535), got {value!r:.40}", path)
    return value  # type: ignore[no-any-return]


def _ipv4_list(spec: Mapping[str, Any], name: str, *path: str) -> tuple[str, ...]:
    """The IPv4 addresses of a list field; other families (and other text) are not this
    proxy's business, as upstream's per-family proxiers ignore them."""
    out = []
    for i, ip in enumerate(_get(spec, name, list, (), *path)):
        if ip.__class__ is not str:
            raise Invalid("expected string", (*path, name, f"[{i}]"))
        if _is_ipv4(ip):
            out.append(ip)
    return tuple(out)


def _source_ranges(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """loadBalancerSourceRanges; one that does not parse makes the Service invalid (a
    firewall programmed without it would let everyone in)."""
    out = []
    for i, cidr in enumerate(_get(spec, "loadBalancerSourceRanges", list, (), "spec")):
        try:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except (ValueError, AttributeError, TypeError):
            raise Invalid(
                f"not a CIDR: {cidr!r:.60}", ("spec", "loadBalancerSourceRanges", f"[{i}]")
            ) from None
        if net.version == 4:
            out.append(str(net))
    return tuple(out)


def service_ports(svc: Mapping[str, Any]) -> list[ServicePort]:
    """The ServicePorts a proxy handles for one Service; [] for ones it must ignore
    (headless, ExternalName, another proxy's, another IP family). Raises shape.Invalid for
    an object that is not a usable Service."""
    # read once per Service revision, 10,000 times at start: the common fields are checked
    # inline; the rare ones only when present
    if svc.__class__ is not dict:
        raise Invalid("expected object")
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    if meta.__class__ is not dict:
        raise Invalid("expected object", ("metadata",))
    if spec.__class__ is not dict:
        raise Invalid("expected object", ("spec",))
    labels = meta.get("labels")
    if labels:
        if labels.__class__ is not dict:
            raise Invalid("expected object", ("metadata", "labels"))
        if PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels:
            return []  # upstream's kube-proxy does not even watch such objects
    for field_ in _SPEC_STRINGS:
        value = spec.get(field_)
        if value is not None and value.__class__ is not str:
            raise Invalid(f"expected string, got {type(value).__name__}", ("spec", field_))
    type_ = spec.get("type") or ""
    cluster_ip = spec.get("clusterIP") or ""
    if type_ == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return []
    if not _is_ipv4(cluster_ip):
        if ":" in cluster_ip:
            return []  # IPv6: an IPv4 proxy leaves it alone
        raise Invalid(f"not an IP address: {cluster_ip!r:.60}", ("spec", "clusterIP"))
    namespace, name = meta.get("namespace"), meta.get("name")
    for value, field_ in ((namespace, "namespace"), (name, "name")):
        if value.__class__ is not str or not _NAME.match(value):
            raise Invalid(f"not a valid name: {value!r:.60}", ("metadata", field_))
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        config = _get(spec, "sessionAffinityConfig", dict, {}, "spec")
        client_ip = _get(config, "clientIP", dict, {}, "spec", "sessionAffinityConfig")
        path = ("spec", "sessionAffinityConfig", "clientIP")
        affinity = _get(client_ip, "timeoutSeconds", int, 0, *path) or 10800
        if not 0 < affinity <= MAX_AFFINITY_TIMEOUT:
            raise Invalid(f"out of range: {affinity}", (*path, "timeoutSeconds"))
    lb_ips = []
    if svc.get("status"):
        lb = _get(_get(svc, "status", dict, {}), "loadBalancer", dict, {}, "status")
        for i, ingress in enumerate(_get(lb, "ingress", list, (), "status", "loadBalancer")):
            if ingress.__class__ is not dict:
                raise Invalid("expected object", ("status", "loadBalancer", "ingress", f"[{i}]"))
            ip = ingress.get("ip")
            if ip.__class__ is str and _is_ipv4(ip):
                lb_ips.append(ip)
    external_ips = _ipv4_list(spec, "externalIPs", "spec") if spec.get("externalIPs") else ()
    source_ranges = _source_ranges(spec) if spec.get("loadBalancerSourceRanges") else ()
    external_local = spec.get("externalTrafficPolicy") == "Local" and (
        type_ in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    )
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    health = spec.get("healthCheckNodePort")
    health_port = 0 if health is None else _number(health, 0, ("spec", "healthCheckNodePort"))
    out = []
    ports = spec.get("ports") or ()
    if ports.__class__ is not list and ports != ():
        raise Invalid(f"expected list, got {type(ports).__name__}", ("spec", "ports"))
    for i, p in enumerate(ports):
        at = ("spec", "ports", f"[{i}]")
        if p.__class__ is not dict:
            raise Invalid("expected object", at)
        port_name = p.get("name") or ""
        if port_name and (port_name.__class__ is not str or not _PORT_NAME.match(port_name)):
            raise Invalid(f"not a valid port name: {port_name!r:.60}", (*at, "name"))
        protocol = p.get("protocol") or "TCP"
        if protocol.__class__ is not str or protocol not in _PROTOCOLS:
            raise Invalid(f"unsupported protocol {protocol!r:.20}", (*at, "protocol"))
        node_port = p.get("nodePort")
        out.append(
            ServicePort(
                namespace=namespace,
                name=name,
                port_name=port_name,
                protocol=protocol,
                cluster_ip=cluster_ip,
                port=_number(p.get("port"), 1, (*at, "port")),
                node_port=0 if node_port is None else _number(node_port, 0, (*at, "nodePort")),
                external_ips=external_ips,
                load_balancer_ips=tuple(lb_ips),
                load_balancer_source_ranges=source_ranges,
                affinity_timeout=affinity,
                external_local=external_local,
                internal_local=internal_local,
                health_check_node_port=health_port,
            )
        )
    return out


SliceEndpoints = dict[str, list[Endpoint]]  # port name -> endpoints, of one EndpointSlice


def _ignored(obj: Mapping[str, Any]) -> bool:
    """Objects upstream's kube-proxy leaves out of its informers: another proxy's, and the
    ones labelled headless (`!service-proxy-name,!headless`)."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if meta.__class__ is dict else None  # type: ignore[union-attr]
    return labels.__class__ is dict and (PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels)


def slice_endpoints(slc: Mapping[str, Any]) -> SliceEndpoints:
    """port name -> endpoints of one EndpointSlice (IPv4 only). Raises shape.Invalid for an
    object that is not a usable EndpointSlice."""
    if slc.__class__ is not dict:
        raise Invalid("expected object")
    if _get(slc, "addressType", str, "IPv4") != "IPv4" or _ignored(slc):
        return {}
    ports: list[tuple[str, int]] = []
    for i, port in enumerate(_get(slc, "ports", list, ())):
        at = ("ports", f"[{i}]")
        if port.__class__ is not dict:
            raise Invalid("expected object", at)
        name = port.get("name") or ""
        if name.__class__ is not str or port.get("protocol", "").__class__ not in (str, type(None)):
            raise Invalid("name or protocol of the wrong type", at)
        if port.get("port") is not None:
            ports.append((name, _number(port["port"], 1, (*at, "port"))))
    # the hot loop of a full sync (50,000 endpoints at 10,000 Services): checks written out
    out: SliceEndpoints = {name: [] for name, _ in ports}
    targets = [(out[name], number) for name, number in ports]
    pton, inet = _pton, _AF_INET
    for i, ep in enumerate(_get(slc, "endpoints", list, ())):
        if ep.__class__ is not dict:
            raise Invalid("expected object", ("endpoints", f"[{i}]"))
        cond = ep.get("conditions") or {}
        addresses = ep.get("addresses") or ()
        node, zone = ep.get("nodeName") or "", ep.get("zone") or ""
        if cond.__class__ is not dict or node.__class__ is not str or zone.__class__ is not str:
            raise Invalid("conditions, nodeName or zone of the wrong type", ("endpoints", f"[{i}]"))
        ready, serving, terminating = (
            cond.get("ready"),
            cond.get("serving"),
            cond.get("terminating"),
        )
        if (
            ready.__class__ not in _BOOL_OR_NULL
            or serving.__class__ not in _BOOL_OR_NULL
            or terminating.__class__ not in _BOOL_OR_NULL
        ):
            raise Invalid("expected boolean", ("endpoints", f"[{i}]", "conditions"))
        if not addresses:
            continue
        if addresses.__class__ is not list:
            raise Invalid("expected array", ("endpoints", f"[{i}]", "addresses"))
        for ip in addresses:
            try:
                pton(inet, ip)
            except (OSError, TypeError, ValueError):
                raise Invalid(
                    f"not an IPv4 address: {ip!r:.60}", ("endpoints", f"[{i}]", "addresses")
                ) from None
        ip = addresses[0]  # one address per endpoint, as upstream
        is_ready = ready is not False  # nil means ready
        is_serving = (is_ready if serving is None else serving) is not False
        is_terminating = terminating is True
        for eps, number in targets:
            eps.append(Endpoint(ip, number, is_ready, is_serving, is_terminating, node, zone))
    return out


def slice_owner(slc: Mapping[str, Any]) -> str | None:
    """`ns/name` of the Service a slice belongs to (its service-name label), if any."""
    m = objmeta.meta(slc)
    labels = m.get("labels")
    svc = labels.get(SERVICE_NAME_LABEL) if labels.__class__ is dict else None  # type: ignore[union-attr]
    if not svc or svc.__class__ is not str:
        return None
    return f"{shape.text(m.get('namespace'))}/{svc}"


def merge_endpoints(
    service: str, ports: Iterable[ServicePort], slices: Iterable[SliceEndpoints]
) -> dict[str, tuple[Endpoint, ...]]:
    """Endpoints of one Service's ports (by ServicePort.key) from its slices' endpoints."""
    wanted = {sp.port_name for sp in ports}
    merged: dict[str, dict[tuple[str, int], Endpoint]] = {}
    for by_port in slices:
        for port_name, eps in by_port.items():
            if port_name not in wanted:
                continue
            bucket = merged.setdefault(f"{service}:{port_name}", {})
            for ep in eps:
                bucket.setdefault((ep.ip, ep.port), ep)  # duplicates across slices: first wins
    return {k: tuple(sorted(v.values(), key=lambda e: (e.ip, e.port))) for k, v in merged.items()}


def merge_slices(
    service: str, ports: Iterable[ServicePort], slices: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[Endpoint, ...]]:
    """merge_endpoints over EndpointSlice objects; unusable slices are left out."""
    parsed = []
    for slc in slices:
        try:
            parsed.append(slice_endpoints(slc))
        except Invalid:
            continue
    return merge_endpoints(service, ports, parsed)


class ChangeTracker:
    """Services and EndpointSlices folded into a ProxyState as they change (upstream's
    ServiceChangeTracker and EndpointsChangeTracker in one): handlers read each object into
    its service ports or endpoints and mark its Service dirty; `take()` recomputes only the
    dirty Services and says which service ports changed, so a one-Service change costs the
    same at any scale. An object that cannot be read counts as deleted (logged once per
    revision) until a usable revision arrives."""

    def __init__(self, node: str, node_ips: Iterable[str], cluster_cidr: str) -> None:
        self.node, self.node_ips, self.cluster_cidr = node, tuple(node_ips), cluster_cidr
        self._ports: dict[str, list[ServicePort]] = {}  # ns/name -> its service ports
        self._slices: dict[str, dict[str, SliceEndpoints]] = {}  # ns/name -> slices by name
        self._slice_owner: dict[str, str] = {}  # ns/slice-name -> ns/name
        self._keys: dict[str, tuple[str, ...]] = {}  # ns/name -> its port keys
        self._services: dict[str, ServicePort] = {}
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._dirty: set[str] = set()
        self.rejected: dict[str, str] = {}  # "kind ns/name" -> resourceVersion logged

    def _rejected(self, kind: str, key: str, obj: Mapping[str, Any], error: Invalid) -> None:
        rv = shape.revision(obj)
        if self.rejected.get(f"{kind} {key}") != rv:
            self.rejected[f"{kind} {key}"] = rv
            log.warning(
                "ignoring an object the proxy cannot program",
                extra={"kv": {"kind": kind, "object": shape.identity(obj), "error": str(error)}},
            )

    def service(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        key = object_key(obj)  # type: ignore[arg-type]
        if not key:
            return
        ports: list[ServicePort] = []
        if not deleted:
            try:
                ports = service_ports(obj)
                self.rejected.pop(f"Service {key}", None)
            except Invalid as e:
                self._rejected("Service", key, obj, e)
        else:
            self.rejected.pop(f"Service {key}", None)
        if ports:
            self._ports[key] = ports
        else:
            self._ports.pop(key, None)
        self._dirty.add(key)

    def slice(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        slice_key = object_key(obj)  # type: ignore[arg-type]
        if not slice_key:
            return
        owner = None if deleted else slice_owner(obj)
        parsed: SliceEndpoints | None = None
        if owner is not None:
            try:
                parsed = slice_endpoints(obj)
                self.rejected.pop(f"EndpointSlice {slice_key}", None)
            except Invalid as e:
                self._rejected("EndpointSlice", slice_key, obj, e)
        else:
            self.rejected.pop(f"EndpointSlice {slice_key}", None)
        previous = self._slice_owner.pop(slice_key, None)
        if previous is not None:  # also when the service-name label changed
            self._slices.get(previous, {}).pop(slice_key, None)
            self._dirty.add(previous)
        if owner is not None and parsed is not None:
            self._slices.setdefault(owner, {})[slice_key] = parsed
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
            ports = self._ports.get(name, ())
            slices = self._slices.get(name) or {}
            if not slices:
                self._slices.pop(name, None)
            for sp in ports:
                self._services[sp.key] = sp
            self._endpoints.update(merge_endpoints(name, ports, slices.values()))
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
