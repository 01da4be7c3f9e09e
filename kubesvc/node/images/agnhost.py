"""The agnhost test image (kubernetes test/images/agnhost): the subcommands e2e tests and the
Kubernetes docs use, with upstream's flags, endpoints, log lines and exit codes.

Run as `python -m kubesvc.node.images.agnhost SUBCOMMAND [flags]`.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import posixpath
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from kubesvc.node.images._runtime import (
    App,
    HttpService,
    Request,
    Response,
    SignalWaiter,
    UdpService,
    default_signals,
    emit,
    format_go_duration,
    go_error,
    go_fatal,
    go_log,
    listen_error,
    parse_go_duration,
    parse_go_int,
    sleep_forever,
    text,
)

VERSION = "2.53"

# klog's flags are accepted by every subcommand (upstream adds them as persistent flags).
KLOG_FLAGS: dict[str, tuple[str, object]] = {
    "v": ("int", 0),
    "vmodule": ("str", ""),
    "logtostderr": ("bool", True),
    "alsologtostderr": ("bool", False),
    "log_dir": ("str", ""),
    "log_file": ("str", ""),
    "log_file_max_size": ("int", 1800),
    "skip_headers": ("bool", False),
    "skip_log_headers": ("bool", False),
    "stderrthreshold": ("str", "2"),
    "one_output": ("bool", False),
    "add_dir_header": ("bool", False),
    "log_backtrace_at": ("str", ""),
}


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Parsed:
    flags: dict[str, object]
    positional: list[str]
    help: bool


def parse_flags(spec: dict[str, tuple[str, object]], argv: list[str]) -> Parsed:
    """pflag-style parsing: --name=value, --name value, --bool, --bool=false, `--` ends flags."""
    full = {**KLOG_FLAGS, **spec}
    values: dict[str, object] = {name: default for name, (_, default) in full.items()}
    positional: list[str] = []
    want_help = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg in ("-h", "--help"):
            want_help = True
            continue
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        if not arg.startswith("--"):
            raise UsageError(f"unknown shorthand flag: {arg[1]!r} in {arg}")
        name, eq, raw = arg[2:].partition("=")
        if name not in full:
            raise UsageError(f"unknown flag: --{name}")
        kind = full[name][0]
        if not eq:
            if kind == "bool":
                raw = "true"
            elif i < len(argv):
                raw = argv[i]
                i += 1
            else:
                raise UsageError(f"flag needs an argument: --{name}")
        values[name] = _convert(name, kind, raw)
    return Parsed(values, positional, want_help)


def _convert(name: str, kind: str, raw: str) -> object:
    try:
        if kind == "int":
            return parse_go_int(raw)
        if kind == "bool":
            lowered = raw.lower()
            if lowered in ("1", "t", "true"):
                return True
            if lowered in ("0", "f", "false"):
                return False
            raise ValueError(f'strconv.ParseBool: parsing "{raw}": invalid syntax')
        if kind == "duration":
            return parse_go_duration(raw)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{raw}" for "--{name}" flag: {exc}') from None
    return raw


def _int(flags: dict[str, object], name: str) -> int:
    value = flags[name]
    assert isinstance(value, int)
    return value


def _float(flags: dict[str, object], name: str) -> float:
    value = flags[name]
    assert isinstance(value, (int, float))
    return float(value)


def hostname() -> str:
    return socket.gethostname()


# ---------------------------------------------------------------- netexec


NETEXEC_FLAGS: dict[str, tuple[str, object]] = {
    "http-port": ("int", 8080),
    "udp-port": ("int", 8081),
    "sctp-port": ("int", -1),
    "tls-cert-file": ("str", ""),
    "tls-private-key-file": ("str", ""),
    "http-override": ("str", ""),
    "udp-listen-addresses": ("str", ""),
    "delay-shutdown": ("int", 0),
}


def go_json(value: object) -> str:
    """encoding/json.Marshal: compact, sorted map keys, HTML-safe escapes."""
    out = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (
        out.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def go_now() -> str:
    """fmt of time.Now(): wall clock, zone and the monotonic reading."""
    now = time.time()
    local = time.localtime(now)
    frac = f"{now % 1:.9f}"[2:].rstrip("0")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local) + (f".{frac}" if frac else "")
    offset = time.strftime("%z", local)
    zone = time.strftime("%Z", local) or offset
    return f"{stamp} {offset} {zone} m=+{time.monotonic() - _STARTED:.9f}"


_STARTED = time.monotonic()


class Netexec:
    """The HTTP endpoints of `agnhost netexec`; pure request -> response."""

    def __init__(self, *, shell: str = "/bin/sh") -> None:
        self.shell = shell
        self.udp_ready = threading.Event()
        self.sigterm = threading.Event()
        self.exit_request: Callable[[int, float], None] = lambda code, timeout: os._exit(code)
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/": self.root,
            "/clientip": self.clientip,
            "/header": self.header,
            "/dial": self.dial,
            "/echo": self.echo,
            "/exit": self.exit,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/hostname": self.hostname,
            "/hostName": self.hostname_old,
            "/redirect": self.redirect,
            "/shell": self.shell_cmd,
            "/upload": self.upload,
            "/shutdown": self.shutdown,
        }

    def __call__(self, request: Request) -> Response:
        return self.routes.get(request.path, self.root)(request)

    def root(self, request: Request) -> Response:
        go_log("GET /")
        return text(f"NOW: {go_now()}")

    def clientip(self, request: Request) -> Response:
        go_log("GET /clientip")
        return text(request.remote_addr)

    def header(self, request: Request) -> Response:
        key = request.form_value("key")
        if key:
            go_log(f"GET /header?key={key}")
            return text("" if key.lower() == "host" else request.header(key))
        go_log("GET /header")
        grouped: dict[str, list[str]] = {}
        for name, value in request.headers:
            if name.lower() == "host":  # net/http moves Host out of the header map
                continue
            grouped.setdefault(_canonical_header(name), []).append(value)
        return text(go_json(grouped))

    def echo(self, request: Request) -> Response:
        msg = request.form_value("msg")
        code_s = request.form_value("code")
        go_log(f"GET /echo?msg={msg}&code={code_s}")
        if code_s:
            try:
                code = parse_go_int(code_s)
            except ValueError:
                return text(
                    f"argument 'code' must be an integer or empty, got {_go_quote(code_s)}\n"
                )
            if not 100 <= code <= 999:
                return Response(drop=True)  # net/http panics on an invalid status code
            return text(msg, status=code)
        return text(msg)

    def exit(self, request: Request) -> Response:
        wait_s = request.form_value("wait")
        timeout_s = request.form_value("timeout")
        code_s = request.form_value("code")
        go_log(f"GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}")
        try:
            timeout = parse_go_duration(timeout_s) if timeout_s else 0.0
        except ValueError:
            return text(
                "argument 'timeout' must be a valid golang duration or empty, "
                f"got {_go_quote(timeout_s)}\n"
            )
        try:
            wait = parse_go_duration(wait_s) if wait_s else 0.0
        except ValueError:
            return text(
                "argument 'wait' must be a valid golang duration or empty, "
                f"got {_go_quote(wait_s)}\n"
            )
        try:
            code = parse_go_int(code_s) if code_s else 0
        except ValueError:
            return text(
                f"argument 'code' must be an integer [0-127] or empty, got {_go_quote(code_s)}\n"
            )
        go_log(
            f"Will begin shutdown in {format_go_duration(wait)}, allowing "
            f"{format_go_duration(timeout)} for connections to close, then will exit with {code}"
        )
        if wait > 0:
            time.sleep(wait)
        if timeout <= 0:
            _exit_now(code)
        self.exit_request(code, timeout)
        return text("")

    def healthz(self, request: Request) -> Response:
        go_log("GET /healthz")
        return text("", status=200 if self.udp_ready.is_set() else 412)

    def readyz(self, request: Request) -> Response:
        go_log("GET /readyz")
        if self.sigterm.is_set():
            return text("shutting down", status=503)
        if self.udp_ready.is_set():
            return text("ok")
        return text("", status=412)

    def hostname(self, request: Request) -> Response:
        go_log("GET /hostname")
        return text(hostname())

    def hostname_old(self, request: Request) -> Response:
        go_log("GET /hostName")
        return text(hostname())

    def redirect(self, request: Request) -> Response:
        location = request.form_value("location")
        code_s = request.form_value("code")
        go_log(f"{request.method} /redirect?msg={location}&code={code_s}")
        code = 302
        if code_s:
            try:
                code = parse_go_int(code_s)
            except ValueError:
                return text(
                    f"argument 'code' must be an integer or empty, got {_go_quote(code_s)}\n"
                )
        if not 100 <= code <= 999:
            return Response(drop=True)
        return go_redirect(request, location, code)

    def shell_cmd(self, request: Request) -> Response:
        cmd = request.form_value("shellCommand") or request.form_value("cmd")
        go_log(f"GET /shell?cmd={cmd}")
        output: dict[str, str] = {}
        try:
            proc = subprocess.run(
                [self.shell, "-c", cmd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
            out = proc.stdout.decode("utf-8", "replace")
            if out:
                output["output"] = out
            if proc.returncode > 0:
                output["error"] = f"exit status {proc.returncode}"
            elif proc.returncode < 0:
                output["error"] = f"signal: {_signal_name(-proc.returncode)}"
        except OSError as exc:
            output["error"] = f"fork/exec {self.shell}: {(exc.strerror or str(exc)).lower()}"
        go_log(f"Output: map[{' '.join(f'{k}:{v}' for k, v in sorted(output.items()))}]")
        return text(go_json(output))

    def upload(self, request: Request) -> Response:
        go_log("GET /upload")
        go_log("Unable to upload file: request Content-Type isn't multipart/form-data")
        return text(go_json({"error": "Unable to upload file."}))

    def shutdown(self, request: Request) -> Response:
        go_log("GET /shutdown")
        _exit_now(0)
        return Response(drop=True)

    def dial(self, request: Request) -> Response:
        host = _first(request.query, "host")
        port = _first(request.query, "port")
        req = _first(request.query, "request")
        protocol = _first(request.query, "protocol")
        tries_s = _first(request.query, "tries")
        go_log(
            f"GET /dial?host={host}&protocol={protocol}&port={port}&request={req}&tries={tries_s}"
        )
        tries = 1
        if tries_s:
            try:
                tries = parse_go_int(tries_s)
            except ValueError as exc:
                return go_error(f"tries parameter is invalid. {exc}", 400)
        if not req:
            return go_error("request parameter not specified. <nil>", 400)
        proto = protocol.lower()
        if proto not in ("", "http", "udp", "sctp"):
            return go_error(f"unsupported protocol. {protocol}", 400)
        net = "tcp" if proto in ("", "http") else proto
        try:
            addr = resolve_addr(net, host, port)
        except ValueError as exc:
            return go_error(f"host and/or port param are invalid. {exc}", 400)
        dialer = {"tcp": dial_http, "udp": dial_udp, "sctp": dial_sctp}[net]
        errors: list[str] = []
        responses: list[str] = []
        response = ""
        for _ in range(tries):
            try:
                response = dialer(req, addr)
                responses.append(response)
            except DialError as exc:
                response = ""
                errors.append(str(exc))
        output: dict[str, list[str]] = {}
        if response:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return text(go_json(output))


def _exit_now(code: int) -> None:
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code & 0xFF)


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _signal_name(num: int) -> str:
    try:
        return signal.strsignal(num) or f"signal {num}"
    except ValueError:
        return f"signal {num}"


def _canonical_header(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


_STATUS_TEXT = {
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
}


def go_redirect(request: Request, location: str, code: int) -> Response:
    """net/http's http.Redirect: relative locations resolve against the request path."""
    if "://" not in location and not location.startswith("/"):
        base = request.path.rsplit("/", 1)[0]
        location = f"{base}/{location}"
    headers = [("Location", location)]
    body = b""
    if request.method in ("GET", "HEAD"):
        headers.append(("Content-Type", "text/html; charset=utf-8"))
        note = _STATUS_TEXT.get(code, "")
        body = f'<a href="{_html_escape(location)}">{note}</a>.\n\n'.encode()
    return Response(status=code, body=body, headers=headers)


