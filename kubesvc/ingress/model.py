"""What the ingress controller serves, as plain values: a routing table computed from
Ingresses, IngressClasses, Services and EndpointSlices (pure functions, no I/O). The
HAProxy renderer turns it into a configuration; the applier pushes it.

Rules (the Ingress API's, as upstream controllers read them):
- an Ingress is served when its class (`spec.ingressClassName`, else the legacy
  `kubernetes.io/ingress.class` annotation) is ours, or when it has none and our
  IngressClass is marked `ingressclass.kubernetes.io/is-default-class: "true"`;
- hosts are exact (`foo.example.com`), wildcard (`*.example.com`: exactly one label) or
  absent (any host); a request tries the exact host's paths, then the wildcard's, then the
  host-less ones, then the default backend, then the built-in 404;
- within one host, an `Exact` path beats any `Prefix`; the longest `Prefix` wins; a
  `Prefix` matches element-wise (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`);
  `ImplementationSpecific` is treated as `Prefix`;
- several Ingresses for one host merge; when two claim the same host, path and type, the
  oldest Ingress (creationTimestamp, then namespace/name) wins and the other is reported;
- a backend is a Service port (by number or name) resolved to the ready endpoints of the
  Service's EndpointSlices (serving-terminating ones only when no ready one is left).

An object that is not what the API defines is left out (Ingresses are reported in
`rejected`); it never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.kinds import SERVICE_NAME_LABEL
from kubesvc.client.shape import Invalid
from kubesvc.client.shape import typed_field as _get
from kubesvc.proxy.model import Endpoint, slice_endpoints

CLASS_NAME = "kubesvc"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?\Z")
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*\Z")
# what a path may hold so that it is one token of a HAProxy map file and one URL path:
# printable ASCII without space, '#', '?', '"', '\' (the API refuses less; we serve less)
_PATH = re.compile(r"/[!$-/0-9:;<=>@A-Z\[\]^_`a-z{|}~%&'()*+,-]*\Z")
MAX_HOST = 253
MAX_PATH = 2048


@dataclass(frozen=True, order=True)
class BackendRef:
    """One Service port an Ingress sends to; `port` is the number or name as written."""

    namespace: str
    service: str
    port: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port}"


@dataclass(frozen=True)
class Route:
    host: str  # "foo.example.com", "*.example.com" or "" (any host)
    path: str  # normalised: no trailing "/" on a Prefix other than "/"
    exact: bool  # Exact; else Prefix (and ImplementationSpecific)
    backend: BackendRef
    ingress: str  # ns/name of the Ingress it comes from


@dataclass(frozen=True)
class Conflict:
    loser: str  # ns/name of the Ingress whose rule is not served
    winner: str
    what: str  # e.g. `host "a.example.com" path Prefix "/api"`


@dataclass(frozen=True)
class RoutingTable:
    routes: tuple[Route, ...] = ()  # in the order a request is matched
    default_backend: BackendRef | None = None
    backends: tuple[BackendRef, ...] = ()  # every backend a route or the default uses
    endpoints: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    missing: tuple[tuple[str, str], ...] = ()  # (ingress, why) for unresolvable backends
    conflicts: tuple[Conflict, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()  # (ingress, why) for unparsable Ingresses
    served: tuple[str, ...] = ()  # ns/name of each Ingress served


# -- Ingress classes -----------------------------------------------------------------------------
def _text_map(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = obj.get(name)
    return value if value.__class__ is dict else {}


def we_are_default(classes: Iterable[Any], class_name: str = CLASS_NAME) -> bool:
    """Whether our IngressClass exists and is marked the cluster's default."""
    for ic in classes:
        if ic.__class__ is not dict:
            continue
        meta = _text_map(ic, "metadata")
        if meta.get("name") == class_name:
            return _text_map(meta, "annotations").get(DEFAULT_CLASS_ANNOTATION) == "true"
    return False


def ingress_class(ing: Mapping[str, Any]) -> str | None:
    """The class an Ingress asks for, or None when it names none."""
    spec = _text_map(ing, "spec")
    name = spec.get("ingressClassName")
    if name.__class__ is str and name:
        return name  # type: ignore[return-value]
    legacy = _text_map(_text_map(ing, "metadata"), "annotations").get(LEGACY_CLASS_ANNOTATION)
    return legacy if legacy.__class__ is str and legacy else None  # type: ignore[return-value]


def is_ours(ing: Mapping[str, Any], default: bool, class_name: str = CLASS_NAME) -> bool:
    cls = ingress_class(ing)
    return cls == class_name if cls is not None else default


# -- parsing one Ingress ------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedIngress:
    key: str  # ns/name
    age: tuple[str, str]  # (creationTimestamp, key): the oldest sorts first
    default_backend: BackendRef | None
    routes: tuple[Route, ...]


