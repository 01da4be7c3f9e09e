"""The cluster zone as records: Services, EndpointSlices and Namespaces -> zone-file records.

Pure functions and a small in-memory view; no I/O and no DNS wire format. Names are
absolute, lower-case and end with a dot. What is produced follows kubernetes/dns
docs/specification.md 1.1.0, with CoreDNS's kubernetes plugin deciding the details the
spec leaves open (endpoint names and PTRs for every service, SRV weights, NXDOMAIN for a
headless service without ready endpoints).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.client.shape import Invalid
from kubesvc.client.shape import typed_field as _get

SCHEMA_VERSION = "1.1.0"
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
# SOA timers as CoreDNS writes them (refresh, retry, expire); minimum is the TTL
SOA_TIMERS = (7200, 1800, 86400)


@dataclass(frozen=True, order=True, slots=True)
class Record:
    """One resource record; `data` is the RDATA in zone-file text."""

    name: str
    rtype: str
    data: str
    ttl: int = 5

    def text(self) -> str:
        return f"{self.name} {self.ttl} IN {self.rtype} {self.data}"


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str  # TCP, UDP or SCTP
    port: int


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...] = ()  # empty for headless and ExternalName
    headless: bool = False
    external_name: str = ""
    ports: tuple[Port, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str = ""
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class Zone:
    domain: str = "cluster.local."
    ttl: int = 5
    serial: int = 1

    def soa(self, origin: str | None = None) -> Record:
        origin = origin or self.domain
        refresh, retry, expire = SOA_TIMERS
        data = (
            f"ns.dns.{origin} hostmaster.{origin} {self.serial} {refresh} {retry} {expire} "
            f"{self.ttl}"
        )
        return Record(origin, "SOA", data, self.ttl)

    def origin_of(self, name: str) -> str | None:
        """The zone (cluster domain or a reverse zone) a name falls in, if any."""
        for origin in (self.domain, *REVERSE_ZONES):
            if name == origin or name.endswith("." + origin):
                return origin
        return None


def absolute(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


# -- reading API objects ---------------------------------------------------------------------
# Objects are read as the API defines them; one that is not (a stored object can hold
# anything) raises shape.Invalid, and the server then leaves it out of the zone. What is
# accepted always renders: names are DNS labels, addresses parse, ports fit 16 bits.
LABEL = re.compile(r"[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?\Z")
_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


def _label(value: str, path: tuple[str, ...]) -> str:
    if not LABEL.match(value):
        raise Invalid(f"not a DNS label: {value[:70]!r}", path)
    return value


def _ip(value: Any, path: tuple[str, ...]) -> str:
    if value.__class__ is str:
        try:
            _pton(_AF_INET6 if ":" in value else _AF_INET, value)
            return value  # type: ignore[no-any-return]
        except (OSError, ValueError):  # ValueError: an embedded NUL
            pass
    raise Invalid(f"not an IP address: {str(value)[:70]!r}", path)


_pton, _AF_INET, _AF_INET6 = socket.inet_pton, socket.AF_INET, socket.AF_INET6


def _hostname(value: str, path: tuple[str, ...]) -> str:
    """An ExternalName target: labels of a DNS name, 253 characters at most."""
    name = value.strip().rstrip(".")
    if not name or len(name) > 253 or not all(LABEL.match(p) for p in name.split(".")):
        raise Invalid(f"not a DNS name: {value[:70]!r}", path)
    return absolute(name)


def _ports(obj: Any, path: tuple[str, ...], *, optional_number: bool) -> tuple[Port, ...]:
    out = []
    for i, p in enumerate(_get(obj, "ports", list, (), *path)):
        at = (*path, "ports", f"[{i}]")
        if p.__class__ is not dict:
            raise Invalid("expected object", at)
        name = _get(p, "name", str, "", *at)
        if name:
            _label(name, (*at, "name"))
        protocol = _get(p, "protocol", str, "TCP", *at)
        if protocol not in _PROTOCOLS:
            raise Invalid(f"unsupported protocol {protocol[:20]!r}", (*at, "protocol"))
        number = p.get("port")
        if number is None and optional_number:
            continue  # a slice port without a number: all ports (nothing DNS can name)
        if number.__class__ is not int or not 0 <= number <= 65535:
            raise Invalid("expected a port number (integer 0-65535)", (*at, "port"))
        out.append(Port(name, protocol, number))
    return tuple(out)


def parse_service(obj: Mapping[str, Any]) -> Service | None:
    """The Service as the zone holds it; None when it belongs to no namespace; raises
    shape.Invalid when the object is not a usable Service."""
    if obj.__class__ is not dict:
        raise Invalid("expected object")
    meta = _get(obj, "metadata", dict, {})
    spec = _get(obj, "spec", dict, {})
    ns = _get(meta, "namespace", str, "", "metadata")
    name = _get(meta, "name", str, "", "metadata")
    if not ns or not name:
        return None
    _label(ns, ("metadata", "namespace"))
    _label(name, ("metadata", "name"))
    ports = _ports(spec, ("spec",), optional_number=False)
    if _get(spec, "type", str, "", "spec") == "ExternalName":
        target = _get(spec, "externalName", str, "", "spec")
        external = _hostname(target, ("spec", "externalName")) if target.strip() else ""
        return Service(ns, name, external_name=external, ports=ports)
    ips = _get(spec, "clusterIPs", list, None, "spec")
    if not ips:
        ips = [_get(spec, "clusterIP", str, "", "spec")]
    ips = [ip for ip in ips if ip != ""]
    if not ips or ips == ["None"]:
        return Service(ns, name, headless=True, ports=ports)
    checked = tuple(_ip(ip, ("spec", "clusterIPs", f"[{i}]")) for i, ip in enumerate(ips))
    return Service(ns, name, cluster_ips=checked, ports=ports)


def parse_slice(obj: Mapping[str, Any]) -> list[Endpoint]:
    """Ready endpoints of one EndpointSlice (CoreDNS skips not-ready ones; a Service that
    publishes not-ready addresses gets them marked ready by the slice controller); raises
    shape.Invalid when the object is not a usable EndpointSlice."""
    if obj.__class__ is not dict:
        raise Invalid("expected object")
    address_type = _get(obj, "addressType", str, "IPv4")
    if address_type not in ("IPv4", "IPv6"):
        return []
    ports = _ports(obj, (), optional_number=True)
    v6 = address_type == "IPv6"
    out = []
    for i, ep in enumerate(_get(obj, "endpoints", list, ())):
        # the hot loop of a zone build: the checks of _get, written out
        at = ("endpoints", f"[{i}]")
        if ep.__class__ is not dict:
            raise Invalid("expected object", at)
        ready = True
        cond = ep.get("conditions")
        if cond is not None:
            if cond.__class__ is not dict:
                raise Invalid("expected dict", (*at, "conditions"))
            ready = _get(cond, "ready", bool, True, *at, "conditions")
        addresses = ep.get("addresses") or ()
        if addresses.__class__ is not list and addresses != ():
            raise Invalid("expected list", (*at, "addresses"))
        hostname = ep.get("hostname") or ""
        if hostname:
            if hostname.__class__ is not str:
                raise Invalid("expected str", (*at, "hostname"))
            _label(hostname, (*at, "hostname"))
        for ip in addresses:
            if ip.__class__ is not str or (":" in ip) != v6:
                raise Invalid(
                    f"not an {address_type} address: {str(ip)[:70]!r}", (*at, "addresses")
                )
            try:
                _pton(_AF_INET6 if v6 else _AF_INET, ip)
            except (OSError, ValueError):  # ValueError: an embedded NUL
                raise Invalid(f"not an IP address: {ip[:70]!r}", (*at, "addresses")) from None
        if ready and addresses:
            out.append(Endpoint(addresses[0], hostname.lower(), ports))
    return out


# -- records ---------------------------------------------------------------------------------
def endpoint_label(ep: Endpoint) -> str:
    """CoreDNS's endpointHostname: the hostname, else the IP with dashes."""
    if ep.hostname:
        return ep.hostname
    return ep.ip.replace(".", "-") if "." in ep.ip else ep.ip.replace(":", "-")