def _html_escape(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


class DialError(Exception):
    pass


def join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_addr(net: str, host: str, port: str) -> tuple[str, int]:
    """net.ResolveTCPAddr/ResolveUDPAddr: numeric or named port, host looked up (IPv4 first)."""
    hostport = join_host_port(host, port)
    if port == "":
        raise ValueError(f"address {hostport}: missing port in address")
    try:
        port_num = int(port) if port.isdigit() else socket.getservbyname(port, net)
    except OSError:
        raise ValueError(f"lookup {net}/{port}: unknown port") from None
    if not 0 <= port_num <= 65535:
        raise ValueError(f"address {hostport}: invalid port")
    if not host:
        return ("127.0.0.1", port_num)
    try:
        infos = socket.getaddrinfo(host, port_num, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"lookup {host}: {_gai_reason(exc)}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return (str(infos[0][4][0]), port_num)


def _gai_reason(exc: Exception) -> str:
    if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        return "no such host"
    return getattr(exc, "strerror", None) or str(exc)


def dial_http(request: str, addr: tuple[str, int]) -> str:
    """GET http://addr/request with a 5 s overall timeout, like netexec's dialHTTP."""
    hostport = join_host_port(addr[0], str(addr[1]))
    target = "/" + quote(request.lstrip("/"), safe="/?&=%:@!$'()*+,;~-._")
    url = f"http://{hostport}{target}"
    deadline = time.monotonic() + 5.0
    try:
        for _ in range(10):  # follow redirects like Go's client
            conn = http.client.HTTPConnection(addr[0], addr[1], timeout=5.0)
            try:
                conn.request("GET", target, headers={"User-Agent": "Go-http-client/1.1"})
                resp = conn.getresponse()
                body = resp.read()
                location = resp.getheader("Location")
            finally:
                conn.close()
            if resp.status in (301, 302, 303, 307, 308) and location and location.startswith("/"):
                target = location
                if time.monotonic() > deadline:
                    raise TimeoutError
                continue
            return body.decode("utf-8", "replace")
        raise DialError(f'Get "{url}": stopped after 10 redirects')
    except TimeoutError:
        raise DialError(
            f'Get "{url}": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)"
        ) from None
    except ConnectionRefusedError:
        raise DialError(f'Get "{url}": dial tcp {hostport}: connect: connection refused') from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise DialError(f'Get "{url}": dial tcp {hostport}: connect: {reason}') from None
    except http.client.HTTPException as exc:
        raise DialError(f'Get "{url}": {exc}') from None


def dial_udp(request: str, addr: tuple[str, int]) -> str:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(addr)
        except OSError as exc:
            raise DialError(f"udp dial failed. err:{exc}") from None
        local = join_host_port(*map(str, sock.getsockname()[:2]))
        remote = join_host_port(addr[0], str(addr[1]))
        try:
            sock.send(request.encode())
        except OSError as exc:
            raise DialError(
                f"udp connection write failed. err:write udp {local}->{remote}: "
                f"{(exc.strerror or str(exc)).lower()}"
            ) from None
        sock.settimeout(5.0)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            raise DialError(
                f"reading from udp connection failed. err:'read udp {local}->{remote}: i/o timeout'"
            ) from None
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise DialError(
                f"reading from udp connection failed. err:'read udp {local}->{remote}: "
                f"recvfrom: {reason}'"
            ) from None
        if not data:
            raise DialError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")


def dial_sctp(request: str, addr: tuple[str, int]) -> str:
    raise DialError("sctp dial failed. err:protocol not supported")


def udp_responder(data: bytes, peer: tuple[str, int]) -> bytes | None:
    """netexec's UDP server: hostname, echo <msg>, clientip (case-insensitive)."""
    received = data.decode("utf-8", "replace").strip().lower()
    client = join_host_port(peer[0], str(peer[1]))
    if received == "hostname":
        go_log("Sending udp hostName response")
        return hostname().encode()
    if received.startswith("echo "):
        resp = received.split(" ", 1)[1]
        go_log(f"Echoing {resp} to UDP client {client}")
        return resp.encode()
    if received == "clientip":
        go_log(f"Sending clientip back to UDP client {client}")
        return client.encode()
    if received:
        go_log(f"Unknown UDP command received from {client}: {received}")
    return None


def _override(app: Netexec, path: str) -> Callable[[Request], Response]:
    from urllib.parse import parse_qs, urlsplit

    split = urlsplit(path)

    def handle(request: Request) -> Response:
        fake = Request(
            method="GET",
            target=path,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers=request.headers,
            client=request.client,
            host=request.host,
            version=request.version,
        )
        return app(fake)

    return handle


def run_netexec(flags: dict[str, object]) -> int:
    http_port = _int(flags, "http-port")
    udp_port = _int(flags, "udp-port")
    delay = _int(flags, "delay-shutdown")
    if flags["tls-cert-file"]:
        go_fatal("kubesvc's agnhost serves plain HTTP only: --tls-cert-file is not supported")
    app = Netexec()
    waiter = SignalWaiter((signal.SIGTERM,))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    override = str(flags["http-override"])
    handler = _override(app, override) if override else app

    if udp_port != -1:
        addresses = [a for a in str(flags["udp-listen-addresses"]).split(",") if a] or [""]
        for address in sorted(set(addresses)):
            try:
                UdpService(udp_responder, udp_port, host=address or None).start()
            except OSError as exc:
                where = join_host_port(address, str(udp_port))
                reason = listen_error("udp", address, udp_port, exc)
                go_fatal(
                    f"Error occurred: failed to create listener for UDP address {where}:{reason}"
                )
            go_log(f"Started UDP server on port {address} {udp_port}")
        app.udp_ready.set()
    if _int(flags, "sctp-port") != -1:
        go_log("SCTP is not supported by kubesvc's agnhost; not starting the SCTP server")

    go_log(f"Started HTTP server on port {http_port}")
    try:
        server = HttpService(handler, http_port).start()
    except OSError as exc:
        go_fatal(listen_error("tcp", "", http_port, exc))
        return 1
    exit_code: list[int] = []

    def graceful_exit(code: int, timeout: float) -> None:
        def run() -> None:
            drained = server.shutdown(timeout)
            go_log(
                "Graceful shutdown completed with: "
                + ("<nil>" if drained else "context deadline exceeded")
            )
            exit_code.append(code)
            waiter.trigger()

        threading.Thread(target=run, daemon=True).start()

    app.exit_request = graceful_exit
    waiter.wait()
    if exit_code:
        _exit_now(exit_code[0])
    app.sigterm.set()
    if delay > 0:
        go_log(f"Sleeping {delay} seconds before terminating...")
        time.sleep(delay)
    _exit_now(0)
    return 0


# ---------------------------------------------------------------- serve-hostname

SERVE_HOSTNAME_FLAGS: dict[str, tuple[str, object]] = {
    "tcp": ("bool", False),
    "udp": ("bool", False),
    "http": ("bool", True),
    "close": ("bool", False),
    "port": ("int", 9376),
}


def run_serve_hostname(flags: dict[str, object]) -> int:
    do_tcp, do_udp, do_http = bool(flags["tcp"]), bool(flags["udp"]), bool(flags["http"])
    do_close = bool(flags["close"])
    port = _int(flags, "port")
    if do_http and (do_tcp or do_udp):
        go_fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
    waiter = SignalWaiter((signal.SIGTERM,))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    name = hostname()
    if do_tcp:
        _start_tcp_hostname(port, name)
    if do_udp:

        def answer(data: bytes, peer: tuple[str, int]) -> bytes:
            go_log(f"UDP request from {join_host_port(peer[0], str(peer[1]))}")
            return name.encode()

        try:
            UdpService(answer, port, bufsize=16).start()
        except OSError as exc:
            go_fatal(f"Error from ListenUDP(): {listen_error('udp', '', port, exc)}")
    if do_http:

        def serve(request: Request) -> Response:
            go_log(f"HTTP request from {request.remote_addr}")
            response = text(name)
            if do_close:
                response.headers.append(("Connection", "close"))
            return response

        try:
            HttpService(serve, port).start()
        except OSError as exc:
            go_fatal(listen_error("tcp", "", port, exc))
    go_log(f"Serving on port {port}.")
    sig = waiter.wait()
    go_log(f"Shutting down after receiving signal: {_signal_name(int(sig or 15)).lower()}.")
    go_log("Awaiting pod deletion.")
    time.sleep(60)
    return 0


def _start_tcp_hostname(port: int, name: str) -> None:
    from kubesvc.node.images._runtime import bind_address

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind_address(), port))
        sock.listen(128)
    except OSError as exc:
        go_fatal(f"Error from net.Listen(): {listen_error('tcp', '', port, exc)}")

    def loop() -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                continue
            go_log(f"TCP request from {join_host_port(peer[0], str(peer[1]))}")
            try:
                conn.sendall(name.encode())
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=loop, daemon=True).start()


