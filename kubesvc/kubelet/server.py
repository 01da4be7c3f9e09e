"""The kubelet API: the node agent's HTTPS server, its routes and authentication. What each
route does lives in its own module: logs, remotecommand (exec, attach), portforward."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kubesvc.kubelet.certs import self_signed
from kubesvc.kubelet.channels import (
    SPDY_REMOTECOMMAND_PROTOCOLS,
    Channels,
    SpdyChannels,
    WebSocketChannels,
    expected_streams,
    negotiate_version,
)
from kubesvc.kubelet.errors import NodeError, error_response
from kubesvc.kubelet.logs import parse_log_options, stream_log
from kubesvc.kubelet.portforward import (
    PORT_FORWARD_PROTOCOL,
    PORT_FORWARD_SPDY_VERSION,
    ChannelPortForwardSession,
    Dialer,
    PortForwardSession,
    WebSocketBytes,
    dial_pod,
    parse_ports,
)
from kubesvc.kubelet.remotecommand import (
    AttachSession,
    ExecOptions,
    ExecSession,
    exec_argv,
    parse_attach_options,
    parse_exec_options,
)
from kubesvc.kubelet.upgrade import (
    PROTOCOL_HEADER,
    SPDY_UPGRADE,
    UpgradedConnection,
    offered_versions,
    switch_protocols,
    wants_upgrade,
)
from kubesvc.kubelet.wschannel import (
    PORTFORWARD_PROTOCOLS,
    REMOTECOMMAND_PROTOCOLS,
    ChannelProtocol,
    negotiate,
    offered_protocols,
)
from kubesvc.node.view import PodRuntimeView, Sandbox

log = logging.getLogger("kubesvc.kubelet.server")
STOP_GRACE = 1.0  # seconds open streams get when the server stops

MAX_MESSAGE = 4 << 20  # bytes in one WebSocket message from a client


class KubeletServer:
    """The node agent's streaming server. Requests need the bearer `token` or, when
    `client_ca` is given, a client certificate signed by it; /healthz is open."""

    def __init__(
        self,
        view: PodRuntimeView,
        token: str,
        bind: str = "127.0.0.1",
        port: int = 10250,
        *,
        cert_dir: Path | None = None,
        client_ca: Path | None = None,
        dial: Dialer = dial_pod,
    ) -> None:
        self.view, self.token, self.bind, self.port = view, token, bind, port
        self.cert_dir, self.client_ca, self.dial = cert_dir, client_ca, dial
        self._runner: web.AppRunner | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # lifecycle
    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve on bind:port, or on `sock` (a listening socket made elsewhere, e.g. inside
        the node's network namespace)."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", self._exec)
        app.router.add_route("*", "/attach/{ns}/{pod}/{container}", self._attach)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self._port_forward)
        # a stop cuts open streams (logs -f, exec, attach, port-forward) after a second, as
        # a kubelet's restart does, instead of waiting aiohttp's minute for them to end
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE
        )
        await self._runner.setup()
        if sock is not None:
            await web.SockSite(self._runner, sock, ssl_context=self._ssl()).start()
            return
        site = web.TCPSite(
            self._runner, self.bind, self.port, ssl_context=self._ssl(), reuse_address=True
        )
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _ssl(self) -> ssl.SSLContext:
        directory = self.cert_dir
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kubelet-tls-")
            directory = Path(self._tmp.name)
        cert, key = self_signed(
            directory, self.bind if self.bind not in ("", "0.0.0.0") else "127.0.0.1"
        )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if self.client_ca is not None:
            ctx.load_verify_locations(self.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    # plumbing
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.path != "/healthz" and not self._authenticated(request):
                return web.Response(status=401, text="Unauthorized")
            return await handler(request)
        except NodeError as e:
            return error_response(e)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("request failed", extra={"kv": {"path": request.path}})
            return error_response(NodeError(500, str(e)))

    def _authenticated(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if (
            self.token
            and auth.startswith("Bearer ")
            and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode())
        ):
            return True
        if self.client_ca is None:
            return False
        transport = request.transport
        ssl_obj = transport.get_extra_info("ssl_object") if transport else None
        return bool(ssl_obj is not None and ssl_obj.getpeercert())

    def _pod(self, ns: str, pod: str) -> Sandbox:
        sandbox = self.view.sandbox(ns, pod)
        if sandbox is None:
            raise NodeError(404, "pod does not exist")
        return sandbox

    def _container(self, ns: str, pod: str, container: str) -> None:
        if container not in self.view.containers(ns, pod):
            raise NodeError(500, f'container not found ("{container}")')

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # logs
    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        try:
            opts = parse_log_options(request.query)
        except ValueError as e:
            raise NodeError(400, str(e)) from None
        names = self.view.containers(ns, pod)
        if not names and self.view.sandbox(ns, pod) is None:
            raise NodeError(404, f'pod "{pod}" does not exist\n')
        if container not in names:
            raise NodeError(404, f'container "{container}" not found in pod "{pod}"\n')
        path = self.view.log_path(ns, pod, container, opts.previous)
        if path is None or not path.exists():
            if opts.previous:
                msg = f'previous terminated container "{container}" in pod "{pod}" not found'
            else:
                msg = f'container "{container}" in pod "{pod}" is waiting to start - no logs yet'
            raise NodeError(400, msg)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        def still_current() -> bool:
            if opts.previous or self.view.sandbox(ns, pod) is None:
                return False
            return self.view.log_path(ns, pod, container, False) == path

        with contextlib.suppress(ConnectionResetError):
            await stream_log(path, opts, resp.write, still_current)
            await resp.write_eof()
        return resp

    # exec
    async def _exec(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        opts = parse_exec_options(request.query)
        sandbox = self._pod(ns, pod)
        self._container(ns, pod, container)
        argv = exec_argv(
            sandbox,
            self.view.container_env(ns, pod, container),
            self.view.working_dir(ns, pod, container),
            opts,
            self.view.privileges(ns, pod, container),
        )
        if wants_upgrade(request.headers):
            return await self._over_spdy(
                request, opts, lambda channels: ExecSession(channels, argv, opts).run()
            )
        protocol = self._channel_protocol(request, REMOTECOMMAND_PROTOCOLS)
        ws = _websocket(protocol.name)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await ExecSession(WebSocketChannels(ws, protocol), argv, opts).run()
            await ws.close()
        return ws

    # attach
    async def _attach(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        opts = parse_attach_options(request.query)
        self._pod(ns, pod)
        self._container(ns, pod, container)
        path = self.view.log_path(ns, pod, container, False)
        if path is None or not path.exists():
            # as containerd answers for a container that is not running
            raise NodeError(500, f'container "{container}" is not running')

        def still_current() -> bool:
            return (
                self.view.sandbox(ns, pod) is not None
                and self.view.log_path(ns, pod, container, False) == path
                and self.view.running(ns, pod, container)
            )

        stdin = self.view.stdin(ns, pod, container)
        if wants_upgrade(request.headers):
            return await self._over_spdy(
                request,
                opts,
                lambda channels: AttachSession(channels, path, opts, still_current, stdin).run(),
            )
        protocol = self._channel_protocol(request, REMOTECOMMAND_PROTOCOLS)
        ws = _websocket(protocol.name)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            channels = WebSocketChannels(ws, protocol)
            await AttachSession(channels, path, opts, still_current, stdin).run()
            await ws.close()
        return ws

    async def _over_spdy(
        self,
        request: web.Request,
        opts: ExecOptions,
        session: Callable[[Channels], Awaitable[None]],
    ) -> web.StreamResponse:
        """An exec or attach on an upgraded SPDY/3.1 connection."""
        version = _spdy_handshake(request, SPDY_REMOTECOMMAND_PROTOCOLS)
        conn = await _switch_to_spdy(request, version)
        expected = expected_streams(version, opts.stdin, opts.stdout, opts.stderr, opts.tty)
        channels = SpdyChannels(conn, version, expected)
        try:
            if await channels.accept():
                with contextlib.suppress(ConnectionResetError):
                    await session(channels)
        finally:
            await channels.close()
            conn.close()
        return conn.response

    # port-forward
    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        sandbox = self._pod(request.match_info["ns"], request.match_info["pod"])
        if wants_upgrade(request.headers):
            version = _spdy_handshake(request, (PORT_FORWARD_SPDY_VERSION,))
            conn = await _switch_to_spdy(request, version)
            try:
                with contextlib.suppress(ConnectionResetError):
                    await PortForwardSession(conn, sandbox, self.dial).run()
            finally:
                conn.close()
            return conn.response
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if PORT_FORWARD_PROTOCOL in offered_protocols(offered):
            # kubectl: SPDY tunnelled in the WebSocket
            ws = _websocket(self._websocket_protocol(request, (PORT_FORWARD_PROTOCOL,)))
            await ws.prepare(request)
            with contextlib.suppress(ConnectionResetError):
                await PortForwardSession(WebSocketBytes(ws), sandbox, self.dial).run()
                await ws.close()
            return ws
        protocol = self._channel_protocol(
            request, PORTFORWARD_PROTOCOLS, also=(PORT_FORWARD_PROTOCOL,)
        )
        try:
            ports = parse_ports(request.query.getall("port", []))
        except ValueError as e:
            raise NodeError(400, str(e)) from None
        ws = _websocket(protocol.name)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await ChannelPortForwardSession(ws, protocol, sandbox, ports, self.dial).run()
            await ws.close()
        return ws

    @staticmethod
    def _websocket_protocol(request: web.Request, supported: tuple[str, ...]) -> str:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise NodeError(400, "Upgrade request required")
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if not any(p in supported for p in offered_protocols(offered)):
            raise _unsupported(offered, supported)
        return next(p for p in offered_protocols(offered) if p in supported)

    @staticmethod
    def _channel_protocol(
        request: web.Request, supported: tuple[ChannelProtocol, ...], also: tuple[str, ...] = ()
    ) -> ChannelProtocol:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise NodeError(400, "Upgrade request required")
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocol = negotiate(offered, supported)
        if protocol is None:
            raise _unsupported(offered, (*also, *(p.name for p in supported)))
        return protocol


def _spdy_handshake(request: web.Request, supported: tuple[str, ...]) -> str:
    """The X-Stream-Protocol-Version both sides speak (httpstream.Handshake); the refusal
    lists what the node accepts, as upstream's does."""
    offered = offered_versions(request.headers)
    if not offered:
        raise NodeError(400, f"unable to upgrade: {PROTOCOL_HEADER} is required")
    version = negotiate_version(offered, supported)
    if version is None:
        raise NodeError(
            403,
            "unable to upgrade: unable to negotiate protocol: client supports "
            f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]",
        )
    return version


async def _switch_to_spdy(request: web.Request, version: str) -> UpgradedConnection:
    return await switch_protocols(
        request,
        {"Connection": "Upgrade", "Upgrade": SPDY_UPGRADE, PROTOCOL_HEADER: version},
    )


def _unsupported(offered: str, supported: tuple[str, ...]) -> NodeError:
    return NodeError(
        400,
        "unable to upgrade: unable to negotiate protocol: client supports "
        f"[{offered}], server supports [{' '.join(supported)}]",
    )


def _websocket(protocol: str) -> web.WebSocketResponse:
    """A server WebSocket whose client messages are bounded (a client sends its data in
    pieces of 32 KiB or so; one message must not make the node buffer without limit)."""
    return web.WebSocketResponse(
        protocols=(protocol,) if protocol else (),
        max_msg_size=MAX_MESSAGE,
        compress=False,
    )


__all__ = ["KubeletServer"]
