"""The cluster zone as records: Services, EndpointSlices and Namespaces -> zone-file records.

Pure functions and a small in-memory view; no I/O and no DNS wire format. Names are
absolute, lower-case and end with a dot. What is produced follows kubernetes/dns
docs/specification.md 1.1.0, with CoreDNS's kubernetes plugin deciding the details the
spec leaves open (endpoint names and PTRs for every service, SRV weights, NXDOMAIN for a
headless service without ready endpoints).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
def parse_service(obj: Mapping[str, Any]) -> Service | None:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    if not ns or not name:
        return None
    ports = tuple(
        Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
        for p in spec.get("ports") or []
    )
    if spec.get("type") == "ExternalName":
        target = spec.get("externalName") or ""
        return Service(ns, name, external_name=absolute(target) if target else "", ports=ports)
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""] if ip]
    if not ips or ips == ["None"]:
        return Service(ns, name, headless=True, ports=ports)
    return Service(ns, name, cluster_ips=tuple(ips), ports=ports)


def parse_slice(obj: Mapping[str, Any]) -> list[Endpoint]:
    """Ready endpoints of one EndpointSlice (CoreDNS skips not-ready ones; a Service that
    publishes not-ready addresses gets them marked ready by the slice controller)."""
    if obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return []
    ports = tuple(
        Port(p.get("name") or "", p.get("protocol") or "TCP", int(p["port"]))
        for p in obj.get("ports") or []
        if p.get("port") is not None
    )
    out = []
    for ep in obj.get("endpoints") or []:
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        for ip in (ep.get("addresses") or [])[:1]:
            out.append(Endpoint(ip, (ep.get("hostname") or "").lower(), ports))
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