# ---------------------------------------------------------------- connect

CONNECT_FLAGS: dict[str, tuple[str, object]] = {
    "timeout": ("duration", 0.0),
    "protocol": ("str", "tcp"),
    "udp-data": ("str", "hostname"),
    "sctp-data": ("str", "hostname"),
}


def split_host_port(dest: str) -> tuple[str, str]:
    """net.SplitHostPort."""
    if dest.startswith("["):
        end = dest.find("]")
        if end < 0:
            raise ValueError(f"address {dest}: missing ']' in address")
        host, rest = dest[1:end], dest[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {dest}: missing port in address")
        return host, rest[1:]
    if ":" not in dest:
        raise ValueError(f"address {dest}: missing port in address")
    host, _, port = dest.rpartition(":")
    if ":" in host:
        raise ValueError(f"address {dest}: too many colons in address")
    return host, port


def run_connect(flags: dict[str, object], positional: list[str]) -> int:
    if len(positional) != 1:
        raise UsageError(f"accepts 1 arg(s), received {len(positional)}")
    dest = positional[0]
    timeout = _float(flags, "timeout")
    protocol = str(flags["protocol"])
    if protocol in ("", "tcp"):
        return connect_tcp(dest, timeout)
    if protocol == "udp":
        return connect_udp(dest, timeout, str(flags["udp-data"]))
    if protocol == "sctp":
        emit(sys.stderr, "OTHER: sctp is not supported by kubesvc's agnhost")
        return 1
    emit(sys.stderr, f"Unsupported protocol\n{protocol}")
    return 1


def connect_tcp(dest: str, timeout: float) -> int:
    try:
        host, port = split_host_port(dest)
    except ValueError as exc:
        emit(sys.stderr, f"UNKNOWN: {exc}")
        return 1
    try:
        addr = resolve_addr("tcp", host, port)
    except ValueError as exc:
        emit(sys.stderr, f"DNS: {exc}")
        return 1
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout if timeout > 0 else None)
    try:
        sock.connect(addr)
        return 0
    except TimeoutError:
        emit(sys.stderr, "TIMEOUT")
    except ConnectionRefusedError:
        emit(sys.stderr, "REFUSED")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        emit(
            sys.stderr,
            f"OTHER: dial tcp {join_host_port(addr[0], str(addr[1]))}: connect: {reason}",
        )
    finally:
        sock.close()
    return 1


