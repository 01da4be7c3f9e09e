"""Port-forward (`/portForward`): connections to a pod's ports, as in
pkg/kubelet/cri/streaming/portforward, in two wire forms:
- SPDY: each connection is a pair of SPDY streams (error, data) with the same `requestID`;
  kubectl tunnels that SPDY inside a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`),
  or speaks it on the connection itself after an upgrade (`Upgrade: SPDY/3.1`,
  `X-Stream-Protocol-Version: portforward.k8s.io`);
- WebSocket channels (`v4.channel.k8s.io`, its base64 variant, or no subprotocol), as the
  official Python and JavaScript clients speak: the ports come from the `port` query
  parameter and each gets a data and an error channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

from kubesvc import netns as nsutil
from kubesvc.kubelet.spdy import (
    GOAWAY,
    PING,
    RST_CANCEL,
    RST_REFUSED,
    RST_STREAM,
    SYN_STREAM,
    Frame,
    SpdyCodec,
    SpdyError,
)
from kubesvc.kubelet.upgrade import Duplex
from kubesvc.kubelet.wschannel import ChannelError, ChannelProtocol
from kubesvc.node.view import Sandbox

log = logging.getLogger("kubesvc.kubelet.portforward")

PORT_FORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # WebSocket subprotocol
PORT_FORWARD_SPDY_VERSION = "portforward.k8s.io"  # X-Stream-Protocol-Version of an upgrade
STREAM_CHUNK = 32 * 1024
PAIR_TIMEOUT = 30.0  # as the kubelet's streamCreationTimeout
MAX_PAIRS = 128  # connections under way in one SPDY session
INBOUND_DEPTH = 16  # client data frames or messages queued for one connection


def _same_netns(netns: Path) -> bool:
    try:
        a, b = os.stat(netns), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _connect_local(port: int, timeout: float) -> socket.socket:
    """localhost:port, IPv4 first then IPv6, as containerd's port forwarder dials."""
    errors = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            text = e.strerror or str(e)
            errors.append(text[:1].lower() + text[1:])  # as Go words errno texts
    raise OSError(f"IPv4: connect: {errors[0]} IPv6: connect: {errors[1]}")


