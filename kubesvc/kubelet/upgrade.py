"""HTTP/1.1 protocol switches on an aiohttp server (`Connection: Upgrade`, `Upgrade:
SPDY/3.1`): answer 101 Switching Protocols and carry raw bytes both ways afterwards.

aiohttp switches protocols for WebSocket only. For any other protocol the request is an
ordinary GET with no body, so once the 101 is sent the connection's further bytes are
routed to a payload parser of ours (the hook aiohttp's WebSocket uses), with flow control:
a reader that falls behind pauses the transport instead of buffering for the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Protocol

from aiohttp import streams, web
from multidict import CIMultiDict, CIMultiDictProxy

SPDY_UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
READ_CHUNK = 64 * 1024
READ_BUFFER = 256 * 1024  # bytes read from a client ahead of the reader, then it waits
MAX_HEAD = 64 * 1024  # bytes of a response's status line and headers
MAX_REFUSAL = 50_000  # bytes of a refused upgrade's body that are kept


class Duplex(Protocol):
    """A byte stream both ways: what SPDY sessions run on."""

    async def read(self) -> bytes:
        """The next bytes from the peer; b'' once it is gone."""
        ...

    async def write(self, data: bytes) -> None:
        """Raises ConnectionResetError once the peer is gone."""
        ...


def wants_upgrade(headers: CIMultiDictProxy[str], protocol: str = SPDY_UPGRADE) -> bool:
    """Whether the request asks to switch to `protocol` (case-insensitive, as Go's
    httpstream.IsUpgradeRequest and the SPDY round tripper read these headers)."""
    connection = ",".join(headers.getall("Connection", []))
    upgrade = headers.get("Upgrade", "")
    return "upgrade" in connection.lower() and upgrade.strip().lower() == protocol.lower()


def offered_versions(headers: CIMultiDictProxy[str]) -> list[str]:
    """Every X-Stream-Protocol-Version the client offers, in its order (repeated headers
    and comma-separated values, as httpstream.Handshake reads them)."""
    values = headers.getall(PROTOCOL_HEADER, [])
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


class _Feed:
    """aiohttp's payload parser interface, feeding what the client sends after the 101."""

    def __init__(self, reader: streams.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class UpgradedConnection:
    """The raw connection of a request that was answered with 101. `response` is what the
    handler returns once it is done with the connection (aiohttp then closes it)."""

    def __init__(
        self,
        response: web.StreamResponse,
        reader: streams.StreamReader,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        self.response = response
        self._reader = reader
        self._transport = transport

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_CHUNK)
        except (ConnectionError, streams.EofStream):
            return b""

    async def write(self, data: bytes) -> None:
        try:
            await self.response.write(data)
        except RuntimeError:
            raise ConnectionResetError("the connection is closed") from None

    def close(self) -> None:
        """Close the connection once what was written is sent."""
        if self._transport is not None:
            self._transport.close()


async def switch_protocols(request: web.Request, headers: dict[str, str]) -> UpgradedConnection:
    """Answer 101 with `headers` and take the connection over."""
    response = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
    response.force_close()  # nothing after this connection's protocol is HTTP any more
    await response.prepare(request)
    reader = streams.StreamReader(request.protocol, READ_BUFFER, loop=asyncio.get_running_loop())
    request.protocol.set_parser(_Feed(reader))  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    return UpgradedConnection(response, reader, request.transport)


# -- the client side: asking a server to switch protocols -----------------------------------


class UpgradeError(Exception):
    """The server's answer was not HTTP."""


@dataclass
class UpgradeReply:
    """A server's answer to an upgrade request, and the connection it came on."""

    status: int
    headers: CIMultiDict[str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def body(self, timeout: float) -> bytes:
        """A refusal's body (at most MAX_REFUSAL bytes), by Content-Length or to the end."""
        length = self.headers.get("Content-Length", "")
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, OSError):
            async with asyncio.timeout(timeout):
                if length.isdigit():
                    return await self.reader.readexactly(min(int(length), MAX_REFUSAL))
                return await self.reader.read(MAX_REFUSAL)
        return b""

    def close(self) -> None:
        self.writer.close()


def parse_head(head: bytes) -> tuple[int, CIMultiDict[str]]:
    """The status code and headers of an HTTP/1.x response head; UpgradeError if it is
    not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpgradeError(f"malformed HTTP response {lines[0][:100]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise UpgradeError(f"malformed header line {line[:100]!r}")
        headers.add(name.strip(), value.strip())
    return int(parts[1]), headers


async def request_upgrade(
    host: str,
    port: int,
    target: str,
    headers: list[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
    timeout: float,
) -> UpgradeReply:
    """Send `GET target` with `headers` (the Upgrade and Connection headers among them) and
    read the answer's head. Raises OSError, TimeoutError or UpgradeError."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context, limit=MAX_HEAD)
        try:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            lines = [f"GET {target} HTTP/1.1", f"Host: {authority}"]
            lines += [f"{name}: {value}" for name, value in headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise UpgradeError(f"response head over {MAX_HEAD} bytes") from None
            except asyncio.IncompleteReadError:
                raise UpgradeError("connection closed before a response") from None
            status, reply_headers = parse_head(head[:-4])
        except BaseException:
            writer.close()
            raise
    return UpgradeReply(status, reply_headers, reader, writer)


async def relay(client: UpgradedConnection, reply: UpgradeReply) -> None:
    """Copy bytes both ways between an upgraded client connection and the server's, until
    either side ends; then both are closed."""

    async def to_server() -> None:
        while data := await client.read():
            reply.writer.write(data)
            await reply.writer.drain()

    async def to_client() -> None:
        while data := await reply.reader.read(READ_CHUNK):
            await client.write(data)

    tasks = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reply.close()
        client.close()


__all__ = [
    "PROTOCOL_HEADER",
    "SPDY_UPGRADE",
    "Duplex",
    "UpgradeError",
    "UpgradeReply",
    "UpgradedConnection",
    "offered_versions",
    "parse_head",
    "relay",
    "request_upgrade",
    "switch_protocols",
    "wants_upgrade",
]