def connect_udp(dest: str, timeout: float, data: str) -> int:
    try:
        host, port = split_host_port(dest)
        addr = resolve_addr("udp", host, port)
    except ValueError as exc:
        emit(sys.stderr, f"DNS: {exc}")
        return 1
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(addr)
        except OSError as exc:
            emit(sys.stderr, f"OTHER: {exc}")
            return 1
        local = join_host_port(*map(str, sock.getsockname()[:2]))
        remote = join_host_port(addr[0], str(addr[1]))
        sock.settimeout(timeout if timeout > 0 else None)
        try:
            sock.send(f"{data}\n".encode())
            got = sock.recv(1024)
        except TimeoutError:
            emit(sys.stderr, f"TIMEOUT: read udp {local}->{remote}: i/o timeout")
            return 1
        except ConnectionRefusedError:
            emit(
                sys.stderr,
                f"REFUSED: read udp {local}->{remote}: recvfrom: connection refused",
            )
            return 1
        except OSError as exc:
            emit(sys.stderr, f"UNKNOWN: {exc}")
            return 1
    if not got:
        emit(
            sys.stderr,
            "OTHER: No data received from the server. "
            "Cannot guarantee the server received the request.",
        )
        return 1
    return 0


# ---------------------------------------------------------------- porter, liveness, pause, dns