def connect_in_netns(netns: Path, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to localhost:port inside the network namespace `netns`. The socket
    is created by a short-lived thread that enters the namespace (setns affects only the
    calling thread), so no other thread of the agent changes namespace."""
    if _same_netns(netns):
        return _connect_local(port, timeout)
    return nsutil.call_in_netns(netns, lambda: _connect_local(port, timeout))


Dialer = Callable[[Sandbox, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def dial_pod(
    sandbox: Sandbox, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        sock = await asyncio.to_thread(connect_in_netns, sandbox.netns, port)
    except OSError as e:
        raise OSError(
            f'failed to connect to localhost:{port} inside namespace "{sandbox.netns}", {e}'
        ) from None
    return await asyncio.open_connection(sock=sock)


@dataclass
class _Pair:
    request_id: str
    port: int
    error_id: int = 0
    data_id: int = 0
    inbound: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOUND_DEPTH)
    )
    task: asyncio.Task[None] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.error_id and self.data_id)


def stream_request(headers: dict[str, str], stream_id: int) -> tuple[str, str, int]:
    """(stream type, request id, port) of a port-forward stream; ValueError if invalid.
    Without a requestID header, pair by stream id as the kubelet does for old clients."""
    port_text = headers.get("port", "")
    if not port_text:
        raise ValueError('"port" header is required')
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"unable to parse {port_text!r} as a port") from None
    if not 0 < port < 65536:
        raise ValueError(f'port "{port_text}" must be > 0')
    kind = headers.get("streamtype", "")
    if kind not in ("error", "data"):
        raise ValueError(f'invalid stream type "{kind}"' if kind else '"streamType" is required')
    request_id = headers.get("requestid") or str(stream_id if kind == "error" else stream_id - 2)
    return kind, request_id, port


class WebSocketBytes:
    """The bytes of a WebSocket's binary messages, as a Duplex (SPDY tunnelled in it)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                return bytes(msg.data)
        return b""

    async def write(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("the WebSocket is closed")
        await self.ws.send_bytes(data)


class PortForwardSession:
    """Serves the port-forward protocol over SPDY, on an upgraded connection or carried in
    WebSocket binary messages."""

    def __init__(self, conn: Duplex, sandbox: Sandbox, dial: Dialer = dial_pod) -> None:
        self.conn, self.sandbox, self.dial = conn, sandbox, dial
        self.codec = SpdyCodec()
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def send(self, encode: Callable[[], bytes]) -> None:
        """Encode and send under one lock: header compression state follows send order."""
        async with self._lock:
            with contextlib.suppress(ConnectionResetError):  # the client is gone
                await self.conn.write(encode())

    async def run(self) -> None:
        try:
            while data := await self.conn.read():
                for frame in self.codec.feed(data):
                    if not await self._on_frame(frame):
                        return
        except SpdyError as e:
            log.info("port-forward protocol error", extra={"kv": {"error": str(e)}})
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _on_frame(self, frame: Frame) -> bool:
        if frame.type == 0:
            pair = self.by_stream.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                if frame.data:
                    await pair.inbound.put(frame.data)  # a full queue holds the client back
                if frame.fin:
                    await pair.inbound.put(None)
        elif frame.type == SYN_STREAM:
            await self._on_stream(frame)
        elif frame.type == RST_STREAM:
            pair = self.by_stream.get(frame.stream_id)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif frame.type == PING and frame.value % 2 == 1:  # the client's pings are odd
            await self.send(lambda: self.codec.ping(frame.value))
        elif frame.type == GOAWAY:
            return False
        return True

    async def _on_stream(self, frame: Frame) -> None:
        sid = frame.stream_id
        try:
            kind, request_id, port = stream_request(frame.headers, sid)
        except ValueError as e:
            log.info("port-forward stream rejected", extra={"kv": {"error": str(e)}})
            await self.send(lambda: self.codec.rst_stream(sid, RST_CANCEL))
            return
        await self.send(lambda: self.codec.syn_reply(sid))
        pair = self.pairs.get(request_id)
        if pair is None and len(self.pairs) >= MAX_PAIRS:
            log.info("port-forward stream rejected", extra={"kv": {"error": "too many streams"}})
            await self.send(lambda: self.codec.rst_stream(sid, RST_REFUSED))
            return
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id, port)
            self._spawn(self._expire(pair))
        if kind == "error":
            if pair.error_id:
                return await self._fail(pair, "error stream already assigned")
            pair.error_id = sid
        else:
            if pair.data_id:
                return await self._fail(pair, "data stream already assigned")
            pair.data_id = sid
        self.by_stream[sid] = pair
        if pair.complete:
            pair.task = self._spawn(self._forward(pair))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _fail(self, pair: _Pair, message: str) -> None:
        msg = f"error processing stream for request {pair.request_id}: {message}"
        if pair.error_id:
            await self.send(lambda: self.codec.data(pair.error_id, msg.encode()))

    async def _expire(self, pair: _Pair) -> None:
        await asyncio.sleep(PAIR_TIMEOUT)
        if not pair.complete:
            if pair.error_id:
                msg = f"(conn=ws, request={pair.request_id}) timed out waiting for streams"
                await self.send(lambda: self.codec.data(pair.error_id, msg.encode(), fin=True))
            self._forget(pair)

    def _forget(self, pair: _Pair) -> None:
        self.pairs.pop(pair.request_id, None)
        self.by_stream.pop(pair.error_id, None)
        self.by_stream.pop(pair.data_id, None)
        while not pair.inbound.empty():  # a reader waiting on a full queue moves on
            pair.inbound.get_nowait()

    async def _forward(self, pair: _Pair) -> None:
        try:
            error = await self._copy(pair)
            if error:
                message = (
                    f"error forwarding port {pair.port} to pod {self.sandbox.uid}, uid : {error}"
                )
                await self.send(lambda: self.codec.data(pair.error_id, message.encode()))
            await self.send(lambda: self.codec.data(pair.data_id, b"", fin=True))
            await self.send(lambda: self.codec.data(pair.error_id, b"", fin=True))
        except (ConnectionResetError, RuntimeError):
            pass  # the WebSocket went away
        finally:
            self._forget(pair)

    async def _copy(self, pair: _Pair) -> str:
        """Copy both ways until the pod side ends; returns an error text or ''."""
        try:
            reader, writer = await self.dial(self.sandbox, pair.port)
        except OSError as e:
            return str(e)

        async def upstream() -> None:
            while (chunk := await pair.inbound.get()) is not None:
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        up = asyncio.create_task(upstream())
        try:
            while chunk := await reader.read(STREAM_CHUNK):
                await self.send(lambda c=chunk: self.codec.data(pair.data_id, c))  # type: ignore[misc]
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(asyncio.shield(up), 1.0)
        except OSError as e:
            return str(e)
        finally:
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return ""


# -- over WebSocket channels (v4.channel.k8s.io, v4.base64.channel.k8s.io, none) ------------

MAX_PORTS = 32  # ports in one WebSocket session (each one is a connection the node dials)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_uint16(text: str) -> int:
    """strconv.ParseUint(text, 10, 16), with Go's error text."""
    if not text or not text.isascii() or not text.isdigit():
        raise ValueError(f"strconv.ParseUint: parsing {_go_quote(text)}: invalid syntax")
    digits = text.lstrip("0") or "0"
    if len(digits) > 5 or int(digits) > 0xFFFF:
        raise ValueError(f"strconv.ParseUint: parsing {_go_quote(text)}: value out of range")
    return int(text)


def parse_ports(values: list[str]) -> list[int]:
    """The ports of a WebSocket port-forward: every `port` query value, comma-separated
    (upstream's NewV4Options); ValueError with upstream's text."""
    if not values:
        raise ValueError('query parameter "port" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for part in value.split(","):
            try:
                port = parse_uint16(part)
            except ValueError as e:
                raise ValueError(f"unable to parse {_go_quote(value)} as a port: {e}") from None
            if port < 1:
                raise ValueError(f"port {_go_quote(value)} must be > 0")
            ports.append(port)
            if len(ports) > MAX_PORTS:
                raise ValueError(f"too many ports: at most {MAX_PORTS} in one session")
    return ports


@dataclass
class _Channel:
    port: int
    inbound: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOUND_DEPTH)
    )
    done: bool = False