def _addr_type(ip: str) -> str:
    return "AAAA" if ":" in ip else "A"


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def service_records(svc: Service, endpoints: Iterable[Endpoint], zone: Zone) -> list[Record]:
    """Every record one Service puts in the zone (sorted, without duplicates)."""
    ttl = zone.ttl
    fqdn = f"{svc.name}.{svc.namespace}.svc.{zone.domain}".lower()
    out: set[Record] = set()
    if svc.external_name:
        out.add(Record(fqdn, "CNAME", svc.external_name, ttl))
        return sorted(out)
    eps = _unique_endpoints(endpoints)
    for ip in svc.cluster_ips:
        out.add(Record(fqdn, _addr_type(ip), ip, ttl))
        out.add(Record(reverse_name(ip), "PTR", fqdn, ttl))
    for p in svc.ports:
        if p.name and svc.cluster_ips:
            out.add(Record(_srv_name(p, fqdn), "SRV", f"0 100 {p.port} {fqdn}", ttl))
    for ep in eps:
        ep_name = f"{endpoint_label(ep)}.{fqdn}"
        out.add(Record(ep_name, _addr_type(ep.ip), ep.ip, ttl))
        out.add(Record(reverse_name(ep.ip), "PTR", ep_name, ttl))
        if svc.headless:
            out.add(Record(fqdn, _addr_type(ep.ip), ep.ip, ttl))
    if svc.headless:
        out |= _headless_srv(svc, eps, fqdn, ttl)
    return sorted(out)


def _srv_name(p: Port, fqdn: str) -> str:
    return f"_{p.name}._{p.protocol}.{fqdn}".lower()