def run_porter(flags: dict[str, object]) -> int:
    json_response = bool(flags["json-response"])
    prefixes = {
        "SERVE_PORT_": "tcp",
        "SERVE_TCP_PORT_": "tcp",
        "SERVE_UDP_PORT_": "udp",
        "SERVE_TLS_PORT_": "tls",
        "SERVE_SCTP_PORT_": "sctp",
    }
    default_signals()
    for key, value in os.environ.items():
        for prefix, kind in prefixes.items():
            if key.startswith(prefix):
                _porter_serve(kind, key[len(prefix) :], value, json_response)
    sleep_forever()
    return 0


def _porter_serve(kind: str, port_s: str, value: str, json_response: bool) -> None:
    try:
        port = int(port_s)
    except ValueError:
        go_log(f'server on port "{port_s}" failed: listen tcp: address {port_s}: invalid port')
        return
    if kind == "tcp":

        def serve(request: Request) -> Response:
            if json_response:
                body = go_json({"Body": value, "Method": request.method})
                return text(body, content_type="application/json")
            return text(value)

        try:
            HttpService(serve, port).start()
        except OSError as exc:
            go_log(f'server on port "{port_s}" failed: {listen_error("tcp", "0.0.0.0", port, exc)}')
    elif kind == "udp":
        try:
            UdpService(lambda _d, _p: value.encode(), port, bufsize=16).start()
        except OSError as exc:
            go_fatal(f"UDP: failed to listen on port {port_s}: {exc}")
        go_log(f"Started UDP server on port {port_s}")
    else:
        go_log(f'{kind} server on port "{port_s}" failed: {kind} is not supported by kubesvc')


