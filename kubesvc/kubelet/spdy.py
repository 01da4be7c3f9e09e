"""SPDY/3.1 framing, sans I/O: what kubectl's port-forward speaks inside its WebSocket
(and what SPDY clients speak on a raw upgraded connection)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

# The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed
# header names and values, then common value fragments.
_DICT_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)
SPDY_DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _DICT_WORDS) + (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504"
    b"505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, "
    b"Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_REFUSED, RST_CANCEL = 1, 3, 5
MAX_FRAME = 1 << 20  # payload bytes of one frame (kubectl's are 32 KiB at most)
MAX_HEADER_BLOCK = 64 * 1024  # bytes of one decompressed header block
MAX_HEADERS = 100  # headers in one block (a port-forward stream has four)


class SpdyError(Exception):
    """The peer broke the protocol; the connection ends."""


@dataclass(frozen=True)
class Frame:
    """A decoded frame. Control frames have `type` > 0; data frames have type 0."""

    type: int
    flags: int
    stream_id: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    value: int = 0  # RST/GOAWAY status, PING id, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class SpdyCodec:
    """Frame encoder/decoder for one connection: feed bytes in, get frames out; encode
    frames to bytes. Header blocks share one zlib stream per direction, so frames must be
    sent in the order they are encoded."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=SPDY_DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zdict=SPDY_DICTIONARY)

    # decoding
    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if length > MAX_FRAME:
                raise SpdyError(f"frame of {length} bytes (at most {MAX_FRAME})")
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            frames.append(self._decode(head, payload))
        return frames

    def _decode(self, head: bytes, payload: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            stream_id = int.from_bytes(head[:4], "big") & 0x7FFFFFFF
            return Frame(0, flags, stream_id, data=payload)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        if version != 3:
            raise SpdyError(f"unsupported SPDY version {version}")
        kind = int.from_bytes(head[2:4], "big")
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise SpdyError("short SYN_STREAM")
            return Frame(kind, flags, _u31(payload, 0), self._headers(payload[10:]))
        if kind in (SYN_REPLY, HEADERS):
            if len(payload) < 4:
                raise SpdyError("short header frame")
            return Frame(kind, flags, _u31(payload, 0), self._headers(payload[4:]))
        if kind in (RST_STREAM, WINDOW_UPDATE, GOAWAY):
            if len(payload) < 8:
                raise SpdyError("short control frame")
            value = int.from_bytes(payload[4:8], "big")
            return Frame(kind, flags, _u31(payload, 0), value=value)
        if kind == PING:
            if len(payload) < 4:
                raise SpdyError("short PING")
            return Frame(kind, flags, value=int.from_bytes(payload[:4], "big"))
        return Frame(kind, flags, data=payload)  # SETTINGS and unknown types: ignored

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyError(f"header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise SpdyError(f"header block over {MAX_HEADER_BLOCK} bytes")
        if len(raw) < 4:
            raise SpdyError("truncated header block")
        count, pos = int.from_bytes(raw[:4], "big"), 4
        if count > MAX_HEADERS:
            raise SpdyError(f"{count} headers in one block (at most {MAX_HEADERS})")
        headers: dict[str, str] = {}

        def field() -> str:
            nonlocal pos
            if pos + 4 > len(raw):
                raise SpdyError("truncated header block")
            n = int.from_bytes(raw[pos : pos + 4], "big")
            if pos + 4 + n > len(raw):
                raise SpdyError("truncated header block")
            try:
                text = raw[pos + 4 : pos + 4 + n].decode()
            except UnicodeDecodeError:
                raise SpdyError("malformed header block") from None
            pos += 4 + n
            return text

        for _ in range(count):
            name = field()
            headers[name.lower()] = field().split("\x00")[0]
        return headers

    # encoding
    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack("!I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        body = struct.pack("!IIH", stream_id, 0, 0) + self._header_block(headers)
        return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None) -> bytes:
        return _control(
            SYN_REPLY, 0, struct.pack("!I", stream_id) + self._header_block(headers or {})
        )

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        head = struct.pack("!I", stream_id & 0x7FFFFFFF)
        return head + bytes([FLAG_FIN if fin else 0]) + len(data).to_bytes(3, "big") + data

    @staticmethod
    def rst_stream(stream_id: int, status: int) -> bytes:
        return _control(RST_STREAM, 0, struct.pack("!II", stream_id, status))

    @staticmethod
    def ping(ping_id: int) -> bytes:
        return _control(PING, 0, struct.pack("!I", ping_id))

    @staticmethod
    def goaway(last_stream: int, status: int = 0) -> bytes:
        return _control(GOAWAY, 0, struct.pack("!II", last_stream, status))


def _u31(payload: bytes, at: int) -> int:
    return int.from_bytes(payload[at : at + 4], "big") & 0x7FFFFFFF


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack("!HHB", 0x8003, kind, flags) + len(body).to_bytes(3, "big") + body
