"""kube-proxy's control loop for one node: track Service and EndpointSlice changes, build the
desired state, and hand it to a backend (nftables or iptables) in one atomic apply.

Handlers only record what changed, in a change tracker that recomputes just the touched
Services when a sync takes the state (and tells the backend which service ports those
are, so a one-Service change costs the same at any scale); a rate-limited runner syncs at
most every `min_sync_period`, at least every `full_sync_period` (which also compares every
service and notices a flushed table), and never before both caches have synced (a partial
ruleset after a restart would drop traffic). After a sync: stale UDP conntrack entries of
removed endpoints are deleted, health-check servers follow Local services, and metrics are
updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from aiohttp import web

from kubesvc import netns as nsutil
from kubesvc.api import objmeta
from kubesvc.client.informer import Informer, Obj
from kubesvc.proxy import model
from kubesvc.proxy.metrics import Metrics

log = logging.getLogger("kubesvc.proxy")

# upstream's --metrics-bind-address default: loopback (of the node's namespace), since the
# endpoint has no authentication; `metrics_url` tells how to read it from the host
METRICS_ADDRESS, METRICS_PORT = "127.0.0.1", 10249
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


class Backend(Protocol):
    async def sync(
        self, state: model.ProxyState, changed: frozenset[str] | None = None
    ) -> None: ...

    async def check(self) -> bool: ...

    async def cleanup(self) -> None: ...

    async def rules(self, service: str | None = None) -> str: ...

    def close(self) -> None: ...


def make_backend(mode: str, netns: str | None) -> Backend:
    if mode == "iptables":
        from kubesvc.proxy.iptables.backend import IptablesBackend

        return IptablesBackend(netns)
    from kubesvc.proxy.nftables.backend import NftBackend

    return NftBackend(netns)


class Proxier:
    def __init__(
        self,
        *,
        services: Informer,
        slices: Informer,
        backend: Backend,
        node: str,
        node_ips: Iterable[str],
        cluster_cidr: str,
        netns: str | None = None,
        min_sync_period: float = 0.01,
        full_sync_period: float = 30.0,
    ) -> None:
        self.services, self.slices, self.backend = services, slices, backend
        self.node, self.node_ips = node, tuple(node_ips)
        self.cluster_cidr = cluster_cidr
        self.netns = netns
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.metrics = Metrics()
        self.state: model.ProxyState | None = None
        self._dirty = asyncio.Event()
        self._pending_triggers: list[float] = []
        self._health: dict[int, tuple[web.AppRunner, str]] = {}  # port -> (server, service)
        self.changes = model.ChangeTracker(node, self.node_ips, cluster_cidr)
        for inf, kind, record in (
            (services, "service", self.changes.service),
            (slices, "endpoint", self.changes.slice),
        ):
            inf.add_handler(
                lambda o, k=kind, f=record: self._changed(o, k, f, False),
                lambda _old, new, k=kind, f=record: self._changed(new, k, f, False),
                lambda o, k=kind, f=record: self._changed(o, k, f, True),
            )

    def _changed(
        self, obj: Obj, kind: str, record: Callable[[Obj, bool], None], deleted: bool
    ) -> None:
        record(obj, deleted)
        self.metrics.count_change(kind)
        annotations = objmeta.meta(obj).get("annotations")
        trigger = annotations.get(TRIGGER_ANNOTATION) if annotations.__class__ is dict else None  # type: ignore[union-attr]
        if trigger and trigger.__class__ is str:
            with contextlib.suppress(ValueError):
                # RFC 3339, with or without fractional seconds (Go's RFC3339Nano)
                self._pending_triggers.append(datetime.fromisoformat(trigger).timestamp())
        self._dirty.set()

    async def run(self) -> None:
        await asyncio.gather(self.services.wait_for_sync(), self.slices.wait_for_sync())
        last = 0.0
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), self.full_sync_period)
                full = False
            except TimeoutError:
                full = True
            wait = self.min_sync_period - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            last = time.monotonic()
            try:
                if full and not await self.backend.check():
                    log.warning("proxy rules were removed by someone; restoring them")
                await self.sync(full)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("proxy sync failed; retrying", extra={"kv": {"error": str(e)}})
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def sync(self, full: bool = False) -> None:
        """Apply what changed since the last sync; `full` (the periodic resync) also
        compares every service, so nothing the change tracker missed can stay wrong."""
        started = time.monotonic()
        state, changed = self.changes.take()
        hint = None if full or self.state is None else changed
        triggers, self._pending_triggers = self._pending_triggers, []
        await self.backend.sync(state, hint)
        now = time.time()
        self.metrics.synced(time.monotonic() - started, now, [now - t for t in triggers])
        previous, self.state = self.state, state
        if previous is not None:
            await self._clear_stale_udp(previous, state, hint)
        await self._sync_health_servers(state)

    # -- conntrack -----------------------------------------------------------------------
    async def _clear_stale_udp(
        self, old: model.ProxyState, new: model.ProxyState, keys: Iterable[str] | None
    ) -> None:
        """UDP has no connection to close: entries to a removed endpoint would keep
        sending packets into the void until they expire."""
        for cmd in conntrack_deletions(old, new, keys):
            argv = [*nsutil.nsenter(self.netns), *cmd] if self.netns else cmd
            await nsutil.run(*argv, check=False)

    # -- health checks for externalTrafficPolicy: Local -----------------------------------
    async def _sync_health_servers(self, state: model.ProxyState) -> None:
        wanted: dict[int, model.ServicePort] = {}
        for sp in state.services.values():
            if sp.external_local and sp.health_check_node_port:
                wanted.setdefault(sp.health_check_node_port, sp)
        for port in [p for p in self._health if p not in wanted]:
            runner, _ = self._health.pop(port)
            await runner.cleanup()
        for port, sp in wanted.items():
            if port not in self._health:
                await self._start_health_server(port, sp)

    async def _start_health_server(self, port: int, sp: model.ServicePort) -> None:
        service = sp.service

        async def handler(_request: web.Request) -> web.Response:
            state = self.state
            count = 0
            if state is not None:
                count = sum(
                    model.local_endpoint_count(state, p)
                    for p in state.services.values()
                    if p.service == service
                )
            ns, name = service.split("/", 1)
            body = {
                "service": {"namespace": ns, "name": name},
                "localEndpoints": count,
                "serviceProxyHealthy": True,
            }
            return web.json_response(
                body,
                status=200 if count > 0 else 503,
                headers={"X-Content-Type-Options": "nosniff"},
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            if self.netns:
                sock = nsutil.listen_in_netns(self.netns, "0.0.0.0", port)
                await web.SockSite(runner, sock).start()
            else:
                await web.TCPSite(runner, "0.0.0.0", port).start()
        except OSError as e:
            log.warning(
                "health check port unavailable", extra={"kv": {"port": port, "error": str(e)}}
            )
            await runner.cleanup()
            return
        self._health[port] = (runner, service)

    async def serve_metrics(
        self, host: str = METRICS_ADDRESS, port: int = METRICS_PORT
    ) -> web.AppRunner | None:
        """/metrics and /healthz on host:port inside the node's namespace (loopback unless
        told otherwise: read them with `read_metrics`)."""

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(text=self.metrics.render(), content_type="text/plain")

        async def healthz(_request: web.Request) -> web.Response:
            return web.json_response({"lastUpdated": self.metrics.last_sync_time})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            if self.netns:
                await web.SockSite(runner, nsutil.listen_in_netns(self.netns, host, port)).start()
            else:
                await web.TCPSite(runner, host, port).start()
        except OSError as e:
            log.warning("metrics port unavailable", extra={"kv": {"error": str(e)}})
            await runner.cleanup()
            return None
        return runner

    async def close(self) -> None:
        for runner, _ in self._health.values():
            await runner.cleanup()
        self._health.clear()
        self.backend.close()


def read_metrics(
    netns: str | None, path: str = "/metrics", port: int = METRICS_PORT, timeout: float = 5.0
) -> str:
    """GET a path of a proxy's metrics server from this host: the connection is made inside
    the node's namespace (`netns`), where the server listens on loopback."""
    sock = nsutil.socket_in_netns(netns) if netns else socket.socket()
    with sock:
        sock.settimeout(timeout)
        sock.connect((METRICS_ADDRESS, port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {METRICS_ADDRESS}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise OSError(f"metrics server answered {head[:60]!r}")
    return body.decode()


def conntrack_deletions(
    old: model.ProxyState, new: model.ProxyState, keys: Iterable[str] | None = None
) -> list[list[str]]:
    """`conntrack -D` commands for UDP flows whose endpoint went away (pure); `keys`: the
    service ports that can have changed (None: all)."""
    commands = []
    for key in old.services if keys is None else sorted(keys):
        sp = old.services.get(key)
        if sp is None or sp.protocol != "UDP":
            continue
        kept = {e.ip for e in new.endpoints.get(key, ())} if key in new.services else set()
        for ep in old.endpoints.get(key, ()):
            if ep.ip in kept:
                continue
            commands.append(
                ["conntrack", "-D", "-p", "udp", "--orig-dst", sp.cluster_ip, "--reply-src", ep.ip]
            )
            if sp.node_port:
                commands.append(
                    [
                        "conntrack",
                        "-D",
                        "-p",
                        "udp",
                        "--dport",
                        str(sp.node_port),
                        "--reply-src",
                        ep.ip,
                    ]
                )
    return commands
