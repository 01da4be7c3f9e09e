"""HAProxy's configuration for a routing table (pure functions, no I/O).

Routing lives in two map files looked up per request, so the configuration's text does not
grow with routes:
- `exact.map`: `host + path` -> backend, for Exact paths and for a Prefix's own path
  (`/foo` itself); an Exact path wins over the Prefix with the same text;
- `prefix.map`: `host + prefix + "/"` -> backend, longest first (HAProxy walks a `map_beg`
  file in order, so the first hit is the longest prefix): element-wise by construction,
  since `/foo/` never matches `/foobar`.
Keys of exact hosts start with the host, wildcards with `*.`, host-less rules with `/`, so
the three never collide. A request tries its host, then its wildcard (`*.` + all but the
first label), then no host; then the default backend; then the built-in 404.

HAProxy cannot add a backend at run time, so the configuration holds a **pool** of generic
backends (`be0`, `be1`, ...; a power of two, at least MIN_POOL) and the maps name which one
serves a route: a (Service, port) seen for the first time takes a free pool backend, and one
no route uses any more frees its backend. Each pool backend has a power-of-two number of
server slots; endpoints move in and out of slots through the runtime API, and a backend
outgrowing its slots gets more with `add server` (see applier.py). So endpoint churn, new
and removed Services and route changes never change `skeleton`, the configuration with the
servers left out, which is what decides a reload: only the pool growing does. The default
backend is a map entry too (`default.map`). `services.map` names each pool backend's
Service, for the access log.

The `https` frontend routes with the same lines as `http` (rendered once): its
certificates are one file per host listed in a crt-list (tls.py), the controller's default
certificate first on the bind line for any other name. Plain HTTP to a host that redirects
(`redirect.map`) answers 308 before routing. Certificates, crt-list and redirect map are not
in the skeleton: they change through the runtime API too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubesvc.ingress import tls
from kubesvc.ingress.model import RoutingTable

DEFAULT_404 = "be_default_404"
MIN_SLOTS = 4
MIN_POOL = 128  # pool backends rendered at least: new Services take one with no reload
PARKED = "127.0.0.1:1"  # an empty slot's address; the slot is in maintenance

Addr = tuple[str, int]
Slots = tuple[Addr | None, ...]


@dataclass(frozen=True)
class Paths:
    """Where the controller keeps HAProxy's files (a private directory)."""

    dir: str

    @property
    def config(self) -> str:
        return f"{self.dir}/haproxy.cfg"

    @property
    def exact_map(self) -> str:
        return f"{self.dir}/exact.map"

    @property
    def prefix_map(self) -> str:
        return f"{self.dir}/prefix.map"

    @property
    def default_map(self) -> str:
        return f"{self.dir}/default.map"

    @property
    def services_map(self) -> str:
        return f"{self.dir}/services.map"

    @property
    def redirect_map(self) -> str:
        return f"{self.dir}/redirect.map"

    @property
    def crt_list(self) -> str:
        return f"{self.dir}/crt-list"

    @property
    def certs_dir(self) -> str:
        return f"{self.dir}/certs"

    @property
    def default_cert(self) -> str:
        return f"{self.dir}/default.pem"

    @property
    def admin_socket(self) -> str:
        return f"{self.dir}/admin.sock"

    @property
    def metrics_socket(self) -> str:
        return f"{self.dir}/metrics.sock"

    @property
    def master_socket(self) -> str:
        return f"{self.dir}/master.sock"


@dataclass(frozen=True)
class Ports:
    http: int = 80
    health: int = 10254
    https: int = 443


@dataclass(frozen=True)
class Layout:
    """Which pool backend serves each (Service, port), and what every pool backend's slots
    hold (a free backend's are all empty)."""

    assigned: Mapping[str, str] = field(default_factory=dict)  # BackendRef.key -> backend
    slots: Mapping[str, Slots] = field(default_factory=dict)  # backend -> its slots


