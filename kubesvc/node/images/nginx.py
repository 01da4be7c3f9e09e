"""The stock nginx image: the default site on port 80 (the welcome page at / and
/index.html, /50x.html, nginx's own 404/405 pages), access log in the `main` format on
stdout, error log on stderr. SIGTERM/SIGINT: fast shutdown; SIGQUIT: graceful shutdown.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from email.utils import formatdate
from urllib.parse import unquote

from kubesvc.node.images._runtime import HttpService, Request, Response, SignalWaiter, emit

DEFAULT_VERSION = "1.27.3"
VERSION_FLAG = "--kubesvc-version="
PORT_FLAG = "--kubesvc-port="

WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

ERROR_50X = """<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>
"""

FILES = {"/": WELCOME, "/index.html": WELCOME, "/50x.html": ERROR_50X}
REASONS = {304: "Not Modified", 400: "Bad Request", 404: "Not Found", 405: "Not Allowed"}


def error_page(status: int, server: str) -> bytes:
    title = f"{status} {REASONS.get(status, '')}".rstrip()
    lines = [
        "<html>",
        f"<head><title>{title}</title></head>",
        "<body>",
        f"<center><h1>{title}</h1></center>",
        f"<hr><center>{server}</center>",
        "</body>",
        "</html>",
        "",
    ]
    return "\r\n".join(lines).encode()


class Site:
    def __init__(self, version: str, started: float) -> None:
        self.server = f"nginx/{version}"
        self.mtime = int(started)
        self.last_modified = formatdate(self.mtime, usegmt=True)

    def __call__(self, request: Request) -> Response:
        response = self.respond(request)
        emit(sys.stdout, self.access_line(request, response))
        return response

    def respond(self, request: Request) -> Response:
        path = unquote(request.path)
        page = FILES.get(path)
        if page is None:
            return self.error(404)
        if request.method not in ("GET", "HEAD"):
            return self.error(405)
        body = page.encode()
        etag = f'"{self.mtime:x}-{len(body):x}"'
        headers = [
            ("Content-Type", "text/html"),
            ("Last-Modified", self.last_modified),
            ("Connection", "keep-alive"),
            ("ETag", etag),
        ]
        if request.header("If-None-Match") == etag:
            return Response(status=304, headers=headers, body=b"")
        headers.append(("Accept-Ranges", "bytes"))
        return Response(status=200, body=body, headers=headers)

    def error(self, status: int) -> Response:
        return Response(
            status=status,
            body=error_page(status, self.server),
            headers=[("Content-Type", "text/html"), ("Connection", "keep-alive")],
        )

    @staticmethod
    def access_line(request: Request, response: Response) -> str:
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        sent = 0 if request.method == "HEAD" else len(response.body)
        referer = request.header("Referer") or "-"
        agent = request.header("User-Agent") or "-"
        forwarded = request.header("X-Forwarded-For") or "-"
        line = f"{request.method} {request.target} {request.version}"
        return (
            f'{request.client[0]} - - [{stamp}] "{line}" {response.status} {sent} '
            f'"{referer}" "{agent}" "{forwarded}"'
        )


def error_log(level: str, message: str) -> None:
    emit(sys.stderr, time.strftime("%Y/%m/%d %H:%M:%S ") + f"[{level}] 1#1: {message}")


def main(argv: list[str]) -> int:
    version, port = DEFAULT_VERSION, 80
    for arg in argv:
        if arg.startswith(VERSION_FLAG):
            version = arg[len(VERSION_FLAG) :] or DEFAULT_VERSION
        elif arg.startswith(PORT_FLAG):
            port = int(arg[len(PORT_FLAG) :])
    waiter = SignalWaiter((signal.SIGTERM, signal.SIGINT, signal.SIGQUIT))
    emit(sys.stdout, "/docker-entrypoint.sh: Configuration complete; ready for start up")
    site = Site(version, time.time())
    try:
        server = HttpService(site, port, server_header=site.server).start()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        error_log("emerg", f"bind() to 0.0.0.0:{port} failed ({exc.errno}: {reason})")
        return 1
    error_log("notice", 'using the "epoll" event method')
    error_log("notice", site.server)
    error_log("notice", f"start worker process {os.getpid()}")
    sig = waiter.wait()
    if sig == signal.SIGQUIT:
        error_log("notice", "signal 3 (SIGQUIT) received, shutting down")
        server.shutdown(30.0)
    else:
        num = int(sig or signal.SIGTERM)
        error_log("notice", f"signal {num} ({signal.Signals(num).name}) received, exiting")
        server.shutdown(0.0)
    error_log("notice", "exit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