def _unique_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """One endpoint per IP (slices may overlap while they are being rewritten)."""
    seen: dict[str, Endpoint] = {}
    for ep in endpoints:
        seen.setdefault(ep.ip, ep)
    return sorted(seen.values(), key=lambda e: e.ip)


def _headless_srv(svc: Service, eps: list[Endpoint], fqdn: str, ttl: int) -> set[Record]:
    """One SRV per endpoint and named port; weights split 100 as CoreDNS does."""
    out: set[Record] = set()
    for p in svc.ports:
        if not p.name:
            continue
        targets = [
            (ep, ep_port.port)
            for ep in eps
            for ep_port in ep.ports
            if ep_port.name == p.name and ep_port.protocol == p.protocol
        ]
        weight = 100 // len(targets) if targets else 0
        for ep, port in targets:
            target = f"{endpoint_label(ep)}.{fqdn}"
            out.add(Record(_srv_name(p, fqdn), "SRV", f"0 {weight} {port} {target}", ttl))
    return out


def zone_records(zone: Zone) -> list[Record]:
    """What the zone has whatever the cluster holds."""
    d, ttl = zone.domain, zone.ttl
    return [
        zone.soa(),
        Record(d, "NS", f"ns.dns.{d}", ttl),
        Record(f"dns-version.{d}", "TXT", f'"{SCHEMA_VERSION}"', ttl),
    ]


def namespace_names(namespace: str, zone: Zone) -> list[str]:
    """Names that exist (without records) because a namespace exists."""
    ns = namespace.lower()
    return [f"{ns}.svc.{zone.domain}", f"{ns}.pod.{zone.domain}"]


# -- the view --------------------------------------------------------------------------------
@dataclass
class ZoneView:
    """Records by owner name, kept per source (a Service, a namespace, the zone itself) so a
    change to one Service rewrites only its names. Names may be shared (two Services listing
    one pod IP give that IP's reverse name two PTRs)."""

    zone: Zone = field(default_factory=Zone)
    # source -> name -> its records there, sorted (a name with no records exists all the
    # same); tuples, not sets: at 10,000 Services sets cost about 8 MB more
    _by_source: dict[str, dict[str, tuple[Record, ...]]] = field(default_factory=dict)
    # name -> its source, or the set of them when several share it (rare: a pod IP listed
    # by two Services); a set per name would cost about 6 MB at 10,000 Services
    _sources: dict[str, str | set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        z = self.zone
        self.set_source("zone", zone_records(z), [f"svc.{z.domain}", f"pod.{z.domain}"])

    def set_source(
        self, source: str, records: Iterable[Record], empty_names: Iterable[str] = ()
    ) -> set[str]:
        """Replace what `source` contributes; returns the names whose contents changed."""
        grouped: dict[str, set[Record]] = {name: set() for name in empty_names}
        for r in records:
            grouped.setdefault(r.name, set()).add(r)
        new = {name: tuple(sorted(recs)) for name, recs in grouped.items()}
        old = self._by_source.get(source, {})
        if new == old:
            return set()
        for name in old.keys() - new.keys():
            self._drop_source(name, source)
        for name in new.keys() - old.keys():
            self._add_source(name, source)
        if new:
            self._by_source[source] = new
        else:
            self._by_source.pop(source, None)
        return {n for n in old.keys() | new.keys() if old.get(n) != new.get(n)}

    def remove_source(self, source: str) -> set[str]:
        return self.set_source(source, ())

    def _add_source(self, name: str, source: str) -> None:
        have = self._sources.get(name)
        if have is None:
            self._sources[name] = source
        elif isinstance(have, str):
            self._sources[name] = {have, source}
        else:
            have.add(source)

    def _drop_source(self, name: str, source: str) -> None:
        have = self._sources[name]
        if isinstance(have, str):
            del self._sources[name]
            return
        have.discard(source)
        if len(have) == 1:
            self._sources[name] = next(iter(have))

    def exists(self, name: str) -> bool:
        return name in self._sources

    def records(self, name: str) -> list[Record]:
        have = self._sources.get(name)
        if have is None:
            return []
        if isinstance(have, str):
            return list(self._by_source[have][name])  # already sorted
        out: set[Record] = set()
        for source in have:
            out.update(self._by_source[source][name])
        return sorted(out)

    def names(self) -> list[str]:
        return sorted(self._sources)

    def sources(self) -> list[str]:
        return sorted(self._by_source)


def service_source(key: str) -> str:
    return f"svc:{key}"


def namespace_source(namespace: str) -> str:
    return f"ns:{namespace}"


def build_view(
    services: Iterable[Service],
    endpoints: Mapping[str, Iterable[Endpoint]],
    namespaces: Iterable[str],
    zone: Zone,
) -> ZoneView:
    """A whole view at once (tests; the server applies the same calls incrementally)."""
    view = ZoneView(zone)
    for svc in services:
        records = service_records(svc, endpoints.get(svc.key, ()), zone)
        view.set_source(service_source(svc.key), records)
    for ns in namespaces:
        view.set_source(namespace_source(ns), (), namespace_names(ns, zone))
    return view
