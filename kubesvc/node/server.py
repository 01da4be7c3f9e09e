"""The node agent's HTTPS server: container logs, exec and port-forward, as the kubelet serves
them to the API server (`/containerLogs`, `/exec`, `/portForward`, `/healthz`).

Wire formats follow upstream:
- exec: a WebSocket with subprotocol `v5.channel.k8s.io` (or v4): each binary message is a
  channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255 close) and its payload; the
  error channel carries a metav1.Status when the command ends.
- port-forward: kubectl tunnels SPDY/3.1 inside a WebSocket (subprotocol
  `SPDY/3.1+portforward.k8s.io`); every port connection is a pair of SPDY streams (error,
  data) with the same `requestID`, as in pkg/kubelet/cri/streaming/portforward.
- container log files hold either CRI lines (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`) or
  plain lines; plain lines carry no timestamp, so `timestamps`/`sinceSeconds` skip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import hmac
import json
import logging
import os
import pty
import re
import signal
import socket
import ssl
import struct
import tempfile
import termios
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from kubesvc.node import netns as nsutil
from kubesvc.node.view import PodRuntimeView, Sandbox

log = logging.getLogger("kubesvc.node.server")

ERROR_HEADER = "X-Kubelet-Error"  # the error text of a refused upgrade, for the API server
STREAM_CHUNK = 32 * 1024
FOLLOW_POLL = 0.1  # seconds between reads of a followed log file
PAIR_TIMEOUT = 30.0  # as the kubelet's streamCreationTimeout

# -- errors ---------------------------------------------------------------------------------


class NodeError(Exception):
    """A request the node refuses before any stream starts: HTTP status and plain text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(err: NodeError) -> web.Response:
    resp = web.Response(status=err.status, text=err.message)
    resp.headers[ERROR_HEADER] = " ".join(err.message.split())
    return resp


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


# -- logs -----------------------------------------------------------------------------------

_CRI_LINE = re.compile(
    rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) "
    rb"(stdout|stderr) ([FP]) (.*)$",
    re.S,
)


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime.datetime | None = None
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    content: bytes  # the text as the container wrote it, newline included for full lines
    timestamp: bytes = b""  # RFC3339Nano as stored; empty for plain lines

    def render(self, timestamps: bool) -> bytes:
        if timestamps and self.timestamp:
            return self.timestamp + b" " + self.content
        return self.content


def parse_timestamp(text: str) -> datetime.datetime:
    """RFC3339 with up to nanosecond precision (Python keeps microseconds)."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", text)
    if m is None:
        raise ValueError(f"invalid timestamp {text!r}")
    base, frac, zone = m.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{micro}{zone}")


def parse_log_options(query: Any, now: datetime.datetime | None = None) -> LogOptions:
    """The kubelet's containerLogs query (PodLogOptions); ValueError on a bad value."""

    def number(name: str, minimum: int) -> int | None:
        raw = query.get(name)
        if raw in (None, ""):
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}: invalid value {raw!r}: must be an integer") from None
        if value < minimum:
            raise ValueError(f"{name}: invalid value {value}: must be at least {minimum}")
        return value

    tail = number("tailLines", 0)
    since_seconds = number("sinceSeconds", 1)
    since: datetime.datetime | None = None
    if since_seconds is not None:
        since = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(
            seconds=since_seconds
        )
    if query.get("sinceTime"):
        if since is not None:
            raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        since = parse_timestamp(query["sinceTime"])
    return LogOptions(
        follow=_flag(query.get("follow")),
        previous=_flag(query.get("previous")),
        timestamps=_flag(query.get("timestamps")),
        tail_lines=tail,
        since=since,
        limit_bytes=number("limitBytes", 1),
    )


def parse_log_line(raw: bytes) -> LogLine:
    """One stored line (newline included if it had one) -> what the container wrote."""
    newline = raw.endswith(b"\n")
    body = raw[:-1] if newline else raw
    m = _CRI_LINE.match(body)
    if m is None:
        return LogLine(raw)
    ts, _stream, tag, text = m.groups()
    # a partial ("P") record continues in the next record: no newline of its own
    return LogLine(text + (b"\n" if tag == b"F" else b""), ts)


def line_wanted(line: LogLine, since: datetime.datetime | None) -> bool:
    if since is None or not line.timestamp:
        return True
    try:
        return parse_timestamp(line.timestamp.decode()) >= since
    except ValueError:
        return True


def tail_offset(f: Any, lines: int, block: int = 64 * 1024) -> int:
    """Byte offset where the last `lines` complete lines of an open binary file begin."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if lines == 0:
        return end
    pos, seen = end, 0
    skip_last = True  # the newline ending the file ends the last line, it does not start it
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i] != 0x0A:
                skip_last = False
                continue
            if skip_last and pos + i == end - 1:
                skip_last = False
                continue
            seen += 1
            if seen == lines:
                return pos + i + 1
    return 0


class LogLimit:
    """Cuts output at limitBytes."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[: self.left]
        self.left -= len(data)
        return data

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0


