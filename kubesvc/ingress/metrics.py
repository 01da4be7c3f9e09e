"""HAProxy's own Prometheus metrics (its built-in exporter, on a private unix socket), read
for the controller's /metrics: `response_body` (pure: an HTTP/1.1 response to its body) and
`haproxy_exposition` (the request). What HAProxy answers is checked like any other input:
a response that is not a 200 with a well-formed body, or is too large or too slow, gives
nothing, and the controller's own counters are served alone."""

from __future__ import annotations

import asyncio

MAX_RESPONSE = 32 * 1024 * 1024  # the exporter's text for a few thousand servers fits
TIMEOUT = 5.0
MAX_CHUNK_LINE = 1024
HEX = b"0123456789abcdefABCDEF"


def dechunk(data: bytes) -> bytes | None:
    """A chunked body (RFC 9112 7.1) to its bytes; None unless well-formed and complete
    (chunk extensions and trailers are allowed and dropped)."""
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
        if end < 0:
            return None
        size_text = data[pos:end].split(b";", 1)[0].strip(b" \t")
        if not size_text or len(size_text) > 16 or size_text.strip(HEX):
            return None
        size = int(size_text, 16)
        pos = end + 2
        if size == 0:
            # trailers, each ending in CRLF, then an empty line
            while True:
                end = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
                if end < 0:
                    return None
                if end == pos:
                    return bytes(out)
                pos = end + 2
        if pos + size + 2 > len(data) or data[pos + size : pos + size + 2] != b"\r\n":
            return None
        out += data[pos : pos + size]
        pos += size + 2


def response_body(raw: bytes) -> bytes | None:
    """The body of a complete HTTP/1.x 200 response read to EOF (chunked, with a
    Content-Length, or delimited by the close); None for anything else."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return dechunk(body)
    if b"content-length" in headers:
        length = headers[b"content-length"]
        if not length.isdigit() or int(length) != len(body):
            return None
    return body


async def haproxy_exposition(socket_path: str) -> str:
    """What HAProxy's exporter serves on `socket_path`; "" when it cannot be had."""
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: haproxy\r\nConnection: close\r\n\r\n")
                await writer.drain()
                raw = bytearray()
                while len(raw) <= MAX_RESPONSE and (more := await reader.read(1 << 16)):
                    raw += more
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return ""
    if len(raw) > MAX_RESPONSE:
        return ""
    body = response_body(bytes(raw))
    return body.decode("utf-8", errors="replace") if body is not None else ""
