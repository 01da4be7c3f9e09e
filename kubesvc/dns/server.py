"""`kubesvc dns`: UDP and TCP listeners in front of an AnswerTable kept current by informers,
an upstream forwarder for names outside the cluster zone, and /metrics, /health, /ready."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from kubesvc.api import objmeta
from kubesvc.api.kinds import SERVICE_NAME_LABEL, slice_service_key
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.informer import Informer, Obj
from kubesvc.client.kubeconfig import ClusterAccess
from kubesvc.client.rest import ApiClient
from kubesvc.dns import records
from kubesvc.dns.answers import FORWARD, AnswerTable, Reply
from kubesvc.dns.records import (
    Endpoint,
    Service,
    Zone,
    ZoneView,
    absolute,
    namespace_names,
    namespace_source,
    parse_service,
    parse_slice,
    service_records,
    service_source,
)
from kubesvc.dns.udp import BatchUdp

log = logging.getLogger("kubesvc.dns")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TCP_IDLE_TIMEOUT = 10.0  # seconds, as CoreDNS's read timeout
UPSTREAM_TIMEOUT = 2.0
UDP_RCVBUF = 4 << 20
INITIAL_SYNC_RETRY, MAX_SYNC_RETRY = 0.5, 30.0  # seconds between attempts at the first build
# CoreDNS's request duration buckets: exponential from 250 us
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    16: "BADVERS",
}
QTYPE_NAMES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}


@dataclass(frozen=True)
class DnsConfig:
    listen: tuple[str, int] = ("0.0.0.0", 53)
    domain: str = "cluster.local"
    ttl: int = 5
    upstreams: tuple[tuple[str, int], ...] = ()
    metrics: tuple[str, int] | None = ("0.0.0.0", 9153)
    health: tuple[str, int] | None = ("0.0.0.0", 8080)
    ready: tuple[str, int] | None = ("0.0.0.0", 8181)
    reuse_port: bool = False  # SO_REUSEPORT: several processes share the port


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """`ADDR:PORT`, `:PORT`, `ADDR` or `[v6]:PORT`; an empty address means all."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    return host or "0.0.0.0", port