async def stream_log(
    path: Path,
    opts: LogOptions,
    write: Callable[[bytes], Awaitable[None]],
    still_current: Callable[[], bool] = lambda: True,
) -> None:
    """Write the log (its tail, then new lines while following) through `write`. Following
    stops when `still_current()` turns false (the container instance is gone)."""
    limit = LogLimit(opts.limit_bytes)
    with open(path, "rb") as f:
        start = 0 if opts.tail_lines is None else tail_offset(f, opts.tail_lines)
        f.seek(start)
        pending = b""
        while not limit.done:
            chunk = f.read(STREAM_CHUNK)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(_render(raw + b"\n", opts) for raw in lines)
                if out:
                    await write(limit.take(out))
                continue
            if not opts.follow or not still_current():
                if pending and not limit.done:
                    await write(limit.take(_render(pending, opts)))
                return
            if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                f.seek(0)
                pending = b""
            await asyncio.sleep(FOLLOW_POLL)


def _render(raw: bytes, opts: LogOptions) -> bytes:
    line = parse_log_line(raw)
    return line.render(opts.timestamps) if line_wanted(line, opts.since) else b""


# -- exec -----------------------------------------------------------------------------------

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"


@dataclass(frozen=True)
class ExecOptions:
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def parse_exec_options(query: Any) -> ExecOptions:
    command = tuple(query.getall("command", []))
    opts = ExecOptions(
        command,
        _flag(query.get("stdin")),
        _flag(query.get("stdout")),
        _flag(query.get("stderr")),
        _flag(query.get("tty")),
    )
    if not command:
        raise NodeError(400, "you must specify at least 1 command")
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise NodeError(400, "you must specify at least 1 of stdin, stdout, stderr")
    if opts.tty and opts.stderr:
        # a terminal merges stderr into stdout (upstream: "stdout and stderr" on one stream)
        opts = ExecOptions(command, opts.stdin, opts.stdout, False, True)
    return opts


def exec_argv(
    sandbox: Sandbox, env: dict[str, str], workdir: str | None, opts: ExecOptions
) -> list[str]:
    """The command line that runs `opts.command` in the pod like its container runs."""
    environ = dict(env)
    if opts.tty:
        environ.setdefault("TERM", "xterm")  # as containerd does for a terminal exec
    assignments = [f"{k}={v}" for k, v in environ.items() if k and "=" not in k]
    argv = [*sandbox.nsenter(), "env", "-i", "-C", workdir or "/", *assignments, *opts.command]
    if opts.tty:
        # a new session whose controlling terminal is the pty on stdin
        argv = ["setsid", "-w", "-c", *argv]
    return argv


