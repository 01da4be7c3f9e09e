"""LoadBalancer IP allocation as MetalLB's controller does it (internal/allocator,
controller/service.go), as pure code: IPAddressPools read from stored objects, the IPs
Services hold, and the choice of an IP for one Service. No I/O: the controller feeds it
objects from its informers and writes what `converge` decides.

The cluster is IPv4-only, so IPv6 entries of a pool are accepted (checked and kept, as
MetalLB keeps them on an IPv4-only cluster) but never handed out. Every reader here takes a
stored object of any shape: what cannot be used makes its pool invalid (with the reason),
never raises.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.selectors import Requirement, labels_match, selector_from_match_labels

Obj = dict[str, Any]

ANNOTATION_PREFIXES = ("metallb.io", "metallb.universe.tf")  # current, then the older one
ADDRESS_POOL = "address-pool"
LOAD_BALANCER_IPS = "loadBalancerIPs"
ALLOW_SHARED_IP = "allow-shared-ip"
ALLOCATED_FROM_POOL = "metallb.io/ip-allocated-from-pool"
OLD_ALLOCATED_FROM_POOL = "metallb.universe.tf/ip-allocated-from-pool"

_CIDR_PREFIX = re.compile(r"[0-9]{1,3}")


class PoolError(ValueError):
    """Why a pool cannot be used (MetalLB's wording where it has one)."""


# -- pools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAllocation:
    """`spec.serviceAllocation`: which Services a pool serves first, and in what order."""

    priority: int = 0
    namespaces: frozenset[str] = frozenset()
    namespace_selectors: tuple[tuple[Requirement, ...], ...] = ()
    service_selectors: tuple[tuple[Requirement, ...], ...] = ()

    def admits(self, namespace: str, namespace_labels: Mapping[str, str], labels: Any) -> bool:
        if self.namespaces or self.namespace_selectors:
            in_ns = namespace in self.namespaces or any(
                labels_match(list(s), dict(namespace_labels)) for s in self.namespace_selectors
            )
            if not in_ns:
                return False
        if self.service_selectors:
            return any(labels_match(list(s), labels) for s in self.service_selectors)
        return True


Position = tuple[int, int]  # (place of its range in spec.addresses, address)


@dataclass(frozen=True)
class Pool:
    name: str
    ranges: tuple[tuple[int, int], ...]  # IPv4, inclusive, as listed (the order handed out)
    ipv6: tuple[str, ...] = ()  # accepted, never allocated on this cluster
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    allocation: ServiceAllocation | None = None
    created: str = ""  # creationTimestamp: the older of two overlapping pools wins

    @functools.cached_property
    def _sorted(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted(self.ranges))

    def contains(self, ip: int) -> bool:
        if self.avoid_buggy_ips and buggy(ip):
            return False
        ranges = self._sorted
        i = bisect.bisect_right(ranges, (ip, 1 << 33)) - 1
        return i >= 0 and ranges[i][0] <= ip <= ranges[i][1]

    @functools.cached_property
    def _listed(self) -> tuple[tuple[int, int, int], ...]:
        """(start, end, place in the list), by start."""
        return tuple(sorted((s, e, i) for i, (s, e) in enumerate(self.ranges)))

    def position(self, ip: int) -> Position | None:
        """Where `ip` comes in the order addresses are handed out (None: not in the pool)."""
        ranges = self._listed
        i = bisect.bisect_right(ranges, (ip, 1 << 33, 0)) - 1
        if i >= 0 and ranges[i][0] <= ip <= ranges[i][1]:
            return ranges[i][2], ip
        return None

    def addresses(self, start: Position = (0, 0)) -> Iterator[tuple[Position, int]]:
        """Every IPv4 address it hands out from `start` on, in order (lazily: a /8 is 16M
        addresses), each with its position."""
        for i in range(start[0], len(self.ranges)):
            first, end = self.ranges[i]
            ip = max(first, start[1]) if i == start[0] else first
            while ip <= end:
                if not (self.avoid_buggy_ips and buggy(ip)):
                    yield (i, ip), ip
                ip += 1

    @property
    def size(self) -> int:
        """How many IPv4 addresses it hands out."""
        n = 0
        for start, end in self.ranges:
            n += end - start + 1
            if self.avoid_buggy_ips:
                n -= _multiples(start, end, 0) + _multiples(start, end, 0xFF)
        return n


def buggy(ip: int) -> bool:
    """An IPv4 address ending in .0 or .255 (smurf protection in some firmware drops it)."""
    return ip & 0xFF in (0, 0xFF)


def _multiples(start: int, end: int, last_octet: int) -> int:
    """How many addresses in [start, end] end in `last_octet`."""
    return (end - last_octet) // 256 - (start - 1 - last_octet) // 256


def ip_text(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def parse_ipv4(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_address(entry: Any) -> tuple[int, int] | str:
    """One `spec.addresses` entry, as MetalLB's parseCIDR reads it: a CIDR (host bits
    allowed, as Go's net.ParseCIDR) or `start-end`. Returns an IPv4 (start, end) or the
    IPv6 entry as given; raises PoolError."""
    if not isinstance(entry, str):
        raise PoolError(f"invalid CIDR {entry!r}")
    if "-" not in entry:
        _addr, slash, prefix = entry.partition("/")
        if not slash or not _CIDR_PREFIX.fullmatch(prefix):
            raise PoolError(f'invalid CIDR "{entry}"')
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise PoolError(f'invalid CIDR "{entry}"') from None
        if net.version == 6:
            return entry
        return int(net.network_address), int(net.broadcast_address)
    first, last = entry.split("-", 1)
    start, end = _parse_ip(first.strip()), _parse_ip(last.strip())
    if start is None:
        raise PoolError(f'invalid IP range "{entry}": invalid start IP "{first}"')
    if end is None:
        raise PoolError(f'invalid IP range "{entry}": invalid end IP "{last}"')
    if start.version != end.version:
        raise PoolError(f'invalid IP range "{entry}": start and end are of different families')
    if int(start) > int(end):
        raise PoolError(
            f'invalid IP range "{entry}": start IP "{start}" is after the end IP "{end}"'
        )
    if start.version == 6:
        return entry
    return int(start), int(end)


def _selectors(value: Any, path: str) -> tuple[tuple[Requirement, ...], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PoolError(f"{path} is not a list")
    out = []
    for sel in value:
        if not isinstance(sel, dict):
            raise PoolError(f"{path} has an entry that is not a label selector")
        out.append(tuple(selector_from_match_labels(sel)))
    return tuple(out)


def _service_allocation(value: Any) -> ServiceAllocation | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PoolError("spec.serviceAllocation is not an object")
    priority = value.get("priority", 0)
    if priority is None:
        priority = 0
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PoolError("spec.serviceAllocation.priority is not an integer")
    namespaces = value.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise PoolError("spec.serviceAllocation.namespaces is not a list of names")
    return ServiceAllocation(
        priority=priority,
        namespaces=frozenset(namespaces),
        namespace_selectors=_selectors(
            value.get("namespaceSelectors"), "spec.serviceAllocation.namespaceSelectors"
        ),
        service_selectors=_selectors(
            value.get("serviceSelectors"), "spec.serviceAllocation.serviceSelectors"
        ),
    )


def _flag(spec: Obj, name: str, default: bool) -> bool:
    value = spec.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PoolError(f"spec.{name} is not a boolean")
    return value


def parse_pool(obj: Any) -> Pool:
    """An IPAddressPool object as stored; raises PoolError saying why it cannot be used."""
    if not isinstance(obj, dict):
        raise PoolError("not an object")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise PoolError("no name")
    created = meta.get("creationTimestamp") if isinstance(meta, dict) else ""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise PoolError("spec is not an object")
    addresses = spec.get("addresses")
    if not isinstance(addresses, list):
        raise PoolError("spec.addresses is not a list")
    if not addresses:
        raise PoolError("pool has no prefixes defined")
    v4: list[tuple[int, int]] = []
    v6: list[str] = []
    for entry in addresses:
        parsed = parse_address(entry)
        if isinstance(parsed, str):
            v6.append(parsed)
        else:
            v4.append(parsed)
    for (a_start, a_end), (b_start, b_end) in itertools.pairwise(sorted(v4)):
        if b_start <= a_end:
            raise PoolError(
                f'CIDR {_span(b_start, b_end)} in pool "{name}" overlaps with '
                f"already defined CIDR {_span(a_start, a_end)}"
            )
    return Pool(
        name=name,
        ranges=tuple(v4),
        ipv6=tuple(v6),
        auto_assign=_flag(spec, "autoAssign", True),
        avoid_buggy_ips=_flag(spec, "avoidBuggyIPs", False),
        allocation=_service_allocation(spec.get("serviceAllocation")),
        created=created if isinstance(created, str) else "",
    )


def _span(start: int, end: int) -> str:
    return f'"{ip_text(start)}-{ip_text(end)}"'


@dataclass
class PoolSet:
    """The pools in effect and the ones that are not, with the reason."""

    pools: dict[str, Pool] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)


def build_pools(parsed: Iterable[Pool | tuple[str, str]]) -> PoolSet:
    """Pools in effect from parsed pools (or (name, error) for those that did not parse).
    Two pools must not overlap: the older one (creationTimestamp, then name) wins and the
    other is invalid, so a new pool never takes addresses from one in use."""
    out = PoolSet()
    good: list[Pool] = []
    for p in parsed:
        if isinstance(p, Pool):
            good.append(p)
        else:
            out.invalid[p[0]] = p[1]
    good.sort(key=lambda p: (p.created, p.name))
    taken: list[tuple[int, int, str]] = []  # sorted, not overlapping
    for pool in good:
        clash = _first_overlap(taken, pool.ranges)
        if clash is not None:
            (start, end), (o_start, o_end, other) = clash
            out.invalid[pool.name] = (
                f'CIDR {_span(start, end)} in pool "{pool.name}" overlaps with already '
                f'defined CIDR {_span(o_start, o_end)} of pool "{other}"'
            )
            continue
        out.pools[pool.name] = pool
        taken = sorted(taken + [(s, e, pool.name) for s, e in pool.ranges])
    return out


def _first_overlap(
    taken: list[tuple[int, int, str]], ranges: Iterable[tuple[int, int]]
) -> tuple[tuple[int, int], tuple[int, int, str]] | None:
    for start, end in ranges:
        i = bisect.bisect_right(taken, (end, 1 << 33, ""))
        if i > 0 and taken[i - 1][1] >= start:
            return (start, end), taken[i - 1]
    return None


# -- services ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRequest:
    """What the allocator reads of a Service."""

    key: str  # namespace/name
    namespace: str
    labels: Mapping[str, str]
    load_balancer: bool  # type LoadBalancer and no loadBalancerClass: ours
    ports: frozenset[tuple[str, int]]
    sharing_key: str
    backend_key: str
    requested: str  # the loadBalancerIPs annotation ("" when absent)
    load_balancer_ip: str  # spec.loadBalancerIP
    pool: str  # the address-pool annotation
    current: tuple[str, ...]  # status.loadBalancer.ingress[].ip
    created: str = ""


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def annotation(annotations: Mapping[str, str], name: str) -> str | None:
    """A MetalLB annotation under its current prefix, else the older one."""
    for prefix in ANNOTATION_PREFIXES:
        value = annotations.get(f"{prefix}/{name}")
        if value is not None:
            return value
    return None


def is_ours(obj: Obj) -> bool:
    """A Service MetalLB's controller (without --lb-class) allocates for."""
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("type") != "LoadBalancer":
        return False
    return spec.get("loadBalancerClass") in (None, "")


def read_service(obj: Any) -> ServiceRequest | None:
    """A Service as stored (any shape); None when it has no usable name."""
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    annotations = _str_map(meta.get("annotations"))
    ports: set[tuple[str, int]] = set()
    for p in spec.get("ports") if isinstance(spec.get("ports"), list) else ():
        if not isinstance(p, dict):
            continue
        port, proto = p.get("port"), p.get("protocol") or "TCP"
        if isinstance(port, int) and not isinstance(port, bool) and isinstance(proto, str):
            ports.add((proto, port))
    backend = ""
    if spec.get("externalTrafficPolicy") == "Local":
        # labels.Set(selector).String(): the pods behind it, which sharing Services must match
        backend = ",".join(f"{k}={v}" for k, v in sorted(_str_map(spec.get("selector")).items()))
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    lb = status.get("loadBalancer") if isinstance(status.get("loadBalancer"), dict) else {}
    ingress = lb.get("ingress") if isinstance(lb.get("ingress"), list) else []
    current = tuple(
        i["ip"] for i in ingress if isinstance(i, dict) and isinstance(i.get("ip"), str) and i["ip"]
    )
    lb_ip = spec.get("loadBalancerIP")
    created = meta.get("creationTimestamp")
    return ServiceRequest(
        key=f"{namespace}/{name}",
        namespace=namespace,
        labels=_str_map(meta.get("labels")),
        load_balancer=is_ours(obj),
        ports=frozenset(ports),
        sharing_key=annotation(annotations, ALLOW_SHARED_IP) or "",
        backend_key=backend,
        requested=annotation(annotations, LOAD_BALANCER_IPS) or "",
        load_balancer_ip=lb_ip if isinstance(lb_ip, str) else "",
        pool=annotation(annotations, ADDRESS_POOL) or "",
        current=current,
        created=created if isinstance(created, str) else "",
    )


def go_quote_ips(ips: Iterable[str]) -> str:
    """A []net.IP as Go's %q prints it: ["192.0.2.1" "192.0.2.2"]."""
    return "[" + " ".join(f'"{ip}"' for ip in ips) + "]"


def desired_ips(req: ServiceRequest) -> list[str]:
    """The IPs the Service asks for (getDesiredLbIPs); raises PoolError when the request
    cannot be read or is not one IPv4 address (the cluster is IPv4 only)."""
    ann = f"{ANNOTATION_PREFIXES[0]}/{LOAD_BALANCER_IPS}"
    if not req.requested and not req.load_balancer_ip:
        return []
    if req.requested and req.load_balancer_ip:
        raise PoolError(f"service can not have both {ann} and svc.Spec.LoadBalancerIP")
    if req.requested:
        parsed = [_parse_ip(part.strip()) for part in req.requested.split(",")]
        if any(p is None for p in parsed):
            raise PoolError(f'invalid {ann}: "{req.requested}"')
        ips = [p for p in parsed if p is not None]
        if len(ips) > 2:
            raise PoolError(
                f"IPFamilyForAddresses: invalid ips length {len(ips)} {go_quote_ips(map(str, ips))}"
            )
        if len(ips) == 2 and ips[0].version == ips[1].version:
            raise PoolError(
                f"IPFamilyForAddresses: same address family {go_quote_ips(map(str, ips))}"
            )
    else:
        one = _parse_ip(req.load_balancer_ip)
        if one is None:
            raise PoolError(f'invalid spec.loadBalancerIP "{req.load_balancer_ip}"')
        ips = [one]
    if len(ips) != 1 or ips[0].version != 4:
        raise PoolError(
            f"requested loadBalancer IP(s) {go_quote_ips(map(str, ips))} does not match "
            "the ipFamily of the service"
        )
    return [str(ips[0])]


# -- the allocator -----------------------------------------------------------------------


@dataclass
class Alloc:
    pool: str  # "" while held without a valid pool (see Allocator.set_pools)
    ip: int
    ports: frozenset[tuple[str, int]]
    sharing_key: str
    backend_key: str


def _alloc(pool: str, ip: int, req: ServiceRequest) -> Alloc:
    return Alloc(pool, ip, req.ports, req.sharing_key, req.backend_key)


class Allocator:
    """What every Service holds, and the rules for handing out more (MetalLB's
    allocator.Allocator, IPv4 only)."""

    def __init__(self) -> None:
        self.pools: dict[str, Pool] = {}
        self.invalid: dict[str, str] = {}
        self.allocated: dict[str, Alloc] = {}  # service key -> its IP
        self.on_ip: dict[int, set[str]] = {}  # IP -> service keys holding it
        self.ports_on_ip: dict[int, dict[tuple[str, int], str]] = {}  # IP -> port -> key
        # sharing key -> the IPs Services with that key hold (how many on each)
        self.shared: dict[str, dict[int, int]] = {}
        # pool -> a position before which every address is held, so the search for a free
        # one starts there and handing out n addresses costs O(n), not O(n^2)
        self.free_from: dict[str, Position] = {}

    # state
    def ip(self, key: str) -> str | None:
        a = self.allocated.get(key)
        return ip_text(a.ip) if a else None

    def pool(self, key: str) -> str:
        a = self.allocated.get(key)
        return a.pool if a else ""

    def pool_for(self, ip: int) -> Pool | None:
        for name in sorted(self.pools):
            if self.pools[name].contains(ip):
                return self.pools[name]
        return None

    def set_pools(self, pools: PoolSet) -> list[str]:
        """Take a new set of pools; returns the Services whose IP no pool holds any more
        (released). While some pool is invalid nothing is released: the IP may be in the
        pool being fixed, and taking it away would move a Service for a typo."""
        self.pools, self.invalid = dict(pools.pools), dict(pools.invalid)
        self.free_from.clear()
        released = []
        for key, a in list(self.allocated.items()):
            pool = self.pool_for(a.ip)
            if pool is not None:
                a.pool = pool.name
            elif self.invalid:
                a.pool = ""
            else:
                self.unassign(key)
                released.append(key)
        return released

    def unassign(self, key: str) -> bool:
        a = self.allocated.pop(key, None)
        if a is None:
            return False
        ports = self.ports_on_ip.get(a.ip)
        if ports is not None:
            for port in a.ports:
                if ports.get(port) == key:
                    del ports[port]
            if not ports:
                del self.ports_on_ip[a.ip]
        users = self.on_ip.get(a.ip)
        if users is not None:
            users.discard(key)
            if not users:
                del self.on_ip[a.ip]
                self._freed(a)
        if a.sharing_key:
            ips = self.shared[a.sharing_key]
            ips[a.ip] -= 1
            if not ips[a.ip]:
                del ips[a.ip]
                if not ips:
                    del self.shared[a.sharing_key]
        return True

    def _freed(self, a: Alloc) -> None:
        pool = self.pools.get(a.pool)
        hint = self.free_from.get(a.pool)
        if pool is None or hint is None:
            return
        pos = pool.position(a.ip)
        if pos is not None and pos < hint:
            self.free_from[a.pool] = pos

    def _hold(self, key: str, alloc: Alloc) -> None:
        self.unassign(key)
        self.allocated[key] = alloc
        self.on_ip.setdefault(alloc.ip, set()).add(key)
        ports = self.ports_on_ip.setdefault(alloc.ip, {})
        for port in alloc.ports:
            ports.setdefault(port, key)
        if alloc.sharing_key:
            ips = self.shared.setdefault(alloc.sharing_key, {})
            ips[alloc.ip] = ips.get(alloc.ip, 0) + 1

    def check_sharing(self, req: ServiceRequest, ip: int) -> str | None:
        """Why `req` cannot have `ip` next to the Services holding it (None: it can).
        Costs O(ports), however many Services share the address."""
        users = self.on_ip.get(ip)
        other = next((k for k in users if k != req.key), None) if users else None
        if other is None:
            return None
        first = self.allocated[other]
        if (
            not first.sharing_key
            or not req.sharing_key
            or first.sharing_key != req.sharing_key
            or first.backend_key != req.backend_key
        ):
            others = ",".join(sorted(k for k in users if k != req.key))
            return f'can\'t change sharing key for "{req.key}", address also in use by {others}'
        taken = self.ports_on_ip.get(ip, {})
        for proto, port in sorted(req.ports):
            if taken.get((proto, port), req.key) != req.key:
                return f'port {proto}/{port} is already in use on "{ip_text(ip)}"'
        return None

    def assign(self, req: ServiceRequest, ip_str: str, ns_labels: Mapping[str, str]) -> str | None:
        """Give `req` the IP it asks for or already has; the reason when it cannot."""
        ip = parse_ipv4(ip_str)
        pool = self.pool_for(ip) if ip is not None else None
        if ip is None or pool is None:
            return f"{go_quote_ips([ip_str])} is not allowed in config"
        if pool.allocation is not None and not pool.allocation.admits(
            req.namespace, ns_labels, req.labels
        ):
            return f"pool {pool.name} not compatible for ip assignment"
        why = self.check_sharing(req, ip)
        if why:
            return why
        self._hold(req.key, _alloc(pool.name, ip, req))
        return None

    def hold_orphan(self, req: ServiceRequest, ip_str: str) -> bool:
        """Keep an IP no valid pool holds while some pool is invalid (see set_pools)."""
        ip = parse_ipv4(ip_str)
        if ip is None or not self.invalid or self.pool_for(ip) is not None:
            return False
        if self.check_sharing(req, ip):
            return False
        self._hold(req.key, _alloc("", ip, req))
        return True

    def allocate_from_pool(self, req: ServiceRequest, pool: Pool) -> int | None:
        """The first address of `pool` that `req` can have, in the pool's order, as
        MetalLB picks it: the first free one, or an earlier one it may share."""
        best: tuple[Position, int] | None = None
        start = self.free_from.get(pool.name, (0, 0))
        for pos, ip in pool.addresses(start):
            users = self.on_ip.get(ip)
            if not users or users == {req.key}:
                best = pos, ip
                break
        if best is not None:
            self.free_from[pool.name] = best[0]  # every address before it is held
        for ip in self.shared.get(req.sharing_key, {}) if req.sharing_key else ():
            pos = pool.position(ip)
            if pos is None or (best is not None and pos >= best[0]):
                continue
            if self.check_sharing(req, ip) is None:
                best = pos, ip
        if best is None:
            return None
        self._hold(req.key, _alloc(pool.name, best[1], req))
        return best[1]

    def candidate_pools(self, req: ServiceRequest, ns_labels: Mapping[str, str]) -> list[Pool]:
        """Pools for automatic assignment, in order: those whose serviceAllocation admits
        the Service, by priority (1 first, unset last), then those without one, by name."""
        pinned = [
            p
            for p in self.pools.values()
            if p.auto_assign
            and p.allocation is not None
            and p.allocation.admits(req.namespace, ns_labels, req.labels)
        ]
        pinned.sort(key=_priority_order)
        rest = sorted(
            (p for p in self.pools.values() if p.auto_assign and p.allocation is None),
            key=lambda p: p.name,
        )
        return pinned + rest


def _priority_order(pool: Pool) -> tuple[bool, int, str]:
    priority = pool.allocation.priority if pool.allocation else 0
    return priority <= 0, priority, pool.name


# -- one Service -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What to write for one Service: its ingress IPs (empty: none), the pool they came
    from, and Events (type, reason, message)."""

    ips: list[str]
    pool: str = ""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    failed: bool = False  # try again when addresses are freed or pools change


def converge(a: Allocator, req: ServiceRequest, ns_labels: Mapping[str, str]) -> Outcome:
    """MetalLB's convergeBalancer for one Service, on the allocator's state."""
    key = req.key
    if not req.load_balancer:
        a.unassign(key)
        return Outcome([])
    out = Outcome([])
    lb_ips = list(req.current)
    if not lb_ips and key in a.allocated:
        # the cache has not seen our last status write yet: what we hold is the truth
        lb_ips = [ip_text(a.allocated[key].ip)]
    if len(lb_ips) > 1:
        lb_ips = []  # several IPs of one family: not something this allocator wrote
        a.unassign(key)
    if lb_ips:
        why = a.assign(req, lb_ips[0], ns_labels)
        if why and a.hold_orphan(req, lb_ips[0]):
            return Outcome(lb_ips, "")
        if why:
            out.events.append(
                (
                    "Normal",
                    "ClearAssignment",
                    f'current IP for "{key}" not allowed by config, will attempt for new IP '
                    f"assignment: {why}",
                )
            )
            a.unassign(key)
            lb_ips = []
        if lb_ips and req.pool and a.pool(key) != req.pool:
            a.unassign(key)  # the Service now asks for another pool
            lb_ips = []
        try:
            desired = desired_ips(req)
        except PoolError as e:
            out.events.append(
                ("Warning", "LoadBalancerFailed", f"invalid requested loadbalancer IPs: {e}")
            )
            out.ips, out.pool, out.failed = lb_ips, a.pool(key), True
            return out
        if lb_ips and desired and sorted(desired) != sorted(lb_ips):
            a.unassign(key)  # the Service now asks for another IP
            lb_ips = []
    if not lb_ips:
        a.unassign(key)
        try:
            lb_ips = [_allocate(a, req, ns_labels)]
        except PoolError as e:
            out.events.append(
                ("Warning", "AllocationFailed", f'Failed to allocate IP for "{key}": {e}')
            )
            out.failed = True
            return out
        out.events.append(("Normal", "IPAllocated", f"Assigned IP {go_quote_ips(lb_ips)}"))
    out.ips, out.pool = lb_ips, a.pool(key)
    return out


def _allocate(a: Allocator, req: ServiceRequest, ns_labels: Mapping[str, str]) -> str:
    """allocateIPs: the requested IP, else one from the requested pool, else from any."""
    desired = desired_ips(req)
    if desired:
        why = a.assign(req, desired[0], ns_labels)
        if why:
            raise PoolError(why)
        if req.pool and a.pool(req.key) != req.pool:
            a.unassign(req.key)
            raise PoolError(
                f"requested loadBalancer IP(s) {go_quote_ips(desired)} is not compatible "
                f"with requested address pool {req.pool}"
            )
        return desired[0]
    if req.pool:
        pool = a.pools.get(req.pool)
        if pool is None:
            raise PoolError(f'unknown pool "{req.pool}"')
        if pool.allocation is not None and not pool.allocation.admits(
            req.namespace, ns_labels, req.labels
        ):
            raise PoolError(f"pool {pool.name} not compatible for ip assignment")
        ip = a.allocate_from_pool(req, pool)
        if ip is None:
            raise PoolError(f'no available IPs in pool "{req.pool}"')
        return ip_text(ip)
    for pool in a.candidate_pools(req, ns_labels):
        ip = a.allocate_from_pool(req, pool)
        if ip is not None:
            return ip_text(ip)
    raise PoolError("no available IPs")