def in_cluster_access() -> ClusterAccess:
    """The API server as a pod sees it: env for the address, the service account's files."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise OSError("KUBERNETES_SERVICE_HOST is not set: not running in a cluster")
    if ":" in host:
        host = f"[{host}]"
    ctx = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
    return ClusterAccess(f"https://{host}:{port}", ctx, token)


# -- informer transforms: keep only what answers need ----------------------------------------
# Each transform reads the object into the zone's model (CoreDNS's object/ conversion); one
# that cannot be read raises shape.Invalid and the informer keeps it out (one log line per
# revision), so a broken object never reaches the zone and never stops a sync.
def _meta(obj: Obj, *, labels: tuple[str, ...] = ()) -> dict[str, Any]:
    m = objmeta.meta(obj)
    out = {k: m[k] for k in ("name", "namespace", "resourceVersion") if m.get(k).__class__ is str}
    have = m.get("labels")
    if have.__class__ is dict:
        kept = {k: v for k in labels if (v := have.get(k)).__class__ is str}
        if kept:
            out["labels"] = kept
    return out


def slim_service(obj: Obj) -> Obj:
    return {"metadata": _meta(obj), "dns": parse_service(obj)}


def slim_slice(obj: Obj) -> Obj:
    return {"metadata": _meta(obj, labels=(SERVICE_NAME_LABEL,)), "dns": tuple(parse_slice(obj))}


def slim_namespace(obj: Obj) -> Obj:
    m = _meta(obj)
    name = m.get("name", "")
    if not records.LABEL.match(name):
        raise shape.Invalid(f"not a DNS label: {name[:70]!r}", ("metadata", "name"))
    return {"metadata": m}


# -- keeping the table current ---------------------------------------------------------------
class ZoneWatcher:
    """Informer events -> dirty Services/namespaces -> ZoneView -> AnswerTable entries."""

    def __init__(self, client: ApiClient, table: AnswerTable) -> None:
        self.table = table
        self.view = ZoneView(table.zone)
        self.services = Informer(client, "Service", transform=slim_service)
        self.slices = Informer(client, "EndpointSlice", transform=slim_slice)
        self.namespaces = Informer(client, "Namespace", transform=slim_namespace)
        self.slices.add_indexer("service", lambda o: [k] if (k := slice_service_key(o)) else [])
        self._dirty_services: set[str] = set()
        self._dirty_namespaces: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._flush_failures = 0
        self._wire_handlers()

    def _wire_handlers(self) -> None:
        def svc(obj: Obj) -> None:
            self._mark(self._dirty_services, object_key(obj))

        def slc(obj: Obj) -> None:
            key = slice_service_key(obj)
            if key:
                self._mark(self._dirty_services, key)

        def ns(obj: Obj) -> None:
            self._mark(self._dirty_namespaces, object_key(obj))

        for informer, fn in ((self.services, svc), (self.slices, slc), (self.namespaces, ns)):
            informer.add_handler(fn, lambda old, new, fn=fn: (fn(old), fn(new)), fn)  # type: ignore[misc]

    def _mark(self, dirty: set[str], key: str) -> None:
        dirty.add(key)
        if self._flush_handle is None and self.table.synced:
            # on the loop's next turn: the events already read (a burst) make one rebuild,
            # and a lone change is answered about 1 ms after its watch event
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    async def run(self) -> None:
        """Start the informers and build the zone once they have listed; a build that fails
        is tried again with back-off (the server answers SERVFAIL in the zone until then)."""
        for informer in (self.services, self.slices, self.namespaces):
            informer.start()
        await asyncio.gather(
            self.services.wait_for_sync(),
            self.slices.wait_for_sync(),
            self.namespaces.wait_for_sync(),
        )
        delay = INITIAL_SYNC_RETRY
        while True:
            started = time.monotonic()
            try:
                self._dirty_services = {object_key(o) for o in self.services.list()}
                self._dirty_namespaces = {object_key(o) for o in self.namespaces.list()}
                self._apply_dirty()
                count = self.table.rebuild(self.view)
                break
            except Exception:
                log.exception("dns zone build failed; retrying", extra={"kv": {"in": delay}})
                self.view = ZoneView(self.table.zone)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_SYNC_RETRY)
        self.table.synced = True
        log.info(
            "dns zone built",
            extra={"kv": {"names": count, "seconds": round(time.monotonic() - started, 3)}},
        )
        print("kubesvc dns: caches synced", file=sys.stderr, flush=True)

    def flush(self) -> None:
        self._flush_handle = None
        try:
            changed = self._apply_dirty()
            self.table.rebuild(self.view, changed)
        except Exception:
            # not expected (what the zone holds was checked when it arrived); rebuilding
            # everything later, with back-off, beats serving a zone that stopped changing
            self._flush_failures += 1
            n = self._flush_failures
            delay = min(INITIAL_SYNC_RETRY * 2 ** min(n, 8), MAX_SYNC_RETRY)
            if n & (n - 1) == 0:
                log.exception("dns zone update failed; rebuilding", extra={"kv": {"in": delay}})
            self._dirty_services |= {object_key(o) for o in self.services.list()}
            self._dirty_services |= {s[4:] for s in self.view.sources() if s.startswith("svc:")}
            self._dirty_namespaces |= {object_key(o) for o in self.namespaces.list()}
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(delay, self.flush)  # type: ignore[assignment]
            return
        self._flush_failures = 0

    def _apply_dirty(self) -> set[str]:
        changed: set[str] = set()
        zone = self.table.zone
        dirty, self._dirty_services = self._dirty_services, set()
        for key in dirty:
            obj = self.services.get(key)
            svc: Service | None = obj["dns"] if obj is not None else None
            if svc is None:
                changed |= self.view.remove_source(service_source(key))
                continue
            eps: list[Endpoint] = []
            for slc in self.slices.by_index("service", key):
                eps += slc["dns"]
            changed |= self.view.set_source(service_source(key), service_records(svc, eps, zone))
        namespaces, self._dirty_namespaces = self._dirty_namespaces, set()
        for ns in namespaces:
            if self.namespaces.get(ns) is None:
                changed |= self.view.remove_source(namespace_source(ns))
            else:
                names = namespace_names(ns, zone)
                changed |= self.view.set_source(namespace_source(ns), (), names)
        return changed

    async def stop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for informer in (self.services, self.slices, self.namespaces):
            await informer.stop()


# -- metrics ---------------------------------------------------------------------------------
@dataclass
class Durations:
    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.observe_many(seconds, 1)

    def observe_many(self, seconds: float, n: int) -> None:
        """n queries answered together, each waiting `seconds` for the batch."""
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += n
        self.total += seconds * n


def render_metrics(
    table: AnswerTable, durations: Durations, server: str, udp_dropped: int = 0
) -> str:
    labels = f'server="{server}",zone="."'
    lines = [
        "# HELP coredns_dns_requests_total Counter of DNS requests made per zone and type.",
        "# TYPE coredns_dns_requests_total counter",
    ]
    by_type: dict[str, int] = {}
    for qtype, n in table.stats.requests.items():
        name = QTYPE_NAMES.get(qtype, "other")
        by_type[name] = by_type.get(name, 0) + n
    lines += [
        f'coredns_dns_requests_total{{{labels},type="{t}"}} {n}' for t, n in sorted(by_type.items())
    ]
    lines += [
        "# HELP coredns_dns_responses_total Counter of response status codes.",
        "# TYPE coredns_dns_responses_total counter",
    ]
    for rcode, n in sorted(table.stats.responses.items()):
        name = RCODE_NAMES.get(rcode, str(rcode))
        lines.append(f'coredns_dns_responses_total{{{labels},rcode="{name}"}} {n}')
    lines += [
        "# HELP coredns_dns_request_duration_seconds Histogram of the time each request took.",
        "# TYPE coredns_dns_request_duration_seconds histogram",
    ]
    cumulative = 0
    for bound, n in zip((*DURATION_BUCKETS, float("inf")), durations.counts, strict=True):
        cumulative += n
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(
            f'coredns_dns_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}'
        )
    lines.append(f"coredns_dns_request_duration_seconds_sum{{{labels}}} {durations.total}")
    lines.append(f"coredns_dns_request_duration_seconds_count{{{labels}}} {cumulative}")
    lines += [
        "# HELP kubesvc_dns_answers Precomputed responses held.",
        "# TYPE kubesvc_dns_answers gauge",
        f"kubesvc_dns_answers {len(table.exact) + len(table.by_name)}",
        "# HELP kubesvc_dns_dropped_total Queries dropped without a response.",
        "# TYPE kubesvc_dns_dropped_total counter",
        f"kubesvc_dns_dropped_total {table.stats.dropped + udp_dropped}",
    ]
    return "\n".join(lines) + "\n"


# -- the network side ------------------------------------------------------------------------
class Forwarder:
    """Relays queries to the upstreams in order; SERVFAIL when none answers."""

    def __init__(self, upstreams: tuple[tuple[str, int], ...]) -> None:
        self.upstreams = upstreams

    async def query(self, data: bytes, *, tcp: bool) -> bytes | None:
        for host, port in self.upstreams:
            try:
                reply = await asyncio.wait_for(_udp_exchange(host, port, data), UPSTREAM_TIMEOUT)
                if tcp and len(reply) > 2 and reply[2] & 0x02:
                    reply = await asyncio.wait_for(
                        _tcp_exchange(host, port, data), UPSTREAM_TIMEOUT
                    )
                return reply
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                log.info(
                    "upstream failed", extra={"kv": {"upstream": f"{host}:{port}", "error": e}}
                )
        return None


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:2] == self.qid and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _udp_exchange(host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _OneReply(data[:2]), remote_addr=(host, port)
    )
    try:
        transport.sendto(data)
        return await proto.done
    finally:
        transport.close()


async def _tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        n = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(n)
    finally:
        writer.close()


class DnsServer:
    def __init__(self, config: DnsConfig, table: AnswerTable) -> None:
        self.config = config
        self.table = table
        self.durations = Durations()
        self.forwarder = Forwarder(config.upstreams)
        self.port = config.listen[1]
        self.udp: BatchUdp | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def answer(self, data: bytes, *, udp: bool) -> Reply:
        try:
            return self.table.answer(data, udp=udp)
        except Exception:
            log.exception("query failed")
            return None

    def forward(self, data: bytes, *, udp: bool, reply: Callable[[bytes], object]) -> None:
        task = asyncio.ensure_future(self._forward(data, udp=udp, reply=reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, data: bytes, *, udp: bool, reply: Callable[[bytes], object]) -> None:
        answer = await self.forwarder.query(data, tcp=not udp)
        if answer is None:
            answer = self.table.servfail(data)
        else:
            rcode = answer[3] & 0xF if len(answer) > 3 else 2
            stats = self.table.stats.responses
            stats[rcode] = stats.get(rcode, 0) + 1
        if answer is not None:
            reply(answer)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            sock.bind((host, port))
            sock.setblocking(False)
            self.port = sock.getsockname()[1]  # port 0: TCP takes the same one UDP got
            await loop.create_server(
                lambda: _TcpProtocol(self),
                host,
                self.port,
                reuse_address=True,
                reuse_port=self.config.reuse_port or None,
            )
        except BaseException:
            sock.close()
            raise

        def reply_to(peer: tuple[str, int]) -> Callable[[bytes], object]:
            def send(data: bytes) -> None:
                with contextlib.suppress(OSError):
                    sock.sendto(data, peer)

            return send

        self.udp = BatchUdp(
            sock,
            functools.partial(self.answer, udp=True),
            lambda query, peer: self.forward(query, udp=True, reply=reply_to(peer)),
            self.durations.observe_many,
        )
        self.udp.start(loop)


class _TcpProtocol(asyncio.Protocol):
    """Length-prefixed messages; several per connection, closed after an idle period."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._touch()

    def _touch(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        transport = self.transport
        if transport is not None:
            self.idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._touch()
        while len(self.buffer) >= 2:
            size = self.buffer[0] << 8 | self.buffer[1]
            if len(self.buffer) < 2 + size:
                break
            message = bytes(self.buffer[2 : 2 + size])
            del self.buffer[: 2 + size]
            started = time.perf_counter()
            answer = self.server.answer(message, udp=False)
            self.server.durations.observe(time.perf_counter() - started)
            if answer is FORWARD:
                self.server.forward(message, udp=False, reply=self._send)
            elif answer is not None:
                self._send(answer)  # type: ignore[arg-type]

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None


# -- HTTP: metrics, health, readiness ----------------------------------------------------------
async def _serve_http(
    addr: tuple[str, int], routes: dict[str, Callable[[], tuple[int, str]]]
) -> web.AppRunner | None:
    app = web.Application()
    for path, fn in routes.items():

        async def handler(_: web.Request, fn: Callable[[], tuple[int, str]] = fn) -> web.Response:
            status, text = fn()
            return web.Response(status=status, text=text)

        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, addr[0], addr[1]).start()
    except OSError as e:
        log.warning("cannot serve http", extra={"kv": {"addr": f"{addr[0]}:{addr[1]}", "error": e}})
        await runner.cleanup()
        return None
    return runner