def exit_status(command: Iterable[str], returncode: int) -> dict[str, Any]:
    """The metav1.Status the error channel carries when the command ends."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = returncode if returncode > 0 else 128 - returncode  # killed by a signal
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message}


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(columns, rows) of a resize message, or None if it is not one."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (0 <= width < 65536 and 0 <= height < 65536):
        return None
    return width, height


def negotiate(offered: str, supported: Iterable[str]) -> str | None:
    """The first of our protocols the client offered (Sec-WebSocket-Protocol header)."""
    wanted = {p.strip() for p in offered.split(",") if p.strip()}
    for proto in supported:
        if proto in wanted:
            return proto
    return None


class ExecSession:
    """One exec: a process and the WebSocket that carries its streams."""

    def __init__(self, ws: web.WebSocketResponse, argv: list[str], opts: ExecOptions) -> None:
        self.ws, self.argv, self.opts = ws, argv, opts
        self.proc: asyncio.subprocess.Process | None = None
        self.master: int | None = None  # pty master when tty
        self.stdin_open = opts.stdin
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._lock:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def run(self) -> None:
        try:
            await self._start()
        except OSError as e:
            await self.send(ERROR, json.dumps(failure_status(str(e))).encode())
            return
        assert self.proc is not None
        reader = asyncio.create_task(self._read_client())
        try:
            outputs = [asyncio.create_task(p) for p in self._pumps()]
            await asyncio.gather(*outputs)
            code = await self.proc.wait()
            status = exit_status(self.opts.command, code)
            await self.send(ERROR, json.dumps(status, separators=(",", ":")).encode())
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._cleanup()

    async def _start(self) -> None:
        pipe = asyncio.subprocess.PIPE
        devnull = asyncio.subprocess.DEVNULL
        if self.opts.tty:
            master, slave = pty.openpty()
            self.master = master
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=slave, stdout=slave, stderr=slave
                )
            finally:
                os.close(slave)
            return
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=pipe if self.opts.stdin else devnull,
            stdout=pipe if self.opts.stdout else devnull,
            stderr=pipe if self.opts.stderr else devnull,
            start_new_session=True,
        )

    def _pumps(self) -> list[Awaitable[None]]:
        assert self.proc is not None
        if self.master is not None:
            return [self._pump_pty(self.master)] if self.opts.stdout else []
        pumps = []
        if self.proc.stdout is not None:
            pumps.append(self._pump(self.proc.stdout, STDOUT))
        if self.proc.stderr is not None:
            pumps.append(self._pump(self.proc.stderr, STDERR))
        return pumps

    async def _pump(self, stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(STREAM_CHUNK):
            await self.send(channel, chunk)

    async def _pump_pty(self, master: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(master), "rb", 0)
        )
        try:
            while True:
                try:
                    chunk = await reader.read(STREAM_CHUNK)
                except OSError:  # EIO once the terminal's last user is gone
                    return
                if not chunk:
                    return
                await self.send(STDOUT, chunk)
        finally:
            transport.close()

    async def _read_client(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], msg.data[1:]
            if channel == STDIN:
                await self._write_stdin(payload)
            elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                await self._close_stdin()
            elif channel == RESIZE:
                self._resize(payload)
        # the client is gone: nobody reads the output any more
        await self._close_stdin()
        self._kill()

    async def _write_stdin(self, data: bytes) -> None:
        if not self.stdin_open or not data:
            return
        if self.master is not None:
            await asyncio.to_thread(_write_all, self.master, data)
            return
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.stdin_open = False

    async def _close_stdin(self) -> None:
        if not self.stdin_open:
            return
        self.stdin_open = False
        if self.master is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_write_all, self.master, b"\x04")  # EOF at a terminal
            return
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.proc.stdin.wait_closed()

    def _resize(self, payload: bytes) -> None:
        size = parse_resize(payload)
        if size is None or self.master is None:
            return
        cols, rows = size
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def _cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._kill()
            with contextlib.suppress(ProcessLookupError):
                await self.proc.wait()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- SPDY/3.1 (sans I/O) --------------------------------------------------------------------

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
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5
MAX_FRAME = 1 << 24


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
            raw = self._inflate.decompress(block)
        except zlib.error as e:
            raise SpdyError(f"header block: {e}") from None
        headers: dict[str, str] = {}
        try:
            count, pos = int.from_bytes(raw[:4], "big"), 4
            for _ in range(count):
                n = int.from_bytes(raw[pos : pos + 4], "big")
                name = raw[pos + 4 : pos + 4 + n].decode()
                pos += 4 + n
                n = int.from_bytes(raw[pos : pos + 4], "big")
                value = raw[pos + 4 : pos + 4 + n].decode()
                pos += 4 + n
                headers[name.lower()] = value.split("\x00")[0]
        except (UnicodeDecodeError, IndexError):
            raise SpdyError("malformed header block") from None
        if pos > len(raw):
            raise SpdyError("truncated header block")
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


# -- port-forward ---------------------------------------------------------------------------


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
    inbound: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
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


class PortForwardSession:
    """Serves the port-forward protocol over SPDY carried in WebSocket binary messages."""

    def __init__(
        self, ws: web.WebSocketResponse, sandbox: Sandbox, dial: Dialer = dial_pod
    ) -> None:
        self.ws, self.sandbox, self.dial = ws, sandbox, dial
        self.codec = SpdyCodec()
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def send(self, encode: Callable[[], bytes]) -> None:
        """Encode and send under one lock: header compression state follows send order."""
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_bytes(encode())

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                for frame in self.codec.feed(msg.data):
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
                    pair.inbound.put_nowait(frame.data)
                if frame.fin:
                    pair.inbound.put_nowait(None)
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


# -- TLS ------------------------------------------------------------------------------------


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for the node (as the kubelet makes without
    --tls-cert-file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@kubesvc")])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


# -- the server -----------------------------------------------------------------------------


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
        app.router.add_route("*", "/portForward/{ns}/{pod}", self._port_forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
        protocol = self._websocket_protocol(request, EXEC_PROTOCOLS)
        argv = exec_argv(
            sandbox,
            self.view.container_env(ns, pod, container),
            self.view.working_dir(ns, pod, container),
            opts,
        )
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0, compress=False)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await ExecSession(ws, argv, opts).run()
            await ws.close()
        return ws

    # port-forward
    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        sandbox = self._pod(request.match_info["ns"], request.match_info["pod"])
        protocol = self._websocket_protocol(request, (PORT_FORWARD_PROTOCOL,))
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0, compress=False)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await PortForwardSession(ws, sandbox, self.dial).run()
            await ws.close()
        return ws

    @staticmethod
    def _websocket_protocol(request: web.Request, supported: tuple[str, ...]) -> str:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise NodeError(400, "Upgrade request required")
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocol = negotiate(offered, supported)
        if protocol is None:
            raise NodeError(
                400,
                "unable to upgrade: unable to negotiate protocol: client supports "
                f"[{offered}], server supports [{' '.join(supported)}]",
            )
        return protocol


__all__ = [
    "ERROR_HEADER",
    "EXEC_PROTOCOLS",
    "PORT_FORWARD_PROTOCOL",
    "KubeletServer",
    "LogOptions",
    "SpdyCodec",
    "connect_in_netns",
    "exec_argv",
    "exit_status",
    "parse_exec_options",
    "parse_log_line",
    "parse_log_options",
    "stream_log",
    "tail_offset",
]