@dataclass(frozen=True)
class Rendered:
    config: str
    skeleton: str  # config without server addresses: a change here needs a reload
    maps: Mapping[str, str]  # path -> contents
    layout: Layout
    certs: Mapping[str, str] = field(default_factory=dict)  # cert file -> PEM (tls.py)

    @property
    def slots(self) -> Mapping[str, Slots]:
        return self.layout.slots


def pool_name(i: int) -> str:
    return f"be{i}"


def pool_size(n: int) -> int:
    """Pool backends for n (Service, port)s: a power of two above n, at least MIN_POOL, so
    the next new Service still finds a free one."""
    size = MIN_POOL
    while size <= n:
        size *= 2
    return size


def plan_layout(previous: Layout, table: RoutingTable) -> Layout:
    """Pool backends for `table`'s backends, each (Service, port) kept on the backend and
    each endpoint in the slot it holds; a new (Service, port) takes a free backend (first
    one that was free before, so a backend freed now is not reused in the same change)."""
    keys = sorted(b.key for b in table.backends)
    assigned = {k: previous.assigned[k] for k in keys if k in previous.assigned}
    size = max(len(previous.slots), pool_size(len(keys)))
    names = [pool_name(i) for i in range(size)]
    held_before = set(previous.assigned.values())
    taken = set(assigned.values())
    free = [n for n in names if n not in taken and n not in held_before]
    free += [n for n in names if n not in taken and n in held_before]
    for key in keys:
        if key not in assigned:
            assigned[key] = free.pop(0)
    owner = {n: k for k, n in assigned.items()}
    slots: dict[str, Slots] = {}
    for name in names:
        before = previous.slots.get(name, ())
        key = owner.get(name)
        if key is None or previous.assigned.get(key) != name:
            before = (None,) * len(before)  # free, or another Service's until now
        eps = table.endpoints.get(key, ()) if key is not None else ()
        slots[name] = assign_slots(before, eps)
    return Layout(assigned, slots)


def slot_count(n: int) -> int:
    """Slots for n endpoints: a power of two, at least MIN_SLOTS."""
    size = MIN_SLOTS
    while size < n:
        size *= 2
    return size


def assign_slots(previous: Slots, endpoints: Sequence[Addr]) -> Slots:
    """Endpoints into slots, each kept where it was: only changed slots differ, so a change
    of endpoints is a few runtime commands. Grows (a reload) only when they do not fit."""
    wanted = set(endpoints)
    size = max(len(previous), slot_count(len(wanted)))
    slots: list[Addr | None] = [a if a in wanted else None for a in previous]
    slots += [None] * (size - len(slots))
    placed = {a for a in slots if a is not None}
    free = (i for i, a in enumerate(slots) if a is None)
    for addr in sorted(wanted - placed):
        slots[next(free)] = addr
    return tuple(slots)


def route_maps(table: RoutingTable, assigned: Mapping[str, str]) -> tuple[str, str]:
    """(exact.map, prefix.map) contents; `assigned` maps each backend's key to its pool
    backend (plan_layout)."""
    exact: dict[str, str] = {}
    prefix: dict[str, str] = {}
    for r in table.routes:  # Exact routes come before Prefix ones of the same host
        be = assigned[r.backend.key]
        exact.setdefault(r.host + r.path, be)
        if not r.exact:
            prefix.setdefault(r.host + (r.path if r.path == "/" else r.path + "/"), be)
    exact_text = "".join(f"{k} {v}\n" for k, v in sorted(exact.items()))
    longest_first = sorted(prefix.items(), key=lambda kv: (-len(kv[0]), kv[0]))
    return exact_text, "".join(f"{k} {v}\n" for k, v in longest_first)