class ChannelPortForwardSession:
    """Upstream's WebSocket port-forward (portforward/websocket.go): for the i-th port,
    channel 2i carries the connection's data and 2i+1 its error; the first message on each
    is the port as two little-endian bytes. Every port is dialed when the session opens;
    the session ends when every port's connection has ended, or when the client leaves."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        protocol: ChannelProtocol,
        sandbox: Sandbox,
        ports: list[int],
        dial: Dialer = dial_pod,
    ) -> None:
        self.ws, self.protocol, self.sandbox, self.dial = ws, protocol, sandbox, dial
        self.channels = [_Channel(port) for port in ports]
        self._lock = asyncio.Lock()

    async def send(self, channel: int, payload: bytes) -> None:
        message = self.protocol.encode(channel, payload)
        async with self._lock:
            if self.ws.closed:
                raise ConnectionResetError("the client is gone")
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)

    async def run(self) -> None:
        for i, ch in enumerate(self.channels):
            prefix = ch.port.to_bytes(2, "little")
            await self.send(2 * i, prefix)
            await self.send(2 * i + 1, prefix)
        reader = asyncio.create_task(self._read_client())
        forwards = [asyncio.create_task(self._forward(i, ch)) for i, ch in enumerate(self.channels)]
        everything = asyncio.gather(*forwards)
        try:
            await asyncio.wait({reader, everything}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, everything, *forwards):
                task.cancel()
            await asyncio.gather(reader, everything, *forwards, return_exceptions=True)

    async def _read_client(self) -> None:
        async for msg in self.ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            try:
                channel, payload = self.protocol.decode(msg.data)
            except ChannelError:
                continue
            index, kind = divmod(channel, 2)
            if kind != 0 or index >= len(self.channels) or not payload:
                continue  # error channels are the node's to write; unknown ones dropped
            ch = self.channels[index]
            if not ch.done:
                await ch.inbound.put(payload)

    async def _forward(self, index: int, ch: _Channel) -> None:
        try:
            error = await self._copy(index, ch)
            if error:
                pod = self.sandbox.uid
                message = f"error forwarding port {ch.port} to pod {pod}, uid : {error}"
                await self.send(2 * index + 1, message.encode())
        except (ConnectionResetError, RuntimeError):
            pass  # the WebSocket went away
        finally:
            ch.done = True
            while not ch.inbound.empty():  # a reader waiting on a full queue moves on
                ch.inbound.get_nowait()

    async def _copy(self, index: int, ch: _Channel) -> str:
        """Copy both ways until the pod side ends; returns an error text or ''."""
        try:
            reader, writer = await self.dial(self.sandbox, ch.port)
        except OSError as e:
            return str(e)

        async def upstream() -> None:
            while True:
                writer.write(await ch.inbound.get())
                await writer.drain()

        up = asyncio.create_task(upstream())
        try:
            while chunk := await reader.read(STREAM_CHUNK):
                await self.send(2 * index, chunk)
        except OSError as e:
            return str(e)
        finally:
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return ""
