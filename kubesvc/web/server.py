"""`kubesvc web`: a live picture of one cluster, served by aiohttp.

Informers (nodes, pods, Services, EndpointSlices) keep the graph; every change is pushed
to the page as a server-sent event within about 0.1 s. `conntrack -E` in each node's
namespace reports new connections; those whose destination was rewritten (a Service's
address) are pushed too, placed on the graph. The page can ask for a trace
(`POST /api/trace`), which runs `kubesvc trace`'s code in this process, one at a time.

Bound to loopback by default. Bound elsewhere, every request needs the token printed at
start (`?token=` once; a cookie after that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from kubesvc import netns, spawn
from kubesvc.cluster.lifecycle import Cluster
from kubesvc.web import model

log = logging.getLogger("kubesvc.web")
STATIC = Path(__file__).parent / "static"
KINDS = ("Node", "Pod", "Service", "EndpointSlice")
CLIENT_QUEUE = 256  # events buffered for one slow page before it is dropped
MAX_TRACE_BODY = 4096
COOKIE = "kubesvc-web"


class Hub:
    """The current graph, and the pages listening for changes."""

    def __init__(self) -> None:
        self.elements: list[dict[str, Any]] = []
        self.index: dict[str, str] = {}
        self.queues: set[asyncio.Queue[str]] = set()
        self.connections: list[dict[str, Any]] = []  # the last few, for a page that joins late

    def publish(self, kind: str, payload: Any) -> None:
        message = f"event: {kind}\ndata: {json.dumps(payload)}\n\n"
        for q in list(self.queues):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                self.queues.discard(q)  # a page that does not read loses its stream

    def set_graph(self, elements: list[dict[str, Any]]) -> None:
        if elements != self.elements:
            self.elements = elements
            self.index = model.address_index(elements)
            self.publish("graph", elements)

    def add_connection(self, conn: model.Connection) -> None:
        data = conn.as_dict(self.index)
        if data["serviceId"] is None:
            return  # a rewrite this picture does not draw (not to a Service's address)
        self.connections = [*self.connections[-19:], data]
        self.publish("connection", data)


class WebView:
    def __init__(self, cluster: Cluster, token: str | None) -> None:
        self.cluster = cluster
        self.token = token
        self.hub = Hub()
        self.tasks: list[asyncio.Task[Any]] = []
        self.trace_lock = asyncio.Lock()
        self._dirty = asyncio.Event()

    async def start(self) -> None:
        from kubesvc.client.informer import InformerFactory
        from kubesvc.client.rest import ApiClient

        self.api = ApiClient.from_kubeconfig(str(self.cluster.kubeconfig), user_agent="kubesvc-web")
        factory = InformerFactory(self.api, checked=True)
        self.informers = {k: factory.informer(k) for k in KINDS}
        for inf in self.informers.values():
            inf.add_handler(
                lambda _o: self._dirty.set(),
                lambda _o, _n: self._dirty.set(),
                lambda _o: self._dirty.set(),
            )
        factory.start()
        self.factory = factory
        self._dirty.set()
        self.tasks.append(asyncio.create_task(self._redraw()))
        for node in self.cluster.load()["nodes"]:
            self.tasks.append(asyncio.create_task(self._conntrack(node)))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.factory.stop()
        await self.api.close()

    async def _redraw(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # one redraw for a burst of changes
            self._dirty.clear()
            lists = {k: inf.list() for k, inf in self.informers.items()}
            try:
                elements = model.graph(
                    lists["Node"], lists["Pod"], lists["Service"], lists["EndpointSlice"]
                )
            except Exception:  # the picture must outlive any object
                log.exception("drawing the graph failed")
                continue
            self.hub.set_graph(elements)

    async def _conntrack(self, node: str) -> None:
        """New connections in one node's namespace, for as long as the view runs (the
        watcher is restarted when it ends, as when the node is stopped and started)."""
        ns = self.cluster.net().node_netns(node)
        while True:
            if not netns.exists(ns):
                await asyncio.sleep(2)
                continue
            proc = await asyncio.create_subprocess_exec(
                *netns.nsenter(ns), "conntrack", "-E", "-e", "NEW",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=spawn.die_with_parent(signal.SIGTERM),
            )  # fmt: skip
            try:
                assert proc.stdout is not None
                while line := await proc.stdout.readline():
                    conn = model.connection(node, line.decode(errors="replace")[:2048])
                    if conn is not None:
                        self.hub.add_connection(conn)
            except ValueError:  # a line over the reader's limit: start the watcher again
                log.warning("conntrack events unreadable", extra={"kv": {"node": node}})
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await asyncio.sleep(1)

    # -- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=MAX_TRACE_BODY)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/graph", self._graph)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/trace", self._trace)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token is None:
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return web.Response(status=401, text="kubesvc web: open the URL it printed\n")
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _graph(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"elements": self.hub.elements, "connections": self.hub.connections}
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        q: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.hub.queues.add(q)
        try:
            await resp.write(f"event: graph\ndata: {json.dumps(self.hub.elements)}\n\n".encode())
            while q in self.hub.queues:
                try:
                    message = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    message = ": keep-alive\n\n"
                await resp.write(message.encode())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.hub.queues.discard(q)
        return resp

    async def _trace(self, request: web.Request) -> web.Response:
        from kubesvc.trace import target as targets
        from kubesvc.trace.explain import explain
        from kubesvc.trace.run import TraceError, observe

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body is not JSON"}, status=400)
        source = body.get("from") if isinstance(body, dict) else None
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(source, str) or not isinstance(target, str):
            return web.json_response({"error": "from and target are strings"}, status=400)
        if self.trace_lock.locked():
            return web.json_response({"error": "a trace is running; try again"}, status=429)
        async with self.trace_lock:
            try:
                parsed = targets.parse(target)
                obs, objects = await asyncio.wait_for(observe(self.cluster, source, parsed), 30)
            except (targets.BadTarget, TraceError) as e:
                return web.json_response({"error": str(e)}, status=400)
            except TimeoutError:
                return web.json_response({"error": "the trace took over 30 s"}, status=504)
        report = explain(obs, objects)
        return web.json_response({**report.as_dict(), "text": report.text()}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    ipaddress.ip_address(host)  # ValueError for a name: bind to an address
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


async def serve(cluster: Cluster, listen: str) -> None:
    host, port = parse_listen(listen)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    view = WebView(cluster, token)
    await view.start()
    runner = web.AppRunner(view.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    print(f"kubesvc web: {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await view.stop()