# -- more cores: SO_REUSEPORT worker processes -------------------------------------------------
class Workers:
    """Extra copies of this server on the same port (SO_REUSEPORT: the kernel spreads
    clients over the processes by address hash). Each keeps its own informers and table;
    a worker that exits is started again; all of them end with this process."""

    def __init__(self, argv: list[str], count: int) -> None:
        self.argv, self.count = argv, count
        self.procs: list[asyncio.subprocess.Process] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(
            asyncio.gather(*(self._keep(i) for i in range(self.count)))
        )

    async def _keep(self, index: int) -> None:
        while True:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
            self.procs.append(proc)
            code = await proc.wait()
            self.procs.remove(proc)
            log.warning(
                "dns worker exited; starting it again",
                extra={"kv": {"worker": index + 1, "code": code}},
            )
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for proc in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def serve(
    config: DnsConfig, access: ClusterAccess, worker_argv: list[str] | None = None, workers: int = 1
) -> None:
    """Run the server; with workers > 1, also `workers - 1` processes of `worker_argv`
    (this command for one worker, told the port with --listen) sharing the port."""
    if workers > 1:
        config = dataclasses.replace(config, reuse_port=True)
    zone = Zone(absolute(config.domain), config.ttl, int(time.time()))
    table = AnswerTable(zone, forward=bool(config.upstreams))
    server = DnsServer(config, table)
    await server.start()
    host = config.listen[0]
    extra = None
    if workers > 1 and worker_argv is not None:
        listen = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
        extra = Workers([*worker_argv, "--listen", listen], workers - 1)
        extra.start()

    def health() -> tuple[int, str]:
        return 200, "OK"

    def ready() -> tuple[int, str]:
        return (200, "OK") if table.synced else (503, "not ready: caches not synced")

    def metrics() -> tuple[int, str]:
        dropped = server.udp.dropped if server.udp is not None else 0
        return 200, render_metrics(table, server.durations, f"dns://{host}:{server.port}", dropped)

    runners = []
    for addr, routes in (
        (config.metrics, {"/metrics": metrics, "/health": health, "/ready": ready}),
        (config.health, {"/health": health}),
        (config.ready, {"/ready": ready}),
    ):
        if addr is not None:
            runners.append(await _serve_http(addr, routes))
    print(f"kubesvc dns listening on {host}:{server.port} (udp, tcp)", file=sys.stderr, flush=True)
    client = ApiClient(access, user_agent="kubesvc-dns/0.1")
    watcher = ZoneWatcher(client, table)
    try:
        await watcher.run()
        await asyncio.Event().wait()
    finally:
        if extra is not None:
            await extra.stop()
        await watcher.stop()
        await client.close()
        for runner in runners:
            if runner is not None:
                await runner.cleanup()