def liveness_app(started: float, clock: Callable[[], float] = time.monotonic) -> App:
    """agnhost liveness: /healthz is 200 for the first 10 seconds, 500 after."""

    def serve(request: Request) -> Response:
        elapsed = clock() - started
        if request.path == "/started":
            return text(format_go_duration(elapsed))
        if request.path == "/healthz":
            if elapsed > 10:
                return text(f"error: {elapsed}", status=500)
            return text("ok")
        if request.path == "/redirect":
            return go_redirect(request, _first(request.query, "loc"), 302)
        return go_error("404 page not found", 404)

    return serve


def run_liveness(flags: dict[str, object]) -> int:
    default_signals()
    try:
        HttpService(liveness_app(time.monotonic()), 8080).start()
    except OSError as exc:
        go_fatal(listen_error("tcp", "", 8080, exc))
    sleep_forever()
    return 0


def run_pause(flags: dict[str, object]) -> int:
    # the handlers first: a signal sent as soon as "Paused" shows must find them
    waiter = SignalWaiter((signal.SIGINT, signal.SIGTERM))
    emit(sys.stdout, "Paused")
    sig = waiter.wait()
    _exit_now(1 if sig == signal.SIGINT else 2)
    return 0


def read_resolv_conf(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str]]:
    """(search suffixes, nameservers)."""
    search: list[str] = []
    servers: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            if not fields or fields[0].startswith(("#", ";")):
                continue
            if fields[0] == "search":
                search = fields[1:]
            elif fields[0] == "nameserver" and len(fields) > 1:
                servers.append(fields[1])
    return search, servers


def first_line_fields(text: str, keyword: str) -> list[str] | None:
    """agnhost dns: the fields after the first line starting with `keyword`, split on
    single spaces as upstream does, or None when there is none."""
    for line in text.split("\n"):
        if line.startswith(keyword):
            return line.split(" ")[1:]
    return None


def _resolv_fields(keyword: str) -> int:
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as fh:
            fields = first_line_fields(fh.read(), keyword)
    except OSError as exc:
        emit(sys.stderr, f"panic: open /etc/resolv.conf: {exc.strerror}")
        return 2
    if fields is None:
        emit(sys.stderr, "panic: Could not find DNS search list!")
        return 2
    print(",".join(fields), flush=True)
    return 0


def run_dns_suffix(flags: dict[str, object]) -> int:
    return _resolv_fields("search")


def run_dns_server_list(flags: dict[str, object]) -> int:
    return _resolv_fields("nameserver")


MAX_SERVED_FILE = 64 * 2**20  # test-webserver: what one response may read into memory


def test_webserver_app(root: str = "/") -> App:
    """agnhost test-webserver: net/http's FileServer over `root`, with the CORS and cache
    headers upstream adds."""
    extra = [
        ("Cache-Control", "private"),
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
        (
            "Access-Control-Allow-Headers",
            "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type",
        ),
    ]

    def serve(request: Request) -> Response:
        response = _serve_file(root, request.path)
        response.headers = extra + response.headers
        return response

    return serve


def _serve_file(root: str, url_path: str) -> Response:
    clean = posixpath.normpath("/" + url_path.lstrip("/"))
    full = os.path.join(root, clean.lstrip("/"))
    try:
        st = os.stat(full)
    except (OSError, ValueError):
        return go_error("404 page not found", 404)
    if stat.S_ISDIR(st.st_mode):
        if not url_path.endswith("/"):
            return Response(status=301, headers=[("Location", posixpath.basename(clean) + "/")])
        try:
            names = sorted(os.listdir(full))
        except OSError:
            return go_error("500 Internal Server Error", 500)
        links = "".join(
            f'<a href="{_html_escape(n)}{"/" if os.path.isdir(os.path.join(full, n)) else ""}">'
            f"{_html_escape(n)}{'/' if os.path.isdir(os.path.join(full, n)) else ''}</a>\n"
            for n in names
        )
        body = (
            '<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n'
            + links
            + "</pre>\n"
        )
        return text(body, content_type="text/html; charset=utf-8")
    if st.st_size > MAX_SERVED_FILE:
        return go_error("413 file too large for this server", 413)
    try:
        with open(full, "rb") as fh:
            data = fh.read(MAX_SERVED_FILE)
    except OSError:
        return go_error("403 Forbidden", 403)
    ctype = mimetypes.guess_type(full)[0]
    if ctype is None:
        ctype = "text/plain; charset=utf-8" if _looks_textual(data) else "application/octet-stream"
    elif ctype.startswith("text/"):
        ctype += "; charset=utf-8"
    return text(data, content_type=ctype)


