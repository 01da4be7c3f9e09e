"""Shared runtime for the built-in images: logging in the images' own formats, Go-style
duration parsing, a small threaded HTTP/1.1 server and a UDP responder, and signal waiting.

Only stdlib modules with a small import cost: pods should be Ready fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

# Servers bind the wildcard address, which inside a pod's network namespace is only the pod.
# Tests that run the servers outside a namespace point this at 127.0.0.1.
BIND_ENV = "KUBESVC_IMAGE_BIND_ADDRESS"

MAX_BODY = 1 << 20

_log_lock = threading.Lock()


def bind_address() -> str:
    return os.environ.get(BIND_ENV, "") or "0.0.0.0"


def emit(stream: TextIO, line: str) -> None:
    """One whole line, flushed at once (stdout is a pipe to the container log)."""
    with _log_lock:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def go_log(message: str) -> None:
    """Go's standard `log` package: local time prefix, to stderr."""
    emit(sys.stderr, time.strftime("%Y/%m/%d %H:%M:%S ") + message.rstrip("\n"))


def go_fatal(message: str) -> None:
    go_log(message)
    os._exit(1)


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds. Raises ValueError like Go returns an error."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)$", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_go_duration(seconds: float) -> str:
    """time.Duration.String() for the common cases (used in log lines)."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1e-6:
        return f"{round(seconds * 1e9)}ns"
    if abs(seconds) < 1e-3:
        return f"{_trim(seconds * 1e6)}µs"
    if abs(seconds) < 1:
        return f"{_trim(seconds * 1e3)}ms"
    out = ""
    rest = seconds
    if rest >= 3600:
        out += f"{int(rest // 3600)}h"
        rest %= 3600
    if rest >= 60 or out:
        out += f"{int(rest // 60)}m"
        rest %= 60
    return out + f"{_trim(rest)}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def parse_go_int(text: str) -> int:
    """strconv.Atoi: optional sign and decimal digits only."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


# ---------------------------------------------------------------- HTTP


@dataclass
class Request:
    method: str
    target: str  # the request-target as sent
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    client: tuple[str, int]
    host: str
    version: str
    body: bytes = b""
    form: dict[str, list[str]] = field(default_factory=dict)
    connection: object = None  # the socket it came on (an ssl.SSLSocket over TLS)

    def header(self, name: str) -> str:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return ""

    def form_value(self, name: str) -> str:
        """Go's Request.FormValue: a urlencoded POST body first, then the query."""
        for source in (self.form, self.query):
            values = source.get(name)
            if values:
                return values[0]
        return ""

    @property
    def remote_addr(self) -> str:
        ip, port = self.client
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Close the connection without answering (Go: a handler panic, a hijacked conn).
    drop: bool = False


App = Callable[[Request], Response]

TEXT = "text/plain; charset=utf-8"


def text(body: str | bytes, status: int = 200, content_type: str | None = TEXT) -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = [("Content-Type", content_type)] if content_type and data else []
    return Response(status=status, body=data, headers=headers)


