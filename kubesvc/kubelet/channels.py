"""What carries an exec's or an attach's streams: WebSocket channels (`wschannel.py`
messages) or SPDY streams on an upgraded connection (upstream's createHTTPStreamStreams).
Both look alike to a session: numbered channels (0 stdin, 1 stdout, 2 stderr, 3 error,
4 resize) to send on, and what the client sends, as (channel, payload) with a payload of
None when the client closes a channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from kubesvc.kubelet.spdy import (
    GOAWAY,
    PING,
    RST_PROTOCOL_ERROR,
    RST_REFUSED,
    RST_STREAM,
    SYN_STREAM,
    Frame,
    SpdyCodec,
    SpdyError,
)
from kubesvc.kubelet.upgrade import Duplex
from kubesvc.kubelet.wschannel import ChannelError, ChannelProtocol

log = logging.getLogger("kubesvc.kubelet.channels")

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4

# remote command protocols over SPDY, in the kubelet's order (v5 is WebSocket only)
SPDY_V4, SPDY_V3, SPDY_V2, SPDY_V1 = (
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
SPDY_REMOTECOMMAND_PROTOCOLS = (SPDY_V4, SPDY_V3, SPDY_V2, SPDY_V1)
STREAM_TYPES = {
    "error": ERROR,
    "stdin": STDIN,
    "stdout": STDOUT,
    "stderr": STDERR,
    "resize": RESIZE,
}
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's streamCreationTimeout
MAX_STREAMS = 8  # streams one exec or attach connection may open (it needs at most 5)
MAX_RESIZE_MESSAGE = 4096  # bytes of one resize message (a JSON object and a newline)
INBOUND_DEPTH = 16  # client messages queued for the session, then the reader waits
DATA_CHUNK = 32 * 1024  # bytes in one data frame the node sends


class Channels(Protocol):
    async def ready(self, channel: int) -> None:
        """Tell the client the streams are up (WebSocket: an empty message on `channel`)."""
        ...

    async def send(self, channel: int, data: bytes) -> None:
        """Raises ConnectionResetError once the client is gone."""
        ...

    async def send_status(self, status: dict[str, Any]) -> None:
        """The error channel's report of how the command ended."""
        ...

    def receive(self) -> AsyncIterator[tuple[int, bytes | None]]:
        """What the client sends, until it leaves."""
        ...


def status_message(json_status: bool, status: dict[str, Any]) -> bytes | None:
    """What the error channel carries for a finished command: the Status from v4 on; before
    that a failure's message alone, and nothing for success."""
    if json_status:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


# -- WebSocket channels ---------------------------------------------------------------------


class WebSocketChannels:
    def __init__(self, ws: web.WebSocketResponse, protocol: ChannelProtocol) -> None:
        self.ws, self.protocol = ws, protocol
        self._lock = asyncio.Lock()

    async def ready(self, channel: int) -> None:
        await self.send(channel, b"")

    async def send(self, channel: int, data: bytes) -> None:
        message = self.protocol.encode(channel, data)
        async with self._lock:
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)

    async def send_status(self, status: dict[str, Any]) -> None:
        message = status_message(self.protocol.status, status)
        if message is not None:
            await self.send(ERROR, message)

    async def receive(self) -> AsyncIterator[tuple[int, bytes | None]]:
        async for msg in self.ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            try:
                channel, payload = self.protocol.decode(msg.data)
            except ChannelError:
                continue  # as upstream: a message it cannot place is dropped
            closed = None
            if self.protocol.closes:
                closed = self.protocol.closed_channel(channel, payload)
            if closed is not None:
                yield closed, None
            else:
                yield channel, payload


# -- SPDY streams ---------------------------------------------------------------------------