def render(
    table: RoutingTable,
    layout: Layout,
    paths: Paths,
    ports: Ports = Ports(),
    tls_table: tls.TLSTable = tls.TLSTable(),
) -> Rendered:
    """HAProxy's files for `table` and `tls_table`, with its backends where `layout`
    (plan_layout) puts them."""
    exact_map, prefix_map = route_maps(table, layout.assigned)
    default = ""
    if table.default_backend is not None:
        default = f"default {layout.assigned[table.default_backend.key]}\n"
    services = "".join(f"{n} {k}\n" for k, n in sorted(layout.assigned.items(), key=_by_pool))
    head = _head(paths, ports) + _frontends(paths, ports)
    config = head + "".join(_backend(n, s, True) for n, s in layout.slots.items())
    skeleton = head + "".join(_backend(n, s, False) for n, s in layout.slots.items())
    maps = {
        paths.exact_map: exact_map,
        paths.prefix_map: prefix_map,
        paths.default_map: default,
        paths.services_map: services,
        paths.redirect_map: tls.redirect_map(tls_table),
    }
    certs = tls.cert_files(tls_table, paths.certs_dir)
    return Rendered(config, skeleton, maps, layout, certs)


def _by_pool(item: tuple[str, str]) -> int:
    return int(item[1][2:])


def _backend(name: str, slots: Slots, servers: bool) -> str:
    lines = [f"\nbackend {name}\n", "    balance roundrobin\n"]
    for i, addr in enumerate(slots if servers else (), 1):
        if addr is None:
            lines.append(f"    server s{i} {PARKED} disabled\n")
        else:
            lines.append(f"    server s{i} {addr[0]}:{addr[1]}\n")
    return "".join(lines)


# remote address - - [time] "request line" status bytes "referer" "user agent" request
# bytes total-ms [Service] [] server-address bytes server-ms server-status request-id host
ACCESS_LOG = (
    "%ci - - [%trl] %{+Q,+E}r %ST %B %{+Q,+E}[var(txn.referer,-)] %{+Q,+E}[var(txn.ua,-)] %U %Ta"
    " [%[capture.req.hdr(0)]] [] %si:%sp %B %Tr %ST %ID %[var(txn.host)]"
)


def _head(paths: Paths, ports: Ports) -> str:
    return f"""\
# written by kubesvc's ingress controller; changes are overwritten
global
    master-worker
    stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners
    stats timeout 30s
    log stdout format raw local0
    maxconn 4000

defaults
    mode http
    log global
    # ingress-nginx's access log, with the host last (docs/ingress.md)
    log-format "{ACCESS_LOG}"
    option forwardfor
    # a request that finds its pod gone (refused, or closed with no answer: a pod that
    # exits on SIGTERM before its endpoint left) is sent again, to another pod each time;
    # only idempotent ones when the request may have reached the pod (see frontend http)
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend health
    bind :{ports.health}
    monitor-uri /healthz
    http-request return status 404

frontend metrics
    # HAProxy's Prometheus exporter, for the controller's /metrics only (not a pod port)
    bind unix@{paths.metrics_socket} mode 600
    http-request set-log-level silent
    http-request use-service prometheus-exporter if {{ path /metrics }}
    http-request return status 404
"""


def _frontends(paths: Paths, ports: Ports) -> str:
    """`http` and `https`: the same request headers and routing (rendered once), plain
    HTTP's redirect to HTTPS, TLS by SNI with the default certificate first."""
    routing = _routing(paths)
    https_bind = (
        f"bind :{ports.https} ssl crt {paths.default_cert} crt-list {paths.crt_list}"
        " alpn h2,http/1.1"
    )
    return (
        f"\nfrontend http\n    bind :{ports.http}\n"
        + _request_headers("http")
        + _redirect(paths, ports)
        + routing
        + f"\nfrontend https\n    {https_bind}\n"
        + _request_headers("https")
        + routing
        + f"""
backend {DEFAULT_404}
    http-request return status 404 content-type text/plain string "default backend - 404"
"""
    )