def _looks_textual(data: bytes) -> bool:
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in data[:512]


def run_test_webserver(flags: dict[str, object]) -> int:
    default_signals()
    port = _int(flags, "port")
    try:
        HttpService(test_webserver_app(), port).start()
    except OSError as exc:
        go_fatal(listen_error("tcp", "", port, exc))
    sleep_forever()
    return 0


def run_etc_hosts(flags: dict[str, object]) -> int:
    with open("/etc/hosts", encoding="utf-8", errors="replace") as fh:
        print(fh.read(), flush=True)
    return 0


def run_entrypoint_tester(flags: dict[str, object], positional: list[str]) -> int:
    # Go's fmt of os.Args: every argument the entrypoint got, including its own path.
    print("[" + " ".join([_ARGV0[0], *_ARGV[0]]) + "]", flush=True)
    return 0


# -- mounttest ----------------------------------------------------------------------------
MOUNTTEST_FLAGS: dict[str, tuple[str, object]] = {
    "fs_type": ("str", ""),
    "file_mode": ("str", ""),
    "file_perm": ("str", ""),
    "file_owner": ("str", ""),
    "new_file_0644": ("str", ""),
    "new_file_0666": ("str", ""),
    "new_file_0660": ("str", ""),
    "new_file_0777": ("str", ""),
    "file_content": ("str", ""),
    "file_content_in_loop": ("str", ""),
    "retry_time": ("int", 180),
    "break_on_expected_content": ("bool", True),
}
MOUNTTEST_CONTENT = "mount-tester new file\n"
TMPFS_MAGIC = 0x01021994