def negotiate_version(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The client's first offered protocol that the server supports (httpstream.Handshake)."""
    return next((p for p in offered if p in supported), None)


def expected_streams(protocol: str, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> int:
    """How many streams the client opens (upstream's waitForStreams): the error stream, one
    per standard stream asked for, and resize with a terminal from v3 on."""
    resize = tty and protocol in (SPDY_V4, SPDY_V3)
    return 1 + sum((stdin, stdout, stderr, resize))


class SpdyChannels:
    """The streams of one exec or attach on an upgraded SPDY/3.1 connection. The client opens
    a stream per channel, typed by its `streamType` header; the node answers each with a
    SYN_REPLY and writes output as data frames on the client's stdout, stderr and error
    streams. A stdin stream's FIN (or reset) closes stdin; the resize stream carries JSON
    objects one per line."""

    def __init__(self, conn: Duplex, protocol: str, expected: int) -> None:
        self.conn, self.protocol, self.expected = conn, protocol, expected
        self.codec = SpdyCodec()
        self.streams: dict[int, int] = {}  # stream id -> channel (-1: a type not used here)
        self.ids: dict[int, int] = {}  # channel -> stream id
        self.inbound: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue(INBOUND_DEPTH)
        self._all_open = asyncio.Event()
        self._lock = asyncio.Lock()
        self._resize = b""
        self._reader: asyncio.Task[None] | None = None

    async def accept(self, timeout: float = STREAM_CREATION_TIMEOUT) -> bool:
        """Read frames until the client has opened every stream; False if it leaves, breaks
        the protocol or takes longer than `timeout`."""
        self._reader = asyncio.create_task(self._read())
        opened = asyncio.create_task(self._all_open.wait())
        try:
            await asyncio.wait(
                {self._reader, opened}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
        if not self._all_open.is_set():
            log.info("exec streams not created", extra={"kv": {"streams": len(self.ids)}})
        return self._all_open.is_set()

    async def _write(self, encode: Any) -> None:
        """Encode and send under one lock: header compression state follows send order."""
        async with self._lock:
            await self.conn.write(encode())

    async def ready(self, channel: int) -> None:
        return None  # the SYN_REPLYs said so already

    async def send(self, channel: int, data: bytes) -> None:
        sid = self.ids.get(channel)
        if sid is None:
            return
        for at in range(0, max(len(data), 1), DATA_CHUNK):
            chunk = data[at : at + DATA_CHUNK]
            await self._write(lambda c=chunk: self.codec.data(sid, c))  # type: ignore[misc]

    async def send_status(self, status: dict[str, Any]) -> None:
        message = status_message(self.protocol == SPDY_V4, status)
        if message is not None:
            await self.send(ERROR, message)

    async def receive(self) -> AsyncIterator[tuple[int, bytes | None]]:
        reader = self._reader
        if reader is None:
            return
        while True:
            get = asyncio.ensure_future(self.inbound.get())
            try:
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not get.done():
                    get.cancel()
            if get in done:
                yield get.result()
                continue
            while not self.inbound.empty():
                yield self.inbound.get_nowait()
            return

    async def close(self) -> None:
        """End every stream the node writes to, say GOAWAY and close the connection."""
        with contextlib.suppress(ConnectionResetError):
            for channel in (STDOUT, STDERR, ERROR):
                sid = self.ids.get(channel)
                if sid is not None:
                    await self._write(lambda s=sid: self.codec.data(s, b"", fin=True))  # type: ignore[misc]
            last = max(self.streams, default=0)
            await self._write(lambda: self.codec.goaway(last))
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            while data := await self.conn.read():
                for frame in self.codec.feed(data):
                    if not await self._on_frame(frame):
                        return
        except SpdyError as e:
            log.info("exec protocol error", extra={"kv": {"error": str(e)}})
        except ConnectionResetError:
            pass

    async def _on_frame(self, frame: Frame) -> bool:
        sid = frame.stream_id
        if frame.type == 0:
            channel = self.streams.get(sid)
            if channel == STDIN:
                if frame.data:
                    await self.inbound.put((STDIN, frame.data))  # a full queue holds it back
                if frame.fin:
                    await self.inbound.put((STDIN, None))
            elif channel == RESIZE:
                await self._on_resize(frame.data)
        elif frame.type == SYN_STREAM:
            await self._on_stream(frame)
        elif frame.type == RST_STREAM:
            if self.streams.get(sid) == STDIN:
                await self.inbound.put((STDIN, None))
        elif frame.type == PING and frame.value % 2 == 1:  # the client's pings are odd
            await self._write(lambda: self.codec.ping(frame.value))
        elif frame.type == GOAWAY:
            return False
        return True

    async def _on_stream(self, frame: Frame) -> None:
        sid = frame.stream_id
        if sid == 0 or sid in self.streams:
            await self._write(lambda: self.codec.rst_stream(sid, RST_PROTOCOL_ERROR))
            return
        if len(self.streams) >= MAX_STREAMS:
            await self._write(lambda: self.codec.rst_stream(sid, RST_REFUSED))
            return
        channel = STREAM_TYPES.get(frame.headers.get("streamtype", ""), -1)
        self.streams[sid] = channel
        await self._write(lambda: self.codec.syn_reply(sid))
        if channel < 0:
            kind = frame.headers.get("streamtype", "")
            log.info("unexpected stream type", extra={"kv": {"type": kind}})
            return
        self.ids.setdefault(channel, sid)
        if len(self.ids) >= self.expected:
            self._all_open.set()

    async def _on_resize(self, data: bytes) -> None:
        self._resize += data
        *messages, self._resize = self._resize.split(b"\n")
        if len(self._resize) > MAX_RESIZE_MESSAGE:
            self._resize = b""  # not a terminal size: dropped, as a decoder error would be
        for message in messages:
            if message.strip():
                await self.inbound.put((RESIZE, message))


__all__ = [
    "SPDY_REMOTECOMMAND_PROTOCOLS",
    "Channels",
    "SpdyChannels",
    "WebSocketChannels",
    "expected_streams",
    "negotiate_version",
    "status_message",
]