def _request_headers(proto: str) -> str:
    """The headers upstream controllers set, and the request's host as a variable (without
    its port, lower case; a Host that is not a DNS name matches no host)."""
    return f"""\
    http-request disable-l7-retry unless METH_GET or METH_OPTIONS or {{ method PUT DELETE TRACE }}
    unique-id-format %[uuid()]
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto {proto}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    # a Server header, as other controllers' proxies answer, unless the backend sent one
    http-after-response set-header Server haproxy unless {{ res.hdr(server) -m found }}
    http-request set-var(txn.referer) req.hdr(referer)
    http-request set-var(txn.ua) req.hdr(user-agent)
    http-request set-var(txn.host) req.hdr(host,1),field(1,:),lower
    http-request unset-var(txn.host) unless {{ var(txn.host) -m reg ^[a-z0-9][a-z0-9.-]*$ }}
    acl dotted var(txn.host) -m sub .
    # the Host header as sent is the host as validated (no port, lower case): then `base`
    # (Host + path) is a route map key as it is, with no copy made per request
    acl host_as_sent req.hdr(host,1),strcmp(txn.host) eq 0
"""


def _redirect(paths: Paths, ports: Ports) -> str:
    """308 to HTTPS for a host whose redirect.map entry (exact host first, then its
    wildcard) is 1; the Location holds the validated host, never the raw Host header."""
    redirect = paths.redirect_map
    port = "" if ports.https == 443 else f":{ports.https}"
    return f"""\
    http-request set-var(txn.redir) var(txn.host),map_str({redirect}) if {{ var(txn.host) -m found }}
    http-request set-var(txn.redir) var(txn.host),regsub(^[^.]+[.],*.),map_str({redirect}) if !{{ var(txn.redir) -m found }} dotted {{ str(*),map_str({redirect}) -m found }}
    http-request redirect location https://%[var(txn.host)]{port}%[pathq] code 308 if {{ var(txn.redir) -m str 1 }}
"""  # noqa: E501


def _routing(paths: Paths) -> str:
    """Host and path to a backend through the route maps (after _request_headers)."""
    exact, prefix = paths.exact_map, paths.prefix_map
    default, services = paths.default_map, paths.services_map
    return f"""\
    acl routed var(txn.be) -m found
    acl keyed var(txn.k) -m found
    acl has_wild var(txn.w) -m found
    # a Host with a port or capitals: the key is made from the host as validated
    http-request set-var(txn.path) path if !host_as_sent {{ var(txn.host) -m found }}
    http-request set-var(txn.k) var(txn.host),concat(,txn.path,) if {{ var(txn.path) -m found }}
    http-request set-var(txn.be) base,map_str({exact}) if host_as_sent
    http-request set-var(txn.be) var(txn.k),map_str({exact}) if keyed
    http-request set-var(txn.be) base,map_beg({prefix}) if !routed host_as_sent
    http-request set-var(txn.be) var(txn.k),map_beg({prefix}) if !routed keyed
    # then the host's wildcard: its first label (which holds no dot) as `*`
    http-request set-var(txn.w) base,regsub(^[^.]+[.],*.) if !routed dotted host_as_sent
    http-request set-var(txn.w) var(txn.k),regsub(^[^.]+[.],*.) if !routed dotted keyed
    http-request set-var(txn.be) var(txn.w),map_str({exact}) if !routed has_wild
    http-request set-var(txn.be) var(txn.w),map_beg({prefix}) if !routed has_wild
    http-request set-var(txn.be) path,map_str({exact}) if !routed
    http-request set-var(txn.be) path,map_beg({prefix}) if !routed
    http-request set-var(txn.be) str(default),map_str({default}) if !routed
    # the Service in the access log (httplog's captured fields: {{ns/name:port}})
    http-request capture var(txn.be),map_str({services}) len 160
    use_backend %[var(txn.be)] if {{ var(txn.be) -m found }}
    default_backend {DEFAULT_404}
"""