def go_error(message: str, status: int) -> Response:
    """net/http's http.Error."""
    return Response(
        status=status,
        body=(message + "\n").encode(),
        headers=[("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")],
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive client must not hold a thread forever
    # head and body leave in one write, as Go's net/http sends a small response (it buffers
    # 4 KiB): a server killed mid-request then sent all of a response or none of it
    wbufsize = 4096
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for it before it sends the body
        return ok

    def version_string(self) -> str:
        return self.server.server_header or ""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        if self.server.server_header:
            self.send_header("Server", self.server.server_header)
        self.send_header("Date", self.date_time_string())

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests: a plain `400 Bad Request` with a status line, as Go answers,
        even when the request line was too broken to tell the HTTP version."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        reason = self.responses.get(code, ("",))[0]
        body = f"{code} {reason}".encode()
        try:
            self.send_response(code, reason)
            self.send_header("Content-Type", TEXT)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass

    def _dispatch(self) -> None:
        with self.server.inflight_lock:
            self.server.inflight += 1
        try:
            self._serve_one()
        finally:
            with self.server.inflight_lock:
                self.server.inflight -= 1

    def _serve_one(self) -> None:
        request = self._read_request()
        try:
            response = self.server.app(request)
        except Exception as exc:  # a handler bug must not take the server down
            emit(sys.stderr, f"internal error serving {request.method} {request.path}: {exc!r}")
            response = go_error("Internal Server Error", 500)
        if response.drop:
            self.close_connection = True
            return
        self._write(request, response)

    def _read_request(self) -> Request:
        split = urlsplit(self.path)
        body = self._read_body()
        form: dict[str, list[str]] = {}
        ctype = self.headers.get("Content-Type", "")
        if self.command in ("POST", "PUT", "PATCH") and ctype.startswith(
            "application/x-www-form-urlencoded"
        ):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        ip, port = self.client_address[0], self.client_address[1]
        return Request(
            method=self.command,
            target=self.path,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers=list(self.headers.items()),
            client=(str(ip), int(port)),
            host=self.headers.get("Host", ""),
            version=self.request_version,
            body=body,
            form=form,
            connection=self.connection,
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # body not read: the connection cannot be reused
            return b""
        try:
            length = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            self.close_connection = True
            return b""
        if length <= 0:
            return b""
        if length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length)

    def _write(self, request: Request, response: Response) -> None:
        try:
            self.send_response(response.status)
            names = {k.lower() for k, _ in response.headers}
            for key, value in response.headers:
                if key.lower() == "connection":
                    if value.lower() == "close":
                        self.close_connection = True
                    if self.close_connection:
                        continue
                self.send_header(key, value)
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if request.method != "HEAD" and response.body:
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


# What an accepted connection is wrapped in (ssl.SSLContext.wrap_socket for HTTPS)
Wrap = Callable[[socket.socket], socket.socket]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: App, server_header: str | None, wrap: Wrap | None
    ) -> None:
        self.app = app
        self.server_header = server_header
        self.wrap = wrap
        self.inflight = 0
        self.inflight_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        if self.wrap is not None:  # TLS: the handshake happens on the handler's thread
            try:
                sock = self.wrap(sock)
            except OSError:
                sock.close()
                raise
        return sock, addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a broken client connection is not worth a traceback


class HttpService:
    """A threaded HTTP/1.1 server with keep-alive, run on a background thread."""

    def __init__(
        self,
        app: App,
        port: int,
        *,
        host: str | None = None,
        server_header: str | None = None,
        wrap: Wrap | None = None,
    ) -> None:
        self._server = _Server((host or bind_address(), port), app, server_header, wrap)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpService:
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop accepting, then wait up to `timeout` for requests in flight. True if drained."""
        self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._server.inflight_lock:
                if self._server.inflight == 0:
                    return True
            time.sleep(0.02)
        return False


# ---------------------------------------------------------------- UDP

UdpApp = Callable[[bytes, tuple[str, int]], bytes | None]


class UdpService:
    """Answers each datagram with what `app` returns (None: no answer)."""

    def __init__(self, app: UdpApp, port: int, *, host: str | None = None, bufsize: int = 2048):
        self._app = app
        self._bufsize = bufsize
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host or bind_address(), port))
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> UdpService:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(self._bufsize)
            except OSError as exc:
                if exc.errno in (None, 9):  # closed
                    return
                continue
            try:
                answer = self._app(data, (peer[0], peer[1]))
                if answer is not None:
                    self._sock.sendto(answer, peer)
            except Exception as exc:  # one bad datagram must not stop the responder
                emit(sys.stderr, f"udp: error answering {peer}: {exc!r}")


# ---------------------------------------------------------------- signals


class SignalWaiter:
    """Turns the given signals into a wake-up of the main thread.

    The kernel may deliver a signal to any thread; Python then only runs the handler once
    the main thread gets back to bytecode, which a thread blocked on a lock never does. The
    wakeup fd makes the C-level handler write to a pipe the main thread is selecting on.
    """

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self.received: signal.Signals | None = None
        self._triggered = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in signals:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def wait(self, timeout: float | None = None) -> signal.Signals | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.received is None and not self._triggered:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                break
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                os.read(self._r, 512)
        return self.received

    def trigger(self) -> None:
        """Wake the waiter without a signal (e.g. a shutdown asked for over HTTP)."""
        self._triggered = True
        with contextlib.suppress(OSError):
            os.write(self._w, b"\0")


def default_signals() -> None:
    """Die from SIGINT/SIGTERM like a program that does not handle them (no traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def sleep_forever() -> None:
    while True:
        signal.pause()


def listen_error(proto: str, host: str, port: int, exc: OSError) -> str:
    """Go's `listen tcp :8080: bind: address already in use`."""
    shown = "" if host in ("", "0.0.0.0") else host
    reason = (exc.strerror or str(exc)).lower()
    return f"listen {proto} {shown}:{port}: bind: {reason}"