def _backend(obj: Any, namespace: str, at: tuple[str, ...]) -> BackendRef:
    if obj.__class__ is not dict:
        raise Invalid("expected object", at)
    if obj.get("resource") is not None:
        raise Invalid("resource backends are not supported", (*at, "resource"))
    svc = _get(obj, "service", dict, None, *at)
    if svc is None:
        raise Invalid("a service backend is required", (*at, "service"))
    name = _get(svc, "name", str, "", *at, "service")
    if not _NAME.match(name):
        raise Invalid(f"not a valid Service name: {name!r:.60}", (*at, "service", "name"))
    port = _get(svc, "port", dict, {}, *at, "service")
    number, port_name = port.get("number"), port.get("name")
    if number is not None:
        if number.__class__ is not int or not 0 < number < 65536:
            raise Invalid(f"not a port number: {number!r:.20}", (*at, "service", "port"))
        return BackendRef(namespace, name, str(number))
    if port_name.__class__ is str and _PORT_NAME.match(port_name):
        return BackendRef(namespace, name, port_name)
    raise Invalid("a port number or name is required", (*at, "service", "port"))


def _route_path(path: Any, path_type: Any, at: tuple[str, ...]) -> tuple[str, bool]:
    if path is None or path == "":
        path = "/"
    if path.__class__ is not str or len(path) > MAX_PATH or not _PATH.match(path):
        raise Invalid(f"not a usable path: {path!r:.60}", (*at, "path"))
    if path_type not in (None, "Exact", "Prefix", "ImplementationSpecific"):
        raise Invalid(f"unsupported pathType: {path_type!r:.30}", (*at, "pathType"))
    exact = path_type == "Exact"
    if not exact and path != "/":
        path = path.rstrip("/") or "/"  # `/foo/` as a Prefix is `/foo`
    return path, exact


def parse_ingress(ing: Any) -> ParsedIngress:
    """Raises shape.Invalid for an Ingress that cannot be served as a whole."""
    if ing.__class__ is not dict:
        raise Invalid("expected object")
    meta = _get(ing, "metadata", dict, {})
    namespace = _get(meta, "namespace", str, "", "metadata")
    name = _get(meta, "name", str, "", "metadata")
    if not _NAME.match(namespace) or not _NAME.match(name):
        raise Invalid("not a valid namespace/name", ("metadata",))
    created = meta.get("creationTimestamp")
    key = f"{namespace}/{name}"
    spec = _get(ing, "spec", dict, {})
    default = None
    if spec.get("defaultBackend") is not None:
        default = _backend(spec["defaultBackend"], namespace, ("spec", "defaultBackend"))
    routes: list[Route] = []
    for i, rule in enumerate(_get(spec, "rules", list, (), "spec")):
        at: tuple[str, ...] = ("spec", "rules", f"[{i}]")
        if rule.__class__ is not dict:
            raise Invalid("expected object", at)
        host = _get(rule, "host", str, "", *at)
        if host and (len(host) > MAX_HOST or not _HOST.match(host)):
            raise Invalid(f"not a valid host: {host!r:.60}", (*at, "host"))
        http = _get(rule, "http", dict, {}, *at)
        for j, p in enumerate(_get(http, "paths", list, (), *at, "http")):
            pat = (*at, "http", "paths", f"[{j}]")
            if p.__class__ is not dict:
                raise Invalid("expected object", pat)
            path, exact = _route_path(p.get("path"), p.get("pathType"), pat)
            backend = _backend(p.get("backend"), namespace, (*pat, "backend"))
            routes.append(Route(host, path, exact, backend, key))
    return ParsedIngress(
        key, (created if created.__class__ is str else "", key), default, tuple(routes)
    )


# -- Services and their endpoints --------------------------------------------------------------
def service_port_names(svc: Any) -> dict[str, str]:
    """port number (as text) and port name -> the port's name (as EndpointSlices key it).
    Raises shape.Invalid for a Service whose ports cannot be read."""
    if svc.__class__ is not dict:
        raise Invalid("expected object")
    spec = _get(svc, "spec", dict, {})
    out: dict[str, str] = {}
    for i, p in enumerate(_get(spec, "ports", list, (), "spec")):
        if p.__class__ is not dict:
            raise Invalid("expected object", ("spec", "ports", f"[{i}]"))
        name = _get(p, "name", str, "", "spec", "ports", f"[{i}]")
        number = p.get("port")
        if number.__class__ is int:
            out.setdefault(str(number), name)
        if name:
            out.setdefault(name, name)
    return out


def _service_key(obj: Any) -> str | None:
    meta = _text_map(obj, "metadata") if obj.__class__ is dict else {}
    ns, name = meta.get("namespace"), meta.get("name")
    if ns.__class__ is str and name.__class__ is str:
        return f"{ns}/{name}"
    return None


def _slice_service(slc: Any) -> str | None:
    meta = _text_map(slc, "metadata") if slc.__class__ is dict else {}
    svc, ns = _text_map(meta, "labels").get(SERVICE_NAME_LABEL), meta.get("namespace")
    if svc.__class__ is str and ns.__class__ is str and svc:
        return f"{ns}/{svc}"
    return None


def usable(endpoints: Iterable[Endpoint]) -> tuple[tuple[str, int], ...]:
    """The ready endpoints; the serving-terminating ones when none is ready."""
    eps = list(endpoints)
    chosen = [e for e in eps if e.ready] or [e for e in eps if e.serving and e.terminating]
    return tuple(sorted({(e.ip, e.port) for e in chosen}))


