"""hashicorp/http-echo: answers every path with -text (and a newline), /health with
{"status":"ok"}; -listen (default :5678), -status-code, ECHO_TEXT. SIGINT/SIGTERM: graceful
shutdown, then exit 2 as upstream does.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from kubesvc.node.images._runtime import (
    HttpService,
    Request,
    Response,
    SignalWaiter,
    emit,
    go_log,
    parse_go_int,
)

APP_NAME = "http-echo"
APP_VERSION = "1.0.0"
FLAGS: dict[str, str] = {"listen": "str", "text": "str", "version": "bool", "status-code": "int"}
USAGE = """Usage of /http-echo:
  -listen string
    \taddress and port to listen (default ":5678")
  -status-code int
    \thttp response code, e.g.: 200 (default 200)
  -text string
    \ttext to put on the webpage
  -version
    \tdisplay version information"""


class FlagError(Exception):
    pass


def parse_flags(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    """Go's flag package: -name=value, -name value, --name, stops at the first non-flag."""
    values: dict[str, object] = {
        "listen": ":5678",
        "text": "",
        "version": False,
        "status-code": 200,
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return values, argv[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return values, argv[i:]
        i += 1
        name, eq, raw = arg.lstrip("-").partition("=")
        if name in ("h", "help"):
            raise FlagError("")
        if name not in FLAGS:
            raise FlagError(f"flag provided but not defined: -{name}")
        kind = FLAGS[name]
        if kind == "bool":
            values[name] = raw.lower() in ("1", "t", "true") if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            raw = argv[i]
            i += 1
        if kind == "int":
            try:
                values[name] = parse_go_int(raw)
            except ValueError:
                raise FlagError(f'invalid value "{raw}" for flag -{name}: parse error') from None
        else:
            values[name] = raw
    return values, []


def split_listen(listen: str) -> tuple[str | None, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    return (host or None), int(port)


class Echo:
    def __init__(self, body: str, status: int) -> None:
        self.body = (body + "\n").encode()
        self.status = status

    def __call__(self, request: Request) -> Response:
        headers = [
            ("X-App-Name", APP_NAME),
            ("X-App-Version", APP_VERSION),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
        if request.path == "/health":
            return Response(status=200, body=b'{"status":"ok"}\n', headers=headers)
        started = time.monotonic()
        response = Response(status=self.status, body=self.body, headers=headers)
        took = (time.monotonic() - started) * 1e6
        emit(
            sys.stdout,
            f"{time.strftime('%Y/%m/%d %H:%M:%S')} {request.host} {request.remote_addr} "
            f'"{request.method} {request.path} {request.version}" {response.status} '
            f'{len(response.body)} "{request.header("User-Agent")}" {took:.3f}µs',
        )
        return response


def main(argv: list[str]) -> int:
    try:
        flags, rest = parse_flags(argv)
    except FlagError as exc:
        if str(exc):
            emit(sys.stderr, str(exc))
        emit(sys.stderr, USAGE)
        return 0 if not str(exc) else 2
    if flags["version"]:
        emit(sys.stderr, f"{APP_NAME} v{APP_VERSION}")
        return 0
    text = str(flags["text"]) or os.environ.get("ECHO_TEXT", "")
    if not text:
        emit(sys.stderr, "Missing -text option or ECHO_TEXT env var!")
        return 127
    if rest:
        emit(sys.stderr, "Too many arguments!")
        return 127
    listen = str(flags["listen"])
    waiter = SignalWaiter((signal.SIGINT, signal.SIGTERM))
    try:
        host, port = split_listen(listen)
        status = flags["status-code"]
        assert isinstance(status, int)
        server = HttpService(Echo(text, status), port, host=host).start()
    except (OSError, ValueError) as exc:
        go_log(f"[ERR] server exited with: listen tcp {listen}: {exc}")
        return 1
    go_log(f"[INFO] server is listening on {listen}")
    waiter.wait()
    go_log("[INFO] received interrupt, shutting down...")
    server.shutdown(5.0)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