def go_file_mode(st_mode: int) -> str:
    """Go's os.FileMode.String() for a stat mode: type letters, then rwxrwxrwx."""
    kinds = ""
    if stat.S_ISDIR(st_mode):
        kinds += "d"
    if stat.S_ISLNK(st_mode):
        kinds += "L"
    if stat.S_ISBLK(st_mode) or stat.S_ISCHR(st_mode):
        kinds += "D"
    if stat.S_ISFIFO(st_mode):
        kinds += "p"
    if stat.S_ISSOCK(st_mode):
        kinds += "S"
    if st_mode & stat.S_ISUID:
        kinds += "u"
    if st_mode & stat.S_ISGID:
        kinds += "g"
    if stat.S_ISCHR(st_mode):
        kinds += "c"
    if st_mode & stat.S_ISVTX:
        kinds += "t"
    rwx = "".join(c if st_mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (kinds or "-") + rwx


def _go_errno(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _statfs_type(path: str) -> int:
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(512)
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(struct.unpack_from("l", buf, 0)[0])


def _mt_read(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            content = fh.read()
    except OSError as exc:
        print(f"error reading file content for {_go_quote(path)}: open {path}: {_go_errno(exc)}")
        return False
    print(f"content of file {_go_quote(path)}: {content}")
    return True


def run_mounttest(flags: dict[str, object]) -> int:
    """agnhost mounttest, in upstream's order: fs type, new files, mode, perms, owner,
    content, content in a loop; exit 1 if any step failed."""
    os.umask(0)
    ok = True
    path = str(flags["fs_type"])
    if path:
        try:
            magic = _statfs_type(path)
            kind = "tmpfs" if magic == TMPFS_MAGIC else str(magic)
            print(f"mount type of {_go_quote(path)}: {kind}")
        except OSError as exc:
            print(f"error from statfs({_go_quote(path)}): {_go_errno(exc)}")
            ok = False
    for perm in (0o644, 0o666, 0o660, 0o777):
        path = str(flags[f"new_file_{perm:04o}"])
        if not path:
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
            with os.fdopen(fd, "w") as fh:
                fh.write(MOUNTTEST_CONTENT)
        except OSError as exc:
            print(f"error writing new file {_go_quote(path)}: open {path}: {_go_errno(exc)}")
            ok = False
            continue
        ok = _mt_read(path) and ok
    for flag, label, perm_only in (("file_mode", "mode", False), ("file_perm", "perms", True)):
        path = str(flags[flag])
        if not path:
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            print(f"error from Stat({_go_quote(path)}): stat {path}: {_go_errno(exc)}")
            ok = False
            continue
        shown = go_file_mode(mode & 0o777) if perm_only else go_file_mode(mode)
        print(f"{label} of file {_go_quote(path)}: {shown}")
    path = str(flags["file_owner"])
    if path:
        try:
            st = os.stat(path)
            print(f"owner UID of {_go_quote(path)}: {st.st_uid}")
            print(f"owner GID of {_go_quote(path)}: {st.st_gid}")
        except OSError as exc:
            print(f"error from stat({_go_quote(path)}): {_go_errno(exc)}")
            ok = False
    path = str(flags["file_content"])
    if path:
        ok = _mt_read(path) and ok
    path = str(flags["file_content_in_loop"])
    if path:
        ok = (
            _mt_loop(path, _int(flags, "retry_time"), bool(flags["break_on_expected_content"]))
            and ok
        )
    sys.stdout.flush()
    return 0 if ok else 1


def _mt_loop(path: str, retry: int, break_on_expected: bool) -> bool:
    deadline = time.monotonic() + max(0, retry)
    ok = False
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                content = fh.read()
            ok = True
        except OSError as exc:
            print(f"Error reading file {path}: open {path}: {_go_errno(exc)}, retrying", flush=True)
            ok = False
            time.sleep(2)
            continue
        print(f"content of file {_go_quote(path)}: {content}", flush=True)
        if not break_on_expected or content == MOUNTTEST_CONTENT:
            if break_on_expected:
                break
        else:
            print(
                f"Unexpected content. Expected: {MOUNTTEST_CONTENT}. Retrying", end="", flush=True
            )
        time.sleep(2)
    return ok


# The path the container's command named the binary by (/agnhost, /agnhost-2), and the
# arguments after it, for entrypoint-tester.
_ARGV0 = ["/agnhost"]
_ARGV: list[list[str]] = [[]]
ARGV0_FLAG = "--kubesvc-argv0="


@dataclass(frozen=True)
class Subcommand:
    flags: dict[str, tuple[str, object]]
    run: Callable[[dict[str, object], list[str]], int]
    max_args: int | None = 0
    short: str = ""


def _no_args(
    fn: Callable[[dict[str, object]], int],
) -> Callable[[dict[str, object], list[str]], int]:
    return lambda flags, _positional: fn(flags)


SUBCOMMANDS: dict[str, Subcommand] = {
    "netexec": Subcommand(NETEXEC_FLAGS, _no_args(run_netexec), short="HTTP and UDP test server"),
    "serve-hostname": Subcommand(
        SERVE_HOSTNAME_FLAGS, _no_args(run_serve_hostname), short="Serves the hostname"
    ),
    "connect": Subcommand(
        CONNECT_FLAGS, run_connect, max_args=None, short="Attempts a TCP or UDP connection"
    ),
    "pause": Subcommand({}, _no_args(run_pause), short="Pauses the execution"),
    "porter": Subcommand(
        {"json-response": ("bool", False)},
        _no_args(run_porter),
        short="Serves requested data on ports specified in ENV variables",
    ),
    "liveness": Subcommand(
        {}, _no_args(run_liveness), short="Starts a server that is alive for 10 seconds"
    ),
    "dns-suffix": Subcommand({}, _no_args(run_dns_suffix), short="Prints the DNS suffix list"),
    "dns-server-list": Subcommand(
        {}, _no_args(run_dns_server_list), short="Prints the DNS server list"
    ),
    "etc-hosts": Subcommand({}, _no_args(run_etc_hosts), short="Prints the /etc/hosts file"),
    "mounttest": Subcommand(
        MOUNTTEST_FLAGS,
        _no_args(run_mounttest),
        short="Creates files with given permissions and outputs FS type, owner, mode, "
        "permissions, contents of files",
    ),
    "test-webserver": Subcommand(
        {"port": ("int", 80)},
        _no_args(run_test_webserver),
        short="Starts a simple HTTP fileserver",
    ),
    "entrypoint-tester": Subcommand(
        {}, run_entrypoint_tester, max_args=None, short="Prints its arguments"
    ),
}


def usage() -> str:
    lines = ["Usage:", "  app [command]", "", "Available Commands:"]
    for name, sub in sorted(SUBCOMMANDS.items()):
        lines.append(f"  {name:<20} {sub.short}")
    lines += ["", 'Use "app [command] --help" for more information about a command.']
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv and argv[0].startswith(ARGV0_FLAG):
        _ARGV0[0] = argv[0][len(ARGV0_FLAG) :]
        argv = argv[1:]
    _ARGV[0] = list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), flush=True)
        return 0
    if argv[0] in ("--version", "-v"):
        print(f"app version {VERSION}", flush=True)
        return 0
    name, rest = argv[0], argv[1:]
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        emit(sys.stderr, f'Error: unknown command "{name}" for "app"')
        emit(
            sys.stderr,
            "kubesvc's built-in agnhost has: " + ", ".join(sorted(SUBCOMMANDS)),
        )
        emit(sys.stderr, "Run 'app --help' for usage.")
        return 1
    try:
        parsed = parse_flags(sub.flags, rest)
        if parsed.help:
            print(f"{sub.short}\n\nUsage:\n  app {name} [flags]", flush=True)
            return 0
        if sub.max_args is not None and len(parsed.positional) > sub.max_args:
            raise UsageError(
                f"accepts at most {sub.max_args} arg(s), received {len(parsed.positional)}"
            )
        return sub.run(parsed.flags, parsed.positional)
    except UsageError as exc:
        emit(sys.stderr, f"Error: {exc}")
        emit(sys.stderr, f"Usage:\n  app {name} [flags]")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