# -- the table ----------------------------------------------------------------------------------
def _describe(route: Route) -> str:
    kind = "Exact" if route.exact else "Prefix"
    return f"host {route.host or '*'!r} path {kind} {route.path!r}"


def routing_table(
    ingresses: Iterable[Any],
    services: Iterable[Any],
    slices: Iterable[Any],
    classes: Iterable[Any],
    class_name: str = CLASS_NAME,
) -> RoutingTable:
    default_class = we_are_default(classes, class_name)
    parsed: list[ParsedIngress] = []
    rejected: list[tuple[str, str]] = []
    for ing in ingresses:
        if ing.__class__ is not dict or not is_ours(ing, default_class, class_name):
            continue
        try:
            parsed.append(parse_ingress(ing))
        except Invalid as e:
            rejected.append((_service_key(ing) or "?", str(e)))
    parsed.sort(key=lambda p: p.age)

    routes: dict[tuple[str, str, bool], Route] = {}
    conflicts: list[Conflict] = []
    default: BackendRef | None = None
    default_from = ""
    for p in parsed:
        if p.default_backend is not None:
            if default is None:
                default, default_from = p.default_backend, p.key
            elif p.default_backend != default:
                conflicts.append(Conflict(p.key, default_from, "defaultBackend"))
        for r in p.routes:
            held = routes.setdefault((r.host, r.path, r.exact), r)
            if held is not r and held.ingress != r.ingress:
                conflicts.append(Conflict(r.ingress, held.ingress, _describe(r)))

    ordered = sorted(routes.values(), key=_precedence)
    backends = sorted({r.backend for r in ordered} | ({default} if default else set()))
    endpoints, missing = _resolve(backends, services, slices)
    missing_by_ingress = []
    for r in ordered:
        if r.backend.key in missing:
            missing_by_ingress.append((r.ingress, missing[r.backend.key]))
    if default is not None and default.key in missing:
        missing_by_ingress.append((default_from, missing[default.key]))
    return RoutingTable(
        routes=tuple(ordered),
        default_backend=default,
        backends=tuple(backends),
        endpoints=endpoints,
        missing=tuple(dict.fromkeys(missing_by_ingress)),
        conflicts=tuple(conflicts),
        rejected=tuple(rejected),
        served=tuple(p.key for p in parsed),
    )


def _precedence(r: Route) -> tuple[int, int, int, str, str]:
    """Exact hosts, then wildcards, then no host; within one: Exact paths, then the longest
    Prefix first."""
    host_rank = 2 if not r.host else 1 if r.host.startswith("*.") else 0
    return (host_rank, 0 if r.exact else 1, -len(r.path), r.host, r.path)


def _resolve(
    backends: Iterable[BackendRef], services: Iterable[Any], slices: Iterable[Any]
) -> tuple[dict[str, tuple[tuple[str, int], ...]], dict[str, str]]:
    """Endpoints of each backend, and why a backend has none it could ever have."""
    wanted = {f"{b.namespace}/{b.service}" for b in backends}
    ports: dict[str, dict[str, str] | None] = {}
    for svc in services:
        key = _service_key(svc)
        if key in wanted:
            try:
                ports[key] = service_port_names(svc)  # type: ignore[index]
            except Invalid:
                ports[key] = None  # type: ignore[index]
    by_service: dict[str, list[dict[str, list[Endpoint]]]] = {}
    for slc in slices:
        key = _slice_service(slc)
        if key not in wanted:
            continue
        try:
            # the headless label only keeps kube-proxy away; the endpoints are the same
            plain = {k: v for k, v in slc.items() if k != "metadata"}
            by_service.setdefault(key, []).append(slice_endpoints(plain))  # type: ignore[arg-type]
        except Invalid:
            continue
    endpoints: dict[str, tuple[tuple[str, int], ...]] = {}
    missing: dict[str, str] = {}
    for b in backends:
        svc_key = f"{b.namespace}/{b.service}"
        names = ports.get(svc_key)
        if svc_key not in ports:
            missing[b.key] = f"Service {svc_key} not found"
        elif names is None:
            missing[b.key] = f"Service {svc_key} cannot be read"
        elif b.port not in names:
            missing[b.key] = f"Service {svc_key} has no port {b.port}"
        eps: list[Endpoint] = []
        if names and b.port in names:
            for by_port in by_service.get(svc_key, ()):
                eps.extend(by_port.get(names[b.port], ()))
        endpoints[b.key] = usable(eps)
    return endpoints, missing


def match_route(table: RoutingTable, host: str, path: str) -> Route | None:
    """The route a request for `host` and `path` takes, as the data plane matches them:
    routes in precedence order, a wildcard host standing for exactly one label, a Prefix
    matching whole path segments."""
    host = host.lower().rstrip(".")
    for r in table.routes:
        wildcard = r.host.startswith("*.") and host.partition(".")[2] == r.host[2:]
        if r.host and r.host != host and not wildcard:
            continue
        if r.exact:
            if path == r.path:
                return r
        elif r.path == "/" or path == r.path or path.startswith(r.path + "/"):
            return r
    return None
